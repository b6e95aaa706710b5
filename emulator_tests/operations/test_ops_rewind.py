"""Rewind: a Failed instance retries its failed work once the cause is fixed, and completes."""

from __future__ import annotations

from typing import Any

import pytest
from opskit import TIMEOUT, new_instance_id, status_when, wait_until

from dtf_sb import OrchestrationContext, OrchestrationStatus
from dtf_sb.core.codec import decode_payload
from dtf_sb.core.history import TaskCompletedEvent, TaskFailedEvent, TaskScheduledEvent
from dtf_sb.core.rewind import RewindError


class Switch:
    """Whether the "deployed" activity code is fixed yet, and how often each activity ran."""

    def __init__(self) -> None:
        self.fixed = False
        self.calls: dict[str, int] = {}

    def count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1


async def _completed_after_rewind(client: Any, instance_id: str, failed_execution: str) -> Any:
    async def probe() -> Any:
        state = await client.get_orchestration_state(instance_id)
        if state is None or state.orchestration_instance.execution_id == failed_execution:
            return None
        return state if state.status.is_terminal else None

    return await wait_until(probe, what=f"{instance_id} to finish its rewound execution")


async def test_rewind_retries_the_failed_activity_and_keeps_the_rest(start_worker, client) -> None:
    switch = Switch()

    async def reserve(item: str) -> str:
        switch.count("reserve")
        return f"reserved {item}"

    async def charge(amount: int) -> str:
        switch.count("charge")
        if not switch.fixed:
            raise ConnectionError("payment service unavailable")
        return f"charged {amount}"

    async def checkout(ctx: OrchestrationContext, order: dict[str, Any]) -> list[str]:
        reserved = await ctx.call_activity(reserve, order["item"])
        charged = await ctx.call_activity(charge, order["amount"])
        return [reserved, charged]

    await start_worker([checkout], [reserve, charge])
    iid = await client.schedule_new_orchestration(
        checkout, input={"item": "book", "amount": 12}, instance_id=new_instance_id("rewind")
    )
    failed = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert failed.status is OrchestrationStatus.FAILED
    assert "payment service unavailable" in failed.failure_details.message

    switch.fixed = True
    new_execution = await client.rewind_orchestration(iid, reason="payment service is back")
    assert new_execution != failed.orchestration_instance.execution_id

    done = await _completed_after_rewind(client, iid, failed.orchestration_instance.execution_id)
    assert done.status is OrchestrationStatus.COMPLETED
    assert decode_payload(done.output) == ["reserved book", "charged 12"]
    assert done.orchestration_instance.execution_id == new_execution
    # The successful activity was not run again; only the failed one was retried.
    assert switch.calls == {"reserve": 1, "charge": 2}

    history = await client.get_orchestration_history(iid)
    scheduled = [e.name for e in history if isinstance(e, TaskScheduledEvent)]
    assert scheduled == ["reserve", "charge"]
    assert not [e for e in history if isinstance(e, TaskFailedEvent)]
    assert len([e for e in history if isinstance(e, TaskCompletedEvent)]) == 2

    # The failed execution stays on record, next to the one that completed.
    old = await client.get_orchestration_state(iid, execution_id=failed.orchestration_instance.execution_id)
    assert old is not None and old.status is OrchestrationStatus.FAILED
    page = await client.query_orchestrations(instance_id_prefix=iid)
    assert sorted(s.status.name for s in page.states) == ["COMPLETED", "FAILED"]


async def test_rewind_retries_a_failed_sub_orchestration(start_worker, client) -> None:
    switch = Switch()

    async def flaky(_: Any) -> str:
        switch.count("flaky")
        if not switch.fixed:
            raise ValueError("not yet")
        return "ok"

    async def child(ctx: OrchestrationContext, _: Any) -> str:
        return await ctx.call_activity(flaky)

    async def parent(ctx: OrchestrationContext, _: Any) -> str:
        result = await ctx.call_sub_orchestrator(child)
        return f"child said {result}"

    await start_worker([parent, child], [flaky])
    iid = await client.schedule_new_orchestration(parent, instance_id=new_instance_id("rewind-parent"))
    failed = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert failed.status is OrchestrationStatus.FAILED

    switch.fixed = True
    await client.rewind_orchestration(iid)
    done = await _completed_after_rewind(client, iid, failed.orchestration_instance.execution_id)
    assert done.status is OrchestrationStatus.COMPLETED
    assert decode_payload(done.output) == "child said ok"
    assert switch.calls == {"flaky": 2}


async def test_a_child_still_running_at_the_failure_reports_to_the_rewound_execution(
    start_worker, client
) -> None:
    switch = Switch()

    async def flaky(_: Any) -> str:
        switch.count("flaky")
        if not switch.fixed:
            raise ValueError("not yet")
        return "ok"

    async def waiter(ctx: OrchestrationContext, _: Any) -> Any:
        return await ctx.wait_for_external_event("go")

    async def mixed(ctx: OrchestrationContext, _: Any) -> list[Any]:
        child = ctx.call_sub_orchestrator(waiter, instance_id=f"{ctx.instance_id}-child")
        return await ctx.when_all([child, ctx.call_activity(flaky)])

    await start_worker([mixed, waiter], [flaky])
    iid = await client.schedule_new_orchestration(mixed, instance_id=new_instance_id("mixed"))
    failed = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert failed.status is OrchestrationStatus.FAILED
    await status_when(client, f"{iid}-child", OrchestrationStatus.RUNNING)

    switch.fixed = True
    await client.rewind_orchestration(iid)

    async def retried() -> bool:
        return switch.calls.get("flaky") == 2

    await wait_until(retried, what="the failed activity to run again")
    await client.raise_orchestration_event(f"{iid}-child", "go", data="child done")
    done = await _completed_after_rewind(client, iid, failed.orchestration_instance.execution_id)
    assert done.status is OrchestrationStatus.COMPLETED
    assert decode_payload(done.output) == ["child done", "ok"]


async def test_rewind_refuses_instances_that_did_not_fail(start_worker, client) -> None:
    async def wait_forever(ctx: OrchestrationContext, _: Any) -> Any:
        return await ctx.wait_for_external_event("never")

    await start_worker([wait_forever])
    iid = await client.schedule_new_orchestration(wait_forever, instance_id=new_instance_id("running"))
    await status_when(client, iid, OrchestrationStatus.RUNNING)
    with pytest.raises(RewindError, match="is Running; only a Failed instance can be rewound"):
        await client.rewind_orchestration(iid)
    with pytest.raises(RewindError, match="no instance"):
        await client.rewind_orchestration(new_instance_id("unknown"))
