"""Operator controls that travel through an instance's session: rewind and recursive terminate.

Both are decided where every other change to an instance is decided, in the orchestration
dispatcher's episode, so they are ordered with the instance's other messages, committed by the same
protocol and safe against crashes and redelivery like any episode. The dispatcher calls two hooks:

* :func:`apply_rewinds` before the episode runs. A rewind request (see ``core.rewind``) arriving at
  an instance whose session holds no running execution installs the rewritten history as the session
  state of a new execution (not yet tracked, so the episode's tracking records carry all of it) and
  becomes a plain ``GenericEvent`` of that execution, which gives the episode something to commit.
  Replaying the rewritten history leaves the retried calls pending; the episode schedules them. A
  request that finds a running execution (an earlier rewind got there first, or the instance was
  restarted) is stale and is dropped. Answers addressed to an execution the loaded one was rewound
  from (a child that was still running, a late activity result) are readdressed to it.
* :func:`terminate_children` after the episode was decided. When the instance was terminated by a
  recursive terminate in this episode, a terminate (recursive too) goes to every sub-orchestration it
  created that has not reported back, with a deterministic message id, before the state is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..core.executor import OrchestratorResult
from ..core.history import (
    ExecutionStartedEvent,
    ExecutionTerminatedEvent,
    GenericEvent,
    HistoryEvent,
    SubOrchestrationInstanceCompletedEvent,
    SubOrchestrationInstanceCreatedEvent,
    SubOrchestrationInstanceFailedEvent,
    TaskCompletedEvent,
    TaskFailedEvent,
    TimerFiredEvent,
)
from ..core.messages import OrchestrationInstance, TaskMessage
from ..core.rewind import RewindError, decode_rewind_request, rewound_from, rewound_marker
from ..core.status import OrchestrationStatus
from ..options import TaskHubOptions
from ._outbound import Outbound
from .messages import deterministic_message_id
from .session_state import SessionState

__all__ = [
    "RECURSIVE_TERMINATE_TAG",
    "apply_rewinds",
    "terminate_children",
    "terminate_message",
]

_log = logging.getLogger("dtf_sb.servicebus.control")

#: Tag on a terminate ``TaskMessage`` asking the instance to terminate its running children too.
RECURSIVE_TERMINATE_TAG = "dtf_sb.terminate.recursive"
_STALE_EXECUTION = "rewind-stale"
_ANSWERS = (
    TaskCompletedEvent,
    TaskFailedEvent,
    SubOrchestrationInstanceCompletedEvent,
    SubOrchestrationInstanceFailedEvent,
    TimerFiredEvent,
)


def _has_running_execution(loaded: SessionState | None) -> bool:
    if loaded is None or not loaded.events:
        return False
    runtime = loaded.runtime_state()
    return runtime.execution_started_event is not None and not runtime.status.is_terminal


def apply_rewinds(
    loaded: SessionState | None, decoded: list[tuple[Any, TaskMessage]]
) -> tuple[SessionState | None, list[tuple[Any, TaskMessage]]]:
    """Install the rewound execution a request in this batch carries (see module docs)."""
    decoded = _retarget_answers(loaded, decoded)
    if not any(isinstance(t.event, GenericEvent) for _, t in decoded):
        return loaded, decoded
    out: list[tuple[Any, TaskMessage]] = []
    for message, task_message in decoded:
        try:
            request = decode_rewind_request(task_message.event)
        except RewindError as exc:
            _log.error("ignoring rewind request %s: %s", getattr(message, "message_id", "?"), exc)
            request = None
            task_message = _stale(task_message)
        if request is None:
            out.append((message, task_message))
            continue
        if _has_running_execution(loaded):
            _log.warning(
                "instance %s: dropping a rewind request, execution %s is running",
                request.instance_id,
                loaded.runtime_state().execution_id if loaded else None,
            )
            out.append((message, _stale(task_message)))
            continue
        _log.info(
            "instance %s: rewinding failed execution %s as execution %s",
            request.instance_id,
            request.previous_execution_id,
            request.execution_id,
        )
        loaded = SessionState(events=list(request.events), tracked_through=0)
        marker = rewound_marker(request.previous_execution_id, request.reason)
        out.append(
            (
                message,
                TaskMessage(
                    event=marker,
                    orchestration_instance=OrchestrationInstance(request.instance_id, request.execution_id),
                ),
            )
        )
    return loaded, out


def _retarget_answers(
    loaded: SessionState | None, decoded: list[tuple[Any, TaskMessage]]
) -> list[tuple[Any, TaskMessage]]:
    """Answers addressed to an execution this one was rewound from belong to this one.

    Only looked into when a message names another execution than the loaded one, which is rare, so
    the history scan costs nothing on the common path.
    """
    if loaded is None or not loaded.events:
        return decoded
    current: str | None = None
    predecessors: set[str] | None = None
    out = decoded
    for index, (message, task_message) in enumerate(decoded):
        target = task_message.orchestration_instance.execution_id
        if not target or not isinstance(task_message.event, _ANSWERS):
            continue
        if current is None:
            current = _execution_id(loaded.events)
        if target == current:
            continue
        if predecessors is None:
            predecessors = rewound_from(loaded.events)
        if target not in predecessors:
            continue
        if out is decoded:
            out = list(decoded)
        out[index] = (
            message,
            TaskMessage(
                event=task_message.event,
                orchestration_instance=OrchestrationInstance(
                    task_message.orchestration_instance.instance_id, current
                ),
                sequence_number=task_message.sequence_number,
                tags=dict(task_message.tags),
            ),
        )
    return out


def _execution_id(events: Sequence[HistoryEvent]) -> str:
    """The loaded execution's id; its ExecutionStarted is among the first events, so this is cheap."""
    for event in events:
        if isinstance(event, ExecutionStartedEvent):
            return event.orchestration_instance.execution_id or ""
    return ""


