"""The replay half of rewind, without any service: which calls a rewound history makes again.

Each case runs an orchestrator through the executor to a Failed end, rewrites the history with
``rewind_history`` and replays it: the retried calls must come out as new decisions with their old
ids, nothing else may be decided again, and replay must not see non-determinism.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dtf_sb.core import OrchestrationExecutor, Registry
from dtf_sb.core.actions import CreateTimerAction, ScheduleTaskAction
from dtf_sb.core.codec import decode_payload, encode_payload
from dtf_sb.core.context import OrchestrationContext
from dtf_sb.core.errors import FailureDetails, TaskFailedError
from dtf_sb.core.history import (
    ExecutionStartedEvent,
    GenericEvent,
    HistoryEvent,
    TaskCompletedEvent,
    TaskFailedEvent,
    TimerFiredEvent,
)
from dtf_sb.core.messages import OrchestrationInstance
from dtf_sb.core.retry import RetryOptions
from dtf_sb.core.rewind import (
    RewindError,
    RewindRequest,
    decode_rewind_request,
    encode_rewind_request,
    rewind_history,
)
from dtf_sb.core.status import OrchestrationStatus

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
IID = "order-1"


def _ok(task_id: int, value: Any) -> TaskCompletedEvent:
    return TaskCompletedEvent(timestamp=T0, task_scheduled_id=task_id, result=encode_payload(value))


def _fail(task_id: int, message: str = "down") -> TaskFailedEvent:
    details = FailureDetails(error_type="ConnectionError", message=message)
    return TaskFailedEvent(timestamp=T0, task_scheduled_id=task_id, reason=message, failure_details=details)


class Driver:
    def __init__(self, *orchestrators: Any) -> None:
        registry = Registry()
        for fn in orchestrators:
            registry.add_orchestrator(fn)
        self.executor = OrchestrationExecutor(registry)
        self.history: list[HistoryEvent] = []
        self.clock = T0

    def step(self, *events: HistoryEvent) -> Any:
        self.clock += timedelta(seconds=1)
        result = self.executor.execute(IID, list(self.history), list(events), now=self.clock)
        self.history = list(result.runtime_state)
        return result

    def start(self, name: str, value: Any = None) -> Any:
        return self.step(
            ExecutionStartedEvent(
                timestamp=T0,
                name=name,
                input=encode_payload(value),
                orchestration_instance=OrchestrationInstance(IID, "e1"),
            )
        )

    def rewind(self) -> tuple[Any, Any]:
        plan = rewind_history(self.history, new_execution_id="e2", now=self.clock)
        self.history = plan.events
        return plan, self.step(GenericEvent(data="rewound"))


def scheduled(result: Any) -> list[tuple[int, str]]:
    return [(a.id, a.name) for a in result.actions if isinstance(a, ScheduleTaskAction)]


async def sequence(ctx: OrchestrationContext, _: Any) -> list[str]:
    a = await ctx.call_activity("reserve")
    b = await ctx.call_activity("charge")
    return [a, b]


def test_only_the_failed_call_is_made_again() -> None:
    d = Driver(sequence)
    d.start("sequence")
    d.step(_ok(0, "reserved"))
    assert d.step(_fail(1)).status is OrchestrationStatus.FAILED

    plan, result = d.rewind()

    assert (plan.retried, plan.rescheduled, plan.previous_execution_id) == ([1], [], "e1")
    assert result.status is OrchestrationStatus.RUNNING and result.execution_id == "e2"
    assert scheduled(result) == [(1, "charge")]
    done = d.step(_ok(1, "charged"))
    assert done.status is OrchestrationStatus.COMPLETED
    assert decode_payload(done.completion.result) == ["reserved", "charged"]


async def retried(ctx: OrchestrationContext, _: Any) -> str:
    return await ctx.call_activity("charge", retry=RetryOptions(first_interval=1, max_attempts=2))


def test_a_retry_policy_keeps_its_earlier_attempts_and_retries_the_last() -> None:
    d = Driver(retried)
    d.start("retried")
    timer = d.step(_fail(0))
    [wait] = [a for a in timer.actions if isinstance(a, CreateTimerAction)]
    again = d.step(TimerFiredEvent(timestamp=wait.fire_at, timer_id=wait.id, fire_at=wait.fire_at))
    [(attempt, _)] = scheduled(again)
    assert d.step(_fail(attempt)).status is OrchestrationStatus.FAILED

    plan, result = d.rewind()

    assert plan.retried == [attempt]
    assert scheduled(result) == [(attempt, "charge")]
    assert d.step(_ok(attempt, "paid")).status is OrchestrationStatus.COMPLETED


async def handled(ctx: OrchestrationContext, _: Any) -> str:
    try:
        await ctx.call_activity("primary")
    except TaskFailedError:
        pass
    return await ctx.call_activity("fallback")


def test_a_failure_the_code_handled_stays_in_history() -> None:
    d = Driver(handled)
    d.start("handled")
    d.step(_fail(0, "primary down"))
    assert d.step(_fail(1, "fallback down")).status is OrchestrationStatus.FAILED

    plan, result = d.rewind()

    assert plan.retried == [1]
    assert scheduled(result) == [(1, "fallback")]
    assert [e.task_scheduled_id for e in plan.events if isinstance(e, TaskFailedEvent)] == [0]


async def fan_out(ctx: OrchestrationContext, _: Any) -> list[str]:
    return await ctx.when_all([ctx.call_activity("a"), ctx.call_activity("b"), ctx.call_activity("c")])


def test_fan_out_retries_failures_and_reschedules_unanswered_calls() -> None:
    d = Driver(fan_out)
    d.start("fan_out")
    d.step(_ok(0, "A"))
    failed = d.step(_fail(1))
    assert failed.status is OrchestrationStatus.FAILED  # when_all fails on the first failure

    plan, result = d.rewind()

    assert (plan.retried, plan.rescheduled) == ([1], [2])
    assert sorted(scheduled(result)) == [(1, "b"), (2, "c")]
    d.step(_ok(2, "C"))
    done = d.step(_ok(1, "B"))
    assert decode_payload(done.completion.result) == ["A", "B", "C"]


def test_only_failed_executions_can_be_rewound() -> None:
    d = Driver(sequence)
    d.start("sequence")
    with pytest.raises(RewindError, match="has not finished"):
        rewind_history(d.history, new_execution_id="x", now=T0)
    d.step(_ok(0, "r"))
    d.step(_ok(1, "c"))
    with pytest.raises(RewindError, match="is Completed; only a Failed instance"):
        rewind_history(d.history, new_execution_id="x", now=T0)
    with pytest.raises(RewindError, match="no ExecutionStarted"):
        rewind_history([], new_execution_id="x", now=T0)


def test_the_request_round_trips_and_other_generic_events_are_not_requests() -> None:
    d = Driver(sequence)
    d.start("sequence")
    d.step(_fail(0))
    plan = rewind_history(d.history, new_execution_id="e2", now=T0)
    request = RewindRequest(IID, "e1", "e2", "fixed", plan.events)
    decoded = decode_rewind_request(encode_rewind_request(request))
    assert decoded is not None
    assert (decoded.instance_id, decoded.previous_execution_id, decoded.execution_id, decoded.reason) == (
        IID, "e1", "e2", "fixed",
    )  # fmt: skip
    assert [type(e) for e in decoded.events] == [type(e) for e in plan.events]
    started = next(e for e in decoded.events if isinstance(e, ExecutionStartedEvent))
    assert isinstance(started, ExecutionStartedEvent) and started.orchestration_instance.execution_id == "e2"
    assert decode_rewind_request(GenericEvent(data="just a note")) is None
    assert decode_rewind_request(GenericEvent(data='{"kind": "other", "dtf_sb.rewind": 1}')) is None
