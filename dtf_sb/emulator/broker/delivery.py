"""Delivery: receive, peek, settlement, lock renewal, dead-lettering and expiry.

A message leaves a lock in exactly one of these ways: complete (gone), abandon or lock expiry (one more
failed delivery, dead-lettered past MaxDeliveryCount), release (given back uncounted), defer (set aside for
receive-by-sequence-number) or dead-letter. ``_return`` is the single place where an unlocked message goes
back, so TTL and deferral are honoured on every path.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from ._base import BrokerBase, operation
from .errors import InvalidOperation, MessageLockLost, MessageNotFound, SessionLockLost
from .messages import BrokerMessage, IncomingMessage, MessageState, Owner, ReceiveMode
from .queue import MessageStore, SessionRecord

__all__ = ["MAX_DELIVERY_REASON", "TTL_EXPIRED_REASON", "DeliveryMixin"]

MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"
TTL_EXPIRED_REASON = "TTLExpiredException"


def _check_mode(mode: str) -> None:
    if mode not in ("peek_lock", "receive_and_delete"):
        raise InvalidOperation(f"Unknown receive mode {mode!r}: use 'peek_lock' or 'receive_and_delete'")


class DeliveryMixin(BrokerBase):
    """Receive-side operations of ``Broker``; settlement raises lock-lost errors the SDK maps exactly."""

    @operation
    def receive(
        self,
        path: str,
        *,
        max_count: int,
        mode: ReceiveMode = "peek_lock",
        session_id: str | None = None,
        owner: Owner | None = None,
    ) -> list[BrokerMessage]:
        """Take up to ``max_count`` available messages in sequence order without waiting.

        On a session entity the caller must hold ``session_id``'s lock as ``owner``. An empty list means
        nothing is available; the server waits for a listener call.
        """
        _check_mode(mode)
        now = self._now()
        self._process_time()
        store = self._store(path)
        record = self._session_for(store, session_id, owner, now)
        taken = store.take_available(record.session_id if record is not None else None, max(0, max_count))
        out: list[BrokerMessage] = []
        for msg in taken:
            if mode == "receive_and_delete":
                store.remove(msg.sequence_number)
            else:
                self._lock(store, msg, record, now)
            out.append(msg.snapshot())
        return out

    def _lock(
        self, store: MessageStore, msg: BrokerMessage, record: SessionRecord | None, now: float
    ) -> None:
        token = uuid.uuid4()
        msg.lock_token = token
        store.by_token[token] = msg.sequence_number
        if record is not None:
            record.lock_tokens.add(token)
            msg.locked_until = record.locked_until
        else:
            msg.locked_until = now + store.settings.lock_duration
            self._timer(msg.locked_until, "lock", store, (msg.sequence_number, token))

    @operation
    def receive_deferred(
        self,
        path: str,
        sequence_numbers: Iterable[int],
        *,
        mode: ReceiveMode = "peek_lock",
        session_id: str | None = None,
        owner: Owner | None = None,
    ) -> list[BrokerMessage]:
        """``receive-by-sequence-number``: all-or-nothing, MessageNotFound names the first missing one."""
        _check_mode(mode)
        now = self._now()
        self._process_time()
        store = self._store(path)
        record = self._session_for(store, session_id, owner, now)
        picked: list[BrokerMessage] = []
        for seq in dict.fromkeys(sequence_numbers):  # a repeated number is received once
            msg = store.messages.get(seq)
            if (
                msg is None
                or msg.state != MessageState.DEFERRED
                or msg.lock_token is not None
                or (record is not None and msg.session_id != record.session_id)
            ):
                raise MessageNotFound(f"No deferred message with sequence number {seq} in {store.path}")
            picked.append(msg)
        out: list[BrokerMessage] = []
        for msg in picked:
            if mode == "receive_and_delete":
                store.remove(msg.sequence_number)
            else:
                msg.from_deferred = True
                self._lock(store, msg, record, now)
            out.append(msg.snapshot())
        return out

    @operation
    def peek(
        self, path: str, from_seq: int = 1, max_count: int = 1, *, session_id: str | None = None
    ) -> list[BrokerMessage]:
        """Browse without locking, in sequence order, including locked, deferred and scheduled messages."""
        self._process_time()
        store = self._store(path)
        if session_id is not None and store.settings.requires_session:
            session_id = store.canonical_session_id(session_id)
        out: list[BrokerMessage] = []
        for msg in store.iter_from(from_seq):
            if len(out) >= max_count:
                break
            if session_id is None or msg.session_id == session_id:
                out.append(msg.snapshot())
        return out

    # --------------------------------------------------------------------------------------- settlement

    def _locked(self, path: str, lock_token: uuid.UUID) -> tuple[MessageStore, BrokerMessage]:
        now = self._now()
        self._process_time()
        store = self._store(path)
        seq = store.by_token.get(lock_token)
        msg = store.messages.get(seq) if seq is not None else None
        if msg is None or msg.lock_token != lock_token:
            if store.settings.requires_session:
                raise SessionLockLost(
                    f"The session lock covering lock token {lock_token} on {store.path} was lost"
                )
            raise MessageLockLost(
                f"The lock token {lock_token} on {store.path} is unknown or expired; "
                "the message may have been delivered again"
            )
        if msg.session_id is not None and store.settings.requires_session:
            record = store.sessions.get(msg.session_id)
            if record is None or record.locked_until is None or record.locked_until <= now:
                raise SessionLockLost(f"The session lock for {msg.session_id!r} on {store.path} was lost")
        return store, msg

    def _unlock(self, store: MessageStore, msg: BrokerMessage) -> None:
        if msg.lock_token is not None:
            store.by_token.pop(msg.lock_token, None)
            if msg.session_id is not None and msg.session_id in store.sessions:
                store.sessions[msg.session_id].lock_tokens.discard(msg.lock_token)
        msg.lock_token = None
        msg.locked_until = None

    def _return(self, store: MessageStore, msg: BrokerMessage, now: float) -> None:
        """Put an unlocked message back where receivers find it (or expire it if its time is up)."""
        if msg.from_deferred:
            msg.from_deferred = False
            msg.state = MessageState.DEFERRED
        if msg.expires_at is not None and msg.expires_at <= now:
            self._expire(store, msg, now)
            return
        if msg.expires_at is not None:
            self._timer(msg.expires_at, "ttl", store, msg.sequence_number)
        if msg.state == MessageState.ACTIVE:
            store.mark_available(msg)
            self._notify(store, msg.session_id)

    def _unlock_failed(self, store: MessageStore, msg: BrokerMessage, now: float) -> None:
        """Abandon or lock loss: one more failed delivery, dead-lettered past MaxDeliveryCount."""
        self._unlock(store, msg)
        msg.delivery_count += 1
        limit = store.settings.max_delivery_count
        if not store.settings.is_dead_letter and msg.delivery_count >= limit:
            self._dead_letter(
                store,
                msg,
                now,
                MAX_DELIVERY_REASON,
                f"Message could not be consumed after {limit} delivery attempts.",
            )
            return
        self._return(store, msg, now)

    @operation
    def complete(self, path: str, lock_token: uuid.UUID) -> None:
        """Settle with success: the message is gone."""
        store, msg = self._locked(path, lock_token)
        store.remove(msg.sequence_number)

    @operation
    def abandon(self, path: str, lock_token: uuid.UUID, properties: Mapping[str, Any] | None = None) -> None:
        """Give the message back with delivery count + 1, merging ``properties`` into its app properties."""
        store, msg = self._locked(path, lock_token)
        msg.modified_properties.update(properties or {})
        self._unlock_failed(store, msg, self._now())

    @operation
    def release(self, path: str, lock_token: uuid.UUID) -> None:
        """Give the message back untouched: it was never processed (prefetch buffer), so no count."""
        store, msg = self._locked(path, lock_token)
        self._unlock(store, msg)
        self._return(store, msg, self._now())

    @operation
    def defer(self, path: str, lock_token: uuid.UUID, properties: Mapping[str, Any] | None = None) -> None:
        """Set the message aside; only ``receive_deferred`` by sequence number reaches it again."""
        store, msg = self._locked(path, lock_token)
        msg.modified_properties.update(properties or {})
        self._unlock(store, msg)
        msg.from_deferred = False
        msg.state = MessageState.DEFERRED
        self._return(store, msg, self._now())

    @operation
    def dead_letter(
        self,
        path: str,
        lock_token: uuid.UUID,
        reason: str | None = None,
        description: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        """Move the message to the dead-letter queue (or the entity's ForwardDeadLetteredMessagesTo)."""
        store, msg = self._locked(path, lock_token)
        if store.settings.is_dead_letter:
            raise InvalidOperation(f"Messages in {store.path} cannot be dead-lettered again")
        msg.modified_properties.update(properties or {})
        self._dead_letter(store, msg, self._now(), reason, description)

    def _dead_letter(
        self, store: MessageStore, msg: BrokerMessage, now: float, reason: str | None, description: str | None
    ) -> None:
        store.remove(msg.sequence_number)
        self._unlock(store, msg)
        msg.dead_letter_reason = reason
        msg.dead_letter_description = description
        msg.dead_letter_source = store.settings.entity
        msg.state = MessageState.ACTIVE
        msg.from_deferred = False
        msg.expires_at = None
        rec = self._receivables[store.settings.entity.lower()]
        forward = rec.props.forward_dead_lettered_to
        if forward:
            incoming = IncomingMessage(
                msg.bare,
                msg.message_id,
                msg.session_id,
                None,
                None,
                dict(msg.annotations),
                system_properties=msg.system_properties,
                application_properties=msg.application_properties,
            )
            self._accept(self._sendables[forward.lower()], incoming, now, 1, carried=msg)
            return
        msg.entity_path = rec.dead_letter.path
        rec.dead_letter.add(msg, now)
        self._notify(rec.dead_letter, None)

    def _expire(self, store: MessageStore, msg: BrokerMessage, now: float) -> None:
        if store.settings.dead_lettering_on_expiration:
            self._dead_letter(
                store, msg, now, TTL_EXPIRED_REASON, "The message expired and was dead lettered."
            )
        else:
            store.remove(msg.sequence_number)

    @operation
    def renew_lock(self, path: str, lock_tokens: Iterable[uuid.UUID]) -> list[float]:
        """Extend message locks by the entity's lock duration; all-or-nothing."""
        now = self._now()
        tokens = list(lock_tokens)
        found = [self._locked(path, token) for token in tokens]
        out: list[float] = []
        for store, _ in found:
            if store.settings.requires_session:
                raise InvalidOperation(
                    f"Messages of {store.path} are locked by their session: renew the session"
                )
        for store, msg in found:
            msg.locked_until = now + store.settings.lock_duration
            self._timer(msg.locked_until, "lock", store, (msg.sequence_number, msg.lock_token))
            out.append(msg.locked_until)
        return out
