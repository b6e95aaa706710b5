"""Monitor: an eternal orchestration that polls, sleeps on a durable timer and continues as new.

Continue-as-new restarts the instance with a fresh history each round, so an orchestration that runs
forever never grows its history.

    python samples/monitor.py
"""

from __future__ import annotations

import asyncio

from dtf_sb import OrchestrationContext


def check_job(state: dict) -> str:
    """Pretend to poll an external job: it finishes on the fourth check."""
    return "done" if state["checks"] >= 3 else "running"


async def monitor_job(ctx: OrchestrationContext, state: dict) -> dict:
    status = await ctx.call_activity(check_job, state)
    if status == "done":
        return {"job": state["job"], "checks": state["checks"] + 1, "status": status}
    await ctx.create_timer(state["interval"])
    ctx.continue_as_new({**state, "checks": state["checks"] + 1})
    return state


async def main() -> dict:
    from _run import output_of, run_sample

    state = await run_sample(
        monitor_job, {"job": "export-42", "checks": 0, "interval": 0.5}, activities=[check_job]
    )
    return output_of(state)


if __name__ == "__main__":
    asyncio.run(main())
