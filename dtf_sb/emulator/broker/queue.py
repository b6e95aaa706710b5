"""Storage of one receivable sub-queue: a queue's or subscription's main queue or its dead-letter queue.

The store only indexes messages (by sequence number, by lock token, and a per-session heap of what is
available now, and which sessions are ready for next-available acceptance); the state transitions and
their timing live in the broker's operation modules (``routing``, ``delivery``, ``sessions``). Keeping the
indexes here lets those stay a set of readable rules rather than bookkeeping.
"""

from __future__ import annotations

import bisect
import heapq
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from .messages import BrokerMessage, MessageState, Owner

__all__ = ["MessageStore", "SessionRecord", "StoreSettings"]


@dataclass
class SessionRecord:
    """Per-session bookkeeping: holder, lock expiry, the lock tokens issued under it, and the state blob."""

    session_id: str
    state: bytes | None = None
    last_updated: float = 0.0
    owner: Owner | None = None
    locked_until: float | None = None
    lock_tokens: set[uuid.UUID] = field(default_factory=set)
    message_count: int = 0
    """Messages of this session in the store, in any state (active, locked, deferred, scheduled)."""

    @property
    def is_locked(self) -> bool:
        return self.owner is not None

    def held_by(self, owner: Owner | None, now: float) -> bool:
        """Whether ``owner`` holds a lock that has not expired yet (expiry may not have been ticked)."""
        return (
            self.owner is not None
            and self.owner == owner
            and self.locked_until is not None
            and self.locked_until > now
        )

    @property
    def disposable(self) -> bool:
        """Nothing would be lost by forgetting the record: no messages, no state, no lock."""
        return self.message_count == 0 and self.state is None and self.owner is None


@dataclass(frozen=True)
class StoreSettings:
    """The entity properties one store needs; dead-letter stores get a reduced set."""

    path: str
    entity: str
    lock_duration: float
    max_delivery_count: int
    requires_session: bool
    default_ttl: float | None
    dead_lettering_on_expiration: bool
    is_dead_letter: bool
    max_message_size: int


