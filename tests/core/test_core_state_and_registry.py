"""Runtime state derivations, the client-facing snapshot, the registry and small context rules."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from core_builders import T0, Driver, completed, failed, started, terminated

from dtf_sb.core import (
    ActivityNotRegisteredError,
    ExecutionCompletedEvent,
    ExecutionStartedEvent,
    FailureDetails,
    InvalidHistoryError,
    OrchestrationInstance,
    OrchestrationRuntimeState,
    OrchestrationStatus,
    OrchestratorNotRegisteredError,
    Registry,
)
from dtf_sb.core.codec import decode_payload


async def greet(ctx, name):
    ctx.set_custom_status("greeting")
    return await ctx.call_activity("hello", name)


def test_snapshot_of_a_completed_instance():
    driver = Driver(greet)
    driver.step(started("greet", "Ann", tags={"team": "a"}), advance=timedelta(minutes=1))
    result = driver.step(completed(0, "Hello Ann"))
    snapshot = result.runtime_state.to_orchestration_state(now=T0 + timedelta(hours=1))
    assert snapshot.status is OrchestrationStatus.COMPLETED
    assert (snapshot.instance_id, snapshot.execution_id) == ("instance-1", "execution-1")
    assert snapshot.name == "greet"
    assert decode_payload(snapshot.input) == "Ann"
    assert decode_payload(snapshot.output) == "Hello Ann"
    assert decode_payload(snapshot.custom_status) == "greeting"
    assert snapshot.tags == {"team": "a"}
    assert snapshot.created_time == T0
    assert snapshot.completed_time == T0 + timedelta(minutes=1)
    assert snapshot.last_updated_time == T0 + timedelta(hours=1)
    assert snapshot.failure_details is None


def test_snapshot_of_failed_and_terminated_instances():
    async def fragile(ctx, _):
        await ctx.call_activity("x")

    driver = Driver(fragile)
    driver.step(started("fragile"))
    failed_state = driver.step(failed(0, "broken")).runtime_state
    # the orchestrator did not catch the TaskFailedError, so it fails with it
    assert failed_state.status is OrchestrationStatus.FAILED
    assert failed_state.output == "dtf_sb.core.errors.TaskFailedError: broken"
    assert failed_state.failure_details.inner.message == "broken"

    driver = Driver(fragile)
    driver.step(started("fragile"))
    stopped = driver.step(terminated("enough")).runtime_state
    assert stopped.status is OrchestrationStatus.TERMINATED
    assert decode_payload(stopped.output) == "enough"


def test_state_rules():
    empty = OrchestrationRuntimeState()
    assert empty.status is OrchestrationStatus.PENDING
    assert empty.is_valid
    with pytest.raises(InvalidHistoryError):
        empty.to_orchestration_state()
    with pytest.raises(InvalidHistoryError, match="Multiple ExecutionStartedEvent"):
        OrchestrationRuntimeState([started("a"), started("a")])
    # a terminate replaces a pending continue-as-new completion; other later completions are ignored
    state = OrchestrationRuntimeState([started("a")])
    state.add_event(ExecutionCompletedEvent(orchestration_status=OrchestrationStatus.CONTINUED_AS_NEW))
    state.add_event(ExecutionCompletedEvent(orchestration_status=OrchestrationStatus.COMPLETED))
    assert state.status is OrchestrationStatus.CONTINUED_AS_NEW
    state.add_event(ExecutionCompletedEvent(orchestration_status=OrchestrationStatus.TERMINATED))
    assert state.status is OrchestrationStatus.TERMINATED
    assert len(state.new_events) == 3
    state.commit_new_events()
    assert len(state.past_events) == 4
    assert state.new_events == []


def test_registry_names_and_versions():
    registry = Registry()

    def activity():
        return 1

    async def v1(ctx):
        return 1

    async def v2(ctx):
        return 2

    assert registry.add_activity(activity) == "activity"
    assert registry.add_activity(activity, name="Renamed") == "Renamed"
    assert registry.name_of(activity) == "activity"  # the first registration names the function
    registry.add_orchestrator(v1, name="flow")
    registry.add_orchestrator(v2, name="flow", version="2")
    assert registry.get_orchestrator("flow") is v1
    assert registry.get_orchestrator("flow", "2") is v2
    assert registry.get_orchestrator("flow", "3") is v1  # unknown version: the unversioned one
    assert registry.orchestrator_names == ["flow"]
    with pytest.raises(OrchestratorNotRegisteredError, match="'other'"):
        registry.get_orchestrator("other")
    with pytest.raises(ActivityNotRegisteredError, match="'missing'"):
        registry.get_activity("missing")


def test_timers_need_aware_datetimes():
    async def naive(ctx, _):
        await ctx.create_timer(datetime(2030, 1, 1))

    result = Driver(naive).step(started("naive"))
    assert result.status is OrchestrationStatus.FAILED
    assert "timezone-aware" in result.completion.failure_details.message


def test_failure_details_matching():
    details = FailureDetails(
        error_type="dtf_sb.core.errors.TaskFailedError",
        message="outer",
        inner=FailureDetails(error_type="KeyError", message="inner"),
    )
    assert details.is_caused_by(KeyError)
    assert details.is_caused_by(LookupError)  # resolvable types match their base classes
    assert not details.is_caused_by(ValueError)
    generic = FailureDetails(error_type="Exception", message="x")
    assert not generic.is_caused_by(ValueError)  # a base class is not caused by a subclass
    unknown = FailureDetails(error_type="some.remote.CustomError", message="x")
    assert not unknown.is_caused_by(Exception)
    assert str(details) == "dtf_sb.core.errors.TaskFailedError: outer"


def test_start_event_identity():
    event = ExecutionStartedEvent(name="x", orchestration_instance=OrchestrationInstance("i", "e"))
    assert event.event_id == -1
    assert event.timestamp.tzinfo is not None
