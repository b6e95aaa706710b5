"""Codec round trips (property-based) and the payload rules."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtf_sb.core import (
    EVENT_CLASSES,
    ExecutionStartedEvent,
    FailureDetails,
    HistoryEvent,
    OrchestrationInstance,
    OrchestrationRuntimeState,
    OrchestrationState,
    OrchestrationStatus,
    ParentInstance,
    PayloadDecodingError,
    PayloadEncodingError,
    TaskMessage,
    codec,
)

aware = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)
)
text = st.text(max_size=20)
opt_text = st.none() | text
ints = st.integers(min_value=-1, max_value=2**31)
tags = st.dictionaries(text, text, max_size=3)
instances = st.builds(OrchestrationInstance, text, opt_text)
parents = st.none() | st.builds(
    ParentInstance, name=text, version=opt_text, task_schedule_id=ints, orchestration_instance=instances
)
failures = st.recursive(
    st.builds(
        FailureDetails, error_type=text, message=text, stack_trace=opt_text, is_non_retriable=st.booleans()
    ),
    lambda inner: st.builds(FailureDetails, error_type=text, message=text, inner=inner),
    max_leaves=3,
)
statuses = st.sampled_from(list(OrchestrationStatus))
orchestration_states = st.builds(
    OrchestrationState,
    orchestration_instance=instances,
    name=text,
    status=statuses,
    version=opt_text,
    input=opt_text,
    output=opt_text,
    custom_status=opt_text,
    tags=tags,
    parent_instance=parents,
    created_time=st.none() | aware,
    completed_time=st.none() | aware,
    last_updated_time=st.none() | aware,
    size=st.integers(0, 10**9),
    compressed_size=st.integers(0, 10**9),
    generation=st.integers(0, 1000),
    scheduled_start_time=st.none() | aware,
    failure_details=st.none() | failures,
)

FIELD_STRATEGIES = {
    "event_id": ints,
    "timestamp": aware,
    "is_played": st.booleans(),
    "name": text,
    "version": opt_text,
    "input": opt_text,
    "result": opt_text,
    "reason": opt_text,
    "details": opt_text,
    "data": opt_text,
    "message_id": opt_text,
    "instance_id": text,
    "tags": tags,
    "orchestration_instance": instances,
    "parent_instance": parents,
    "scheduled_start_time": st.none() | aware,
    "generation": st.integers(0, 1000),
    "orchestration_status": statuses,
    "failure_details": st.none() | failures,
    "task_scheduled_id": ints,
    "timer_id": ints,
    "fire_at": aware,
    "state": orchestration_states,
}


def _event_strategy(cls: type[HistoryEvent]) -> st.SearchStrategy[HistoryEvent]:
    return st.builds(cls, **{f.name: FIELD_STRATEGIES[f.name] for f in dataclasses.fields(cls)})


events = st.one_of(*[_event_strategy(cls) for cls in EVENT_CLASSES.values()])


def _histories():
    body = st.lists(events.filter(lambda e: not isinstance(e, ExecutionStartedEvent)), max_size=12)
    return st.tuples(st.none() | _event_strategy(ExecutionStartedEvent), body).map(
        lambda pair: ([pair[0]] if pair[0] else []) + pair[1]
    )


@settings(max_examples=300, deadline=None)
@given(events)
def test_every_event_round_trips(event):
    assert codec.decode_event(codec.encode_event(event)) == event


@settings(max_examples=100, deadline=None)
@given(st.lists(events, max_size=10), st.sampled_from([None, True, False]))
def test_event_lists_round_trip_compressed_or_not(history, compress):
    data = codec.encode_events(history, compress=compress)
    if compress is True:
        assert data[:2] == codec.GZIP_MAGIC
    if compress is False:
        assert data[:1] == b"{"
    assert codec.decode_events(data) == history


@settings(max_examples=100, deadline=None)
@given(_histories(), opt_text, st.booleans())
def test_runtime_states_round_trip(history, custom_status, compress):
    state = OrchestrationRuntimeState(history, custom_status=custom_status)
    data = codec.encode_runtime_state(state, compress=compress)
    assert state.compressed_size == len(data)
    loaded = codec.decode_runtime_state(data)
    assert loaded.events == history
    assert loaded.custom_status == custom_status
    assert loaded.status is state.status
    assert loaded.size == state.size
    assert loaded.resolved_task_ids == state.resolved_task_ids
    assert loaded.raised_message_ids == state.raised_message_ids


@settings(max_examples=100, deadline=None)
@given(events, instances, st.integers(0, 2**62), tags)
def test_task_messages_round_trip(event, instance, sequence, message_tags):
    message = TaskMessage(
        event=event, orchestration_instance=instance, sequence_number=sequence, tags=message_tags
    )
    assert codec.decode_task_message(codec.encode_task_message(message)) == message


@settings(max_examples=100, deadline=None)
@given(orchestration_states, st.booleans())
def test_orchestration_states_round_trip(state, compress):
    assert (
        codec.decode_orchestration_state(codec.encode_orchestration_state(state, compress=compress)) == state
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_json_payloads_round_trip(value):
    assert codec.decode_payload(codec.encode_payload(value)) == value


def test_none_payload_is_stored_as_none():
    assert codec.encode_payload(None) is None
    assert codec.decode_payload(None) is None
    assert codec.decode_payload("") is None


@dataclasses.dataclass
class Order:
    id: int
    placed: datetime
    lines: list[str]


def test_dataclasses_and_datetimes_encode_as_json():
    placed = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
    encoded = codec.encode_payload({"order": Order(7, placed, ["a"]), "naive": datetime(2024, 5, 1)})
    assert orjson.loads(encoded) == {
        "order": {"id": 7, "placed": "2024-05-01T12:30:00Z", "lines": ["a"]},
        "naive": "2024-05-01T00:00:00Z",
    }
    offset = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    assert codec.decode_payload(codec.encode_payload(offset)) == "2024-05-01T14:30:00+02:00"


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "where", "type_name"),
    [
        ({"items": [1, {"owner": Opaque()}]}, "$.items[1].owner", "Opaque"),
        ([1, {2, 3}], "$[1]", "set"),
        (Order(1, datetime(2024, 1, 1, tzinfo=timezone.utc), [b"bytes"]), "$.lines[0]", "bytes"),
    ],
)
def test_unserializable_payload_names_type_and_path(value, where, type_name):
    with pytest.raises(PayloadEncodingError) as info:
        codec.encode_payload(value)
    assert where in str(info.value)
    assert repr(type_name) in str(info.value)
    assert isinstance(info.value, TypeError)


def test_compression_only_when_it_pays_off():
    small = codec.encode_events([])
    assert small[:1] == b"{"
    big_history = [_big_event(i) for i in range(50)]
    big = codec.encode_events(big_history)
    assert big[:2] == codec.GZIP_MAGIC
    assert codec.decode_events(big) == big_history
    plain = codec.encode_events(big_history, compress=False)
    assert len(big) < len(plain)
    assert codec.decode_events(plain) == big_history


def _big_event(i: int) -> HistoryEvent:
    return EVENT_CLASSES[ExecutionStartedEvent.event_type](
        name=f"orchestration-{i}",
        orchestration_instance=OrchestrationInstance(f"instance-{i}", "e"),
        input='"' + "x" * 100 + '"',
        timestamp=datetime(2024, 1, 1, tzinfo=timezone.utc),
    )


def test_readers_reject_garbage_with_clear_errors():
    with pytest.raises(PayloadDecodingError, match="corrupt gzip"):
        codec.decode_events(codec.GZIP_MAGIC + b"nonsense")
    with pytest.raises(PayloadDecodingError, match="expected a 'state' envelope"):
        codec.decode_runtime_state(codec.encode_events([]))
    future = orjson.dumps({"v": 99, "kind": "events", "events": []})
    with pytest.raises(PayloadDecodingError, match="unsupported events format version 99"):
        codec.decode_events(future)
    with pytest.raises(PayloadDecodingError, match="unknown history event type"):
        codec.event_from_dict({"t": 2})
    with pytest.raises(PayloadDecodingError, match="not valid JSON"):
        codec.decode_payload("{nope")


def test_empty_state_decodes_to_a_new_instance():
    state = codec.decode_runtime_state(b"")
    assert len(state) == 0
    assert state.status is OrchestrationStatus.PENDING
