"""Orchestration history kept in the instance's Service Bus session state, spilling to blob chunks.

The session state is one versioned JSON document: a small header (instance, execution, status, event
count, custom status, how far the instance store has been told), the keys of immutable history
chunks already moved to blob, the tail of the history, and a tracking outbox (see below).

DTF rewrites the whole history on every episode and, past the overflow threshold, uploads a fresh
full copy to blob each time (its issue #57). Here, when the encoded state passes
``session_overflow_threshold`` the tail is moved into a new compressed chunk blob and the header
keeps only its key, so an episode writes what is new and nothing more. Past ``session_max_size``
(all chunks plus the state) the save is refused with ``SessionTooLargeError`` and the dispatcher
terminates the instance with a reason naming the size and the limit.

The tracking outbox carries, for executions that ended by continue-as-new in the last episode, the
events and final snapshot the instance store has not yet confirmed: those executions are gone from
the history once the new generation starts, and the dispatcher must be able to re-send their
tracking record after a crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..core.codec import (
    decode_events,
    decompress,
    encode_events,
    event_from_dict,
    event_to_dict,
    orchestration_state_from_dict,
    orchestration_state_to_dict,
)
from ..core.history import HistoryEvent
from ..core.state import OrchestrationRuntimeState, OrchestrationState
from ..options import TaskHubOptions
from .messages import PayloadStoreLike, maybe_gzip

__all__ = [
    "SESSION_FORMAT_VERSION",
    "ChunkRef",
    "SessionState",
    "SessionStateCodec",
    "SessionStateError",
    "SessionTooLargeError",
    "TrackingRecord",
]

SESSION_FORMAT_VERSION = 1
_JSON_OPTS = orjson.OPT_UTC_Z


class SessionStateError(Exception):
    """Session state this runtime cannot read (corrupt, unknown version, missing chunk)."""


class SessionTooLargeError(Exception):
    """The history of an instance outgrew ``session_max_size``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"Session state size of {size} bytes exceeded the termination threshold of {limit} bytes"
        )
        self.size = size
        self.limit = limit


@dataclass(frozen=True)
class ChunkRef:
    """An immutable blob holding ``count`` history events starting at ``first_index``."""

    key: str
    first_index: int
    count: int
    size: int


@dataclass
class TrackingRecord:
    """What the instance store must learn about one execution: events from an index, and a snapshot."""

    instance_id: str
    execution_id: str
    first_event_index: int
    events: list[HistoryEvent]
    state: OrchestrationState

    @property
    def end_index(self) -> int:
        return self.first_event_index + len(self.events)

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "execution_id": self.execution_id,
            "first_event_index": self.first_event_index,
            "events": [event_to_dict(e) for e in self.events],
            "state": orchestration_state_to_dict(self.state),
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> TrackingRecord:
        return cls(
            instance_id=value["instance_id"],
            execution_id=value["execution_id"],
            first_event_index=int(value["first_event_index"]),
            events=[event_from_dict(e) for e in value["events"]],
            state=orchestration_state_from_dict(value["state"]),
        )


@dataclass
class SessionState:
    """The decoded session state: full history in memory, plus where its older part lives in blob."""

    events: list[HistoryEvent] = field(default_factory=list)
    custom_status: str | None = None
    chunks: list[ChunkRef] = field(default_factory=list)
    tracked_through: int = 0
    """Events before this index are known to be in the instance store (or in flight to it)."""
    outbox: list[TrackingRecord] = field(default_factory=list)
    encoded_size: int = 0
    """Bytes of the session state as last read or written (chunks not included)."""

    @property
    def chunked_count(self) -> int:
        return sum(c.count for c in self.chunks)

    @property
    def total_size(self) -> int:
        return self.encoded_size + sum(c.size for c in self.chunks)

    def runtime_state(self) -> OrchestrationRuntimeState:
        state = OrchestrationRuntimeState(self.events, custom_status=self.custom_status)
        state.size = self.total_size
        state.compressed_size = self.total_size
        return state


@dataclass
class _Planned:
    data: bytes
    chunks: list[ChunkRef]


