"""Outcomes that arrive before the decision they answer.

Without transactions an episode sends its messages before it writes its state. One that crashed in
between made decisions its replay makes again later; the replay's messages are dropped as duplicates,
so the first episode's outcomes (an activity result, a timer firing, a child's completion) are the only
ones, and they can be received before the state records what they answer, in the same batch as the
input that leads to the decision or in an earlier one. Dropping them would leave the orchestrator
waiting for ever; they must be kept until it schedules their id. Every step here is also run live
(the driver compares an extended session with a replay from history).
"""

from __future__ import annotations

from datetime import timedelta

from core_builders import T0, Driver, completed, failed, fired, raised, started, sub_completed

from dtf_sb.core import CreateTimerAction, OrchestrationStatus, ScheduleTaskAction
from dtf_sb.core.codec import decode_payload


async def square_wait_fan(ctx, n):
    first = await ctx.call_activity("square", n)
    await ctx.create_timer(timedelta(seconds=1))
    fan = await ctx.when_all([ctx.call_activity("square", n + i) for i in (1, 2)])
    return [first, fan]


def test_a_timer_that_fires_before_the_result_that_leads_to_it_in_the_same_batch() -> None:
    driver = Driver(square_wait_fan)
    driver.step(started("square_wait_fan", 3))
    result = driver.step(fired(1, T0 + timedelta(seconds=1)), completed(0, 9))
    assert [type(a) for a in result.actions] == [CreateTimerAction, ScheduleTaskAction, ScheduleTaskAction]
    assert result.dropped_events == []
    done = driver.step(completed(2, 16), completed(3, 25))
    assert decode_payload(done.output) == [9, [16, 25]]


def test_an_early_outcome_waits_across_episodes_and_replays_the_same_way() -> None:
    driver = Driver(square_wait_fan)
    driver.step(started("square_wait_fan", 3))
    # the fan-out's results and the timer arrive before the first activity's result
    waiting = driver.step(completed(3, 25), fired(1))
    assert waiting.actions == []
    assert waiting.status is OrchestrationStatus.RUNNING
    assert waiting.dropped_events == []
    after = driver.step(completed(0, 9))
    # the timer is answered already; of the fan-out only task 2 is still to run
    assert [a.id for a in after.actions] == [1, 2, 3]
    done = driver.step(completed(2, 16))
    assert decode_payload(done.output) == [9, [16, 25]]
    # a copy of an early outcome that is already in history is a duplicate like any other
    again = driver.executor.execute(driver.instance_id, list(driver.history[:-4]), [completed(3, 25)])
    assert [reason for _, reason in again.dropped_events] == ["duplicate result for task 3"]


async def parent(ctx, _):
    child = await ctx.call_sub_orchestrator("child", 1)
    try:
        await ctx.call_activity("risky")
    except Exception as exc:
        return [child, str(exc)]
    return [child, None]


def test_early_sub_orchestration_results_and_failures_are_kept_too() -> None:
    driver = Driver(parent)
    driver.step(started("parent"))
    waiting = driver.step(failed(1, "no"))
    assert waiting.status is OrchestrationStatus.RUNNING
    done = driver.step(sub_completed(0, "c"))
    assert done.status is OrchestrationStatus.COMPLETED
    child, error = decode_payload(done.output)
    assert child == "c"
    assert "no" in error


async def event_timer_activity(ctx, _):
    await ctx.wait_for_external_event("go")
    await ctx.create_timer(timedelta(seconds=5))
    return await ctx.call_activity("work")


def test_an_early_outcome_of_another_kind_is_not_taken_for_the_decision_at_its_id() -> None:
    driver = Driver(event_timer_activity)
    driver.step(started("event_timer_activity"))
    # an activity result for id 0, which this orchestrator will use for a timer
    assert driver.step(completed(0, "stray")).status is OrchestrationStatus.RUNNING
    timer = driver.step(raised("go"))
    assert [type(a) for a in timer.actions] == [CreateTimerAction]
    still = driver.step(fired(0, T0 + timedelta(seconds=5)))
    assert [type(a) for a in still.actions] == [ScheduleTaskAction]
    done = driver.step(completed(1, "real"))
    assert decode_payload(done.output) == "real"
