"""Session operations: accept (named or next available), renew, release, state and listing.

Service Bus has no per-message locks in a session: the session lock covers every message the holder
received, so losing it (expiry, release, the owner going away) returns all of them at once.
"""

from __future__ import annotations

from ._base import BrokerBase, operation
from .errors import InvalidOperation, SessionCannotBeLocked, SessionStateTooLarge
from .messages import Owner, SessionLock
from .queue import MessageStore, SessionRecord

__all__ = ["SessionMixin"]


class SessionMixin(BrokerBase):
    """Session operations of ``Broker``; every one checks that the caller holds the lock it claims."""

    def _session_store(self, path: str) -> MessageStore:
        store = self._store(path)
        if not store.settings.requires_session:
            raise InvalidOperation(f"{store.path} is not session-enabled")
        return store

    @operation
    def accept_session(self, path: str, session_id: str | None, owner: Owner) -> SessionLock | None:
        """Lock a named session (which may have no messages yet) or, with None, the next available one.

        Next-available picks the unlocked session whose oldest available message is oldest. None means no
        session is available now; the server keeps the attach pending and retries on a listener call.
        Accepting a session the same owner already holds renews it.
        """
        now = self._now()
        self._process_time()
        store = self._session_store(path)
        if session_id is None:
            session_id = store.next_ready_session()
            if session_id is None:
                return None
        record = store.session(session_id)
        session_id = record.session_id
        if record.is_locked and record.owner != owner:
            raise SessionCannotBeLocked(
                f"The session {session_id!r} on {store.path} is locked by another receiver"
            )
        record.owner = owner
        record.locked_until = now + store.settings.lock_duration
        self._extend_session(store, record)
        return SessionLock(session_id, record.locked_until)

    def _extend_session(self, store: MessageStore, record: SessionRecord) -> None:
        for token in record.lock_tokens:
            store.messages[store.by_token[token]].locked_until = record.locked_until
        assert record.locked_until is not None
        self._timer(record.locked_until, "session", store, record.session_id)

    def _lose_session(self, store: MessageStore, record: SessionRecord, now: float) -> None:
        tokens = list(record.lock_tokens)
        record.owner = None
        record.locked_until = None
        for token in tokens:
            seq = store.by_token.get(token)
            if seq is not None:
                self._unlock_failed(store, store.messages[seq], now)
        record.lock_tokens.clear()
        if store.head(record.session_id) is not None:
            store.offer_session(record.session_id)
            self._notify(store, record.session_id)
        store.forget_if_disposable(record.session_id)

    @operation
    def release_session(self, path: str, session_id: str, owner: Owner) -> None:
        """Give up a session lock; unsettled messages return with delivery count + 1. Idempotent."""
        now = self._now()
        self._process_time()
        store = self._session_store(path)
        record = store.sessions.get(store.canonical_session_id(session_id))
        if record is not None and record.owner is not None and record.owner == owner:
            self._lose_session(store, record, now)

    @operation
    def renew_session_lock(self, path: str, session_id: str, owner: Owner) -> float:
        """Extend the session lock (and with it the locks of the session's received messages)."""
        now = self._now()
        self._process_time()
        store = self._session_store(path)
        record = self._session_for(store, session_id, owner, now)
        assert record is not None
        record.locked_until = now + store.settings.lock_duration
        self._extend_session(store, record)
        return record.locked_until

    @operation
    def get_session_state(self, path: str, session_id: str, owner: Owner) -> bytes | None:
        """The session state, None when cleared or never set; only the lock holder may read it."""
        now = self._now()
        self._process_time()
        record = self._session_for(self._session_store(path), session_id, owner, now)
        assert record is not None
        return record.state

    @operation
    def set_session_state(self, path: str, session_id: str, owner: Owner, state: bytes | None) -> None:
        """Replace the session state; None (or empty) clears it."""
        now = self._now()
        self._process_time()
        store = self._session_store(path)
        record = self._session_for(store, session_id, owner, now)
        assert record is not None
        if state is not None and len(state) > store.settings.max_message_size:
            raise SessionStateTooLarge(
                f"Session state of {len(state)} bytes exceeds the maximum of "
                f"{store.settings.max_message_size} bytes of {store.path}"
            )
        record.state = bytes(state) if state else None
        record.last_updated = now

    @operation
    def list_sessions(
        self, path: str, *, last_updated_since: float | None = None, skip: int = 0, top: int = 100
    ) -> list[str]:
        """Sessions with messages or state (``get-message-sessions``).

        With ``last_updated_since`` only sessions whose state or messages changed at or after that time; the
        server maps the SDK's ``DateTime.MaxValue`` sentinel to None. Order is the order sessions appeared.
        """
        self._process_time()
        store = self._session_store(path)
        ids = [
            record.session_id
            for record in store.sessions.values()
            if (record.message_count > 0 or record.state is not None)
            and (last_updated_since is None or record.last_updated >= last_updated_since)
        ]
        return ids[max(0, skip) : max(0, skip) + max(0, top)]

    @operation
    def release_owner(self, owner: Owner) -> None:
        """The owner's link or connection is gone: unlock its sessions now.

        Peek-locked messages of non-session entities stay locked until their lock expires, as on Service
        Bus, where a message lock outlives the receiver that took it.
        """
        now = self._now()
        self._process_time()
        for store in self._stores.values():
            if not store.settings.requires_session:
                continue
            for record in list(store.sessions.values()):
                if record.owner is not None and record.owner == owner:
                    self._lose_session(store, record, now)
