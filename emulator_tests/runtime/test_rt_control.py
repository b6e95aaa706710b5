"""Talking to running instances: events between two instances, terminate with an activity in flight,
suspend and resume (DTF EventConversation; reference 7.12 and 10.10's additions)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from rtkit import (
    Recorder,
    history_when,
    kinds,
    new_instance_id,
    of_type,
    output,
    status_when,
    unchanged_for,
    wait_until,
)

from dtf_sb import OrchestrationContext, OrchestrationStatus
from dtf_sb.core.codec import decode_payload
from dtf_sb.core.history import (
    EventRaisedEvent,
    EventSentEvent,
    ExecutionResumedEvent,
    ExecutionSuspendedEvent,
    ExecutionTerminatedEvent,
    TaskCompletedEvent,
    TaskScheduledEvent,
    TimerCreatedEvent,
)

TIMEOUT = 30


# -- event conversation ---------------------------------------------------------------------------
async def ping(ctx: OrchestrationContext, partner: str) -> str:
    ctx.send_event(partner, "Ping", {"from": ctx.instance_id, "text": "hello"})
    reply = await ctx.wait_for_external_event("Pong")
    return f"ping got {reply}"


async def pong(ctx: OrchestrationContext, _: Any) -> str:
    message = await ctx.wait_for_external_event("Ping")
    ctx.send_event(message["from"], "Pong", f"re: {message['text']}")
    return f"pong got {message['text']}"


async def test_two_instances_exchange_events(start_worker, client) -> None:
    await start_worker([ping, pong])
    pong_id = await client.schedule_new_orchestration(pong, instance_id=new_instance_id("pong"))
    ping_id = await client.schedule_new_orchestration(
        ping, input=pong_id, instance_id=new_instance_id("ping")
    )

    ping_state = await client.wait_for_orchestration_completion(ping_id, timeout=TIMEOUT)
    pong_state = await client.wait_for_orchestration_completion(pong_id, timeout=TIMEOUT)

    assert ping_state.status == OrchestrationStatus.COMPLETED
    assert pong_state.status == OrchestrationStatus.COMPLETED
    assert output(ping_state) == "ping got re: hello"
    assert output(pong_state) == "pong got hello"
    ping_history = await client.get_orchestration_history(ping_id)
    sent = of_type(ping_history, EventSentEvent)
    assert [(e.instance_id, e.name) for e in sent] == [(pong_id, "Ping")]
    assert [e.name for e in of_type(ping_history, EventRaisedEvent)] == ["Pong"]
    pong_history = await client.get_orchestration_history(pong_id)
    received = of_type(pong_history, EventRaisedEvent)
    assert [(e.name, decode_payload(e.input)) for e in received] == [
        ("Ping", {"from": ping_id, "text": "hello"})
    ]


# -- terminate with an activity and a timer in flight ---------------------------------------------
async def test_terminate_drops_the_late_activity_result_and_timer(start_worker, client) -> None:
    running = asyncio.Event()
    release = asyncio.Event()
    recorder = Recorder()

    async def long_job(_: Any) -> str:
        running.set()
        await asyncio.wait_for(release.wait(), timeout=20)
        return "late result"

    async def patient(ctx: OrchestrationContext, _: Any) -> str:
        results = await ctx.when_all([ctx.call_activity(long_job), ctx.create_timer(3.0)])
        return results[0]

    await start_worker([patient], [long_job], activity_middleware=[recorder.middleware("activity")])
    iid = await client.schedule_new_orchestration(patient)
    try:
        await asyncio.wait_for(running.wait(), timeout=TIMEOUT)
        await client.terminate_orchestration(iid, reason="operator stop")
        state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    finally:
        release.set()

    assert state.status == OrchestrationStatus.TERMINATED
    assert "operator stop" in (state.output or "")
    history = await client.get_orchestration_history(iid)
    terminated = of_type(history, ExecutionTerminatedEvent)
    assert [decode_payload(e.input) for e in terminated] == ["operator stop"]
    timer = of_type(history, TimerCreatedEvent)[0]
    assert terminated[0].timestamp < timer.fire_at, "the timer was meant to be pending at terminate"

    # The activity still finishes and reports back, and the timer still fires; neither may reopen
    # the instance or reach its history.
    async def activity_finished() -> bool:
        return "activity:after:activity" in recorder.steps

    await wait_until(activity_finished, timeout=TIMEOUT, what="the in-flight activity to finish")

    async def snapshot() -> tuple[Any, ...]:
        current = await client.get_orchestration_state(iid)
        events = await client.get_orchestration_history(iid)
        return (current.status, current.output, tuple(kinds(events)))

    until_timer_fired = (timer.fire_at - datetime.now(timezone.utc)).total_seconds() + 1.0
    final = await unchanged_for(snapshot, seconds=max(2.0, until_timer_fired), what="the terminated instance")
    assert final[0] == OrchestrationStatus.TERMINATED
    assert "TASK_COMPLETED" not in final[2]
    assert "TIMER_FIRED" not in final[2]


# -- suspend / resume -----------------------------------------------------------------------------
async def step(value: str) -> str:
    return f"did {value}"


async def gated(ctx: OrchestrationContext, _: Any) -> str:
    value = await ctx.wait_for_external_event("Go")
    return await ctx.call_activity(step, value)


async def test_suspend_holds_events_until_resume(start_worker, client) -> None:
    await start_worker([gated], [step])
    iid = await client.schedule_new_orchestration(gated)
    await status_when(client, iid, OrchestrationStatus.RUNNING)

    await client.suspend_orchestration(iid, reason="maintenance")
    suspended = await status_when(client, iid, OrchestrationStatus.SUSPENDED)
    assert suspended.instance_id == iid
    await client.raise_orchestration_event(iid, "Go", data="work")

    # While suspended the event is recorded but nothing is scheduled from it.
    await history_when(
        client, iid, lambda h: any(type(e) is EventRaisedEvent for e in h), what="the raised event"
    )

    async def held() -> tuple[Any, ...]:
        state = await client.get_orchestration_state(iid)
        events = await client.get_orchestration_history(iid)
        return (state.status, len(of_type(events, TaskScheduledEvent)))

    assert await unchanged_for(held, seconds=1.0, what="the suspended instance") == (
        OrchestrationStatus.SUSPENDED,
        0,
    )

    await client.resume_orchestration(iid, reason="done")
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == "did work"
    history = await client.get_orchestration_history(iid)
    order = kinds(history)
    assert (
        order.index("EXECUTION_SUSPENDED") < order.index("EXECUTION_RESUMED") < order.index("TASK_SCHEDULED")
    )
    assert of_type(history, ExecutionSuspendedEvent)[0].reason == "maintenance"
    assert of_type(history, ExecutionResumedEvent)[0].reason == "done"
    assert len(of_type(history, TaskCompletedEvent)) == 1
