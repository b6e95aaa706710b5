"""History events: the append-only record an orchestration is replayed from.

Names, fields and the numeric ``EventType`` values follow DTF (``DurableTask.Core.History``) so that the
reference documentation applies. Each event that answers an earlier one carries the identity that lets
``dedupe.filter_new_events`` recognise a redelivered copy: results carry ``task_scheduled_id``, fired
timers ``timer_id``, raised events the ``message_id`` they arrived with, and ``ExecutionStarted`` its
execution id. User payloads (``input``, ``result``, ``data``) are already-encoded JSON strings so the
transport never re-serializes user objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import IntEnum
from typing import TYPE_CHECKING, ClassVar

from dtf_sb.core.errors import FailureDetails
from dtf_sb.core.messages import OrchestrationInstance, ParentInstance
from dtf_sb.core.status import OrchestrationStatus

if TYPE_CHECKING:
    from dtf_sb.core.state import OrchestrationState


class EventType(IntEnum):
    """DTF's event numbering; new values are only ever appended."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16
    GENERIC_EVENT = 17
    HISTORY_STATE = 18
    EXECUTION_SUSPENDED = 19
    EXECUTION_RESUMED = 20
    EXECUTION_REWOUND = 21


def utcnow() -> datetime:
    """Timezone-aware UTC now; every timestamp in history is aware UTC."""
    return datetime.now(timezone.utc)


@dataclass(slots=True, kw_only=True)
class HistoryEvent:
    """Common fields: ``event_id`` is the action id for events that record a decision, else -1."""

    event_type: ClassVar[EventType]
    event_id: int = -1
    timestamp: datetime = field(default_factory=utcnow)
    is_played: bool = False


@dataclass(slots=True, kw_only=True)
class ExecutionStartedEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.EXECUTION_STARTED
    name: str
    orchestration_instance: OrchestrationInstance
    version: str | None = None
    input: str | None = None
    parent_instance: ParentInstance | None = None
    tags: dict[str, str] = field(default_factory=dict)
    scheduled_start_time: datetime | None = None
    generation: int = 0


@dataclass(slots=True, kw_only=True)
class ExecutionCompletedEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.EXECUTION_COMPLETED
    orchestration_status: OrchestrationStatus
    result: str | None = None
    failure_details: FailureDetails | None = None


@dataclass(slots=True, kw_only=True)
class ContinueAsNewEvent(ExecutionCompletedEvent):
    """Closes a generation; ``result`` is the next generation's input (as in DTF)."""

    event_type: ClassVar[EventType] = EventType.CONTINUE_AS_NEW
    orchestration_status: OrchestrationStatus = OrchestrationStatus.CONTINUED_AS_NEW


@dataclass(slots=True, kw_only=True)
class ExecutionTerminatedEvent(HistoryEvent):
    """``input`` is the termination reason (DTF's field name)."""

    event_type: ClassVar[EventType] = EventType.EXECUTION_TERMINATED
    input: str | None = None


@dataclass(slots=True, kw_only=True)
class ExecutionSuspendedEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.EXECUTION_SUSPENDED
    reason: str | None = None


@dataclass(slots=True, kw_only=True)
class ExecutionResumedEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.EXECUTION_RESUMED
    reason: str | None = None


@dataclass(slots=True, kw_only=True)
class TaskScheduledEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.TASK_SCHEDULED
    name: str
    version: str | None = None
    input: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class TaskCompletedEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.TASK_COMPLETED
    task_scheduled_id: int
    result: str | None = None


@dataclass(slots=True, kw_only=True)
class TaskFailedEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.TASK_FAILED
    task_scheduled_id: int
    reason: str | None = None
    details: str | None = None
    failure_details: FailureDetails | None = None


@dataclass(slots=True, kw_only=True)
class SubOrchestrationInstanceCreatedEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.SUB_ORCHESTRATION_INSTANCE_CREATED
    name: str
    instance_id: str
    version: str | None = None
    input: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class SubOrchestrationInstanceCompletedEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED
    task_scheduled_id: int
    result: str | None = None


@dataclass(slots=True, kw_only=True)
class SubOrchestrationInstanceFailedEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.SUB_ORCHESTRATION_INSTANCE_FAILED
    task_scheduled_id: int
    reason: str | None = None
    details: str | None = None
    failure_details: FailureDetails | None = None


@dataclass(slots=True, kw_only=True)
class TimerCreatedEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.TIMER_CREATED
    fire_at: datetime


@dataclass(slots=True, kw_only=True)
class TimerFiredEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.TIMER_FIRED
    timer_id: int
    fire_at: datetime


@dataclass(slots=True, kw_only=True)
class OrchestratorStartedEvent(HistoryEvent):
    """Opens an episode; its timestamp is the orchestration's ``current_utc_datetime``."""

    event_type: ClassVar[EventType] = EventType.ORCHESTRATOR_STARTED


@dataclass(slots=True, kw_only=True)
class OrchestratorCompletedEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.ORCHESTRATOR_COMPLETED


@dataclass(slots=True, kw_only=True)
class EventSentEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.EVENT_SENT
    instance_id: str
    name: str
    input: str | None = None


@dataclass(slots=True, kw_only=True)
class EventRaisedEvent(HistoryEvent):
    """``message_id`` is the transport id the event arrived with; it makes redelivery detectable."""

    event_type: ClassVar[EventType] = EventType.EVENT_RAISED
    name: str
    input: str | None = None
    message_id: str | None = None


@dataclass(slots=True, kw_only=True)
class GenericEvent(HistoryEvent):
    event_type: ClassVar[EventType] = EventType.GENERIC_EVENT
    data: str | None = None


@dataclass(slots=True, kw_only=True)
class HistoryStateEvent(HistoryEvent):
    """A state snapshot riding on the tracking queue; never part of an orchestration's own history."""

    event_type: ClassVar[EventType] = EventType.HISTORY_STATE
    state: OrchestrationState


EVENT_CLASSES: dict[EventType, type[HistoryEvent]] = {
    cls.event_type: cls
    for cls in (
        ExecutionStartedEvent,
        ExecutionCompletedEvent,
        ContinueAsNewEvent,
        ExecutionTerminatedEvent,
        ExecutionSuspendedEvent,
        ExecutionResumedEvent,
        TaskScheduledEvent,
        TaskCompletedEvent,
        TaskFailedEvent,
        SubOrchestrationInstanceCreatedEvent,
        SubOrchestrationInstanceCompletedEvent,
        SubOrchestrationInstanceFailedEvent,
        TimerCreatedEvent,
        TimerFiredEvent,
        OrchestratorStartedEvent,
        OrchestratorCompletedEvent,
        EventSentEvent,
        EventRaisedEvent,
        GenericEvent,
        HistoryStateEvent,
    )
}
"""Every event class by its type; ``EXECUTION_FAILED`` (unused in DTF) and ``EXECUTION_REWOUND`` (rewind is
not supported) have no class."""
