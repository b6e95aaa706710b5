"""Retries and failure propagation (equivalents of DTF's ErrorHandlingTests)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from core_builders import T0, Driver, completed, failed, fired, started

from dtf_sb.core import (
    CreateTimerAction,
    NonRetriableError,
    OrchestrationStatus,
    RetryOptions,
    ScheduleTaskAction,
    SubOrchestrationFailedError,
    TaskFailedError,
    TimerCreatedEvent,
)
from dtf_sb.testing.harness import run_orchestration


class Flaky:
    """An activity that fails a number of times, then succeeds."""

    def __init__(self, failures: int, exc_type: type[Exception] = ValueError) -> None:
        self.failures = failures
        self.calls = 0
        self.exc_type = exc_type
        self.__name__ = "flaky"

    def __call__(self, value):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc_type(f"failure {self.calls}")
        return f"Attempts: {self.calls - 1}"


def _retrying(options: RetryOptions):
    async def orchestration(ctx, _):
        try:
            return await ctx.call_activity("flaky", None, retry=options)
        except TaskFailedError as exc:
            return f"gave up: {exc.message} ({exc.details.error_type})"

    return orchestration


def _timer_delays(history) -> list[float]:
    """Seconds between each retry timer's creation and its fire time."""
    return [(e.fire_at - e.timestamp).total_seconds() for e in history if isinstance(e, TimerCreatedEvent)]


def test_basic_retry_succeeds_after_three_failures():
    flaky = Flaky(3)
    result = run_orchestration(
        _retrying(RetryOptions(first_interval=3, max_attempts=4)), activities=[("flaky", flaky)]
    )
    assert result.status is OrchestrationStatus.COMPLETED
    assert result.output == "Attempts: 3"
    assert flaky.calls == 4
    assert _timer_delays(result.history) == [3, 3, 3]


def test_retry_exhausted_raises_the_last_failure():
    flaky = Flaky(10)
    result = run_orchestration(
        _retrying(RetryOptions(first_interval=3, max_attempts=3)), activities=[("flaky", flaky)]
    )
    assert flaky.calls == 3
    assert result.output == "gave up: failure 3 (ValueError)"
    assert _timer_delays(result.history) == [3, 3]


@pytest.mark.parametrize(("exc_type", "expected_calls"), [(ValueError, 3), (KeyError, 1)])
def test_custom_handler_decides_by_failure_type(exc_type, expected_calls):
    flaky = Flaky(2, exc_type)
    options = RetryOptions(
        first_interval=1, max_attempts=5, handle=lambda e: e.details.is_caused_by(ValueError)
    )
    result = run_orchestration(_retrying(options), activities=[("flaky", flaky)])
    assert flaky.calls == expected_calls
    if exc_type is ValueError:
        assert result.output == "Attempts: 2"
    else:
        assert result.output.startswith("gave up:")


def test_custom_handler_on_reason_text():
    flaky = Flaky(5)
    options = RetryOptions(first_interval=1, max_attempts=5, handle=lambda e: "failure 1" in e.message)
    result = run_orchestration(_retrying(options), activities=[("flaky", flaky)])
    assert flaky.calls == 2
    assert result.output == "gave up: failure 2 (ValueError)"


def test_retry_timeout_stops_retrying():
    flaky = Flaky(100)
    options = RetryOptions(first_interval=5, max_attempts=10, backoff_coefficient=2, retry_timeout=10)
    result = run_orchestration(_retrying(options), activities=[("flaky", flaky)])
    # attempts at t=0, t=5 and t=15; at t=15 the 10 s budget is spent
    assert flaky.calls == 3
    assert _timer_delays(result.history) == [5, 10]


def test_max_interval_caps_backoff():
    flaky = Flaky(3)
    options = RetryOptions(first_interval=1, max_attempts=5, backoff_coefficient=10, max_interval=5)
    result = run_orchestration(_retrying(options), activities=[("flaky", flaky)])
    assert result.output == "Attempts: 3"
    assert _timer_delays(result.history) == [1, 5, 5]


def test_non_retriable_error_stops_at_once():
    flaky = Flaky(5, NonRetriableError)
    result = run_orchestration(
        _retrying(RetryOptions(first_interval=1, max_attempts=5)), activities=[("flaky", flaky)]
    )
    assert flaky.calls == 1
    assert result.output == "gave up: failure 1 (dtf_sb.core.errors.NonRetriableError)"


def test_zero_interval_is_rejected():
    with pytest.raises(ValueError, match="Invalid interval"):
        RetryOptions(first_interval=0, max_attempts=3)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryOptions(first_interval=1, max_attempts=0)


