"""Redelivered inputs are recognised and dropped at the executor boundary (DESIGN section 4, step 2)."""

from __future__ import annotations

import pytest
from core_builders import (
    EXECUTION,
    INSTANCE,
    Driver,
    completed,
    failed,
    fired,
    raised,
    started,
    sub_completed,
)

from dtf_sb.core import (
    OrchestrationInstance,
    OrchestrationRuntimeState,
    OrchestrationStatus,
    TaskMessage,
    filter_new_events,
)
from dtf_sb.core.codec import decode_payload


async def waits_for_everything(ctx, _):
    a = ctx.call_activity("a")
    t = ctx.create_timer(60)
    c = ctx.call_sub_orchestrator("child")
    e = ctx.wait_for_external_event("evt")
    f = ctx.wait_for_external_event("evt")
    return await ctx.when_all([a, t, c, e, f])


def _driver() -> Driver:
    driver = Driver(waits_for_everything)
    driver.step(started("waits_for_everything"))
    return driver


def _reasons(result) -> list[str]:
    return [reason for _, reason in result.dropped_events]


def test_duplicate_execution_started_is_ignored():
    driver = _driver()
    again = driver.step(started("waits_for_everything"))
    assert again.new_history_events == []
    assert again.actions == []
    assert _reasons(again) == ["duplicate ExecutionStarted"]


def test_duplicate_execution_started_in_the_same_batch():
    driver = Driver(waits_for_everything)
    result = driver.step(started("waits_for_everything"), started("waits_for_everything"))
    assert _reasons(result) == ["duplicate ExecutionStarted"]
    assert len(result.actions) == 3


def test_duplicate_task_completed_across_batches_and_within_one():
    driver = _driver()
    first = driver.step(completed(0, 1), completed(0, 1))
    assert _reasons(first) == ["duplicate result for task 0"]
    later = driver.step(completed(0, 2))
    assert _reasons(later) == ["duplicate result for task 0"]
    assert later.new_history_events == []
    late_failure = driver.step(failed(0))
    assert _reasons(late_failure) == ["duplicate result for task 0"]


def test_duplicate_timer_and_sub_orchestration_results():
    driver = _driver()
    driver.step(fired(1), sub_completed(2, "c"))
    repeat = driver.step(fired(1), sub_completed(2, "c"))
    assert _reasons(repeat) == ["timer 1 already fired", "duplicate result for task 2"]


def test_duplicate_event_raised_by_message_id():
    driver = _driver()
    driver.step(raised("evt", 1, "msg-1"))
    repeat = driver.step(raised("evt", 1, "msg-1"))
    assert _reasons(repeat) == ["event message msg-1 already in history"]
    # the same name with another message id is a new event; without an id it is always new
    driver.step(completed(0, "a"), fired(1), sub_completed(2, "c"))
    done = driver.step(raised("evt", 2, "msg-2"))
    assert done.status is OrchestrationStatus.COMPLETED
    assert decode_payload(done.output) == ["a", None, "c", 1, 2]


def test_no_state_and_no_start_drops_the_batch():
    state = OrchestrationRuntimeState()
    kept, dropped = filter_new_events(state, [completed(0), raised("x")])
    assert kept == []
    assert {reason for _, reason in dropped} == {"no ExecutionStarted for this instance"}


def test_execution_started_is_moved_first():
    state = OrchestrationRuntimeState()
    start = started("x")
    kept, dropped = filter_new_events(state, [raised("x"), start])
    assert kept[0] is start
    assert dropped == []


def test_task_messages_for_another_execution_are_dropped():
    driver = _driver()
    state = OrchestrationRuntimeState(driver.history)
    current = TaskMessage(
        event=completed(0), orchestration_instance=OrchestrationInstance(INSTANCE, EXECUTION)
    )
    stale = TaskMessage(event=completed(0), orchestration_instance=OrchestrationInstance(INSTANCE, "old"))
    unaddressed = TaskMessage(event=raised("evt"), orchestration_instance=OrchestrationInstance(INSTANCE))
    kept, dropped = filter_new_events(state, [stale, current, unaddressed])
    assert kept == [current, unaddressed]
    assert dropped == [(stale, f"addressed to execution old, current is {EXECUTION}")]


def test_completed_instance_drops_everything():
    async def quick(ctx, _):
        return 1

    driver = Driver(quick)
    driver.step(started("quick"))
    result = driver.step(raised("evt"), completed(0))
    assert result.new_history_events == []
    assert _reasons(result) == ["instance already completed"] * 2


def test_result_for_unknown_task_is_recorded_but_changes_nothing():
    driver = _driver()
    result = driver.step(completed(99, "stray"))
    assert result.status is OrchestrationStatus.RUNNING
    assert result.actions == []


def test_result_in_the_same_batch_as_its_decision_is_applied():
    """After a crash between sending and saving, the redelivered start and the already-produced result
    can arrive together; the result must still reach the task the replayed decision creates."""

    async def one(ctx, _):
        return await ctx.call_activity("a")

    driver = Driver(one)
    result = driver.step(started("one"), completed(0, "fast"))
    assert result.status is OrchestrationStatus.COMPLETED
    assert decode_payload(result.output) == "fast"
    assert [type(e).__name__ for e in result.new_history_events][1:4] == [
        "ExecutionStartedEvent",
        "TaskScheduledEvent",
        "TaskCompletedEvent",
    ]


def test_closed_session_refuses_to_resume():
    async def one(ctx, _):
        return await ctx.call_activity("a")

    driver = Driver(one, check_live=False)
    session = driver.executor.start("x", [], [started("one")])
    session.close()
    with pytest.raises(RuntimeError, match="closed"):
        session.resume([completed(0)])
