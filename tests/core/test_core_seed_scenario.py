"""The seed scenario (DTF internals, part 2): two activities scheduled before either is awaited."""

from __future__ import annotations

import logging

import pytest
from core_builders import Driver, completed, names, started

from dtf_sb.core import OrchestrationStatus, ScheduleTaskAction
from dtf_sb.core.codec import decode_payload


@pytest.fixture
def seed():
    starts: list[bool] = []
    finished: list[bool] = []

    async def test_orchestration(ctx, _input):
        starts.append(ctx.is_replaying)
        ctx.logger.info("Orchestration Started")
        task1 = ctx.call_activity("TestActivity1", "Test Input1")
        task2 = ctx.call_activity("TestActivity2", "Test Input2")
        result1 = await task1
        result2 = await task2
        finished.append(ctx.is_replaying)
        ctx.logger.info("Orchestration Finished")
        return result1 and result2

    return test_orchestration, starts, finished


def test_three_episodes_with_replay_flags_and_one_log_line(seed, caplog):
    orchestration, starts, finished = seed
    driver = Driver(orchestration, check_live=False)
    caplog.set_level(logging.INFO, logger="dtf_sb.orchestration")

    first = driver.step(started("test_orchestration"))
    assert [a.name for a in first.actions] == ["TestActivity1", "TestActivity2"]
    assert all(isinstance(a, ScheduleTaskAction) for a in first.actions)
    assert [a.id for a in first.actions] == [0, 1]
    assert first.status is OrchestrationStatus.RUNNING

    second = driver.step(completed(1, True))  # TestActivity2 finishes first
    assert second.actions == []
    assert second.status is OrchestrationStatus.RUNNING

    third = driver.step(completed(0, True))
    assert third.status is OrchestrationStatus.COMPLETED
    assert decode_payload(third.output) is True

    assert starts == [False, True, True]
    assert finished == [False]
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("Orchestration Finished") == 1
    assert messages.count("Orchestration Started") == 1

    assert names(driver.history) == [
        "OrchestratorStarted",
        "ExecutionStarted",
        "TaskScheduled",
        "TaskScheduled",
        "OrchestratorCompleted",
        "OrchestratorStarted",
        "TaskCompleted",
        "OrchestratorCompleted",
        "OrchestratorStarted",
        "TaskCompleted",
        "ExecutionCompleted",
        "OrchestratorCompleted",
    ]
    assert all(e.is_played for e in driver.history)


def test_live_session_does_not_restart_the_body(seed):
    orchestration, starts, finished = seed
    driver = Driver(orchestration, check_live=False)
    live = driver.executor.start(driver.instance_id, [], [started("test_orchestration")])
    live.resume([completed(1, True)])
    result = live.resume([completed(0, True)])
    assert result.status is OrchestrationStatus.COMPLETED
    assert starts == [False]
    assert finished == [False]
