"""Rewind: a Failed instance retries what failed and carries on, as Durable Functions' rewind does.

Durable Functions rewrites the failed execution's history in place. dtf-sb's tracked history is an
append-only log whose state snapshots are versioned by history length, and every outbound message id
is derived from (instance, execution, event id, kind), so re-sending "task 3" of the same execution
would be dropped by duplicate detection as a repeat of the failed attempt. A rewind therefore starts
a **new execution** of the same instance (Temporal's reset works the same way) whose history is the
failed one with the failure taken out:

* the closing ``ExecutionCompleted`` (Failed) and everything after it is removed;
* a failed activity or sub-orchestration whose failure was the last thing the orchestrator reacted
  to (no decision was recorded after it) loses its scheduling and failure events, so replay makes
  the same call again and it is scheduled anew. A failure followed by later decisions was handled by
  the orchestrator code (a ``try``/``except``, a retry policy's next attempt) and stays;
* activities, sub-orchestrations and timers that never got an answer are scheduled again too: their
  answers would be addressed to the old execution;
* ``ExecutionStarted`` gets the new execution id and the rewind time as its timestamp, so the new
  execution is the instance's latest.

Replay of the rewritten history makes every kept decision again in the same order with the same ids;
the removed ones remain pending and are committed as new decisions in the rewind's episode. The old
execution stays in the instance store as the record of what happened.

Sub-orchestrations are retried by starting them again (a new child instance when the id was derived,
which is the default), not by rewinding the failed child. A child started with an explicit instance
id that was still running when the parent failed cannot be started again (it is running), so its
``SubOrchestrationInstanceCreated`` stays; its result, addressed to the old execution, is accepted by
the new one because the new execution's history names the execution it was rewound from
(:func:`rewound_marker`, :func:`rewound_from`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from dtf_sb.core.codec import decode_event, encode_event
from dtf_sb.core.errors import DurableTaskError
from dtf_sb.core.history import (
    ContinueAsNewEvent,
    EventSentEvent,
    ExecutionCompletedEvent,
    ExecutionStartedEvent,
    GenericEvent,
    HistoryEvent,
    SubOrchestrationInstanceCompletedEvent,
    SubOrchestrationInstanceCreatedEvent,
    SubOrchestrationInstanceFailedEvent,
    TaskCompletedEvent,
    TaskFailedEvent,
    TaskScheduledEvent,
    TimerCreatedEvent,
    TimerFiredEvent,
)
from dtf_sb.core.messages import OrchestrationInstance
from dtf_sb.core.status import OrchestrationStatus

__all__ = [
    "REWIND_REQUEST_KIND",
    "REWOUND_MARKER_KIND",
    "RewindError",
    "RewindPlan",
    "RewindRequest",
    "decode_rewind_request",
    "encode_rewind_request",
    "rewind_history",
    "rewound_from",
    "rewound_marker",
]

REWIND_REQUEST_KIND = "dtf_sb.rewind"
REWOUND_MARKER_KIND = "dtf_sb.rewound"
_REQUEST_VERSION = 1

_DECISIONS = (TaskScheduledEvent, SubOrchestrationInstanceCreatedEvent, TimerCreatedEvent, EventSentEvent)
_TASK_RESULTS = (
    TaskCompletedEvent,
    TaskFailedEvent,
    SubOrchestrationInstanceCompletedEvent,
    SubOrchestrationInstanceFailedEvent,
)
_FAILURES = (TaskFailedEvent, SubOrchestrationInstanceFailedEvent)


class RewindError(DurableTaskError, ValueError):
    """The instance cannot be rewound (not Failed, or its history is not available)."""


@dataclass(frozen=True)
class RewindPlan:
    """The new execution's history and what replaying it will schedule again."""

    events: list[HistoryEvent]
    execution_id: str
    previous_execution_id: str
    retried: list[int]
    """Event ids of failed activities and sub-orchestrations that will run again."""
    rescheduled: list[int]
    """Event ids of activities, sub-orchestrations and timers that never got an answer."""


@dataclass(frozen=True)
class RewindRequest:
    """What a client sends through the instance's session to rewind it."""

    instance_id: str
    previous_execution_id: str
    execution_id: str
    reason: str | None
    events: list[HistoryEvent]


