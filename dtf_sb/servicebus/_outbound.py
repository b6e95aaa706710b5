"""Turning an episode's decisions into messages, each with a deterministic id.

Every outbound message id is a function of (instance, execution, event id, kind), so the same
decision re-derived by a replay after a crash produces the same id and the broker's duplicate
detection drops the repeat. Starts of sub-orchestrations use DTF's start-message id
``{instance}_{execution}`` (with the child's deterministically derived execution id), the same id a
client start would carry, so every path that starts an execution de-duplicates the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ..core.actions import (
    CompleteOrchestrationAction,
    CreateSubOrchestrationAction,
    CreateTimerAction,
    OrchestratorAction,
    ScheduleTaskAction,
    SendEventAction,
)
from ..core.codec import encode_task_message
from ..core.history import (
    EventRaisedEvent,
    ExecutionStartedEvent,
    ExecutionTerminatedEvent,
    SubOrchestrationInstanceCompletedEvent,
    SubOrchestrationInstanceFailedEvent,
    TaskScheduledEvent,
    TimerFiredEvent,
)
from ..core.messages import OrchestrationInstance, ParentInstance, TaskMessage
from ..core.state import OrchestrationRuntimeState
from ..core.status import OrchestrationStatus
from ..options import TaskHubOptions
from .messages import deterministic_message_id
from .session_state import TrackingRecord

__all__ = [
    "FIRE_AND_FORGET_TAG",
    "Outbound",
    "build_action_messages",
    "start_message_id",
    "terminate_self_message",
    "tracking_message",
]

FIRE_AND_FORGET_TAG = "FireAndForget"


@dataclass(frozen=True)
class Outbound:
    """One message to send: encoded body plus the envelope facts."""

    queue: str
    body: bytes
    message_id: str
    session_id: str | None
    instance_id: str
    execution_id: str | None
    kind: str
    scheduled_enqueue_time: datetime | None = None


def start_message_id(instance_id: str, execution_id: str | None) -> str:
    """DTF's id for ExecutionStarted messages (client starts, sub-orchestrations, jump-start re-sends)."""
    text = f"{instance_id}_{execution_id or ''}"
    if len(text) <= 128:
        return text
    return deterministic_message_id(instance_id, execution_id, "start", "start")


def _encode(message: TaskMessage) -> bytes:
    # Envelope compression decides about gzip once for the whole body; the codec stays plain here.
    return encode_task_message(message, compress=False)


def build_action_messages(
    options: TaskHubOptions,
    runtime: OrchestrationRuntimeState,
    actions: Sequence[OrchestratorAction],
) -> list[Outbound]:
    """Messages for one execution's actions (activities, timers, children, events, parent result)."""
    instance_id = runtime.instance_id or ""
    execution_id = runtime.execution_id
    me = OrchestrationInstance(instance_id, execution_id)
    tags = runtime.tags
    out: list[Outbound] = []
    for action in actions:
        if isinstance(action, ScheduleTaskAction):
            merged = {**tags, **action.tags}
            event = TaskScheduledEvent(
                event_id=action.id, name=action.name, version=action.version, input=action.input, tags=merged
            )
            out.append(
                Outbound(
                    queue=options.worker_queue,
                    body=_encode(TaskMessage(event=event, orchestration_instance=me, tags=merged)),
                    message_id=deterministic_message_id(instance_id, execution_id, action.id, "task"),
                    session_id=None,
                    instance_id=instance_id,
                    execution_id=execution_id,
                    kind="task",
                )
            )
        elif isinstance(action, CreateTimerAction):
            event = TimerFiredEvent(timer_id=action.id, fire_at=action.fire_at)
            out.append(
                Outbound(
                    queue=options.orchestrator_queue,
                    body=_encode(TaskMessage(event=event, orchestration_instance=me)),
                    message_id=deterministic_message_id(instance_id, execution_id, action.id, "timer"),
                    session_id=instance_id,
                    instance_id=instance_id,
                    execution_id=execution_id,
                    kind="timer",
                    scheduled_enqueue_time=action.fire_at,
                )
            )
        elif isinstance(action, CreateSubOrchestrationAction):
            child = OrchestrationInstance(action.instance_id, action.execution_id)
            child_tags = {**{k: v for k, v in tags.items() if k != FIRE_AND_FORGET_TAG}, **action.tags}
            event = ExecutionStartedEvent(
                name=action.name,
                version=action.version,
                input=action.input,
                orchestration_instance=child,
                parent_instance=ParentInstance(
                    name=runtime.name or "",
                    version=runtime.version,
                    task_schedule_id=action.id,
                    orchestration_instance=me,
                ),
                tags=child_tags,
            )
            out.append(
                Outbound(
                    queue=options.orchestrator_queue,
                    body=_encode(TaskMessage(event=event, orchestration_instance=child, tags=child_tags)),
                    message_id=start_message_id(action.instance_id, action.execution_id),
                    session_id=action.instance_id,
                    instance_id=action.instance_id,
                    execution_id=action.execution_id,
                    kind="suborchestration",
                )
            )
        elif isinstance(action, SendEventAction):
            message_id = deterministic_message_id(instance_id, execution_id, action.id, "event")
            event = EventRaisedEvent(name=action.name, input=action.data, message_id=message_id)
            target = OrchestrationInstance(action.instance_id, None)
            out.append(
                Outbound(
                    queue=options.orchestrator_queue,
                    body=_encode(TaskMessage(event=event, orchestration_instance=target)),
                    message_id=message_id,
                    session_id=action.instance_id,
                    instance_id=action.instance_id,
                    execution_id=None,
                    kind="event",
                )
            )
        elif isinstance(action, CompleteOrchestrationAction):
            parent_message = _parent_result(options, runtime, action)
            if parent_message is not None:
                out.append(parent_message)
    return out


