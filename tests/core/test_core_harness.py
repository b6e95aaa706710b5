"""The in-process harness users unit-test their orchestrations with."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from dtf_sb.core import (
    ActivityContext,
    ExecutionResumedEvent,
    ExecutionSuspendedEvent,
    ExecutionTerminatedEvent,
    OrchestrationStatus,
    TaskFailedError,
)
from dtf_sb.core.codec import encode_payload
from dtf_sb.testing.harness import DEFAULT_START_TIME, run_orchestration, run_orchestration_async


async def say_hello(name: str) -> str:
    await asyncio.sleep(0)
    return f"Hello {name}!"


def shout(ctx: ActivityContext, text: str) -> str:
    return f"{text.upper()} ({ctx.orchestration_id}#{ctx.task_id})"


async def greetings(ctx, cities):
    first = await ctx.call_activity(say_hello, cities[0])
    rest = await ctx.when_all([ctx.call_activity(say_hello, c) for c in cities[1:]])
    loud = await ctx.call_activity("shout", first)
    return [first, *rest, loud]


@pytest.mark.parametrize("extended", [False, True])
def test_sync_and_async_activities(extended):
    result = run_orchestration(
        greetings,
        ["Tokyo", "Seattle", "London"],
        activities=[say_hello, ("shout", shout)],
        instance_id="greet-1",
        extended_sessions=extended,
    )
    assert result.status is OrchestrationStatus.COMPLETED
    assert result.output == [
        "Hello Tokyo!",
        "Hello Seattle!",
        "Hello London!",
        "HELLO TOKYO! (greet-1#3)",
    ]
    assert [name for name, _ in result.activity_calls] == ["say_hello"] * 3 + ["shout"]
    assert result.episodes == 5  # start + one per activity result


async def test_usable_from_async_tests():
    result = await run_orchestration_async(greetings, ["Oslo"], activities=[say_hello, ("shout", shout)])
    assert result.output[0] == "Hello Oslo!"
    # the sync entry point also works inside a running loop
    again = run_orchestration(greetings, ["Oslo"], activities=[say_hello, ("shout", shout)])
    assert again.output == result.output


def test_timers_advance_the_fake_clock():
    async def sleeper(ctx, _):
        await ctx.create_timer(timedelta(days=3))
        return ctx.current_utc_datetime.isoformat()

    result = run_orchestration(sleeper)
    assert result.output == (DEFAULT_START_TIME + timedelta(days=3)).isoformat()
    assert result.clock == DEFAULT_START_TIME + timedelta(days=3)


def test_events_by_episode_and_by_time():
    async def waiter(ctx, _):
        first = await ctx.wait_for_external_event("first")
        second = await ctx.wait_for_external_event("second")
        return [first, second, ctx.current_utc_datetime.isoformat()]

    result = run_orchestration(waiter, events=[(1, "first", 1), (timedelta(hours=2), "second", 2)])
    assert result.output == [1, 2, (DEFAULT_START_TIME + timedelta(hours=2)).isoformat()]


def test_orchestration_waiting_forever_stays_running():
    async def waiter(ctx, _):
        return await ctx.wait_for_external_event("never")

    result = run_orchestration(waiter)
    assert result.status is OrchestrationStatus.RUNNING
    assert result.output is None


def test_control_events_suspend_resume_terminate():
    async def slow(ctx, _):
        await ctx.create_timer(60)
        return "done"

    suspended = run_orchestration(slow, events=[(1, ExecutionSuspendedEvent(reason="hold"))])
    assert suspended.status is OrchestrationStatus.SUSPENDED
    resumed = run_orchestration(
        slow,
        events=[(1, ExecutionSuspendedEvent()), (timedelta(hours=1), ExecutionResumedEvent())],
    )
    assert resumed.status is OrchestrationStatus.COMPLETED
    terminated = run_orchestration(slow, events=[(1, ExecutionTerminatedEvent(input=encode_payload("bye")))])
    assert terminated.status is OrchestrationStatus.TERMINATED
    assert terminated.output == "bye"


def test_unregistered_activity_fails_the_task():
    async def calls_missing(ctx, _):
        try:
            await ctx.call_activity("missing")
        except TaskFailedError as exc:
            return exc.details.error_type

    result = run_orchestration(calls_missing)
    assert result.output == "dtf_sb.core.errors.ActivityNotRegisteredError"


def test_events_between_instances_and_continue_as_new():
    async def pinger(ctx, count):
        if count == 0:
            ctx.send_event("ponger", "ping", "hello")
        if count < 2:
            ctx.continue_as_new(count + 1)
            return None
        return count

    result = run_orchestration(pinger, 0)
    assert result.output == 2
    assert len(result.generations) == 3
    assert result.sent_events == [("ponger", "ping", "hello")]


def test_batches_of_several_messages():
    async def fan(ctx, n):
        return sum(await ctx.when_all([ctx.call_activity("one") for _ in range(n)]))

    def one():
        return 1

    result = run_orchestration(fan, 5, activities=[one], batch_size=10)
    assert result.output == 5
    assert result.episodes == 2


def test_bad_event_specs_are_rejected():
    async def noop(ctx, _):
        return None

    with pytest.raises(TypeError, match="event time"):
        run_orchestration(noop, events=[("soon", "x", 1)])
    with pytest.raises(ValueError, match="event spec"):
        run_orchestration(noop, events=[(1, "x")])
