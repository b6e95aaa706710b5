"""Durable timers and retries: a cron loop, a timer racing an activity (both outcomes), and activity
retries with RetryOptions (DTF CronTest, Greetings2Test, ErrorHandlingTests)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

import pytest
from rtkit import kinds, of_type, output

from dtf_sb import (
    EventTimeoutError,
    NonRetriableError,
    OrchestrationContext,
    OrchestrationStatus,
    RetryOptions,
    TaskFailedError,
)
from dtf_sb.core.history import (
    TaskCompletedEvent,
    TaskFailedEvent,
    TaskScheduledEvent,
    TimerCreatedEvent,
    TimerFiredEvent,
)

TIMEOUT = 30
TICKS = 3
TICK_SECONDS = 0.5


# -- cron -----------------------------------------------------------------------------------------
async def cron_job(tick: int) -> str:
    return f"tick {tick}"


async def cron(ctx: OrchestrationContext, _: Any) -> list[str]:
    done = []
    for tick in range(TICKS):
        await ctx.create_timer(timedelta(seconds=TICK_SECONDS))
        done.append(await ctx.call_activity(cron_job, tick))
    return done


async def test_cron_loop_of_timers(start_worker, client) -> None:
    await start_worker([cron], [cron_job])
    iid = await client.schedule_new_orchestration(cron)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == [f"tick {i}" for i in range(TICKS)]
    history = await client.get_orchestration_history(iid)
    created = of_type(history, TimerCreatedEvent)
    fired = of_type(history, TimerFiredEvent)
    assert len(created) == TICKS and len(fired) == TICKS
    assert [e.timer_id for e in fired] == [e.event_id for e in created]
    scheduled = of_type(history, TaskScheduledEvent)
    for timer, job in zip(created, scheduled, strict=True):
        # Each job is scheduled after its timer fired, and a timer never fires before its time.
        fired_event = next(e for e in fired if e.timer_id == timer.event_id)
        assert fired_event.fire_at == timer.fire_at
        assert history.index(fired_event) < history.index(job)
        assert job.timestamp >= timer.fire_at
    for earlier, later in itertools.pairwise(created):
        assert later.fire_at - earlier.fire_at >= timedelta(seconds=TICK_SECONDS)


# -- when_any: timer vs activity ------------------------------------------------------------------
def race_activity(release: asyncio.Event) -> Any:
    async def slow_greeting(name: str) -> str:
        await asyncio.wait_for(release.wait(), timeout=20)
        return f"Hello {name}"

    return slow_greeting


def race_orchestrator(timer_seconds: float) -> Any:
    async def greet_or_time_out(ctx: OrchestrationContext, name: str) -> str:
        greeting = ctx.call_activity("slow_greeting", name)
        timer = ctx.create_timer(timedelta(seconds=timer_seconds))
        winner = await ctx.when_any([greeting, timer])
        if winner is timer:
            return "TimedOut"
        return winner.get_result()

    return greet_or_time_out


async def test_when_any_timer_wins_over_a_slow_activity(start_worker, client) -> None:
    release = asyncio.Event()
    await start_worker([race_orchestrator(0.5)], [race_activity(release)])
    try:
        iid = await client.schedule_new_orchestration("greet_or_time_out", input="Gabbar")
        state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    finally:
        release.set()

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == "TimedOut"
    history = await client.get_orchestration_history(iid)
    assert len(of_type(history, TimerFiredEvent)) == 1
    assert of_type(history, TaskCompletedEvent) == []


async def test_when_any_activity_wins_over_a_long_timer(start_worker, client) -> None:
    release = asyncio.Event()
    release.set()
    await start_worker([race_orchestrator(60)], [race_activity(release)])
    iid = await client.schedule_new_orchestration("greet_or_time_out", input="Gabbar")

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == "Hello Gabbar"
    history = await client.get_orchestration_history(iid)
    assert len(of_type(history, TimerCreatedEvent)) == 1
    assert of_type(history, TimerFiredEvent) == []
    assert kinds(history)[-2:] == ["EXECUTION_COMPLETED", "ORCHESTRATOR_COMPLETED"]


# -- waiting for an event with a timeout ----------------------------------------------------------
async def approval_with_deadline(ctx: OrchestrationContext, seconds: float) -> str:
    try:
        answer = await ctx.wait_for_external_event("Answer", timeout=timedelta(seconds=seconds))
    except EventTimeoutError:
        return "no answer"
    return f"answer {answer}"


@pytest.mark.parametrize(
    ("deadline", "answer", "expected"), [(0.5, False, "no answer"), (60, True, "answer 42")]
)
async def test_wait_for_event_with_timeout(start_worker, client, deadline, answer, expected) -> None:
    await start_worker([approval_with_deadline])
    iid = await client.schedule_new_orchestration(approval_with_deadline, input=deadline)
    if answer:
        await client.raise_orchestration_event(iid, "Answer", data=42)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == expected
    history = await client.get_orchestration_history(iid)
    assert len(of_type(history, TimerCreatedEvent)) == 1
    assert len(of_type(history, TimerFiredEvent)) == (0 if answer else 1)


# -- retries --------------------------------------------------------------------------------------
def failing_activity(failures: int, *, non_retriable: bool = False) -> tuple[Any, list[int]]:
    calls: list[int] = []

    async def unreliable(_: Any) -> str:
        calls.append(1)
        if len(calls) <= failures:
            if non_retriable:
                raise NonRetriableError(f"permanent failure {len(calls)}")
            raise RuntimeError(f"failure {len(calls)}")
        return f"Attempts: {len(calls)}"

    return unreliable, calls


def retrying_orchestrator(options: RetryOptions) -> Any:
    async def with_retries(ctx: OrchestrationContext, _: Any) -> dict[str, Any]:
        try:
            return {"result": await ctx.call_activity("unreliable", None, retry=options)}
        except TaskFailedError as error:
            return {"error": str(error), "non_retriable": error.details.is_non_retriable}

    return with_retries


@pytest.mark.parametrize(
    ("failures", "max_attempts", "expected"),
    [
        (2, 4, {"result": "Attempts: 3"}),
        (5, 3, {"error": "failure 3", "non_retriable": False}),
    ],
    ids=["succeeds-on-third-attempt", "exhausted-after-three"],
)
async def test_activity_retries(start_worker, client, failures, max_attempts, expected) -> None:
    activity, calls = failing_activity(failures)
    options = RetryOptions(first_interval=0.2, max_attempts=max_attempts)
    await start_worker([retrying_orchestrator(options)], [activity])
    iid = await client.schedule_new_orchestration("with_retries")

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    result = output(state)
    attempts = min(failures + 1, max_attempts)
    assert len(calls) == attempts
    if "error" in expected:
        assert expected["error"] in result["error"]
        assert result["non_retriable"] is False
    else:
        assert result == expected
    history = await client.get_orchestration_history(iid)
    assert len(of_type(history, TaskScheduledEvent)) == attempts
    assert len(of_type(history, TaskFailedEvent)) == min(failures, attempts)
    # Retries wait on durable timers, one between each pair of attempts.
    assert len(of_type(history, TimerFiredEvent)) == attempts - 1


async def test_non_retriable_error_stops_retries(start_worker, client) -> None:
    activity, calls = failing_activity(5, non_retriable=True)
    options = RetryOptions(first_interval=0.2, max_attempts=5)
    await start_worker([retrying_orchestrator(options)], [activity])
    iid = await client.schedule_new_orchestration("with_retries")

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    result = output(state)
    assert "permanent failure 1" in result["error"]
    assert result["non_retriable"] is True
    assert len(calls) == 1
    history = await client.get_orchestration_history(iid)
    assert len(of_type(history, TaskScheduledEvent)) == 1
    assert of_type(history, TimerCreatedEvent) == []
