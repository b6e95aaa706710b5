"""How the CLI shows things: the history timeline, durations, tables and JSON."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from dtf_sb.cli._output import Progress, emit_json, fmt_duration, fmt_time, jsonable, print_table
from dtf_sb.cli._timeline import timeline
from dtf_sb.core.history import (
    ExecutionCompletedEvent,
    ExecutionStartedEvent,
    OrchestratorStartedEvent,
    TaskCompletedEvent,
    TaskFailedEvent,
    TaskScheduledEvent,
    TimerCreatedEvent,
    TimerFiredEvent,
)
from dtf_sb.core.messages import OrchestrationInstance
from dtf_sb.core.status import OrchestrationStatus

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def history() -> list[object]:
    return [
        ExecutionStartedEvent(
            timestamp=at(0), name="greet", orchestration_instance=OrchestrationInstance("i", "e")
        ),
        OrchestratorStartedEvent(timestamp=at(0.2)),
        TaskScheduledEvent(event_id=0, timestamp=at(0.2), name="say", input='"Tokyo"'),
        TimerCreatedEvent(event_id=1, timestamp=at(0.2), fire_at=at(30)),
        TaskCompletedEvent(timestamp=at(1.45), task_scheduled_id=0, result='"Hello Tokyo!"'),
        TaskScheduledEvent(event_id=2, timestamp=at(1.5), name="charge"),
        TaskFailedEvent(timestamp=at(3.5), task_scheduled_id=2, reason="card declined"),
        TimerFiredEvent(timestamp=at(30.2), timer_id=1, fire_at=at(30)),
        ExecutionCompletedEvent(
            event_id=3, timestamp=at(30.3), orchestration_status=OrchestrationStatus.FAILED
        ),
    ]


def test_timeline_links_each_answer_to_what_it_answers() -> None:
    rows = timeline(history())
    assert [r.event for r in rows] == [
        "ExecutionStarted", "OrchestratorStarted", "TaskScheduled", "TimerCreated", "TaskCompleted",
        "TaskScheduled", "TaskFailed", "TimerFired", "ExecutionCompleted",
    ]  # fmt: skip
    durations = {(r.event, r.event_id): r.duration_seconds for r in rows if r.duration_seconds is not None}
    assert durations == {("TaskCompleted", -1): 1.25, ("TaskFailed", -1): 2.0, ("TimerFired", -1): 30.0}
    assert [r.offset_seconds for r in rows][:3] == [0.0, 0.2, 0.2]
    details = {r.event + str(r.event_id): r.detail for r in rows}
    assert details["TaskScheduled0"] == "name=say"
    assert details["TimerCreated1"] == f"fire_at={at(30).isoformat()}"
    assert details["TaskFailed-1"] == "reason=card declined"
    assert details["ExecutionCompleted3"] == "status=FAILED"


def test_timeline_of_nothing_is_empty_and_long_details_are_cut() -> None:
    assert timeline([]) == []
    [row] = timeline([TaskScheduledEvent(event_id=0, timestamp=T0, name="n" * 100)])
    assert row.detail == "name=" + "n" * 45 + "..."


def test_durations_read_naturally() -> None:
    assert [fmt_duration(s) for s in (None, 0.0042, 0.5, 1.25, 119.0, 125, 3 * 3600 + 61)] == [
        "-", "4ms", "500ms", "1.25s", "119.00s", "2m05s", "3h01m01s",
    ]  # fmt: skip
    assert fmt_time(datetime(2026, 1, 2, 3, 4, 5, 678900, tzinfo=timezone.utc)) == "2026-01-02 03:04:05.678Z"
    assert fmt_time(None) == "-"


def test_tables_align_columns_and_say_when_empty() -> None:
    out = io.StringIO()
    assert print_table(("id", "status"), [["a", OrchestrationStatus.RUNNING], ["bbbb", None]], out=out) == 2
    assert out.getvalue().splitlines() == ["ID    STATUS", "a     RUNNING", "bbbb  -"]
    empty = io.StringIO()
    print_table(("id",), [], out=empty)
    assert empty.getvalue().splitlines() == ["ID", "(none)"]


@dataclass
class Row:
    when: datetime
    status: OrchestrationStatus
    data: bytes
    tags: dict[str, int]


def test_json_output_is_plain_json() -> None:
    value = jsonable([Row(T0, OrchestrationStatus.COMPLETED, b"raw", {"a": 1}), timedelta(seconds=1.5)])
    assert value == [
        {"when": T0.isoformat(), "status": "COMPLETED", "data": "raw", "tags": {"a": 1}},
        1.5,
    ]
    out = io.StringIO()
    emit_json({"t": T0}, out=out)
    assert json.loads(out.getvalue()) == {"t": T0.isoformat()}


def test_progress_counts_quietly_when_not_a_terminal() -> None:
    progress = Progress("purged", enabled=False)
    progress.advance()
    progress.advance(3)
    progress.done()
    assert progress.count == 4
