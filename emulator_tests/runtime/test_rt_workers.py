"""What workers do with the code they have: non-determinism, a missing activity, many parallel
activities, middleware, and several workers on one hub (DTF DispatcherTests:
NonDeterministicOrchestrationTest, TypeMissingTest, MaxMessagesLimitTest; FunctionalTests'
concurrent roles)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from rtkit import Recorder, history_when, of_type, output, unchanged_for

from dtf_sb import OrchestrationContext, OrchestrationStatus
from dtf_sb.core.codec import decode_payload, encode_payload
from dtf_sb.core.history import TaskCompletedEvent, TaskFailedEvent, TaskScheduledEvent

TIMEOUT = 30
CHANGED = "Was a change made to the orchestrator code after this instance had already started running?"


# -- non-determinism ------------------------------------------------------------------------------
async def test_code_changed_between_episodes_fails_the_instance(start_worker, client, worker_options) -> None:
    code = {"version": 1}

    async def step_a(_: Any) -> str:
        return "a"

    async def step_b(_: Any) -> str:
        return "b"

    async def evolving(ctx: OrchestrationContext, _: Any) -> str:
        first = await ctx.call_activity(step_a if code["version"] == 1 else step_b)
        await ctx.wait_for_external_event("Continue")
        return first

    # Replay is what detects the change, so no extended session may keep the old coroutine alive.
    await start_worker(
        [evolving], [step_a, step_b], worker_options=replace(worker_options, extended_session_idle_seconds=0)
    )
    iid = await client.schedule_new_orchestration(evolving)
    await history_when(
        client, iid, lambda h: bool(of_type(h, TaskCompletedEvent)), what="the first activity result"
    )

    code["version"] = 2  # a deployment changed the orchestrator while the instance was waiting
    await client.raise_orchestration_event(iid, "Continue")
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.FAILED
    details = state.failure_details
    assert details is not None
    assert details.error_type.endswith("NonDeterminismError")
    assert CHANGED in details.message
    assert "step_a" in details.message
    assert CHANGED in (state.output or "")


async def test_timer_scheduled_only_outside_replay_is_detected(start_worker, client, worker_options) -> None:
    async def work(_: Any) -> str:
        return "done"

    async def sneaky(ctx: OrchestrationContext, _: Any) -> str:
        if not ctx.is_replaying:
            await ctx.create_timer(0.2)
        return await ctx.call_activity(work)

    await start_worker(
        [sneaky], [work], worker_options=replace(worker_options, extended_session_idle_seconds=0)
    )
    iid = await client.schedule_new_orchestration(sneaky)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.FAILED
    assert state.failure_details is not None
    assert "timer" in state.failure_details.message.lower()
    assert CHANGED in state.failure_details.message


# -- an activity no running worker has ------------------------------------------------------------
async def test_missing_activity_waits_for_a_worker_that_has_it(start_worker, client) -> None:
    ran: list[int] = []

    async def rare_skill(value: int) -> str:
        ran.append(value)
        return "done"

    async def needs_rare_skill(ctx: OrchestrationContext, _: Any) -> str:
        return await ctx.call_activity(rare_skill, 1)

    await start_worker([needs_rare_skill])
    iid = await client.schedule_new_orchestration(needs_rare_skill)
    await history_when(client, iid, lambda h: bool(of_type(h, TaskScheduledEvent)), what="the schedule")

    async def progress() -> tuple[Any, ...]:
        state = await client.get_orchestration_state(iid)
        history = await client.get_orchestration_history(iid)
        return (
            state.status,
            len(of_type(history, TaskCompletedEvent)),
            len(of_type(history, TaskFailedEvent)),
        )

    # A worker without the code neither runs nor fails the activity.
    assert await unchanged_for(progress, seconds=2.0, what="the waiting instance") == (
        OrchestrationStatus.RUNNING,
        0,
        0,
    )

    await start_worker(activities=[rare_skill])
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == "done"
    assert ran == [1]


# -- 200 parallel activities ----------------------------------------------------------------------
async def identity(value: int) -> int:
    return value


async def fan_out(ctx: OrchestrationContext, count: int) -> int:
    results = await ctx.when_all([ctx.call_activity(identity, i) for i in range(count)])
    return sum(results)


async def test_two_hundred_parallel_activities(start_worker, client, worker_options) -> None:
    await start_worker(
        [fan_out], [identity], worker_options=replace(worker_options, max_concurrent_activities=50)
    )
    iid = await client.schedule_new_orchestration(fan_out, input=200)

    state = await client.wait_for_orchestration_completion(iid, timeout=60)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == 19900
    history = await client.get_orchestration_history(iid)
    scheduled = of_type(history, TaskScheduledEvent)
    completed = of_type(history, TaskCompletedEvent)
    assert len(scheduled) == 200
    assert len(completed) == 200
    assert sorted(e.task_scheduled_id for e in completed) == sorted(e.event_id for e in scheduled)
    assert {decode_payload(e.input) for e in scheduled} == set(range(200))


# -- middleware -----------------------------------------------------------------------------------
async def say(name: str) -> str:
    return f"Hello {name}"


async def greet_once(ctx: OrchestrationContext, name: str) -> str:
    return await ctx.call_activity(say, name)


async def test_middleware_runs_in_registration_order_and_sees_the_work(start_worker, client) -> None:
    recorder = Recorder()
    await start_worker(
        [greet_once],
        [say],
        orchestration_middleware=[
            recorder.middleware("o1", set_property=("trace", "from o1")),
            recorder.middleware("o2"),
        ],
        activity_middleware=[
            recorder.middleware("a1", set_property=("trace", "from a1")),
            recorder.middleware("a2"),
        ],
    )
    iid = await client.schedule_new_orchestration(greet_once, input="mw")
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == "Hello mw"

    orchestration_steps = [s for s in recorder.steps if s.endswith(":orchestration")]
    activity_steps = [s for s in recorder.steps if s.endswith(":activity")]
    one_episode = ["o1:before", "o2:before", "o2:after", "o1:after"]
    assert orchestration_steps == [f"{s}:orchestration" for s in one_episode * 2]
    assert activity_steps == [f"{s}:activity" for s in ["a1:before", "a2:before", "a2:after", "a1:after"]]

    episodes = recorder.episodes("o1", iid)
    assert len(episodes) == 2
    first, second = episodes
    assert first.name == "greet_once"
    assert first.execution_id == state.execution_id
    assert "EXECUTION_STARTED" in first.new_event_kinds
    assert first.old_event_count == 0
    assert "TASK_COMPLETED" in second.new_event_kinds
    assert second.old_event_count > 0
    assert all(r.result_present for r in episodes)
    # What an outer middleware put in the context reaches the inner one.
    assert all(r.properties_seen.get("trace") == "from o1" for r in recorder.records["o2"])

    (activity,) = recorder.records["a1"]
    assert activity.kind == "activity"
    assert activity.name == "say"
    assert activity.instance_id == iid
    assert activity.input == encode_payload("mw")
    assert activity.result_present
    assert recorder.records["a2"][0].properties_seen.get("trace") == "from a1"


# -- several workers on one hub -------------------------------------------------------------------
async def add_one(value: int) -> int:
    await asyncio.sleep(0)
    return value + 1


async def three_steps(ctx: OrchestrationContext, start: int) -> int:
    value = start
    for _ in range(3):
        value = await ctx.call_activity(add_one, value)
    return value


async def test_several_workers_share_one_hub(start_worker, client) -> None:
    recorder = Recorder()
    for label in ("w0", "w1", "w2"):
        await start_worker(
            [three_steps],
            [add_one],
            orchestration_middleware=[recorder.middleware(f"{label}-o")],
            activity_middleware=[recorder.middleware(f"{label}-a")],
        )
    starts = list(range(0, 120, 10))
    ids = [await client.schedule_new_orchestration(three_steps, input=s) for s in starts]

    states = [await client.wait_for_orchestration_completion(i, timeout=60) for i in ids]

    assert [s.status for s in states] == [OrchestrationStatus.COMPLETED] * len(ids)
    assert [output(s) for s in states] == [s + 3 for s in starts]
    for iid in ids:
        history = await client.get_orchestration_history(iid)
        scheduled = of_type(history, TaskScheduledEvent)
        completed = of_type(history, TaskCompletedEvent)
        assert len(scheduled) == 3
        assert sorted(e.task_scheduled_id for e in completed) == sorted(e.event_id for e in scheduled)
    # Without faults no activity runs twice, whichever worker took it.
    runs = [r for label in ("w0-a", "w1-a", "w2-a") for r in recorder.records.get(label, [])]
    assert len(runs) == 3 * len(ids)
    assert len({(r.instance_id, r.input) for r in runs}) == 3 * len(ids)
