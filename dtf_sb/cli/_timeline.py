"""A readable timeline of an orchestration's history: what happened, when, and how long it took."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["TimelineRow", "timeline"]

# Events whose completion names the event that started the work: (field holding the scheduled id).
_COMPLETIONS = {
    "TaskCompletedEvent": "task_scheduled_id",
    "TaskFailedEvent": "task_scheduled_id",
    "SubOrchestrationInstanceCompletedEvent": "task_scheduled_id",
    "SubOrchestrationInstanceFailedEvent": "task_scheduled_id",
    "TimerFiredEvent": "timer_id",
}


@dataclass(frozen=True)
class TimelineRow:
    timestamp: datetime
    offset_seconds: float
    event: str
    event_id: int
    detail: str
    duration_seconds: float | None


def _short(value: Any, limit: int = 48) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _detail(event: Any) -> str:
    kind = type(event).__name__
    for attr in ("name", "instance_id", "reason", "result", "input"):
        value = getattr(event, attr, None)
        if value not in (None, "", {}):
            if kind == "TimerCreatedEvent":
                break
            return f"{attr}={_short(value)}"
    fire_at = getattr(event, "fire_at", None)
    if fire_at is not None:
        return f"fire_at={fire_at.isoformat()}"
    status = getattr(event, "orchestration_status", None)
    if status is not None:
        return f"status={getattr(status, 'name', status)}"
    return ""


def timeline(events: list[Any]) -> list[TimelineRow]:
    """One row per event; completions carry the time since the event that scheduled them."""
    if not events:
        return []
    # The client stamps ExecutionStarted before the first episode's OrchestratorStarted: measure from it.
    start = min(e.timestamp for e in events)
    scheduled: dict[int, datetime] = {}
    rows: list[TimelineRow] = []
    for event in events:
        kind = type(event).__name__
        duration = None
        link = _COMPLETIONS.get(kind)
        if link is not None:
            began = scheduled.get(getattr(event, link, -2))
            if began is not None:
                duration = (event.timestamp - began).total_seconds()
        elif event.event_id >= 0:
            scheduled[event.event_id] = event.timestamp
        rows.append(
            TimelineRow(
                timestamp=event.timestamp,
                offset_seconds=(event.timestamp - start).total_seconds(),
                event=kind.removesuffix("Event"),
                event_id=event.event_id,
                detail=_detail(event),
                duration_seconds=duration,
            )
        )
    return rows
