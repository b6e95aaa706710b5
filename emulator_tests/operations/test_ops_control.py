"""Recursive terminate, jump-start of a start that was never sent, and suspend across a worker restart."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from opskit import TIMEOUT, new_instance_id, status_when, wait_until

from dtf_sb import OrchestrationContext, OrchestrationStatus
from dtf_sb.client import OrchestrationAlreadyExistsError
from dtf_sb.core.codec import decode_payload
from dtf_sb.core.history import (
    ExecutionStartedEvent,
    OrchestratorStartedEvent,
    SubOrchestrationInstanceCreatedEvent,
    TaskScheduledEvent,
)
from dtf_sb.options import JumpStartOptions
from dtf_sb.testing.runtime import HubConnection, worker_for


# -- recursive terminate -----------------------------------------------------------------------------
async def leaf(ctx: OrchestrationContext, _: Any) -> Any:
    return await ctx.wait_for_external_event("never")


async def middle(ctx: OrchestrationContext, _: Any) -> Any:
    return await ctx.call_sub_orchestrator(leaf, instance_id=f"{ctx.instance_id}-leaf")


async def root(ctx: OrchestrationContext, _: Any) -> Any:
    return await ctx.when_all(
        [
            ctx.call_sub_orchestrator(middle, instance_id=f"{ctx.instance_id}-a"),
            ctx.call_sub_orchestrator(leaf, instance_id=f"{ctx.instance_id}-b"),
        ]
    )


async def _tree(client: Any, prefix: str) -> tuple[str, list[str]]:
    iid = await client.schedule_new_orchestration(root, instance_id=new_instance_id(prefix))
    descendants = [f"{iid}-a", f"{iid}-b", f"{iid}-a-leaf"]
    for child in descendants:
        await status_when(client, child, OrchestrationStatus.RUNNING)
    return iid, descendants


async def test_recursive_terminate_reaches_every_running_descendant(start_worker, client) -> None:
    await start_worker([root, middle, leaf])
    iid, descendants = await _tree(client, "tree")

    await client.terminate_orchestration(iid, reason="operator stop", recursive=True)

    for instance in [iid, *descendants]:
        state = await status_when(client, instance, OrchestrationStatus.TERMINATED)
        assert decode_payload(state.output) == "operator stop"


async def test_plain_terminate_leaves_children_running(start_worker, client) -> None:
    await start_worker([root, middle, leaf])
    iid, descendants = await _tree(client, "flat")

    await client.terminate_orchestration(iid, reason="only the root")
    await status_when(client, iid, OrchestrationStatus.TERMINATED)
    history = await client.get_orchestration_history(iid)
    assert len([e for e in history if isinstance(e, SubOrchestrationInstanceCreatedEvent)]) == 2
    # The children got no terminate: they are still running and still answer events.
    for child in descendants:
        state = await client.get_orchestration_state(child)
        assert state is not None and state.status is OrchestrationStatus.RUNNING
    await client.raise_orchestration_event(f"{iid}-b", "never", data="late")
    done = await status_when(client, f"{iid}-b", OrchestrationStatus.COMPLETED)
    assert decode_payload(done.output) == "late"


# -- jump-start ----------------------------------------------------------------------------------------
async def hello(ctx: OrchestrationContext, name: str) -> str:
    return f"hello {name}"


class _LostSend(Exception):
    """Stands in for the process dying between the jump-start record and the send."""


async def test_a_start_that_was_never_sent_is_jump_started_after_the_window(hub, worker_options) -> None:
    from azure.servicebus.exceptions import ServiceBusConnectionError

    window = 3.0
    options = dataclasses.replace(
        hub.options, jump_start=JumpStartOptions(interval=0.2, ignore_window=window)
    )
    jump_hub = HubConnection(options, hub.servicebus_connection_string, hub.storage_connection_string)

    async with jump_hub.client() as client:

        async def lose(_messages: Any) -> None:
            raise ServiceBusConnectionError(message="connection lost before the start was sent")

        client._senders.send = lose  # the record is written, the send never happens
        iid = await client.schedule_new_orchestration(
            hello, input="jump", instance_id=new_instance_id("jump")
        )

    async with jump_hub.client() as client:
        pending = await client.get_orchestration_state(iid)
        assert pending is not None and pending.status is OrchestrationStatus.PENDING
        recorded = pending.created_time
        # Instance-id de-duplication sees the instance although only its jump-start record exists.
        with pytest.raises(OrchestrationAlreadyExistsError, match="Pending"):
            await client.schedule_new_orchestration(hello, input="again", instance_id=iid)

        async with worker_for(jump_hub, [hello], worker_options=worker_options):
            done = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
        assert done.status is OrchestrationStatus.COMPLETED
        assert decode_payload(done.output) == "hello jump"
        history = await client.get_orchestration_history(iid)
        started = [e for e in history if isinstance(e, ExecutionStartedEvent)]
        assert len(started) == 1 and started[0].orchestration_instance.execution_id == (
            pending.orchestration_instance.execution_id
        )
        # It ran only once the ignore window had passed since the start was recorded, never before.
        first_episode = next(e for e in history if isinstance(e, OrchestratorStartedEvent))
        assert first_episode.timestamp - recorded >= timedelta(seconds=window)


async def test_a_start_refused_for_good_leaves_no_pending_instance(start_worker, client) -> None:
    from azure.servicebus.exceptions import MessageSizeExceededError

    async def refuse(_messages: Any) -> None:
        raise MessageSizeExceededError(message="the message is larger than the queue accepts")

    iid = new_instance_id("refused")
    send = client._senders.send
    client._senders.send = refuse
    with pytest.raises(MessageSizeExceededError):
        await client.schedule_new_orchestration(hello, input="x", instance_id=iid)
    client._senders.send = send
    # Re-sending would fail the same way, so the jump-start record is gone and the id is free again.
    assert await client.get_orchestration_state(iid) is None
    await start_worker([hello])
    await client.schedule_new_orchestration(hello, input="again", instance_id=iid)
    done = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert decode_payload(done.output) == "hello again"


# -- suspend across a worker restart -------------------------------------------------------------------
async def test_suspended_instance_resumes_where_it_was_after_a_worker_restart(
    hub, client, worker_options
) -> None:
    calls: list[str] = []

    async def step(name: str) -> str:
        calls.append(name)
        return name.upper()

    async def two_steps(ctx: OrchestrationContext, _: Any) -> list[str]:
        first = await ctx.call_activity(step, "first")
        go = await ctx.wait_for_external_event("go")
        second = await ctx.call_activity(step, go)
        return [first, second]

    iid = new_instance_id("suspend")
    async with worker_for(hub, [two_steps], [step], worker_options=worker_options):
        await client.schedule_new_orchestration(two_steps, instance_id=iid)

        async def waiting_for_go() -> bool:
            history = await client.get_orchestration_history(iid)
            return len([e for e in history if isinstance(e, TaskScheduledEvent)]) == 1 and calls == ["first"]

        await wait_until(waiting_for_go, what="the first step")
        await client.suspend_orchestration(iid, reason="maintenance")
        await status_when(client, iid, OrchestrationStatus.SUSPENDED)
        await client.raise_orchestration_event(iid, "go", data="second")

        async def event_held() -> bool:
            history = await client.get_orchestration_history(iid)
            return any(type(e).__name__ == "EventRaisedEvent" for e in history)

        await wait_until(event_held, what="the event to be recorded while suspended")

    async with worker_for(hub, [two_steps], [step], worker_options=worker_options):
        state = await client.get_orchestration_state(iid)
        assert state is not None and state.status is OrchestrationStatus.SUSPENDED
        assert calls == ["first"]  # nothing ran while suspended, before or after the restart
        await client.resume_orchestration(iid, reason="maintenance over")
        done = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert done.status is OrchestrationStatus.COMPLETED
    assert decode_payload(done.output) == ["FIRST", "SECOND"]
    assert calls == ["first", "second"]  # the first step was not run again after the restart
