"""Tracking: projecting each orchestration episode into the instance store.

The orchestration dispatcher sends one tracking record per execution it touched in an episode to the
tracking queue (session id = instance id, so records of one instance are applied in order). The
record holds the history events appended since ``first_event_index`` and the state snapshot after
them. The tracking dispatcher appends the events (idempotent by index: a redelivered record never
writes an event twice) and upserts the snapshot (versioned by history length, so an older snapshot
never overwrites a newer one), then completes the messages.

Records are only ever built from *committed* history (the dispatcher sends them after the session
state that holds those events is written), which is why a record re-sent after a crash has exactly
the content of the first attempt and the same deterministic message id.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import orjson

from ..core.codec import encode_event
from ..core.state import OrchestrationState
from ..options import TaskHubOptions, WorkerOptions
from ..storage.errors import HistoryGapError
from ._loop import renew_session_lock_while
from ._sessions import SessionDispatcher
from .connection import ServiceBusConnection
from .faults import FaultPoints
from .messages import MalformedMessageError, MessageEnvelope, deterministic_message_id
from .session_state import TrackingRecord

__all__ = [
    "TrackingDispatcher",
    "TrackingStore",
    "decode_tracking_record",
    "encode_tracking_record",
    "tracking_message_id",
]

TRACKING_FORMAT_VERSION = 1
_GAP_RETRY_DELAY = 0.5


class TrackingStore(Protocol):
    """What tracking needs from the instance store (see ``dtf_sb.servicebus.store``)."""

    async def append_history(
        self, instance_id: str, execution_id: str, first_event_index: int, lines: list[bytes]
    ) -> None: ...

    async def write_state(self, state: OrchestrationState, *, version: int) -> None: ...


def encode_tracking_record(record: TrackingRecord) -> bytes:
    return orjson.dumps(
        {"v": TRACKING_FORMAT_VERSION, "kind": "tracking", "record": record.to_dict()},
        option=orjson.OPT_UTC_Z,
    )


def decode_tracking_record(data: bytes) -> TrackingRecord:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessageError(f"tracking message body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "tracking":
        raise MalformedMessageError("tracking message body is not a tracking record")
    if doc.get("v") != TRACKING_FORMAT_VERSION:
        raise MalformedMessageError(f"tracking record format version {doc.get('v')!r} is not supported")
    try:
        return TrackingRecord.from_dict(doc["record"])
    except Exception as exc:
        raise MalformedMessageError(f"tracking record is incomplete or invalid: {exc}") from None


def tracking_message_id(record: TrackingRecord) -> str:
    """Same committed range, same id: a re-sent record is dropped by duplicate detection."""
    return deterministic_message_id(
        record.instance_id,
        record.execution_id,
        f"{record.first_event_index}-{record.end_index}-{int(record.state.status)}",
        "tracking",
    )


class TrackingDispatcher(SessionDispatcher):
    """Applies tracking records session by session (one instance at a time, in order)."""

    def __init__(
        self,
        *,
        options: TaskHubOptions,
        worker_options: WorkerOptions,
        connection: ServiceBusConnection,
        envelope: MessageEnvelope,
        store: TrackingStore,
        faults: FaultPoints,
    ) -> None:
        super().__init__(
            name="tracking-dispatcher",
            connection=connection,
            queue=options.tracking_queue,
            max_concurrent=worker_options.max_concurrent_tracking_sessions,
            accept_concurrency=worker_options.tracking_accept_concurrency,
            receive_timeout=worker_options.receive_timeout,
            transient_backoff=worker_options.transient_backoff,
            max_backoff=worker_options.max_backoff,
            logger=logging.getLogger("dtf_sb.servicebus.tracking"),
        )
        self._options = options
        self._envelope = envelope
        self._store = store
        self._faults = faults

    async def process_session(self, receiver: Any) -> None:
        session_id = receiver.session.session_id
        async with renew_session_lock_while(
            receiver, self._options.lock_duration, what=f"tracking {session_id}"
        ):
            while True:
                messages = await receiver.receive_messages(
                    max_message_count=self._options.prefetch_count, max_wait_time=0.05
                )
                if not messages:
                    return
                await self._apply_batch(receiver, messages)

    async def _apply_batch(self, receiver: Any, messages: list[Any]) -> None:
        records: list[tuple[Any, TrackingRecord]] = []
        for message in messages:
            try:
                record = decode_tracking_record(await self._envelope.read(message))
            except MalformedMessageError as exc:
                self._log.error("dead-lettering malformed tracking message %s: %s", message.message_id, exc)
                await receiver.dead_letter_message(
                    message, reason="MalformedMessage", error_description=str(exc)[:1000]
                )
                continue
            records.append((message, record))
        done: list[Any] = []
        for message, record in records:
            try:
                if record.events:
                    lines = [encode_event(e) for e in record.events]
                    await self._store.append_history(
                        record.instance_id, record.execution_id, record.first_event_index, lines
                    )
            except HistoryGapError as exc:
                # An earlier record of this instance is not here yet (still locked by a receiver
                # that is letting it go, or redelivered later): apply what came before it, give the
                # rest back and let the session's order sort itself out on the next delivery.
                self._log.warning("%s; retrying the tracking batch later", exc)
                for applied in done:
                    await receiver.complete_message(applied)
                for pending, _ in records[len(done) :]:
                    await receiver.abandon_message(pending)
                await asyncio.sleep(_GAP_RETRY_DELAY)
                return
            self._faults(
                "tracking.after_history", instance_id=record.instance_id, message_id=message.message_id
            )
            await self._store.write_state(record.state, version=record.end_index)
            self._faults(
                "tracking.after_state", instance_id=record.instance_id, message_id=message.message_id
            )
            done.append(message)
        for message, _ in records:
            await receiver.complete_message(message)
        self._log.debug("tracked %d record(s) for %s", len(records), receiver.session.session_id)
