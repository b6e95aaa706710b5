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
_GAP_POLL = 0.5
_GAP_PATIENCE = 10.0


class TrackingStore(Protocol):
    """What tracking needs from the instance store (see ``dtf_sb.servicebus.store``)."""

    async def append_history(
        self, instance_id: str, execution_id: str, first_event_index: int, lines: list[bytes]
    ) -> None: ...

    async def write_state(self, state: OrchestrationState, *, version: int) -> None: ...

    async def delete_jump_start(self, instance_id: str, execution_id: str) -> None: ...


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
            max_accept_concurrency=worker_options.max_tracking_accept_concurrency,
            receive_timeout=worker_options.receive_timeout,
            poll_interval=worker_options.receive_poll_interval,
            transient_backoff=worker_options.transient_backoff,
            max_backoff=worker_options.max_backoff,
            logger=logging.getLogger("dtf_sb.servicebus.tracking"),
        )
        self._options = options
        self._hold = worker_options.session_hold_seconds
        self._envelope = envelope
        self._store = store
        self._faults = faults

    async def process_session(self, receiver: Any) -> None:
        """Apply the session's records in history order, holding back any that arrive early.

        Records normally arrive in the order they were sent, but one can overtake another (the earlier
        one was still held by a receiver that was letting the session go). An early record is kept
        locked, not given back, while this worker holds the session: the missing one can only come to
        the session's holder, so it is received here and both are applied in index order. Only if it
        does not show up within ``_GAP_PATIENCE`` are the held records released for redelivery.
        """
        session_id = receiver.session.session_id
        held: list[tuple[Any, TrackingRecord]] = []
        waited = 0.0
        async with renew_session_lock_while(
            receiver, self._options.lock_duration, what=f"tracking {session_id}"
        ):
            while True:
                wait = _GAP_POLL if held else 0.05
                messages = await receiver.receive_messages(
                    max_message_count=self._options.prefetch_count, max_wait_time=wait
                )
                if not messages and not held:
                    # the instance's next episode is often moments away: wait for its record here
                    # rather than give the session up and accept it again
                    if self._hold > 0:
                        messages = await self.receive_while_idle(
                            receiver, wait=self._hold, max_message_count=self._options.prefetch_count
                        )
                    if not messages:
                        return
                if messages:
                    held.extend(await self._decode_all(receiver, messages))
                else:
                    waited += wait
                    if waited >= _GAP_PATIENCE:
                        self._log.warning(
                            "tracking of %s is missing earlier records; releasing %d record(s) for redelivery",
                            session_id,
                            len(held),
                        )
                        for message, _ in held:
                            await receiver.abandon_message(message)
                        return
                progressed, held = await self._apply(receiver, held)
                if progressed:
                    waited = 0.0

    async def _decode_all(self, receiver: Any, messages: list[Any]) -> list[tuple[Any, TrackingRecord]]:
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
        return records

    async def _apply(
        self, receiver: Any, records: list[tuple[Any, TrackingRecord]]
    ) -> tuple[bool, list[tuple[Any, TrackingRecord]]]:
        """Apply records in history order; returns whether any was applied, and those still waiting.

        Every record's events are appended; the state snapshot is written once per execution, the
        newest of the records applied (each snapshot supersedes the one before), then a recorded
        start's jump-start record is deleted, and only then are the messages completed: a crash in
        between redelivers them, and appends are idempotent.
        """
        ordered = sorted(records, key=lambda item: (item[1].execution_id, item[1].first_event_index))
        blocked: set[str] = set()
        waiting: list[tuple[Any, TrackingRecord]] = []
        newest: dict[str, TrackingRecord] = {}
        done: list[tuple[Any, TrackingRecord]] = []
        for message, record in ordered:
            if record.execution_id in blocked:
                waiting.append((message, record))
                continue
            try:
                if record.events:
                    lines = [encode_event(e) for e in record.events]
                    await self._store.append_history(
                        record.instance_id, record.execution_id, record.first_event_index, lines
                    )
            except HistoryGapError as exc:
                self._log.debug("holding tracking record back: %s", exc)
                blocked.add(record.execution_id)
                waiting.append((message, record))
                continue
            self._faults(
                "tracking.after_history", instance_id=record.instance_id, message_id=message.message_id
            )
            newest[record.execution_id] = record
            done.append((message, record))
        for record in newest.values():
            await self._store.write_state(record.state, version=record.end_index)
        for _, record in done:
            if record.first_event_index == 0 and record.events:
                # The execution is on record now, so the client's jump-start note of its start has
                # served; left alone, the jump-start manager would read and delete it later anyway.
                try:
                    await self._store.delete_jump_start(record.instance_id, record.execution_id)
                except Exception as exc:
                    self._log.debug(
                        "could not delete the jump-start record of %s: %s", record.instance_id, exc
                    )
        for message, record in done:
            self._faults(
                "tracking.after_state", instance_id=record.instance_id, message_id=message.message_id
            )
            await receiver.complete_message(message)
        applied = len(done)
        if applied:
            self._log.debug("tracked %d record(s) for %s", applied, receiver.session.session_id)
        return applied > 0, waiting