def _parent_result(
    options: TaskHubOptions, runtime: OrchestrationRuntimeState, action: CompleteOrchestrationAction
) -> Outbound | None:
    parent = runtime.parent_instance
    if parent is None or action.status is OrchestrationStatus.CONTINUED_AS_NEW:
        return None
    if runtime.tags.get(FIRE_AND_FORGET_TAG, "").lower() in ("true", "1", "yes"):
        return None
    if action.status is OrchestrationStatus.COMPLETED:
        event: SubOrchestrationInstanceCompletedEvent | SubOrchestrationInstanceFailedEvent = (
            SubOrchestrationInstanceCompletedEvent(
                task_scheduled_id=parent.task_schedule_id, result=action.result
            )
        )
    else:
        # Failed and Terminated both reach the parent as a failure (DTF 7.11).
        details = action.failure_details
        reason = details.message if details is not None else action.result
        event = SubOrchestrationInstanceFailedEvent(
            task_scheduled_id=parent.task_schedule_id, reason=reason, failure_details=details
        )
    instance_id = runtime.instance_id or ""
    return Outbound(
        queue=options.orchestrator_queue,
        body=_encode(TaskMessage(event=event, orchestration_instance=parent.orchestration_instance)),
        message_id=deterministic_message_id(instance_id, runtime.execution_id, action.id, "result"),
        session_id=parent.orchestration_instance.instance_id,
        instance_id=parent.orchestration_instance.instance_id,
        execution_id=parent.orchestration_instance.execution_id,
        kind="result",
    )


def terminate_self_message(
    options: TaskHubOptions, instance_id: str, execution_id: str | None, reason: str, at_index: int
) -> Outbound:
    """A terminate addressed to the instance itself (used when its history grew past the limit)."""
    event = ExecutionTerminatedEvent(input=reason)
    return Outbound(
        queue=options.orchestrator_queue,
        body=_encode(
            TaskMessage(event=event, orchestration_instance=OrchestrationInstance(instance_id, execution_id))
        ),
        message_id=deterministic_message_id(instance_id, execution_id, at_index, "size-terminate"),
        session_id=instance_id,
        instance_id=instance_id,
        execution_id=execution_id,
        kind="terminate",
    )


def tracking_message(
    options: TaskHubOptions, record: TrackingRecord, body: bytes, message_id: str
) -> Outbound:
    return Outbound(
        queue=options.tracking_queue,
        body=body,
        message_id=message_id,
        session_id=record.instance_id,
        instance_id=record.instance_id,
        execution_id=record.execution_id,
        kind="tracking",
    )
