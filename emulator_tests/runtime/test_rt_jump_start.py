"""Jump-start: a start the client recorded but never sent (it died in between) is sent by a worker's
jump-start manager, and meanwhile the id counts as taken (DTF SimplestGreetingsJumpStartTest,
DupeDetectionByInstanceStoreTest)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest
from rtkit import new_instance_id, of_type, output, wait_until

from dtf_sb import OrchestrationAlreadyExistsError, OrchestrationContext, OrchestrationStatus
from dtf_sb.core.codec import encode_payload, encode_task_message
from dtf_sb.core.history import ExecutionStartedEvent
from dtf_sb.core.messages import OrchestrationInstance, TaskMessage
from dtf_sb.options import JumpStartOptions
from dtf_sb.servicebus.store import HubStore
from dtf_sb.testing.runtime import HubConnection, worker_for

TIMEOUT = 30


async def welcome(name: str) -> str:
    return f"Welcome {name}"


async def welcoming(ctx: OrchestrationContext, name: str) -> str:
    return await ctx.call_activity(welcome, name)


async def test_recorded_but_unsent_start_is_sent_by_the_jump_start_manager(
    hub: HubConnection, client: Any, no_dead_letters: None, worker_options: Any
) -> None:
    iid = new_instance_id("jump")
    execution_id = uuid.uuid4().hex
    instance = OrchestrationInstance(iid, execution_id)
    start = ExecutionStartedEvent(
        name="welcoming", orchestration_instance=instance, input=encode_payload("Bob")
    )
    body = encode_task_message(TaskMessage(event=start, orchestration_instance=instance), compress=False)
    # What a client leaves behind when it dies between recording the start and sending it.
    store = HubStore(hub.options, connection_string=hub.storage_connection_string)
    try:
        await store.ensure()
        await store.put_jump_start(iid, execution_id, body)
    finally:
        await store.close()

    pending = await client.get_orchestration_state(iid)
    assert pending is not None and pending.status == OrchestrationStatus.PENDING
    with pytest.raises(OrchestrationAlreadyExistsError):
        await client.schedule_new_orchestration(welcoming, input="Eve", instance_id=iid)

    fast = HubConnection(
        replace(hub.options, jump_start=JumpStartOptions(interval=0.5, ignore_window=1.0)),
        servicebus_connection_string=hub.servicebus_connection_string,
        storage_connection_string=hub.storage_connection_string,
    )
    async with worker_for(fast, [welcoming], [welcome], worker_options=worker_options):
        state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == "Welcome Bob"
    assert state.execution_id == execution_id
    history = await client.get_orchestration_history(iid)
    assert len(of_type(history, ExecutionStartedEvent)) == 1


async def awaiting_go(ctx: OrchestrationContext, _: Any) -> str:
    return await ctx.wait_for_external_event("go")


async def test_a_start_dropped_because_the_instance_runs_leaves_no_jump_start_record(
    start_worker: Any, hub: HubConnection, client: Any, worker_options: Any
) -> None:
    # Otherwise the record would be re-sent every ignore window, and once the instance had finished
    # (and the broker's duplicate window passed) the copy would start it again.
    await start_worker([awaiting_go], [], worker_options=worker_options)
    iid = await client.schedule_new_orchestration(awaiting_go, instance_id=new_instance_id("dropped"))
    running = await client.wait_for_orchestration_start(iid, timeout=TIMEOUT)
    await client.schedule_new_orchestration(awaiting_go, instance_id=iid, dedupe_statuses=[])

    store = HubStore(hub.options, connection_string=hub.storage_connection_string)
    try:

        async def no_records() -> bool:
            return not await store.instances.get_jump_starts(iid)

        await wait_until(no_records, timeout=TIMEOUT, what="the dropped start's jump-start record to go")
    finally:
        await store.close()

    await client.raise_orchestration_event(iid, "go", data="once")
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state.execution_id == running.execution_id
    assert output(state) == "once"
    history = await client.get_orchestration_history(iid)
    assert len(of_type(history, ExecutionStartedEvent)) == 1
