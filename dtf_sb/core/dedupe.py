"""Dropping what was already applied, at the executor boundary (DESIGN section 4, step 2).

Episodes are committed without transactions, so after a crash the same inputs can arrive twice. Each
event that answers something carries the identity needed to recognise a copy, and this pure function
decides, against the loaded state, which events of a batch are new. The transport calls it on
``TaskMessage`` batches (which also lets it drop messages for another execution id); the executor calls
it again on plain events, which is harmless because the rules are idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from dtf_sb.core.history import (
    EventRaisedEvent,
    ExecutionStartedEvent,
    HistoryEvent,
    SubOrchestrationInstanceCompletedEvent,
    SubOrchestrationInstanceFailedEvent,
    TaskCompletedEvent,
    TaskFailedEvent,
    TimerFiredEvent,
)
from dtf_sb.core.messages import TaskMessage
from dtf_sb.core.state import OrchestrationRuntimeState

Item = TypeVar("Item", HistoryEvent, TaskMessage)

_RESULTS = (
    TaskCompletedEvent,
    TaskFailedEvent,
    SubOrchestrationInstanceCompletedEvent,
    SubOrchestrationInstanceFailedEvent,
)

__all__ = ["filter_new_events"]


def _event(item: HistoryEvent | TaskMessage) -> HistoryEvent:
    return item.event if isinstance(item, TaskMessage) else item


def filter_new_events(
    state: OrchestrationRuntimeState, events: Sequence[Item]
) -> tuple[list[Item], list[tuple[Item, str]]]:
    """Split ``events`` into those to apply and those to drop (each with the reason).

    Dropped: a second ExecutionStarted; a task or sub-orchestration result whose id already has one; a
    timer that already fired; an EventRaised whose message id is already in history; anything for a
    completed execution; anything for an instance with no ExecutionStarted (unless the batch starts it);
    for ``TaskMessage`` items, anything addressed to another execution id. When the batch starts the
    instance, its ExecutionStarted is moved first (DTF's ``EnsureExecutionStartedIsFirst``).
    """
    kept: list[Item] = []
    dropped: list[tuple[Item, str]] = []
    if state.is_completed:
        reason = f"instance already {state.status.name.lower()}"
        return kept, [(item, reason) for item in events]

    started = state.execution_started_event is not None
    execution_id = state.execution_id
    items = list(events)
    if not started:
        first_start = next(
            (i for i, it in enumerate(items) if isinstance(_event(it), ExecutionStartedEvent)), None
        )
        if first_start is None:
            return kept, [(item, "no ExecutionStarted for this instance") for item in items]
        if first_start:
            items.insert(0, items.pop(first_start))
        start_event = _event(items[0])
        assert isinstance(start_event, ExecutionStartedEvent)
        execution_id = start_event.orchestration_instance.execution_id

    results: set[int] = set()
    timers: set[int] = set()
    message_ids: set[str] = set()
    for item in items:
        event = _event(item)
        if isinstance(item, TaskMessage) and not isinstance(event, ExecutionStartedEvent):
            target = item.orchestration_instance.execution_id
            if target and execution_id and target != execution_id:
                dropped.append((item, f"addressed to execution {target}, current is {execution_id}"))
                continue
        if isinstance(event, _RESULTS):
            key = event.task_scheduled_id
            if key in state.resolved_task_ids or key in results:
                dropped.append((item, f"duplicate result for task {key}"))
                continue
            results.add(key)
        elif isinstance(event, TimerFiredEvent):
            if event.timer_id in state.fired_timer_ids or event.timer_id in timers:
                dropped.append((item, f"timer {event.timer_id} already fired"))
                continue
            timers.add(event.timer_id)
        elif isinstance(event, EventRaisedEvent):
            mid = event.message_id
            if mid is not None:
                if mid in state.raised_message_ids or mid in message_ids:
                    dropped.append((item, f"event message {mid} already in history"))
                    continue
                message_ids.add(mid)
        elif isinstance(event, ExecutionStartedEvent):
            if started:
                dropped.append((item, "duplicate ExecutionStarted"))
                continue
            started = True
        kept.append(item)
    return kept, dropped