def rewind_history(events: Sequence[HistoryEvent], *, new_execution_id: str, now: datetime) -> RewindPlan:
    """Rewrite a Failed execution's history into the start of a new execution (see module docs)."""
    started = next((e for e in events if isinstance(e, ExecutionStartedEvent)), None)
    if started is None:
        raise RewindError("the history has no ExecutionStarted event; nothing to rewind")
    closing = next(
        (i for i, e in enumerate(events) if isinstance(e, ExecutionCompletedEvent)),
        None,
    )
    if closing is None:
        raise RewindError("the execution has not finished; only a Failed instance can be rewound")
    final = events[closing]
    assert isinstance(final, ExecutionCompletedEvent)
    if isinstance(final, ContinueAsNewEvent) or final.orchestration_status is not OrchestrationStatus.FAILED:
        status = final.orchestration_status.name.title()
        raise RewindError(f"the execution is {status}; only a Failed instance can be rewound")

    body = list(events[:closing])
    decisions: dict[tuple[str, int], int] = {}
    last_decision = -1
    for index, event in enumerate(body):
        if isinstance(event, _DECISIONS):
            key = "timer" if isinstance(event, TimerCreatedEvent) else "task"
            decisions[(key, event.event_id)] = index
            last_decision = index
    answered: dict[tuple[str, int], int] = {}
    for index, event in enumerate(body):
        if isinstance(event, _TASK_RESULTS):
            answered.setdefault(("task", event.task_scheduled_id), index)
        elif isinstance(event, TimerFiredEvent):
            answered.setdefault(("timer", event.timer_id), index)

    drop: set[int] = set()
    retried: list[int] = []
    rescheduled: list[int] = []
    for (key, event_id), index in decisions.items():
        decision = body[index]
        if isinstance(decision, EventSentEvent):
            continue
        answer = answered.get((key, event_id))
        if answer is None:
            if _started_explicitly(decision, started):
                continue  # still running under its own id: its answer is accepted from the old execution
            drop.add(index)
            rescheduled.append(event_id)
        elif isinstance(body[answer], _FAILURES) and answer > last_decision:
            drop.update((index, answer))
            retried.append(event_id)

    rewritten: list[HistoryEvent] = []
    for index, event in enumerate(body):
        if index in drop:
            continue
        if event is started:
            event = dataclasses.replace(
                started,
                timestamp=now,
                orchestration_instance=OrchestrationInstance(
                    started.orchestration_instance.instance_id, new_execution_id
                ),
            )
        rewritten.append(event)
    return RewindPlan(
        events=rewritten,
        execution_id=new_execution_id,
        previous_execution_id=started.orchestration_instance.execution_id or "",
        retried=sorted(retried),
        rescheduled=sorted(rescheduled),
    )


def _started_explicitly(decision: HistoryEvent, started: ExecutionStartedEvent) -> bool:
    """A sub-orchestration whose instance id was given by the code, not derived from the execution."""
    if not isinstance(decision, SubOrchestrationInstanceCreatedEvent):
        return False
    parent = started.orchestration_instance
    derived = f"{parent.execution_id or parent.instance_id}:{decision.event_id}"
    return decision.instance_id != derived


def rewound_marker(previous_execution_id: str, reason: str | None) -> GenericEvent:
    """The event that opens a rewound execution's first episode and names where it came from."""
    document = {"kind": REWOUND_MARKER_KIND, "from": previous_execution_id, "reason": reason}
    return GenericEvent(data=orjson.dumps(document).decode("utf-8"))


def rewound_from(events: Sequence[HistoryEvent]) -> set[str]:
    """Executions this history was rewound from; their late answers belong to it."""
    found: set[str] = set()
    for event in events:
        if isinstance(event, GenericEvent) and event.data and REWOUND_MARKER_KIND in event.data:
            try:
                document = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(document, dict) and document.get("kind") == REWOUND_MARKER_KIND:
                found.add(str(document.get("from")))
    return found


def encode_rewind_request(request: RewindRequest) -> GenericEvent:
    """The request as the event a client sends to the instance's session."""
    document = {
        "kind": REWIND_REQUEST_KIND,
        "v": _REQUEST_VERSION,
        "instance": request.instance_id,
        "from": request.previous_execution_id,
        "execution": request.execution_id,
        "reason": request.reason,
        "events": [encode_event(e).decode("utf-8") for e in request.events],
    }
    return GenericEvent(data=orjson.dumps(document).decode("utf-8"))


def decode_rewind_request(event: HistoryEvent) -> RewindRequest | None:
    """The rewind request an event carries, or None for any other event (cheap for non-generic ones)."""
    if not isinstance(event, GenericEvent) or not event.data or REWIND_REQUEST_KIND not in event.data:
        return None
    try:
        document = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or document.get("kind") != REWIND_REQUEST_KIND:
        return None
    if document.get("v") != _REQUEST_VERSION:
        raise RewindError(f"rewind request format version {document.get('v')!r} is not supported")
    return RewindRequest(
        instance_id=str(document["instance"]),
        previous_execution_id=str(document["from"]),
        execution_id=str(document["execution"]),
        reason=document.get("reason"),
        events=[decode_event(line) for line in document["events"]],
    )
