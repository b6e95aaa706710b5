"""What activity code receives, and how an activity's outcome becomes a history event.

The worker runs activities (they may do I/O); the core only defines the context they get and the exact
events their outcome turns into, so every transport reports results the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dtf_sb.core.codec import decode_payload, encode_payload
from dtf_sb.core.errors import FailureDetails, failure_details_from_exception
from dtf_sb.core.history import TaskCompletedEvent, TaskFailedEvent, utcnow
from dtf_sb.core.typed import convert, input_hint


@dataclass(frozen=True, slots=True)
class ActivityContext:
    """``orchestration_id`` is the calling instance; ``task_id`` the TaskScheduled event id (stable across
    retries of delivery, so it is a natural idempotency key)."""

    orchestration_id: str
    task_id: int
    name: str = ""
    execution_id: str | None = None


def _wants_context(fn: Callable[..., Any]) -> int:
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return 2
    return min(len(params), 2)


def invoke_activity(fn: Callable[..., Any], ctx: ActivityContext, encoded_input: str | None) -> Any:
    """Call ``fn`` as ``fn(ctx, input)``, ``fn(input)`` or ``fn()`` by its arity.

    The input is rebuilt as the parameter's annotated dataclass/datetime type when it has one. Returns
    the value, or the coroutine for ``async def`` activities (the caller awaits it).
    """
    value = convert(decode_payload(encoded_input), input_hint(fn))
    arity = _wants_context(fn)
    if arity >= 2:
        return fn(ctx, value)
    if arity == 1:
        return fn(value)
    return fn()


def task_completed_event(
    task_scheduled_id: int, value: Any, *, timestamp: datetime | None = None
) -> TaskCompletedEvent:
    """The event reporting a successful activity (``value`` is encoded here)."""
    return TaskCompletedEvent(
        task_scheduled_id=task_scheduled_id, result=encode_payload(value), timestamp=timestamp or utcnow()
    )


def task_failed_event(
    task_scheduled_id: int, error: BaseException | FailureDetails, *, timestamp: datetime | None = None
) -> TaskFailedEvent:
    """The event reporting a failed activity; ``NonRetriableError`` marks the failure non-retriable."""
    details = error if isinstance(error, FailureDetails) else failure_details_from_exception(error)
    return TaskFailedEvent(
        task_scheduled_id=task_scheduled_id,
        reason=details.message,
        failure_details=details,
        timestamp=timestamp or utcnow(),
    )
