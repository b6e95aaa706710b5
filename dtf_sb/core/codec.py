"""Versioned JSON (orjson) encoding of payloads, history events, runtime states and task messages.

Two layers:

* user payloads (``encode_payload``/``decode_payload``): a value becomes a JSON *string* that is stored
  in events as is, so the transport never re-serializes user objects. Dataclasses and datetimes are
  supported (naive datetimes are taken as UTC); anything else that JSON cannot express fails with a
  ``PayloadEncodingError`` naming the type and the path to it (``$.items[2].owner``).
* framework records (``encode_events``, ``encode_runtime_state``, ``encode_task_message``,
  ``encode_orchestration_state``): an envelope ``{"v": 1, "kind": ..., ...}`` encoded to bytes and
  gzip-compressed when that pays off. Readers tell compressed from plain by the gzip magic (``1f 8b``;
  plain JSON always starts with ``{``), so writers may switch compression at any time.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timezone
from enum import Enum
from typing import Any
from uuid import UUID

import orjson

from dtf_sb.core.errors import FailureDetails, PayloadDecodingError, PayloadEncodingError
from dtf_sb.core.history import EVENT_CLASSES, HistoryEvent
from dtf_sb.core.messages import OrchestrationInstance, ParentInstance, TaskMessage
from dtf_sb.core.state import OrchestrationRuntimeState, OrchestrationState
from dtf_sb.core.status import OrchestrationStatus

FORMAT_VERSION = 1
"""Version written into every envelope; readers reject versions they do not know."""

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_COMPRESSION_THRESHOLD = 1024
"""Bodies smaller than this are not worth compressing."""

_PAYLOAD_OPTS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS
_RECORD_OPTS = orjson.OPT_UTC_Z

__all__ = [
    "FORMAT_VERSION",
    "GZIP_MAGIC",
    "compress",
    "decode_event",
    "decode_events",
    "decode_orchestration_state",
    "decode_payload",
    "decode_runtime_state",
    "decode_task_message",
    "decompress",
    "encode_event",
    "encode_events",
    "encode_orchestration_state",
    "encode_payload",
    "encode_runtime_state",
    "encode_task_message",
    "event_from_dict",
    "event_to_dict",
]


# -- user payloads -----------------------------------------------------------------------------------
def encode_payload(value: Any) -> str | None:
    """Encode a user value to JSON text; ``None`` stays ``None`` (DTF stores no input as null)."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=_PAYLOAD_OPTS).decode()
    except TypeError as exc:
        raise PayloadEncodingError(_describe_unserializable(value, exc)) from None


def decode_payload(text: str | bytes | None) -> Any:
    """Decode JSON text produced by ``encode_payload``; ``None`` and ``""`` decode to ``None``."""
    if text is None or text == "" or text == b"":
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise PayloadDecodingError(f"payload is not valid JSON: {exc}") from None


_JSON_SCALARS = (str, int, float, bool, type(None), datetime, date, time, UUID, Enum)


def _describe_unserializable(value: Any, exc: Exception) -> str:
    found = _find_unserializable(value, "$", 0)
    if found is None:
        return f"payload is not JSON-serializable: {exc}"
    path, bad = found
    return f"payload is not JSON-serializable: value of type {type(bad).__qualname__!r} at {path}"


def _find_unserializable(value: Any, path: str, depth: int) -> tuple[str, Any] | None:
    if depth > 200:
        return (path, value)
    if isinstance(value, float) or isinstance(value, _JSON_SCALARS):
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool, type(None), Enum, UUID, datetime, date)):
                return (f"{path} (key {key!r})", key)
            hit = _find_unserializable(item, f"{path}.{key}", depth + 1)
            if hit:
                return hit
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            hit = _find_unserializable(item, f"{path}[{index}]", depth + 1)
            if hit:
                return hit
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            hit = _find_unserializable(getattr(value, f.name), f"{path}.{f.name}", depth + 1)
            if hit:
                return hit
        return None
    return (path, value)


# -- compression -------------------------------------------------------------------------------------
def compress(
    data: bytes, *, mode: bool | None = None, threshold: int = DEFAULT_COMPRESSION_THRESHOLD
) -> bytes:
    """Gzip ``data`` when asked (``True``), or when ``None`` and it is large enough and gets smaller."""
    if mode is False or (mode is None and len(data) < threshold):
        return data
    packed = gzip.compress(data, compresslevel=6, mtime=0)
    if mode is None and len(packed) >= len(data):
        return data
    return packed