class SessionStateCodec:
    """Reads and writes ``SessionState`` for one hub, moving history tails into blob chunks."""

    def __init__(self, options: TaskHubOptions, payloads: PayloadStoreLike | None) -> None:
        self._options = options
        self._payloads = payloads

    # -- reading -------------------------------------------------------------------------------------
    async def load(self, raw: bytes | None) -> SessionState | None:
        """Decode session state; None when there is none (a new or finished instance)."""
        if not raw:
            return None
        doc = self._decode_document(raw)
        chunks = [ChunkRef(c["key"], int(c["first"]), int(c["count"]), int(c["size"])) for c in doc["chunks"]]
        events: list[HistoryEvent] = []
        if chunks:
            if self._payloads is None:
                raise SessionStateError(
                    "session history is in blob chunks but no payload store is configured"
                )
            blobs = await asyncio.gather(*(self._payloads.download(c.key) for c in chunks))
            for chunk, blob in zip(chunks, blobs, strict=True):
                chunk_events = decode_events(blob)
                if len(chunk_events) != chunk.count or len(events) != chunk.first_index:
                    raise SessionStateError(
                        f"history chunk {chunk.key!r} holds {len(chunk_events)} events from index "
                        f"{len(events)}; the session header expects {chunk.count} from {chunk.first_index}"
                    )
                events.extend(chunk_events)
        events.extend(event_from_dict(e) for e in doc["tail"])
        if len(events) != doc["event_count"]:
            raise SessionStateError(
                f"session state holds {len(events)} events but its header counts {doc['event_count']}"
            )
        return SessionState(
            events=events,
            custom_status=doc.get("custom_status"),
            chunks=chunks,
            tracked_through=int(doc.get("tracked_through", 0)),
            outbox=[TrackingRecord.from_dict(r) for r in doc.get("outbox", [])],
            encoded_size=len(raw),
        )

    @staticmethod
    def _decode_document(raw: bytes) -> dict[str, Any]:
        try:
            doc = orjson.loads(decompress(bytes(raw)))
        except Exception as exc:
            raise SessionStateError(f"session state is not a readable document: {exc}") from None
        if not isinstance(doc, dict) or doc.get("kind") != "session":
            raise SessionStateError("session state is not a dtf-sb session document")
        if doc.get("v") != SESSION_FORMAT_VERSION:
            raise SessionStateError(
                f"session state format version {doc.get('v')!r} is not supported (known: {SESSION_FORMAT_VERSION})"
            )
        return doc

    @staticmethod
    def peek_header(raw: bytes) -> dict[str, Any]:
        """The header fields without loading chunks (diagnostics and tests)."""
        doc = SessionStateCodec._decode_document(raw)
        return {k: v for k, v in doc.items() if k not in ("tail", "outbox")}

    # -- writing -------------------------------------------------------------------------------------
    def _encode(
        self,
        *,
        runtime: OrchestrationRuntimeState,
        events: Sequence[HistoryEvent],
        chunks: list[ChunkRef],
        custom_status: str | None,
        tracked_through: int,
        outbox: Sequence[TrackingRecord],
    ) -> bytes:
        chunked = sum(c.count for c in chunks)
        doc = {
            "v": SESSION_FORMAT_VERSION,
            "kind": "session",
            "instance_id": runtime.instance_id,
            "execution_id": runtime.execution_id,
            "status": int(runtime.status),
            "event_count": len(events),
            "custom_status": custom_status,
            "tracked_through": tracked_through,
            "chunks": [
                {"key": c.key, "first": c.first_index, "count": c.count, "size": c.size} for c in chunks
            ],
            "tail": [event_to_dict(e) for e in events[chunked:]],
            "outbox": [r.to_dict() for r in outbox],
        }
        raw = orjson.dumps(doc, option=_JSON_OPTS)
        return maybe_gzip(raw, self._options.compress_threshold)[0]

    async def encode_for_save(
        self,
        runtime: OrchestrationRuntimeState,
        *,
        previous_chunks: Sequence[ChunkRef],
        tracked_through: int,
        outbox: Sequence[TrackingRecord] = (),
    ) -> tuple[bytes, list[ChunkRef]]:
        """Encode the runtime state's full history, uploading a new chunk first when it overflows.

        ``previous_chunks`` must describe a prefix of ``runtime``'s history (the chunks loaded with
        it); they are reused as they are, which is what keeps an episode's write proportional to
        what it added. The chunk is uploaded before the state that references it is written, so a
        crash in between leaves at most an unreferenced blob, never a dangling key.
        """
        events = list(runtime)
        chunks = list(previous_chunks)
        custom_status = runtime.custom_status
        data = self._encode(
            runtime=runtime,
            events=events,
            chunks=chunks,
            custom_status=custom_status,
            tracked_through=tracked_through,
            outbox=outbox,
        )
        chunked = sum(c.count for c in chunks)
        if len(data) > self._options.session_overflow_threshold and len(events) > chunked:
            tail = events[chunked:]
            blob = encode_events(tail, compress=True)
            self._check_size(sum(c.size for c in chunks) + len(blob), runtime)
            if self._payloads is None:
                raise SessionTooLargeError(len(data), self._options.session_overflow_threshold)
            key = await self._payloads.upload(
                blob,
                instance_id=runtime.instance_id or "",
                execution_id=runtime.execution_id or "none",
                kind="history",
            )
            chunks.append(ChunkRef(key, chunked, len(tail), len(blob)))
            data = self._encode(
                runtime=runtime,
                events=events,
                chunks=chunks,
                custom_status=custom_status,
                tracked_through=tracked_through,
                outbox=outbox,
            )
        self._check_size(sum(c.size for c in chunks) + len(data), runtime)
        runtime.size = runtime.compressed_size = sum(c.size for c in chunks) + len(data)
        return data, chunks

    def _check_size(self, size: int, runtime: OrchestrationRuntimeState) -> None:
        if size > self._options.session_max_size:
            raise SessionTooLargeError(size, self._options.session_max_size)
