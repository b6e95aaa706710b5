"""Decisions an orchestration episode hands to the transport.

Each action carries ``id``, the event id it was assigned in history, so the transport can derive a
deterministic message id (instance, execution, id, kind): a replay after a crash re-derives the same
ids and duplicate detection drops the repeats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dtf_sb.core.errors import FailureDetails
from dtf_sb.core.history import HistoryEvent
from dtf_sb.core.status import OrchestrationStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestratorAction:
    id: int

    @property
    def kind(self) -> str:
        """A short stable name for message ids and diagnostics."""
        return _KINDS[type(self)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleTaskAction(OrchestratorAction):
    """Run activity ``name``; ``input`` is encoded JSON."""

    name: str
    version: str | None = None
    input: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateTimerAction(OrchestratorAction):
    """Deliver a ``TimerFiredEvent(timer_id=id)`` to this instance at ``fire_at``."""

    fire_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSubOrchestrationAction(OrchestratorAction):
    """Start ``instance_id`` as a child; ``execution_id`` is derived deterministically from the parent."""

    name: str
    instance_id: str
    execution_id: str
    version: str | None = None
    input: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendEventAction(OrchestratorAction):
    """Raise event ``name`` on another instance; ``data`` is encoded JSON."""

    instance_id: str
    name: str
    data: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CompleteOrchestrationAction(OrchestratorAction):
    """The execution ended: completed, failed, terminated or continued as new.

    For ``CONTINUED_AS_NEW``, ``result`` is the next generation's input, ``new_version`` its version and
    ``carryover_events`` the raised events handed to it. The executor already starts that generation
    itself; these fields are informational for tracking.
    """

    status: OrchestrationStatus
    result: str | None = None
    failure_details: FailureDetails | None = None
    new_version: str | None = None
    carryover_events: tuple[HistoryEvent, ...] = ()


_KINDS: dict[type, str] = {
    ScheduleTaskAction: "task",
    CreateTimerAction: "timer",
    CreateSubOrchestrationAction: "suborchestration",
    SendEventAction: "event",
    CompleteOrchestrationAction: "complete",
}
