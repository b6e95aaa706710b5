"""Session state: a small header plus the history tail, older history in immutable blob chunks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from runtime_fakes import MemoryPayloadStore

from dtf_sb.core.history import (
    ExecutionStartedEvent,
    HistoryEvent,
    OrchestratorCompletedEvent,
    OrchestratorStartedEvent,
    TaskCompletedEvent,
    TaskScheduledEvent,
)
from dtf_sb.core.messages import OrchestrationInstance
from dtf_sb.core.state import OrchestrationRuntimeState
from dtf_sb.core.status import OrchestrationStatus
from dtf_sb.options import TaskHubOptions
from dtf_sb.servicebus.session_state import (
    SessionStateCodec,
    SessionStateError,
    SessionTooLargeError,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def start() -> list[HistoryEvent]:
    return [
        OrchestratorStartedEvent(timestamp=T0),
        ExecutionStartedEvent(
            timestamp=T0, name="orch", orchestration_instance=OrchestrationInstance("inst", "exec"), input="1"
        ),
    ]


def step(task_id: int, payload: str) -> list[HistoryEvent]:
    at = T0 + timedelta(seconds=task_id + 1)
    return [
        TaskScheduledEvent(event_id=task_id, name="act", input=payload, timestamp=at),
        OrchestratorCompletedEvent(timestamp=at),
        OrchestratorStartedEvent(timestamp=at),
        TaskCompletedEvent(task_scheduled_id=task_id, result=payload, timestamp=at),
    ]


def runtime(events: list[HistoryEvent], custom_status: str | None = None) -> OrchestrationRuntimeState:
    return OrchestrationRuntimeState(events, custom_status=custom_status)


async def test_small_state_round_trips_without_chunks() -> None:
    store = MemoryPayloadStore()
    codec = SessionStateCodec(TaskHubOptions(hub_name="h"), store)
    events = start() + step(0, '"a"')
    data, chunks = await codec.encode_for_save(
        runtime(events, custom_status='"busy"'), previous_chunks=[], tracked_through=2
    )
    assert chunks == [] and store.blobs == {}
    header = SessionStateCodec.peek_header(data)
    assert header["v"] == 1 and header["event_count"] == len(events)
    assert header["instance_id"] == "inst" and header["execution_id"] == "exec"
    assert header["status"] == int(OrchestrationStatus.RUNNING)
    loaded = await codec.load(data)
    assert loaded is not None
    assert [type(e) for e in loaded.events] == [type(e) for e in events]
    assert loaded.custom_status == '"busy"'
    assert loaded.tracked_through == 2
    assert loaded.runtime_state().resolved_task_ids == {0}


async def test_no_state_loads_as_none() -> None:
    codec = SessionStateCodec(TaskHubOptions(hub_name="h"), None)
    assert await codec.load(None) is None
    assert await codec.load(b"") is None


async def test_overflow_moves_the_tail_into_a_chunk_and_later_saves_reuse_it() -> None:
    options = TaskHubOptions(hub_name="h", session_overflow_threshold=4000, compress_threshold=10**9)
    store = MemoryPayloadStore()
    codec = SessionStateCodec(options, store)
    events = start()
    chunks: list = []
    sizes: list[int] = []
    for task_id in range(40):
        events = events + step(task_id, '"' + "v" * 100 + f'{task_id}"')
        data, chunks = await codec.encode_for_save(runtime(events), previous_chunks=chunks, tracked_through=0)
        sizes.append(len(data))
        assert len(data) <= options.session_overflow_threshold
    assert len(chunks) >= 2, "the history should have spilled more than once"
    assert store.uploads == len(chunks), "each chunk is written once, never rewritten"
    assert [c.first_index for c in chunks] == [sum(c.count for c in chunks[:i]) for i in range(len(chunks))]
    loaded = await codec.load(data)
    assert loaded is not None and len(loaded.events) == len(events)
    assert [getattr(e, "result", None) for e in loaded.events] == [getattr(e, "result", None) for e in events]
    assert loaded.chunks == chunks
    assert loaded.total_size == len(data) + sum(c.size for c in chunks)


async def test_history_past_the_maximum_is_refused_naming_size_and_limit() -> None:
    options = TaskHubOptions(
        hub_name="h", session_overflow_threshold=1000, session_max_size=3000, compress_threshold=10**9
    )
    codec = SessionStateCodec(options, MemoryPayloadStore())
    events = start()
    chunks: list = []
    with pytest.raises(SessionTooLargeError) as caught:
        for task_id in range(100):
            events = events + step(task_id, '"' + "w" * 200 + '"')
            _, chunks = await codec.encode_for_save(
                runtime(events), previous_chunks=chunks, tracked_through=0
            )
    assert caught.value.limit == 3000 and caught.value.size > 3000
    assert "exceeded the termination threshold of 3000 bytes" in str(caught.value)


async def test_a_missing_chunk_or_wrong_counts_are_reported() -> None:
    options = TaskHubOptions(hub_name="h", session_overflow_threshold=1000, compress_threshold=10**9)
    store = MemoryPayloadStore()
    codec = SessionStateCodec(options, store)
    events = start()
    chunks: list = []
    for task_id in range(10):
        events = events + step(task_id, '"' + "z" * 100 + '"')
        data, chunks = await codec.encode_for_save(runtime(events), previous_chunks=chunks, tracked_through=0)
    assert chunks
    first = chunks[0].key
    store.blobs[first] = store.blobs[chunks[-1].key] if len(chunks) > 1 else b"{}"
    with pytest.raises(SessionStateError):
        await codec.load(data)
    with pytest.raises(SessionStateError, match="no payload store"):
        await SessionStateCodec(options, None).load(data)


@pytest.mark.parametrize("raw", [b"not json", b'{"kind": "other"}', b'{"kind": "session", "v": 99}'])
async def test_foreign_or_future_state_is_an_error(raw: bytes) -> None:
    with pytest.raises(SessionStateError):
        await SessionStateCodec(TaskHubOptions(hub_name="h"), None).load(raw)
