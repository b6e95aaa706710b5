"""How decisions map to the history events that record them, and how both are named in errors."""

from __future__ import annotations

from datetime import datetime

from dtf_sb.core.actions import (
    CompleteOrchestrationAction,
    CreateSubOrchestrationAction,
    CreateTimerAction,
    OrchestratorAction,
    ScheduleTaskAction,
    SendEventAction,
)
from dtf_sb.core.history import (
    ContinueAsNewEvent,
    EventSentEvent,
    ExecutionCompletedEvent,
    HistoryEvent,
    SubOrchestrationInstanceCreatedEvent,
    TaskScheduledEvent,
    TimerCreatedEvent,
)
from dtf_sb.core.status import OrchestrationStatus


def describe_action(action: OrchestratorAction | None) -> str:
    if action is None:
        return "nothing"
    if isinstance(action, ScheduleTaskAction):
        return f"activity task {action.name!r}"
    if isinstance(action, CreateSubOrchestrationAction):
        return f"sub-orchestration task {action.name!r}"
    if isinstance(action, CreateTimerAction):
        return "timer task"
    if isinstance(action, SendEventAction):
        return f"send-event {action.name!r}"
    return f"orchestration completion ({action.status.name.lower()})"  # type: ignore[attr-defined]


def describe_event(event: HistoryEvent) -> str:
    if isinstance(event, TaskScheduledEvent):
        return f"activity task {event.name!r}"
    if isinstance(event, SubOrchestrationInstanceCreatedEvent):
        return f"sub-orchestration task {event.name!r}"
    if isinstance(event, TimerCreatedEvent):
        return "timer task"
    if isinstance(event, EventSentEvent):
        return f"send-event {event.name!r}"
    return type(event).__name__


def history_event_for(action: OrchestratorAction, timestamp: datetime) -> HistoryEvent:
    if isinstance(action, ScheduleTaskAction):
        return TaskScheduledEvent(
            event_id=action.id,
            timestamp=timestamp,
            name=action.name,
            version=action.version,
            input=action.input,
            tags=dict(action.tags),
        )
    if isinstance(action, CreateTimerAction):
        return TimerCreatedEvent(event_id=action.id, timestamp=timestamp, fire_at=action.fire_at)
    if isinstance(action, CreateSubOrchestrationAction):
        return SubOrchestrationInstanceCreatedEvent(
            event_id=action.id,
            timestamp=timestamp,
            name=action.name,
            instance_id=action.instance_id,
            version=action.version,
            input=action.input,
            tags=dict(action.tags),
        )
    if isinstance(action, SendEventAction):
        return EventSentEvent(
            event_id=action.id,
            timestamp=timestamp,
            instance_id=action.instance_id,
            name=action.name,
            input=action.data,
        )
    assert isinstance(action, CompleteOrchestrationAction)
    if action.status is OrchestrationStatus.CONTINUED_AS_NEW:
        return ContinueAsNewEvent(event_id=action.id, timestamp=timestamp, result=action.result)
    return ExecutionCompletedEvent(
        event_id=action.id,
        timestamp=timestamp,
        orchestration_status=action.status,
        result=action.result,
        failure_details=action.failure_details,
    )


MATCHING_ACTION: dict[type, type] = {
    TaskScheduledEvent: ScheduleTaskAction,
    TimerCreatedEvent: CreateTimerAction,
    SubOrchestrationInstanceCreatedEvent: CreateSubOrchestrationAction,
    EventSentEvent: SendEventAction,
}
