"""Human interaction: wait for an approval event, escalate when it does not come in time.

python samples/human_interaction.py
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from dtf_sb import EventTimeoutError, OrchestrationContext


async def request_approval(request: dict) -> str:
    return f"approval requested from {request['approver']}"


async def escalate(request: dict) -> str:
    return f"escalated {request['id']} to the manager"


async def approval_workflow(ctx: OrchestrationContext, request: dict) -> str:
    await ctx.call_activity(request_approval, request)
    ctx.set_custom_status("waiting for approval")
    try:
        decision = await ctx.wait_for_external_event(
            "approval", timeout=timedelta(seconds=request["timeout"])
        )
    except EventTimeoutError:
        return await ctx.call_activity(escalate, request)
    ctx.set_custom_status(None)
    return f"request {request['id']} {'approved' if decision['approved'] else 'rejected'} by {decision['by']}"


async def main(*, approve: bool = True) -> str:
    from _run import output_of, run_sample

    async def approver(client, instance_id: str) -> None:
        if approve:
            await client.wait_for_orchestration_start(instance_id, timeout=30)
            await asyncio.sleep(0.5)
            await client.raise_orchestration_event(
                instance_id, "approval", data={"approved": True, "by": "ana"}
            )

    request = {"id": "PO-1001", "approver": "ana", "timeout": 30 if approve else 2}
    state = await run_sample(
        approval_workflow, request, activities=[request_approval, escalate], interact=approver
    )
    return output_of(state)


if __name__ == "__main__":
    asyncio.run(main())
