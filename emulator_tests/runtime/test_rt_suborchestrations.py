"""Sub-orchestrations: sequential and parallel children, failing children, an explicit child id with
retries, and tag inheritance (DTF SubOrchestrationTest, SubOrchestrationFailedTest,
SubOrchestrationExplicitIdTest, BasicSubOrchestrationRetryTest, TagsSubOrchestrationTest)."""

from __future__ import annotations

from typing import Any

import pytest
from rtkit import new_instance_id, of_type, output, status_when

from dtf_sb import OrchestrationContext, OrchestrationStatus, RetryOptions, SubOrchestrationFailedError
from dtf_sb.core.codec import decode_payload
from dtf_sb.core.history import (
    SubOrchestrationInstanceCompletedEvent,
    SubOrchestrationInstanceCreatedEvent,
    SubOrchestrationInstanceFailedEvent,
    TimerCreatedEvent,
)

TIMEOUT = 30
CHILDREN = 5


async def child(ctx: OrchestrationContext, index: int) -> str:
    return f"child{index}"


async def sequential_parent(ctx: OrchestrationContext, _: Any) -> str:
    results = []
    for i in range(CHILDREN):
        results.append(await ctx.call_sub_orchestrator(child, i))
    return "".join(results)


async def parallel_parent(ctx: OrchestrationContext, _: Any) -> str:
    results = await ctx.when_all([ctx.call_sub_orchestrator(child, i) for i in range(CHILDREN)])
    return "".join(results)


@pytest.mark.parametrize("parent", [sequential_parent, parallel_parent], ids=["sequential", "parallel"])
async def test_children_results_come_back_in_order(start_worker, client, parent) -> None:
    await start_worker([parent, child])
    iid = await client.schedule_new_orchestration(parent)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == "".join(f"child{i}" for i in range(CHILDREN))
    history = await client.get_orchestration_history(iid)
    created = of_type(history, SubOrchestrationInstanceCreatedEvent)
    assert len(created) == CHILDREN
    assert len({e.instance_id for e in created}) == CHILDREN
    completed = of_type(history, SubOrchestrationInstanceCompletedEvent)
    assert sorted(e.task_scheduled_id for e in completed) == sorted(e.event_id for e in created)
    # Each child is an instance of its own that knows its parent. Its own tracking may trail the
    # parent's (they are separate sessions), so wait for it rather than read it once.
    for event in created:
        child_state = await client.wait_for_orchestration_completion(event.instance_id, timeout=TIMEOUT)
        assert child_state.status == OrchestrationStatus.COMPLETED
        assert child_state.name == "child"
        assert child_state.parent_instance is not None
        assert child_state.parent_instance.orchestration_instance.instance_id == iid
        assert child_state.parent_instance.task_schedule_id == event.event_id


# -- failing children -----------------------------------------------------------------------------
async def failing_child(ctx: OrchestrationContext, index: int) -> str:
    raise ValueError("Test")


async def sequential_failing_parent(ctx: OrchestrationContext, _: Any) -> dict[str, Any]:
    try:
        for i in range(CHILDREN):
            await ctx.call_sub_orchestrator(failing_child, i)
    except SubOrchestrationFailedError as error:
        return {"message": str(error), "caused_by_value_error": error.details.is_caused_by(ValueError)}
    return {"message": None}


async def parallel_failing_parent(ctx: OrchestrationContext, _: Any) -> dict[str, Any]:
    try:
        await ctx.when_all([ctx.call_sub_orchestrator(failing_child, i) for i in range(CHILDREN)])
    except SubOrchestrationFailedError as error:
        return {"message": str(error), "caused_by_value_error": error.details.is_caused_by(ValueError)}
    return {"message": None}


@pytest.mark.parametrize(
    ("parent", "children_started"),
    [(sequential_failing_parent, 1), (parallel_failing_parent, CHILDREN)],
    ids=["sequential", "parallel"],
)
async def test_failing_child_raises_in_the_parent(start_worker, client, parent, children_started) -> None:
    await start_worker([parent, failing_child])
    iid = await client.schedule_new_orchestration(parent)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    result = output(state)
    assert result["message"] is not None and "Test" in result["message"]
    assert result["caused_by_value_error"] is True
    history = await client.get_orchestration_history(iid)
    created = of_type(history, SubOrchestrationInstanceCreatedEvent)
    assert len(created) == children_started
    failed = of_type(history, SubOrchestrationInstanceFailedEvent)
    assert len(failed) >= 1
    assert failed[0].failure_details is not None
    assert failed[0].failure_details.is_caused_by(ValueError)
    child_state = await client.wait_for_orchestration_completion(created[0].instance_id, timeout=TIMEOUT)
    assert child_state.status == OrchestrationStatus.FAILED