def test_retry_timers_are_durable_actions_in_history():
    """Each retry is a timer action followed by a new schedule action, replayed identically."""
    options = RetryOptions(first_interval=timedelta(seconds=30), max_attempts=3)

    async def orchestration(ctx, _):
        return await ctx.call_activity("work", 1, retry=options)

    driver = Driver(orchestration)
    assert isinstance(driver.step(started("orchestration")).actions[0], ScheduleTaskAction)
    second = driver.step(failed(0, "first"))
    (timer,) = second.actions
    assert isinstance(timer, CreateTimerAction)
    assert timer.id == 1
    assert timer.fire_at == T0 + timedelta(seconds=1) + timedelta(seconds=30)
    third = driver.step(fired(1, timer.fire_at))
    assert [type(a) for a in third.actions] == [ScheduleTaskAction]
    assert third.actions[0].id == 2
    done = driver.step(completed(2, "ok"))
    assert done.status is OrchestrationStatus.COMPLETED
    assert done.output == '"ok"'


def test_activity_failure_surfaces_failure_details():
    def boom(_):
        raise RuntimeError("no luck")

    async def orchestration(ctx, _):
        try:
            await ctx.call_activity(boom)
        except TaskFailedError as exc:
            return [
                exc.message,
                exc.details.error_type,
                exc.name,
                "raise RuntimeError" in exc.details.stack_trace,
            ]

    result = run_orchestration(orchestration, activities=[boom])
    assert result.output == ["no luck", "RuntimeError", "boom", True]


def test_uncaught_orchestrator_exception_fails_the_instance():
    async def orchestration(ctx, _):
        await ctx.call_activity("missing")
        raise KeyError("nope")

    def missing():
        return 1

    result = run_orchestration(orchestration, activities=[missing])
    assert result.status is OrchestrationStatus.FAILED
    assert result.failure_details.error_type == "KeyError"
    assert result.state.output == "KeyError: 'nope'"
    assert "raise KeyError" in result.failure_details.stack_trace


class _ChildBehaviour:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0


def _child_factory(behaviour: _ChildBehaviour):
    async def child(ctx, value):
        if not ctx.is_replaying:
            behaviour.runs += 1
        if behaviour.runs <= behaviour.failures:
            raise ValueError(f"child failure {behaviour.runs}")
        return value * 2

    return child


@pytest.mark.parametrize("failures", [0, 2])
def test_sub_orchestration_retry(failures):
    behaviour = _ChildBehaviour(failures)

    async def parent(ctx, _):
        return await ctx.call_sub_orchestrator(
            "child", 21, retry=RetryOptions(first_interval=1, max_attempts=3)
        )

    result = run_orchestration(parent, sub_orchestrators=[("child", _child_factory(behaviour))])
    assert result.status is OrchestrationStatus.COMPLETED
    assert result.output == 42
    assert behaviour.runs == failures + 1
    children = [key for key in result.instances if key != "harness-instance"]
    assert len(children) == failures + 1  # a new child id for each attempt


def test_sub_orchestration_retry_exhausted():
    behaviour = _ChildBehaviour(10)

    async def parent(ctx, _):
        try:
            await ctx.call_sub_orchestrator("child", 1, retry=RetryOptions(first_interval=1, max_attempts=2))
        except SubOrchestrationFailedError as exc:
            return [exc.message, exc.details.error_type, isinstance(exc, TaskFailedError)]

    result = run_orchestration(parent, sub_orchestrators=[("child", _child_factory(behaviour))])
    assert result.output == ["child failure 2", "ValueError", True]
    assert behaviour.runs == 2


def test_retry_delay_math_is_pure():
    options = RetryOptions(first_interval=2, max_attempts=4, backoff_coefficient=3)
    error = TaskFailedError("x", failed(0).failure_details)
    delays = [options.next_delay(attempt=n, first_attempt_at=T0, now=T0, error=error) for n in (1, 2, 3, 4)]
    assert delays == [timedelta(seconds=2), timedelta(seconds=6), timedelta(seconds=18), None]


def test_huge_backoff_is_clamped_not_an_overflow():
    options = RetryOptions(first_interval=1, max_attempts=2000, backoff_coefficient=10)
    error = TaskFailedError("x", failed(0).failure_details)
    delay = options.next_delay(attempt=1500, first_attempt_at=T0, now=T0, error=error)
    assert delay == timedelta(days=365 * 100)


def test_failing_retry_handler_fails_the_task_not_the_worker():
    def handle(error):
        raise LookupError("handler bug")

    async def orchestration(ctx, _):
        try:
            await ctx.call_activity(
                "flaky", None, retry=RetryOptions(first_interval=1, max_attempts=3, handle=handle)
            )
        except LookupError as exc:
            return str(exc)

    result = run_orchestration(orchestration, activities=[("flaky", Flaky(5))])
    assert result.output == "handler bug"