def _stale(task_message: TaskMessage) -> TaskMessage:
    """Addressed to no execution, so the episode's de-duplication drops it (and the batch completes)."""
    return TaskMessage(
        event=task_message.event,
        orchestration_instance=OrchestrationInstance(
            task_message.orchestration_instance.instance_id, _STALE_EXECUTION
        ),
    )


def terminate_message(
    options: TaskHubOptions,
    instance_id: str,
    *,
    reason: str | None,
    message_id: str,
    recursive: bool,
) -> tuple[Outbound, TaskMessage]:
    """A terminate for ``instance_id`` (the client's and the recursive one share this shape)."""
    from ..core.codec import encode_task_message

    task_message = TaskMessage(
        event=ExecutionTerminatedEvent(input=reason),
        orchestration_instance=OrchestrationInstance(instance_id, None),
        tags={RECURSIVE_TERMINATE_TAG: "true"} if recursive else {},
    )
    outbound = Outbound(
        queue=options.orchestrator_queue,
        body=encode_task_message(task_message, compress=False),
        message_id=message_id,
        session_id=instance_id,
        instance_id=instance_id,
        execution_id=None,
        kind="terminate",
    )
    return outbound, task_message


def terminate_children(
    options: TaskHubOptions,
    plan: Any,
    result: OrchestratorResult | None,
    task_messages: Sequence[TaskMessage],
) -> Any:
    """Add recursive terminates for unfinished children to ``plan.pre_sends`` (see module docs)."""
    if result is None or result.status is not OrchestrationStatus.TERMINATED:
        return plan
    request = next(
        (
            t
            for t in task_messages
            if isinstance(t.event, ExecutionTerminatedEvent)
            and t.tags.get(RECURSIVE_TERMINATE_TAG, "").lower() == "true"
        ),
        None,
    )
    if request is None or not any(isinstance(e, ExecutionTerminatedEvent) for e in result.new_history_events):
        return plan
    runtime = result.runtime_state
    created: dict[int, str] = {}
    answered: set[int] = set()
    for event in runtime:
        if isinstance(event, SubOrchestrationInstanceCreatedEvent):
            created[event.event_id] = event.instance_id
        elif isinstance(event, (SubOrchestrationInstanceCompletedEvent, SubOrchestrationInstanceFailedEvent)):
            answered.add(event.task_scheduled_id)
    reason = request.event.input if isinstance(request.event, ExecutionTerminatedEvent) else None
    for event_id, child in sorted(created.items()):
        if event_id in answered:
            continue
        outbound, _ = terminate_message(
            options,
            child,
            reason=reason,
            message_id=deterministic_message_id(
                runtime.instance_id or "", runtime.execution_id, event_id, "terminate-child"
            ),
            recursive=True,
        )
        plan.pre_sends.append(outbound)
        _log.info("instance %s: terminating sub-orchestration %s with it", runtime.instance_id, child)
    return plan
