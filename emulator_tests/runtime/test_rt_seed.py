"""The seed document's "curious case of orchestrations" through the real stack.

Two activities are scheduled in the first episode and awaited in order; the second finishes first.
DTF then runs the orchestration three times: once to schedule both, once for the second result
(the code stops again at ``await task1``), once for the first result, which finishes it. Only the
last run gets past both awaits; earlier runs "disappear at await". The history records exactly
that, framed per episode by OrchestratorStarted/OrchestratorCompleted.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from rtkit import Recorder, kinds, of_type, output

from dtf_sb import OrchestrationContext, OrchestrationStatus
from dtf_sb.core.history import OrchestratorStartedEvent, TaskCompletedEvent, TaskScheduledEvent

TIMEOUT = 30


@pytest.mark.parametrize(
    ("idle", "expected_log"),
    [
        (0.0, ["started replaying=False", "started replaying=True", "started replaying=True", "finished"]),
        # Extended sessions keep the coroutine alive between episodes: one invocation, same history.
        (10.0, ["started replaying=False", "finished"]),
    ],
    ids=["replay", "extended-session"],
)
async def test_two_activities_take_three_episodes(
    start_worker, client, worker_options, idle, expected_log
) -> None:
    recorder = Recorder()
    log: list[str] = []
    second_result_applied = asyncio.Event()

    async def activity_one(value: str) -> bool:
        # Finish only after the orchestration has run an episode for activity_two's result, so the
        # two results cannot arrive in one batch.
        await asyncio.wait_for(second_result_applied.wait(), timeout=TIMEOUT)
        return value == "Test Input1"

    async def activity_two(value: str) -> bool:
        return value == "Test Input2"

    async def test_orchestration(ctx: OrchestrationContext, _: Any) -> list[bool]:
        log.append(f"started replaying={ctx.is_replaying}")
        task1 = ctx.call_activity(activity_one, "Test Input1")
        task2 = ctx.call_activity(activity_two, "Test Input2")
        result1 = await task1
        result2 = await task2
        log.append("finished")
        return [result1, result2]

    async def watch(ctx: Any, next_: Any) -> None:
        await next_()
        if ctx.kind == "orchestration" and any(
            type(e) is TaskCompletedEvent and e.task_scheduled_id == 1 for e in ctx.new_events
        ):
            second_result_applied.set()

    await start_worker(
        [test_orchestration],
        [activity_one, activity_two],
        orchestration_middleware=[recorder.middleware("episodes"), watch],
        worker_options=replace(worker_options, extended_session_idle_seconds=idle),
    )
    iid = await client.schedule_new_orchestration(test_orchestration)
    try:
        state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    finally:
        second_result_applied.set()

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == [True, True]
    # Without extended sessions: three invocations of the code; only the last gets past both awaits.
    assert log == expected_log
    episodes = recorder.episodes("episodes", iid)
    assert len(episodes) == 3
    assert "EXECUTION_STARTED" in episodes[0].new_event_kinds
    assert episodes[1].new_event_kinds.count("TASK_COMPLETED") == 1
    assert episodes[2].new_event_kinds.count("TASK_COMPLETED") == 1

    history = await client.get_orchestration_history(iid)
    assert kinds(history) == [
        "ORCHESTRATOR_STARTED",
        "EXECUTION_STARTED",
        "TASK_SCHEDULED",
        "TASK_SCHEDULED",
        "ORCHESTRATOR_COMPLETED",
        "ORCHESTRATOR_STARTED",
        "TASK_COMPLETED",
        "ORCHESTRATOR_COMPLETED",
        "ORCHESTRATOR_STARTED",
        "TASK_COMPLETED",
        "EXECUTION_COMPLETED",
        "ORCHESTRATOR_COMPLETED",
    ]
    scheduled = of_type(history, TaskScheduledEvent)
    assert [(e.event_id, e.name) for e in scheduled] == [(0, "activity_one"), (1, "activity_two")]
    # activity_two's result (id 1) was applied first, then activity_one's (id 0).
    assert [e.task_scheduled_id for e in of_type(history, TaskCompletedEvent)] == [1, 0]
    assert len(of_type(history, OrchestratorStartedEvent)) == 3