def decompress(data: bytes) -> bytes:
    """Inverse of ``compress``; plain input passes through."""
    if data[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise PayloadDecodingError(f"corrupt gzip body: {exc}") from None
    return data


# -- framework records -------------------------------------------------------------------------------
def _dt(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _instance_to(value: OrchestrationInstance) -> dict[str, Any]:
    return {"instance_id": value.instance_id, "execution_id": value.execution_id}


def _instance_from(value: dict[str, Any]) -> OrchestrationInstance:
    return OrchestrationInstance(value["instance_id"], value.get("execution_id"))


def _parent_to(value: ParentInstance | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {
        "name": value.name,
        "version": value.version,
        "task_schedule_id": value.task_schedule_id,
        "orchestration_instance": _instance_to(value.orchestration_instance),
    }


def _parent_from(value: dict[str, Any] | None) -> ParentInstance | None:
    if value is None:
        return None
    return ParentInstance(
        name=value["name"],
        version=value.get("version"),
        task_schedule_id=value["task_schedule_id"],
        orchestration_instance=_instance_from(value["orchestration_instance"]),
    )


def failure_to_dict(value: FailureDetails | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {
        "error_type": value.error_type,
        "message": value.message,
        "stack_trace": value.stack_trace,
        "inner": failure_to_dict(value.inner),
        "is_non_retriable": value.is_non_retriable,
    }


def failure_from_dict(value: dict[str, Any] | None) -> FailureDetails | None:
    if value is None:
        return None
    return FailureDetails(
        error_type=value["error_type"],
        message=value["message"],
        stack_trace=value.get("stack_trace"),
        inner=failure_from_dict(value.get("inner")),
        is_non_retriable=bool(value.get("is_non_retriable", False)),
    )


def orchestration_state_to_dict(state: OrchestrationState) -> dict[str, Any]:
    return {
        "orchestration_instance": _instance_to(state.orchestration_instance),
        "name": state.name,
        "version": state.version,
        "status": int(state.status),
        "input": state.input,
        "output": state.output,
        "custom_status": state.custom_status,
        "tags": state.tags,
        "parent_instance": _parent_to(state.parent_instance),
        "created_time": state.created_time,
        "completed_time": state.completed_time,
        "last_updated_time": state.last_updated_time,
        "size": state.size,
        "compressed_size": state.compressed_size,
        "generation": state.generation,
        "scheduled_start_time": state.scheduled_start_time,
        "failure_details": failure_to_dict(state.failure_details),
    }


def orchestration_state_from_dict(value: dict[str, Any]) -> OrchestrationState:
    return OrchestrationState(
        orchestration_instance=_instance_from(value["orchestration_instance"]),
        name=value["name"],
        version=value.get("version"),
        status=OrchestrationStatus(value["status"]),
        input=value.get("input"),
        output=value.get("output"),
        custom_status=value.get("custom_status"),
        tags=dict(value.get("tags") or {}),
        parent_instance=_parent_from(value.get("parent_instance")),
        created_time=_dt(value.get("created_time")),
        completed_time=_dt(value.get("completed_time")),
        last_updated_time=_dt(value.get("last_updated_time")),
        size=value.get("size", 0),
        compressed_size=value.get("compressed_size", 0),
        generation=value.get("generation", 0),
        scheduled_start_time=_dt(value.get("scheduled_start_time")),
        failure_details=failure_from_dict(value.get("failure_details")),
    )


# Field-name based converters: the same field name means the same kind of value in every event class.
_TO: dict[str, Callable[[Any], Any]] = {
    "orchestration_instance": _instance_to,
    "parent_instance": _parent_to,
    "failure_details": failure_to_dict,
    "orchestration_status": int,
    "state": orchestration_state_to_dict,
    "tags": dict,
}
_FROM: dict[str, Callable[[Any], Any]] = {
    "timestamp": _dt,
    "fire_at": _dt,
    "scheduled_start_time": _dt,
    "orchestration_instance": _instance_from,
    "parent_instance": _parent_from,
    "failure_details": failure_from_dict,
    "orchestration_status": OrchestrationStatus,
    "state": orchestration_state_from_dict,
}

_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in EVENT_CLASSES.values()
}
# Per class: (field, converter or None) pairs, resolved once so that decoding a long history does no
# per-field lookups beyond the value itself.
_ENCODERS: dict[type, tuple[tuple[str, Callable[[Any], Any] | None], ...]] = {
    cls: tuple((name, _TO.get(name)) for name in names) for cls, names in _FIELDS.items()
}
_DECODERS: dict[int, tuple[type, tuple[tuple[str, Callable[[Any], Any] | None], ...]]] = {
    int(cls.event_type): (cls, tuple((name, _FROM.get(name)) for name in names))
    for cls, names in _FIELDS.items()
}


def event_to_dict(event: HistoryEvent) -> dict[str, Any]:
    """A JSON-ready dict; ``t`` is the numeric ``EventType``. Datetimes stay objects for orjson."""
    out: dict[str, Any] = {"t": int(event.event_type)}
    for name, conv in _ENCODERS[type(event)]:
        value = getattr(event, name)
        out[name] = conv(value) if conv is not None and value is not None else value
    return out


def event_from_dict(value: Mapping[str, Any]) -> HistoryEvent:
    try:
        cls, fields = _DECODERS[value["t"]]
    except (KeyError, TypeError) as exc:
        raise PayloadDecodingError(f"unknown history event type in {dict(value)!r}") from exc
    kwargs: dict[str, Any] = {}
    for name, conv in fields:
        if name in value:
            raw = value[name]
            kwargs[name] = conv(raw) if conv is not None and raw is not None else raw
    return cls(**kwargs)


def _dumps(envelope: dict[str, Any], compress_: bool | None, threshold: int) -> tuple[bytes, bytes]:
    raw = orjson.dumps(envelope, option=_RECORD_OPTS)
    return raw, compress(raw, mode=compress_, threshold=threshold)


def _loads(data: bytes | bytearray | memoryview, kind: str) -> dict[str, Any]:
    raw = decompress(bytes(data))
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PayloadDecodingError(f"{kind} body is not valid JSON: {exc}") from None
    if not isinstance(envelope, dict) or envelope.get("kind") != kind:
        raise PayloadDecodingError(f"expected a {kind!r} envelope, got {str(envelope)[:80]!r}")
    version = envelope.get("v")
    if version != FORMAT_VERSION:
        raise PayloadDecodingError(f"unsupported {kind} format version {version!r} (known: {FORMAT_VERSION})")
    return envelope


def encode_event(event: HistoryEvent) -> bytes:
    """One event as plain JSON (no envelope, never compressed): a line of an append-only history log."""
    return orjson.dumps(event_to_dict(event), option=_RECORD_OPTS)


def decode_event(data: bytes | str) -> HistoryEvent:
    return event_from_dict(orjson.loads(data))


def encode_events(
    events: Iterable[HistoryEvent],
    *,
    compress: bool | None = None,
    threshold: int = DEFAULT_COMPRESSION_THRESHOLD,
) -> bytes:
    envelope = {"v": FORMAT_VERSION, "kind": "events", "events": [event_to_dict(e) for e in events]}
    return _dumps(envelope, compress, threshold)[1]


def decode_events(data: bytes) -> list[HistoryEvent]:
    return [event_from_dict(e) for e in _loads(data, "events")["events"]]


def encode_runtime_state(
    state: OrchestrationRuntimeState,
    *,
    compress: bool | None = None,
    threshold: int = DEFAULT_COMPRESSION_THRESHOLD,
) -> bytes:
    """All events (past and new) plus the custom status; records ``size``/``compressed_size`` on ``state``."""
    envelope = {
        "v": FORMAT_VERSION,
        "kind": "state",
        "custom_status": state.custom_status,
        "events": [event_to_dict(e) for e in state],
    }
    raw, body = _dumps(envelope, compress, threshold)
    state.size = len(raw)
    state.compressed_size = len(body)
    return body


def decode_runtime_state(data: bytes | None) -> OrchestrationRuntimeState:
    """Empty or missing state decodes to an empty runtime state (a new instance)."""
    if not data:
        return OrchestrationRuntimeState()
    envelope = _loads(data, "state")
    state = OrchestrationRuntimeState(
        (event_from_dict(e) for e in envelope["events"]), custom_status=envelope.get("custom_status")
    )
    state.compressed_size = len(data)
    state.size = len(decompress(bytes(data))) if data[:2] == GZIP_MAGIC else len(data)
    return state


def encode_task_message(
    message: TaskMessage,
    *,
    compress: bool | None = None,
    threshold: int = DEFAULT_COMPRESSION_THRESHOLD,
) -> bytes:
    envelope = {
        "v": FORMAT_VERSION,
        "kind": "message",
        "event": event_to_dict(message.event),
        "orchestration_instance": _instance_to(message.orchestration_instance),
        "sequence_number": message.sequence_number,
        "tags": message.tags,
    }
    return _dumps(envelope, compress, threshold)[1]


def decode_task_message(data: bytes) -> TaskMessage:
    envelope = _loads(data, "message")
    return TaskMessage(
        event=event_from_dict(envelope["event"]),
        orchestration_instance=_instance_from(envelope["orchestration_instance"]),
        sequence_number=envelope.get("sequence_number", 0),
        tags=dict(envelope.get("tags") or {}),
    )


def encode_orchestration_state(
    state: OrchestrationState,
    *,
    compress: bool | None = None,
    threshold: int = DEFAULT_COMPRESSION_THRESHOLD,
) -> bytes:
    envelope = {
        "v": FORMAT_VERSION,
        "kind": "orchestration_state",
        "state": orchestration_state_to_dict(state),
    }
    return _dumps(envelope, compress, threshold)[1]


def decode_orchestration_state(data: bytes) -> OrchestrationState:
    return orchestration_state_from_dict(_loads(data, "orchestration_state")["state"])
