"""The storm audit's own check: a session-state write made from a stale copy is reported.

No broker here: states are encoded by the runtime's codec as a worker would write them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from relkit import StateWrite, regressed_writes

from dtf_sb.core.history import (
    ExecutionStartedEvent,
    OrchestratorStartedEvent,
    TaskCompletedEvent,
    TaskScheduledEvent,
    TimerCreatedEvent,
)
from dtf_sb.core.messages import OrchestrationInstance
from dtf_sb.core.state import OrchestrationRuntimeState
from dtf_sb.options import TaskHubOptions
from dtf_sb.servicebus.session_state import SessionStateCodec

CODEC = SessionStateCodec(TaskHubOptions(hub_name="audit"), None)
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _started(execution: str) -> ExecutionStartedEvent:
    return ExecutionStartedEvent(name="o", orchestration_instance=OrchestrationInstance("i", execution))


async def _write(*events: object) -> StateWrite:
    data, _ = await CODEC.encode_for_save(
        OrchestrationRuntimeState(list(events)), previous_chunks=[], tracked_through=0
    )
    return StateWrite("i", len(data), data)


async def test_a_write_from_a_stale_copy_is_reported_and_growth_is_not() -> None:
    start = [OrchestratorStartedEvent(), _started("e1"), TaskScheduledEvent(event_id=0, name="a")]
    episode_2 = [*start, OrchestratorStartedEvent(), TaskCompletedEvent(task_scheduled_id=0)]
    stale = [*start, OrchestratorStartedEvent(), TimerCreatedEvent(event_id=1, fire_at=T0)]
    writes = [await _write(*start), await _write(*episode_2), await _write(*stale)]
    assert regressed_writes(writes[:2]) == []
    (report,) = regressed_writes(writes)
    assert report.startswith("i: 5 events written over 5")


async def test_a_new_execution_and_a_cleared_state_start_afresh() -> None:
    first = [OrchestratorStartedEvent(), _started("e1"), TaskScheduledEvent(event_id=0, name="a")]
    second = [OrchestratorStartedEvent(), _started("e2")]
    assert regressed_writes([await _write(*first), await _write(*second)]) == []
    cleared = StateWrite("i", 0, None)
    assert regressed_writes([await _write(*first), cleared, await _write(*second[1:])]) == []
