"""Replay that no longer matches history fails the instance (DTF's NonDeterministicOrchestration tests)."""

from __future__ import annotations

import pytest
from core_builders import Driver, completed, fired, started, sub_completed

from dtf_sb.core import OrchestrationStatus, ScheduleTaskAction, SubOrchestrationFailedError
from dtf_sb.testing.harness import run_orchestration

CHANGED = "Was a change made to the orchestrator code after this instance had already started running?"


async def timer_only_first_time(ctx, _):
    if not ctx.is_replaying:
        await ctx.create_timer(5)
    return await ctx.call_activity("work")


async def activity_only_first_time(ctx, _):
    if not ctx.is_replaying:
        await ctx.call_activity("work")
    await ctx.create_timer(5)
    return "done"


async def child_only_first_time(ctx, _):
    if not ctx.is_replaying:
        await ctx.call_sub_orchestrator("child")
    await ctx.create_timer(5)
    return "done"


@pytest.mark.parametrize(
    ("orchestrator", "answer", "kind"),
    [
        (timer_only_first_time, fired(0), "timer task"),
        (activity_only_first_time, completed(0, 1), "activity task 'work'"),
        (child_only_first_time, sub_completed(0, 1), "sub-orchestration task 'child'"),
    ],
)
def test_decision_made_only_when_not_replaying(orchestrator, answer, kind):
    driver = Driver(orchestrator, check_live=False)
    driver.step(started(orchestrator.__name__))
    result = driver.step(answer)
    assert result.status is OrchestrationStatus.FAILED
    details = result.completion.failure_details
    assert details.error_type == "dtf_sb.core.errors.NonDeterminismError"
    assert kind in details.message
    assert CHANGED in details.message
    assert CHANGED in result.output
    # no decision of the changed code leaks out: only the failure is emitted
    assert [a.kind for a in result.actions] == ["complete"]


def test_activity_renamed_between_episodes():
    names = {"activity": "Greet"}

    async def orchestration(ctx, _):
        await ctx.call_activity(names["activity"])
        return await ctx.call_activity("Second")

    driver = Driver(orchestration, check_live=False)
    driver.step(started("orchestration"))
    names["activity"] = "Welcome"
    result = driver.step(completed(0, "hi"))
    assert result.status is OrchestrationStatus.FAILED
    message = result.completion.failure_details.message
    assert "activity task 'Greet'" in message
    assert "activity task 'Welcome'" in message


def test_activity_name_case_change_is_not_a_change():
    names = {"activity": "Greet"}

    async def orchestration(ctx, _):
        return await ctx.call_activity(names["activity"])

    driver = Driver(orchestration, check_live=False)
    driver.step(started("orchestration"))
    names["activity"] = "GREET"
    assert driver.step(completed(0, "hi")).status is OrchestrationStatus.COMPLETED


def test_history_action_the_code_no_longer_makes():
    version = {"both": True}

    async def orchestration(ctx, _):
        first = ctx.call_activity("A")
        if version["both"]:
            ctx.call_activity("B")
        return await first

    driver = Driver(orchestration, check_live=False)
    assert len(driver.step(started("orchestration")).actions) == 2
    version["both"] = False
    result = driver.step(completed(0, "a"))
    assert result.status is OrchestrationStatus.FAILED
    assert "hasn't (yet?) scheduled this task" in result.completion.failure_details.message
    assert "activity task 'B'" in result.completion.failure_details.message


def test_new_decision_appended_at_the_end_is_allowed():
    version = {"extra": False}

    async def orchestration(ctx, _):
        value = await ctx.call_activity("A")
        if version["extra"]:
            value += await ctx.call_activity("B")
        return value

    driver = Driver(orchestration, check_live=False)
    driver.step(started("orchestration"))
    version["extra"] = True
    result = driver.step(completed(0, 1))
    assert [(type(a), a.name) for a in result.actions] == [(ScheduleTaskAction, "B")]
    assert driver.step(completed(1, 2)).output == "3"


def test_parent_catches_non_deterministic_child():
    async def parent(ctx, _):
        try:
            await ctx.call_sub_orchestrator("child")
        except SubOrchestrationFailedError as exc:
            return exc.message

    async def child(ctx, _):
        if not ctx.is_replaying:
            await ctx.create_timer(5)
        return await ctx.call_activity("work")

    def work():
        return 1

    result = run_orchestration(parent, sub_orchestrators=[("child", child)], activities=[work])
    assert result.status is OrchestrationStatus.COMPLETED
    assert "timer task" in result.output
    assert CHANGED in result.output