# -- explicit id with retry -----------------------------------------------------------------------
async def test_explicit_child_id_with_retry(start_worker, client) -> None:
    calls: list[int] = []

    async def flaky_step(attempt_input: int) -> int:
        calls.append(attempt_input)
        if len(calls) < 3:
            raise RuntimeError(f"transient failure {len(calls)}")
        return len(calls)

    async def flaky_child(ctx: OrchestrationContext, value: int) -> int:
        return await ctx.call_activity(flaky_step, value)

    child_id = new_instance_id("explicit-child")

    async def retrying_parent(ctx: OrchestrationContext, _: Any) -> int:
        return await ctx.call_sub_orchestrator(
            flaky_child,
            7,
            instance_id=child_id,
            retry=RetryOptions(first_interval=0.2, max_attempts=4),
        )

    await start_worker([retrying_parent, flaky_child], [flaky_step])
    iid = await client.schedule_new_orchestration(retrying_parent)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == 3
    assert calls == [7, 7, 7]
    history = await client.get_orchestration_history(iid)
    created = of_type(history, SubOrchestrationInstanceCreatedEvent)
    assert [e.instance_id for e in created] == [child_id] * 3
    assert len(of_type(history, SubOrchestrationInstanceFailedEvent)) == 2
    assert len(of_type(history, TimerCreatedEvent)) == 2
    # The child id had two failed executions before; its latest one completed.
    child_state = await status_when(client, child_id, OrchestrationStatus.COMPLETED)
    assert output(child_state) == 3


async def test_retry_exhausted_reports_the_last_child_failure(start_worker, client) -> None:
    attempts: list[int] = []

    async def count_attempt() -> int:
        attempts.append(1)
        return len(attempts)

    async def always_failing_child(ctx: OrchestrationContext, _: Any) -> None:
        n = await ctx.call_activity(count_attempt)
        raise RuntimeError(f"child attempt {n} failed")

    async def parent(ctx: OrchestrationContext, _: Any) -> str:
        try:
            await ctx.call_sub_orchestrator(
                always_failing_child, retry=RetryOptions(first_interval=0.2, max_attempts=3)
            )
        except SubOrchestrationFailedError as error:
            return str(error)
        return "no failure"

    await start_worker([parent, always_failing_child], [count_attempt])
    iid = await client.schedule_new_orchestration(parent)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert "child attempt 3 failed" in output(state)
    assert len(attempts) == 3
    history = await client.get_orchestration_history(iid)
    created = of_type(history, SubOrchestrationInstanceCreatedEvent)
    # Without an explicit id each attempt is a new child instance ({execution}:{action id}).
    assert len({e.instance_id for e in created}) == 3


# -- tags -----------------------------------------------------------------------------------------
async def tag_child(ctx: OrchestrationContext, _: Any) -> dict[str, str]:
    return ctx.tags


async def tag_parent(ctx: OrchestrationContext, _: Any) -> dict[str, str]:
    return await ctx.call_sub_orchestrator(tag_child, tags={"shared": "child", "child_only": "c"})


async def test_child_tags_merge_parent_tags_with_child_winning(start_worker, client) -> None:
    await start_worker([tag_parent, tag_child])
    iid = await client.schedule_new_orchestration(tag_parent, tags={"shared": "parent", "parent_only": "p"})

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    expected = {"shared": "child", "child_only": "c", "parent_only": "p"}
    assert output(state) == expected
    history = await client.get_orchestration_history(iid)
    created = of_type(history, SubOrchestrationInstanceCreatedEvent)[0]
    assert created.tags == expected
    child_state = await client.wait_for_orchestration_completion(created.instance_id, timeout=TIMEOUT)
    assert child_state.tags == expected
    assert decode_payload(child_state.output) == expected
