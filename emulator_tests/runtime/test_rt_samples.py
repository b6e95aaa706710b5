"""DTF's sample scenarios (SampleScenarioTests) through the whole stack: client -> Service Bus ->
worker -> instance store, asserting results and the history DTF would record."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from rtkit import history_when, kinds, new_instance_id, of_type, output, status_when, wait_until

from dtf_sb import (
    ActivityContext,
    OrchestrationAlreadyExistsError,
    OrchestrationContext,
    OrchestrationStatus,
    TaskFailedError,
)
from dtf_sb.core.codec import decode_payload
from dtf_sb.core.history import (
    EventRaisedEvent,
    ExecutionCompletedEvent,
    ExecutionStartedEvent,
    OrchestratorStartedEvent,
    TaskCompletedEvent,
    TaskFailedEvent,
    TaskScheduledEvent,
)

TIMEOUT = 30


# -- greetings ------------------------------------------------------------------------------------
async def get_user() -> str:
    return "Gabbar"


async def send_greeting(user: str) -> str:
    return f"Greeting send to {user}"


async def greetings(ctx: OrchestrationContext, _: Any) -> str:
    user = await ctx.call_activity(get_user)
    return await ctx.call_activity(send_greeting, user)


async def test_greetings(start_worker, client) -> None:
    await start_worker([greetings], [get_user, send_greeting])
    iid = await client.schedule_new_orchestration(greetings, input="DONT_THROW")

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == "Greeting send to Gabbar"
    assert state.name == "greetings"
    assert state.instance_id == iid
    assert decode_payload(state.input) == "DONT_THROW"
    assert state.completed_time is not None and state.created_time is not None
    assert state.completed_time >= state.created_time
    history = await client.get_orchestration_history(iid)
    scheduled = of_type(history, TaskScheduledEvent)
    assert [e.name for e in scheduled] == ["get_user", "send_greeting"]
    assert decode_payload(scheduled[1].input) == "Gabbar"
    # Sequential activities: three episodes, each framed by OrchestratorStarted/Completed.
    assert kinds(history) == [
        "ORCHESTRATOR_STARTED",
        "EXECUTION_STARTED",
        "TASK_SCHEDULED",
        "ORCHESTRATOR_COMPLETED",
        "ORCHESTRATOR_STARTED",
        "TASK_COMPLETED",
        "TASK_SCHEDULED",
        "ORCHESTRATOR_COMPLETED",
        "ORCHESTRATOR_STARTED",
        "TASK_COMPLETED",
        "EXECUTION_COMPLETED",
        "ORCHESTRATOR_COMPLETED",
    ]
    completed = of_type(history, ExecutionCompletedEvent)[0]
    assert completed.orchestration_status == OrchestrationStatus.COMPLETED
    assert decode_payload(completed.result) == "Greeting send to Gabbar"


# -- fan-out / fan-in -----------------------------------------------------------------------------
async def compute_sum(chunk: list[int]) -> int:
    return sum(range(chunk[0], chunk[1] + 1))


async def average_calculator(ctx: OrchestrationContext, spec: list[int]) -> float:
    start, end, chunk = spec
    tasks = []
    low = start
    while low <= end:
        high = min(low + chunk - 1, end)
        tasks.append(ctx.call_activity(compute_sum, [low, high]))
        low = high + 1
    sums = await ctx.when_all(tasks)
    return sum(sums) / (end - start + 1)


async def test_average_calculator_fan_out_fan_in(start_worker, client) -> None:
    await start_worker([average_calculator], [compute_sum])
    iid = await client.schedule_new_orchestration(average_calculator, input=[1, 50, 10])

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == 25.5
    history = await client.get_orchestration_history(iid)
    scheduled = of_type(history, TaskScheduledEvent)
    assert len(scheduled) == 5
    # All five were scheduled in the first episode, before any result came back.
    first_result = kinds(history).index("TASK_COMPLETED")
    assert all(history.index(e) < first_result for e in scheduled)
    results = of_type(history, TaskCompletedEvent)
    assert sorted(e.task_scheduled_id for e in results) == sorted(e.event_id for e in scheduled)
    assert sorted(decode_payload(e.result) for e in results) == [55, 155, 255, 355, 455]


# -- synchronous activities with a context -------------------------------------------------------
def describe_call(ctx: ActivityContext, value: int) -> dict[str, Any]:
    # A plain function: the worker runs it in its thread pool, not on the event loop.
    return {
        "value": value * 2,
        "instance": ctx.orchestration_id,
        "task_id": ctx.task_id,
        "name": ctx.name,
        "thread": threading.current_thread() is not threading.main_thread(),
    }


async def sync_caller(ctx: OrchestrationContext, value: int) -> list[dict[str, Any]]:
    return [await ctx.call_activity(describe_call, value), await ctx.call_activity(describe_call, value + 1)]


async def test_sync_activity_gets_its_context_and_runs_off_the_loop(start_worker, client) -> None:
    await start_worker([sync_caller], [describe_call])
    iid = await client.schedule_new_orchestration(sync_caller, input=20)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    first, second = output(state)
    assert (first["value"], second["value"]) == (40, 42)
    assert first["instance"] == second["instance"] == iid
    history = await client.get_orchestration_history(iid)
    assert [first["task_id"], second["task_id"]] == [e.event_id for e in of_type(history, TaskScheduledEvent)]
    assert first["name"] == "describe_call"
    assert first["thread"] is True


# -- signal ---------------------------------------------------------------------------------------
async def wait_for_approval(ctx: OrchestrationContext, _: Any) -> dict[str, Any]:
    ctx.set_custom_status("waiting")
    approval = await ctx.wait_for_external_event("Approval")
    return {"approved_by": approval["by"]}


async def test_signal_resumes_a_waiting_orchestration(start_worker, client) -> None:
    await start_worker([wait_for_approval])
    iid = await client.schedule_new_orchestration(wait_for_approval)
    waiting = await status_when(client, iid, OrchestrationStatus.RUNNING)
    assert decode_payload(waiting.custom_status) == "waiting"

    await client.raise_orchestration_event(iid, "Approval", data={"by": "ops"})
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == {"approved_by": "ops"}
    history = await client.get_orchestration_history(iid)
    raised = of_type(history, EventRaisedEvent)
    assert [(e.name, decode_payload(e.input)) for e in raised] == [("Approval", {"by": "ops"})]


# -- error handling with compensation ---------------------------------------------------------------
async def debit(amount: int) -> int:
    return amount


async def credit(amount: int) -> int:
    raise ValueError(f"account closed, cannot credit {amount}")


async def refund(amount: int) -> str:
    return f"refunded {amount}"


async def transfer(ctx: OrchestrationContext, amount: int) -> dict[str, Any]:
    await ctx.call_activity(debit, amount)
    try:
        await ctx.call_activity(credit, amount)
    except TaskFailedError as error:
        compensation = await ctx.call_activity(refund, amount)
        return {
            "error": str(error),
            "error_type": error.details.error_type,
            "caused_by_value_error": error.details.is_caused_by(ValueError),
            "compensation": compensation,
        }
    return {"error": None}


async def test_activity_failure_is_caught_and_compensated(start_worker, client) -> None:
    await start_worker([transfer], [debit, credit, refund])
    iid = await client.schedule_new_orchestration(transfer, input=40)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    result = output(state)
    assert "account closed, cannot credit 40" in result["error"]
    assert result["error_type"] == "ValueError"
    assert result["caused_by_value_error"] is True
    assert result["compensation"] == "refunded 40"
    history = await client.get_orchestration_history(iid)
    failed = of_type(history, TaskFailedEvent)
    assert len(failed) == 1
    assert failed[0].failure_details is not None
    assert failed[0].failure_details.error_type == "ValueError"
    assert "credit" in (failed[0].failure_details.stack_trace or "")
    assert [e.name for e in of_type(history, TaskScheduledEvent)] == ["debit", "credit", "refund"]


# -- bad orchestration ----------------------------------------------------------------------------
async def bad_orchestration(ctx: OrchestrationContext, _: Any) -> None:
    raise ValueError("the orchestration cannot handle this input")


async def test_uncaught_exception_fails_the_instance_with_failure_details(start_worker, client) -> None:
    await start_worker([bad_orchestration])
    iid = await client.schedule_new_orchestration(bad_orchestration, input=1)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.FAILED
    details = state.failure_details
    assert details is not None
    assert details.error_type == "ValueError"
    assert details.message == "the orchestration cannot handle this input"
    assert "bad_orchestration" in (details.stack_trace or "")
    assert "the orchestration cannot handle this input" in (state.output or "")
    history = await client.get_orchestration_history(iid)
    completed = of_type(history, ExecutionCompletedEvent)
    assert len(completed) == 1
    assert completed[0].orchestration_status == OrchestrationStatus.FAILED
    assert completed[0].failure_details is not None
    assert completed[0].failure_details.error_type == "ValueError"


# -- tags -----------------------------------------------------------------------------------------
async def tag_reader(ctx: OrchestrationContext, _: Any) -> dict[str, str]:
    return ctx.tags


async def test_tags_reach_the_orchestration_and_its_state(start_worker, client) -> None:
    await start_worker([tag_reader])
    tags = {"owner": "billing", "priority": "high"}
    iid = await client.schedule_new_orchestration(tag_reader, tags=tags)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == tags
    assert state.tags == tags
    history = await client.get_orchestration_history(iid)
    assert of_type(history, ExecutionStartedEvent)[0].tags == tags


# -- scheduled start ------------------------------------------------------------------------------
async def report_start_time(ctx: OrchestrationContext, _: Any) -> str:
    return ctx.current_utc_datetime.isoformat()


async def test_scheduled_start_does_not_run_before_start_at(start_worker, client) -> None:
    await start_worker([report_start_time])
    start_at = datetime.now(timezone.utc) + timedelta(seconds=3)
    iid = await client.schedule_new_orchestration(report_start_time, start_at=start_at)

    pending = await client.get_orchestration_state(iid)
    assert pending is not None, "a scheduled instance must be visible (Pending) right after creation"
    assert pending.status == OrchestrationStatus.PENDING
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    # The first episode's time is when the start message became visible: not before start_at.
    ran_at = datetime.fromisoformat(output(state))
    assert ran_at >= start_at - timedelta(milliseconds=1)
    history = await client.get_orchestration_history(iid)
    started = of_type(history, ExecutionStartedEvent)[0]
    assert started.scheduled_start_time is not None
    assert abs(started.scheduled_start_time - start_at) < timedelta(milliseconds=1)
    assert of_type(history, OrchestratorStartedEvent)[0].timestamp >= start_at - timedelta(milliseconds=1)


# -- re-creating an existing instance -------------------------------------------------------------
async def echo_orchestration(ctx: OrchestrationContext, value: Any) -> Any:
    return value


async def test_recreating_an_instance_obeys_dedupe_statuses(start_worker, client) -> None:
    await start_worker([echo_orchestration])
    iid = new_instance_id("recreate")
    await client.schedule_new_orchestration(echo_orchestration, input="first", instance_id=iid)
    first = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert first.status == OrchestrationStatus.COMPLETED

    # No dedupe statuses: any existing instance blocks (DTF); so does a list naming its status.
    with pytest.raises(OrchestrationAlreadyExistsError):
        await client.schedule_new_orchestration(echo_orchestration, input="second", instance_id=iid)
    with pytest.raises(OrchestrationAlreadyExistsError):
        await client.schedule_new_orchestration(
            echo_orchestration,
            input="second",
            instance_id=iid,
            dedupe_statuses=[OrchestrationStatus.COMPLETED, OrchestrationStatus.RUNNING],
        )
    unchanged = await client.get_orchestration_state(iid)
    assert output(unchanged) == "first"

    # A list without Completed lets the id start again, as a new execution.
    again = await client.schedule_new_orchestration(
        echo_orchestration,
        input="second",
        instance_id=iid,
        dedupe_statuses=[OrchestrationStatus.TERMINATED],
    )
    assert again == iid

    async def second_execution_done() -> Any:
        state = await client.get_orchestration_state(iid)
        done = state is not None and state.execution_id != first.execution_id
        return state if done and state.status == OrchestrationStatus.COMPLETED else None

    second = await wait_until(second_execution_done, timeout=TIMEOUT, what="the second execution")
    assert output(second) == "second"
    history = await history_when(
        client,
        iid,
        lambda h: any(type(e) is ExecutionCompletedEvent for e in h),
        what="history of the second execution",
    )
    started = of_type(history, ExecutionStartedEvent)
    assert len(started) == 1
    assert decode_payload(started[0].input) == "second"
    assert started[0].orchestration_instance.execution_id == second.execution_id
    first_history = await client.get_orchestration_history(iid, execution_id=first.execution_id)
    assert [decode_payload(e.input) for e in of_type(first_history, ExecutionStartedEvent)] == ["first"]
