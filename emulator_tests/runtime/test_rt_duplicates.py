"""Duplicates delivered on purpose: the same TaskCompleted, TimerFired, EventRaised and ExecutionStarted
sent again with the plain SDK.

With fresh message ids the broker's duplicate detection cannot help, so this proves the receivers'
own de-duplication (DESIGN 4 step 2): each event is in history once and the result is unchanged. With
the original start message id (DTF DupeDetectionByServiceBusQueueTest) the broker drops the copy, so
a finished instance is not started again. A copy that arrives before the decision it answers (the one
message a crashed episode got through) is kept until the decision is made.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from rtkit import history_when, of_type, output, send_raw_events, unchanged_for

from dtf_sb import OrchestrationContext, OrchestrationStatus
from dtf_sb.core.codec import decode_payload, encode_payload
from dtf_sb.core.history import (
    EventRaisedEvent,
    ExecutionStartedEvent,
    HistoryEvent,
    TaskCompletedEvent,
    TimerFiredEvent,
)
from dtf_sb.servicebus.messages import deterministic_message_id

TIMEOUT = 30


async def echo(value: str) -> str:
    return value


async def duplicate_target(ctx: OrchestrationContext, _: Any) -> list[Any]:
    a = await ctx.call_activity(echo, "a")
    await ctx.create_timer(0.2)
    data = await ctx.wait_for_external_event("Data")
    await ctx.wait_for_external_event("Finish")
    return [a, data]


def _ready_for_duplicates(history: list[HistoryEvent]) -> bool:
    return bool(
        of_type(history, TaskCompletedEvent)
        and of_type(history, TimerFiredEvent)
        and [e for e in of_type(history, EventRaisedEvent) if e.name == "Data"]
    )


@pytest.mark.parametrize("idle", [0.0, 10.0], ids=["replay", "extended-session"])
async def test_duplicates_with_new_message_ids_change_nothing(
    start_worker, client, hub, worker_options, idle
) -> None:
    # With an extended session the copies meet the live orchestrator instead of a reloaded state.
    await start_worker(
        [duplicate_target], [echo], worker_options=replace(worker_options, extended_session_idle_seconds=idle)
    )
    iid = await client.schedule_new_orchestration(duplicate_target)
    await client.raise_orchestration_event(iid, "Data", data=7)
    history = await history_when(client, iid, _ready_for_duplicates, what="every event once")
    started = of_type(history, ExecutionStartedEvent)[0]
    execution_id = started.orchestration_instance.execution_id
    originals: list[HistoryEvent] = [
        started,
        of_type(history, TaskCompletedEvent)[0],
        of_type(history, TimerFiredEvent)[0],
        next(e for e in of_type(history, EventRaisedEvent) if e.name == "Data"),
    ]

    # Each one twice more, every copy with a message id the broker has never seen. The closing event
    # goes the same raw way, proving the runtime reads these messages (rather than dead-lettering
    # them, which the suite's teardown would report).
    await send_raw_events(hub, iid, execution_id, originals + originals)
    finish = EventRaisedEvent(name="Finish", input=encode_payload("raw"), message_id=f"finish-{iid}")
    await send_raw_events(hub, iid, execution_id, [finish])
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == ["a", 7]
    assert state.execution_id == execution_id
    final = await client.get_orchestration_history(iid)
    assert len(of_type(final, ExecutionStartedEvent)) == 1
    assert len(of_type(final, TaskCompletedEvent)) == 1
    assert len(of_type(final, TimerFiredEvent)) == 1
    raised = of_type(final, EventRaisedEvent)
    assert [(e.name, decode_payload(e.input)) for e in raised] == [("Data", 7), ("Finish", "raw")]


async def test_restart_with_the_start_message_id_is_dropped_by_the_broker(start_worker, client, hub) -> None:
    await start_worker([duplicate_target], [echo])
    iid = await client.schedule_new_orchestration(duplicate_target)
    await client.raise_orchestration_event(iid, "Data", data=1)
    await client.raise_orchestration_event(iid, "Finish")
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state.status == OrchestrationStatus.COMPLETED
    history = await client.get_orchestration_history(iid)
    started = of_type(history, ExecutionStartedEvent)[0]

    # DTF's start message id: a re-sent start (jump-start, a retried client) is a broker duplicate.
    await send_raw_events(
        hub, iid, state.execution_id, [started], message_ids=[f"{iid}_{state.execution_id}"]
    )

    async def snapshot() -> tuple[Any, ...]:
        current = await client.get_orchestration_state(iid)
        events = await client.get_orchestration_history(iid)
        return (current.status, current.execution_id, current.output, len(events))

    final = await unchanged_for(snapshot, seconds=2.0, what="the completed instance")
    assert final == (OrchestrationStatus.COMPLETED, state.execution_id, state.output, len(history))


async def go_then_long_timer(ctx: OrchestrationContext, _: Any) -> str:
    await ctx.wait_for_external_event("go")
    await ctx.create_timer(timedelta(hours=1))
    return "woke"


async def test_a_timer_that_fired_before_its_decision_was_recorded_still_wakes_the_instance(
    start_worker, client, hub
) -> None:
    # What an episode that crashed between its sends and its state write leaves behind: its timer
    # message, under the id the replay will use again, fires before the state records the timer.
    await start_worker([go_then_long_timer], [])
    iid = await client.schedule_new_orchestration(go_then_long_timer)
    history = await history_when(
        client, iid, lambda h: bool(of_type(h, ExecutionStartedEvent)), what="the start in history"
    )
    execution_id = of_type(history, ExecutionStartedEvent)[0].orchestration_instance.execution_id
    early = TimerFiredEvent(timer_id=0, fire_at=datetime.now(timezone.utc))
    await send_raw_events(
        hub, iid, execution_id, [early], message_ids=[deterministic_message_id(iid, execution_id, 0, "timer")]
    )
    await history_when(client, iid, lambda h: bool(of_type(h, TimerFiredEvent)), what="the early firing")

    # The replay now decides the timer; its own message is a duplicate the broker drops, so only the
    # early firing can answer it.
    await client.raise_orchestration_event(iid, "go")
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == "woke"