class MessageStore:
    """Messages of one sub-queue in sequence order, with O(log n) access to the next available one."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.messages: dict[int, BrokerMessage] = {}
        self._order: list[int] = []
        self.by_token: dict[uuid.UUID, int] = {}
        self._available: dict[str | None, list[int]] = {}
        self._queued: set[int] = set()
        self.sessions: dict[str, SessionRecord] = {}
        # Service Bus session ids are case-insensitive: "AbC" and "abc" are one session. Every id is
        # mapped to the spelling its session was first seen with, so the structures keyed by session id
        # stay plain dicts and the id a receiver is told is stable.
        self._session_spelling: dict[str, str] = {}
        self._ready_sessions: list[tuple[int, str]] = []
        self._ready_set: set[str] = set()
        self._next_seq = 1

    @property
    def path(self) -> str:
        return self.settings.path

    def next_sequence_number(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    # ---------------------------------------------------------------------------------------- membership

    def add(self, msg: BrokerMessage, now: float) -> None:
        """Insert a message; sequence numbers may arrive out of order (dead-lettered messages keep theirs)."""
        seq = msg.sequence_number
        if seq in self.messages:
            raise RuntimeError(f"sequence number {seq} already stored in {self.path}")
        self.messages[seq] = msg
        if not self._order or self._order[-1] < seq:
            self._order.append(seq)
        else:
            bisect.insort(self._order, seq)
        if self.settings.requires_session and msg.session_id is not None:
            msg.session_id = self.canonical_session_id(msg.session_id)
            record = self.session(msg.session_id)
            record.message_count += 1
            record.last_updated = now
        if msg.state == MessageState.ACTIVE and msg.lock_token is None:
            self.mark_available(msg)

    def remove(self, seq: int) -> BrokerMessage:
        msg = self.messages.pop(seq)
        index = bisect.bisect_left(self._order, seq)
        del self._order[index]
        self._queued.discard(seq)
        if msg.lock_token is not None:
            self.by_token.pop(msg.lock_token, None)
        if self.settings.requires_session and msg.session_id is not None:
            record = self.sessions.get(msg.session_id)
            if record is not None:
                record.message_count -= 1
                if msg.lock_token is not None:
                    record.lock_tokens.discard(msg.lock_token)
                self.forget_if_disposable(msg.session_id)
        return msg

    def __len__(self) -> int:
        return len(self.messages)

    def iter_from(self, from_seq: int) -> Iterator[BrokerMessage]:
        """Messages in sequence order starting at ``from_seq``, without copying the index.

        Browsing a long queue for a few messages must not cost the queue's length; the store must not be
        modified while the iterator is in use.
        """
        index = bisect.bisect_left(self._order, from_seq)
        while index < len(self._order):
            yield self.messages[self._order[index]]
            index += 1

    # -------------------------------------------------------------------------------------- availability

    def _key(self, msg: BrokerMessage) -> str | None:
        return msg.session_id if self.settings.requires_session else None

    def mark_available(self, msg: BrokerMessage) -> None:
        if msg.sequence_number in self._queued:
            return
        self._queued.add(msg.sequence_number)
        heapq.heappush(self._available.setdefault(self._key(msg), []), msg.sequence_number)
        if self.settings.requires_session and msg.session_id is not None:
            self.offer_session(msg.session_id)

    def _is_available(self, seq: int) -> bool:
        msg = self.messages.get(seq)
        return msg is not None and msg.state == MessageState.ACTIVE and msg.lock_token is None

    def head(self, key: str | None) -> int | None:
        """Lowest available sequence number for a session (or for the whole non-session store)."""
        heap = self._available.get(key)
        while heap:
            seq = heap[0]
            if seq in self._queued and self._is_available(seq):
                return seq
            heapq.heappop(heap)
            self._queued.discard(seq)
        if heap is not None:
            del self._available[key]
        return None

    def take_available(self, key: str | None, max_count: int) -> list[BrokerMessage]:
        taken: list[BrokerMessage] = []
        while len(taken) < max_count:
            seq = self.head(key)
            if seq is None:
                break
            heapq.heappop(self._available[key])
            self._queued.discard(seq)
            taken.append(self.messages[seq])
        return taken

    def offer_session(self, session_id: str) -> None:
        """Note that a session may now be unlocked with something to deliver.

        Next-available acceptance pops this heap instead of scanning every session, so accepting stays
        cheap with thousands of sessions (one per orchestration instance). Entries are validated when popped.
        """
        record = self.sessions.get(session_id)
        if session_id in self._ready_set or record is None or record.is_locked:
            return
        head = self.head(session_id)
        if head is not None:
            self._ready_set.add(session_id)
            heapq.heappush(self._ready_sessions, (head, session_id))

    def next_ready_session(self) -> str | None:
        """An unlocked session with an available message, oldest first; None if there is none."""
        while self._ready_sessions:
            _, session_id = heapq.heappop(self._ready_sessions)
            self._ready_set.discard(session_id)
            record = self.sessions.get(session_id)
            if record is not None and not record.is_locked and self.head(session_id) is not None:
                return session_id
        return None

    # ------------------------------------------------------------------------------------------- sessions

    def canonical_session_id(self, session_id: str) -> str:
        """The spelling under which the session of ``session_id`` (compared case-insensitively) is kept."""
        return self._session_spelling.get(session_id.casefold(), session_id)

    def session(self, session_id: str) -> SessionRecord:
        session_id = self.canonical_session_id(session_id)
        record = self.sessions.get(session_id)
        if record is None:
            record = self.sessions[session_id] = SessionRecord(session_id)
            self._session_spelling[session_id.casefold()] = session_id
        return record

    def forget_if_disposable(self, session_id: str) -> None:
        record = self.sessions.get(session_id)
        if record is not None and record.disposable:
            del self.sessions[session_id]
            self._session_spelling.pop(session_id.casefold(), None)
