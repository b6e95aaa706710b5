"""The broker: Service Bus semantics as a synchronous state machine over an injected clock.

The AMQP server calls these methods from its event loop; nothing here blocks, sleeps or does I/O. Time-driven
changes (lock expiry, scheduled messages coming due, TTL expiry, session lock expiry) happen in ``tick()``,
which every public method also runs first, so results never depend on whether the server ticked on time.
``next_deadline()`` tells the server how long it may sleep.

Choices where Service Bus leaves room:
* A peek-locked message whose receiver went away stays locked until its lock expires (Service Bus ties the
  lock to the message, not the link); ``release_owner`` only unlocks that owner's sessions.
* Releasing or losing a session returns its unsettled messages with delivery count + 1, as an abandon would.
* Messages do not expire while locked; they expire as soon as the lock ends. Dead-letter queues never expire.
* A duplicate send is accepted and dropped; ``schedule`` answers a duplicate with the original sequence
  number.
* Sequence numbers are per sendable entity. A forwarded or topic-fanned message gets a new number in the
  entity it lands in and keeps the first one as ``enqueued_sequence_number``; dead-lettered messages keep
  their number.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, SystemClock
from .entities import EntityProperties, QueueProperties, SubscriptionProperties, TopicProperties
from .errors import (
    EntityNotFound,
    InvalidOperation,
    MessageLockLost,
    MessageNotFound,
    MessageTooLarge,
    SessionCannotBeLocked,
    SessionLockLost,
    SessionStateTooLarge,
)
from .filters import MessageView
from .messages import (
    BrokerMessage,
    EntityCounts,
    EntityRef,
    IncomingMessage,
    MessageState,
    Owner,
    ReceiveMode,
    SessionLock,
)
from .queue import MessageStore, StoreSettings
from .sessions import SessionRecord

__all__ = ["AvailabilityListener", "Broker", "SessionLostListener"]

AvailabilityListener = Callable[[str, "str | None"], None]
"""Called with (entity path, session id or None) when a message may have become receivable."""

SessionLostListener = Callable[[str, str, Owner], None]
"""Called with (entity path, session id, former owner) when a session lock expires."""

MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"
TTL_EXPIRED_REASON = "TTLExpiredException"
MAX_FORWARD_HOPS = 4
DEAD_LETTER_SUFFIX = "$DeadLetterQueue"
TRANSFER_DEAD_LETTER_SUFFIX = "$Transfer/$DeadLetterQueue"


@dataclass
class _Receivable:
    """A queue or subscription: its main store and its dead-letter stores."""

    props: QueueProperties | SubscriptionProperties
    path: str
    main: MessageStore
    dead_letter: MessageStore
    transfer_dead_letter: MessageStore


@dataclass
class _Sendable:
    """A queue or topic as a send target: duplicate detection and the sequence counter live here."""

    path: str
    props: QueueProperties | TopicProperties
    receivable: _Receivable | None
    subscriptions: list[_Receivable] = field(default_factory=list)
    seen: dict[str, tuple[float, int]] = field(default_factory=dict)
    seen_order: deque[tuple[str, float]] = field(default_factory=deque)
    topic_seq: int = 0
    # (sequence number returned by schedule/send) -> where the scheduled copies were stored
    scheduled: dict[int, list[tuple[MessageStore, int]]] = field(default_factory=dict)

    def next_seq(self) -> int:
        if self.receivable is not None:
            return self.receivable.main.next_sequence_number()
        self.topic_seq += 1
        return self.topic_seq


class Broker:
    """All entities of one emulated namespace."""

    def __init__(self, entities: Iterable[EntityProperties], *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._refs: dict[str, EntityRef] = {}
        self._stores: dict[str, MessageStore] = {}
        self._receivables: dict[str, _Receivable] = {}
        self._sendables: dict[str, _Sendable] = {}
        self._timers: list[tuple[float, int, str, MessageStore, Any]] = []
        self._counter = itertools.count()
        self._listeners: list[AvailabilityListener] = []
        self._lost_listeners: list[SessionLostListener] = []
        self._pending: list[tuple[str, str | None]] = []
        self._pending_lost: list[tuple[str, str, Owner]] = []
        self._flushing = False
        for props in entities:
            self._add_entity(props)
        self._check_forwarding()

    # ----------------------------------------------------------------------------------------- topology

    def _add_entity(self, props: EntityProperties) -> None:
        if props.name.lower() in self._sendables:
            raise ValueError(f"entity {props.name!r} is configured twice (names are case-insensitive)")
        if isinstance(props, QueueProperties):
            rec = self._add_receivable(props, props.name, "queue", props.max_message_size)
            self._sendables[props.name.lower()] = _Sendable(props.name, props, rec)
            return
        topic = _Sendable(props.name, props, None)
        self._sendables[props.name.lower()] = topic
        self._refs[props.name.lower()] = EntityRef(
            props.name, props.name, "topic", None, False, 0.0, props.max_message_size
        )
        for sub in props.subscriptions:
            path = f"{props.name}/Subscriptions/{sub.name}"
            topic.subscriptions.append(
                self._add_receivable(sub, path, "subscription", props.max_message_size)
            )

    def _add_receivable(
        self, props: QueueProperties | SubscriptionProperties, path: str, kind: Any, max_size: int
    ) -> _Receivable:
        def store(suffix: str | None, dead: bool) -> MessageStore:
            full = path if suffix is None else f"{path}/{suffix}"
            settings = StoreSettings(
                path=full,
                entity=path,
                lock_duration=props.lock_duration,
                max_delivery_count=props.max_delivery_count,
                requires_session=props.requires_session and not dead,
                default_ttl=props.default_ttl,
                dead_lettering_on_expiration=props.dead_lettering_on_expiration,
                is_dead_letter=dead,
                max_message_size=max_size,
            )
            sub_queue = (
                None
                if suffix is None
                else "deadletter"
                if suffix == DEAD_LETTER_SUFFIX
                else "transfer_deadletter"
            )
            self._refs[full.lower()] = EntityRef(
                full, path, kind, sub_queue, settings.requires_session, props.lock_duration, max_size
            )
            s = self._stores[full.lower()] = MessageStore(settings)
            return s

        rec = _Receivable(
            props,
            path,
            store(None, False),
            store(DEAD_LETTER_SUFFIX, True),
            store(TRANSFER_DEAD_LETTER_SUFFIX, True),
        )
        self._receivables[path.lower()] = rec
        return rec

    def _check_forwarding(self) -> None:
        for rec in self._receivables.values():
            for attr in ("forward_to", "forward_dead_lettered_to"):
                target = getattr(rec.props, attr)
                if target and target.lower() not in self._sendables:
                    raise ValueError(f"{rec.path}: {attr} names unknown entity {target!r}")

    def resolve(self, path: str) -> EntityRef:
        """Map an address (bare path or ``amqp[s]://host/path``, any case) to its entity."""
        return self._refs[self._key(path)]

    def _key(self, path: str) -> str:
        original = path
        if "://" in path:
            path = path.split("://", 1)[1]
            path = path.split("/", 1)[1] if "/" in path else ""
        key = path.strip("/").lower()
        if key not in self._refs:
            names = ", ".join(sorted(r.path for r in self._refs.values() if r.sub_queue is None)) or "(none)"
            raise EntityNotFound(
                f"The messaging entity {original!r} could not be found. Configured entities: {names}"
            )
        return key

    def entities(self) -> list[EntityRef]:
        """Every configured queue, topic and subscription (not their dead-letter sub-queues)."""
        return [ref for ref in self._refs.values() if ref.sub_queue is None]

    # ---------------------------------------------------------------------------------------- listeners

    def add_listener(self, callback: AvailabilityListener) -> None:
        """Register a wake-up hook. Callbacks run after the broker's state is consistent again."""
        self._listeners.append(callback)

    def remove_listener(self, callback: AvailabilityListener) -> None:
        self._listeners.remove(callback)

    def add_session_lost_listener(self, callback: SessionLostListener) -> None:
        """Register a hook for expired session locks, so the server can detach the holder's link."""
        self._lost_listeners.append(callback)

    def _notify(self, store: MessageStore, session_id: str | None) -> None:
        self._pending.append((store.path, session_id if store.settings.requires_session else None))

    def _flush(self) -> None:
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._pending or self._pending_lost:
                if self._pending_lost:
                    path, sid, owner = self._pending_lost.pop(0)
                    for lost_cb in list(self._lost_listeners):
                        lost_cb(path, sid, owner)
                    continue
                path, maybe_sid = self._pending.pop(0)
                for cb in list(self._listeners):
                    cb(path, maybe_sid)
        finally:
            self._flushing = False

    # --------------------------------------------------------------------------------------------- time

    def _now(self) -> float:
        return self._clock.now()

    def _timer(self, when: float, kind: str, store: MessageStore, key: Any) -> None:
        heapq.heappush(self._timers, (when, next(self._counter), kind, store, key))

    def _timer_live(self, when: float, kind: str, store: MessageStore, key: Any) -> bool:
        if kind == "session":
            record = store.sessions.get(key)
            return record is not None and record.owner is not None and record.locked_until == when
        msg = store.messages.get(key[0] if kind == "lock" else key)
        if msg is None:
            return False
        if kind == "lock":
            return msg.lock_token == key[1] and msg.locked_until == when
        if kind == "schedule":
            return msg.state == MessageState.SCHEDULED and msg.scheduled_enqueue_time == when
        return msg.expires_at == when and msg.lock_token is None and msg.state != MessageState.SCHEDULED

    def tick(self) -> None:
        """Apply every time-driven change that is due, then notify listeners."""
        self._process_time()
        self._flush()

    def next_deadline(self) -> float | None:
        """Epoch seconds of the next time-driven change, or None when nothing is pending."""
        while self._timers:
            when, _, kind, store, key = self._timers[0]
            if self._timer_live(when, kind, store, key):
                return when
            heapq.heappop(self._timers)
        return None

    def _process_time(self) -> None:
        now = self._now()
        while self._timers and self._timers[0][0] <= now:
            when, _, kind, store, key = heapq.heappop(self._timers)
            if not self._timer_live(when, kind, store, key):
                continue
            if kind == "lock":
                self._unlock_failed(store, store.messages[key[0]], now)
            elif kind == "schedule":
                self._activate(store, store.messages[key], now)
            elif kind == "ttl":
                self._expire(store, store.messages[key], now)
            else:
                record = store.sessions[key]
                owner = record.owner
                self._lose_session(store, record, now)
                self._pending_lost.append((store.path, key, owner))

    # ------------------------------------------------------------------------------------------ sending

    def send(self, path: str, messages: list[IncomingMessage]) -> list[int | None]:
        """Enqueue a batch atomically; returns sequence numbers, None for duplicates dropped silently."""
        now = self._now()
        self._process_time()
        target = self._sendable(path, messages)
        result = [self._accept(target, msg, now, 0)[0] for msg in messages]
        self._flush()
        return result

    def schedule(self, path: str, messages: list[IncomingMessage], enqueue_time: float) -> list[int]:
        """The ``schedule-message`` operation: each message becomes visible at ``enqueue_time``."""
        now = self._now()
        self._process_time()
        target = self._sendable(path, messages)
        result: list[int] = []
        for msg in messages:
            msg.scheduled_enqueue_time = enqueue_time
            seq, placements = self._accept(target, msg, now, 0)
            if seq is None:
                seq = target.seen[msg.message_id][1] if msg.message_id in target.seen else 0
            elif placements:
                target.scheduled[seq] = placements
            result.append(seq)
        self._flush()
        return result

    def cancel_scheduled(self, path: str, sequence_numbers: Iterable[int]) -> None:
        """Remove scheduled messages; all-or-nothing, MessageNotFound if any is not scheduled here."""
        self._process_time()
        target = self._sendable(path, [])
        seqs = list(sequence_numbers)
        plans: list[list[tuple[MessageStore, int]]] = []
        for seq in seqs:
            placements = target.scheduled.get(seq)
            if placements is None and target.receivable is not None:
                placements = [(target.receivable.main, seq)]
            live = [
                (store, s)
                for store, s in placements or []
                if s in store.messages and store.messages[s].state == MessageState.SCHEDULED
            ]
            if not live:
                raise MessageNotFound(f"No scheduled message with sequence number {seq} in {target.path}")
            plans.append(live)
        for seq, live in zip(seqs, plans, strict=True):
            for store, s in live:
                store.remove(s)
            target.scheduled.pop(seq, None)
        self._flush()

    def _sendable(self, path: str, messages: list[IncomingMessage]) -> _Sendable:
        ref = self._refs[self._key(path)]
        if not ref.sendable:
            raise InvalidOperation(f"Cannot send to {ref.path}: only queues and topics accept messages")
        target = self._sendables[ref.path.lower()]
        limit = target.props.max_message_size
        for msg in messages:
            if len(msg.bare) > limit:
                raise MessageTooLarge(
                    f"The message ({len(msg.bare)} bytes) exceeds the maximum size of {limit} bytes "
                    f"of {ref.path}"
                )
            if (
                target.receivable is not None
                and target.receivable.props.requires_session
                and not msg.session_id
            ):
                raise InvalidOperation(
                    f"{ref.path} requires sessions: the message must carry a session id (group-id)"
                )
        return target

    def _is_duplicate(self, target: _Sendable, msg: IncomingMessage, now: float) -> bool:
        props = target.props
        if not props.requires_duplicate_detection or not msg.message_id:
            return False
        window = props.duplicate_detection_window
        while target.seen_order and target.seen_order[0][1] + window <= now:
            mid, seen_at = target.seen_order.popleft()
            if mid in target.seen and target.seen[mid][0] == seen_at:
                del target.seen[mid]
        hit = target.seen.get(msg.message_id)
        return hit is not None and hit[0] + window > now

    def _remember(self, target: _Sendable, msg: IncomingMessage, now: float, seq: int) -> None:
        if target.props.requires_duplicate_detection and msg.message_id:
            target.seen[msg.message_id] = (now, seq)
            target.seen_order.append((msg.message_id, now))

    def _accept(
        self,
        target: _Sendable,
        msg: IncomingMessage,
        now: float,
        hops: int,
        carried: BrokerMessage | None = None,
    ) -> tuple[int | None, list[tuple[MessageStore, int]]]:
        """Route one message into ``target``.

        Returns the entity's sequence number (None for a duplicate) and where scheduled copies landed.
        """
        if self._is_duplicate(target, msg, now):
            return None, []
        seq = target.next_seq()
        self._remember(target, msg, now, seq)
        placements: list[tuple[MessageStore, int]] = []
        if target.receivable is not None:
            self._deliver_to(target.receivable, msg, now, hops, seq, carried, placements, fresh=True)
        else:
            view = MessageView(
                {**msg.system_properties, "message_id": msg.message_id, "session_id": msg.session_id},
                msg.application_properties,
            )
            for sub in target.subscriptions:
                assert isinstance(sub.props, SubscriptionProperties)
                if any(rule.filter.matches(view) for rule in sub.props.effective_rules):
                    self._deliver_to(sub, msg, now, hops, seq, carried, placements, fresh=False)
        return seq, placements

    def _deliver_to(
        self,
        rec: _Receivable,
        msg: IncomingMessage,
        now: float,
        hops: int,
        origin_seq: int,
        carried: BrokerMessage | None,
        placements: list[tuple[MessageStore, int]],
        *,
        fresh: bool,
    ) -> None:
        forward = rec.props.forward_to
        if forward:
            if hops >= MAX_FORWARD_HOPS:
                self._enqueue(rec.transfer_dead_letter, msg, now, None, origin_seq, carried, placements)
                return
            _, more = self._accept(self._sendables[forward.lower()], msg, now, hops + 1, carried)
            placements.extend(more)
            return
        if rec.props.requires_session and not msg.session_id:
            # Only reachable through a topic or forwarding: Service Bus cannot deliver it, so it is parked.
            self._dead_letter_new(rec, msg, now, origin_seq, "SessionIdIsMissing", placements)
            return
        seq = origin_seq if fresh else None
        self._enqueue(rec.main, msg, now, seq, origin_seq, carried, placements)

    def _dead_letter_new(
        self,
        rec: _Receivable,
        msg: IncomingMessage,
        now: float,
        origin_seq: int,
        reason: str,
        placements: list[tuple[MessageStore, int]],
    ) -> None:
        record = self._record(rec.main, msg, now, None, origin_seq, None)
        record.dead_letter_reason = reason
        record.dead_letter_source = rec.path
        record.state = MessageState.ACTIVE
        record.expires_at = None
        rec.dead_letter.add(record, now)
        self._notify(rec.dead_letter, None)

    def _record(
        self,
        store: MessageStore,
        msg: IncomingMessage,
        now: float,
        seq: int | None,
        origin_seq: int,
        carried: BrokerMessage | None,
    ) -> BrokerMessage:
        ttl = msg.ttl
        default = store.settings.default_ttl
        if default is not None and (ttl is None or ttl <= 0 or ttl > default):
            ttl = default
        if ttl is not None and ttl <= 0:
            ttl = None
        record = BrokerMessage(
            msg.bare,
            msg.message_id,
            msg.session_id,
            dict(msg.annotations),
            seq if seq is not None else store.next_sequence_number(),
            now,
            store.path,
            enqueued_sequence_number=origin_seq,
            ttl=ttl,
            scheduled_enqueue_time=msg.scheduled_enqueue_time,
            system_properties=msg.system_properties,
            application_properties=msg.application_properties,
        )
        if carried is not None:
            record.modified_properties = dict(carried.modified_properties)
            record.dead_letter_reason = carried.dead_letter_reason
            record.dead_letter_description = carried.dead_letter_description
            record.dead_letter_source = carried.dead_letter_source
            record.delivery_count = carried.delivery_count
        return record

    def _enqueue(
        self,
        store: MessageStore,
        msg: IncomingMessage,
        now: float,
        seq: int | None,
        origin_seq: int,
        carried: BrokerMessage | None,
        placements: list[tuple[MessageStore, int]],
    ) -> None:
        record = self._record(store, msg, now, seq, origin_seq, carried)
        if store.settings.is_dead_letter:
            record.ttl = None
        when = record.scheduled_enqueue_time
        if when is not None and when > now and not store.settings.is_dead_letter:
            record.state = MessageState.SCHEDULED
            store.add(record, now)
            self._timer(when, "schedule", store, record.sequence_number)
            placements.append((store, record.sequence_number))
            return
        store.add(record, now)
        self._start_ttl(store, record, now)
        self._notify(store, record.session_id)

    def _start_ttl(self, store: MessageStore, msg: BrokerMessage, now: float) -> None:
        if msg.ttl is not None and not store.settings.is_dead_letter:
            msg.expires_at = now + msg.ttl
            self._timer(msg.expires_at, "ttl", store, msg.sequence_number)

    def _activate(self, store: MessageStore, msg: BrokerMessage, now: float) -> None:
        when = msg.scheduled_enqueue_time if msg.scheduled_enqueue_time is not None else now
        msg.state = MessageState.ACTIVE
        msg.enqueued_time = when
        if msg.ttl is not None:
            msg.expires_at = when + msg.ttl
            if msg.expires_at <= now:
                self._expire(store, msg, now)
                return
            self._timer(msg.expires_at, "ttl", store, msg.sequence_number)
        store.mark_available(msg)
        self._notify(store, msg.session_id)

    # ---------------------------------------------------------------------------------------- receiving

    def _store(self, path: str) -> MessageStore:
        ref = self._refs[self._key(path)]
        if not ref.receivable:
            raise InvalidOperation(f"Cannot receive from topic {ref.path}: receive from a subscription")
        return self._stores[ref.path.lower()]

    def _session_for(
        self, store: MessageStore, session_id: str | None, owner: Owner | None, now: float
    ) -> SessionRecord | None:
        if not store.settings.requires_session:
            if session_id is not None:
                raise InvalidOperation(f"{store.path} is not session-enabled; no session id is allowed")
            return None
        if session_id is None:
            raise InvalidOperation(f"{store.path} requires sessions: accept a session first")
        record = store.sessions.get(session_id)
        if record is None or not record.held_by(owner, now):
            raise SessionLockLost(f"The session lock for {session_id!r} on {store.path} is not held")
        return record

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
        now = self._now()
        self._process_time()
        store = self._store(path)
        record = self._session_for(store, session_id, owner, now)
        taken = store.take_available(session_id if record is not None else None, max(0, max_count))
        out: list[BrokerMessage] = []
        for msg in taken:
            if mode == "receive_and_delete":
                store.remove(msg.sequence_number)
            else:
                self._lock(store, msg, record, now)
            out.append(msg.snapshot())
        self._flush()
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
        now = self._now()
        self._process_time()
        store = self._store(path)
        record = self._session_for(store, session_id, owner, now)
        picked: list[BrokerMessage] = []
        for seq in sequence_numbers:
            msg = store.messages.get(seq)
            if (
                msg is None
                or msg.state != MessageState.DEFERRED
                or msg.lock_token is not None
                or (record is not None and msg.session_id != session_id)
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
        self._flush()
        return out

    def peek(
        self, path: str, from_seq: int = 1, max_count: int = 1, *, session_id: str | None = None
    ) -> list[BrokerMessage]:
        """Browse without locking, in sequence order, including locked, deferred and scheduled messages."""
        self._process_time()
        store = self._store(path)
        out: list[BrokerMessage] = []
        for msg in store.iter_from(from_seq):
            if len(out) >= max_count:
                break
            if session_id is None or msg.session_id == session_id:
                out.append(msg.snapshot())
        self._flush()
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

    def complete(self, path: str, lock_token: uuid.UUID) -> None:
        """Settle with success: the message is gone."""
        store, msg = self._locked(path, lock_token)
        store.remove(msg.sequence_number)
        self._flush()

    def abandon(self, path: str, lock_token: uuid.UUID, properties: Mapping[str, Any] | None = None) -> None:
        """Give the message back with delivery count + 1, merging ``properties`` into its app properties."""
        store, msg = self._locked(path, lock_token)
        msg.modified_properties.update(properties or {})
        self._unlock_failed(store, msg, self._now())
        self._flush()

    def release(self, path: str, lock_token: uuid.UUID) -> None:
        """Give the message back untouched: it was never processed (prefetch buffer), so no count."""
        store, msg = self._locked(path, lock_token)
        self._unlock(store, msg)
        self._return(store, msg, self._now())
        self._flush()

    def defer(self, path: str, lock_token: uuid.UUID, properties: Mapping[str, Any] | None = None) -> None:
        """Set the message aside; only ``receive_deferred`` by sequence number reaches it again."""
        store, msg = self._locked(path, lock_token)
        msg.modified_properties.update(properties or {})
        self._unlock(store, msg)
        msg.from_deferred = False
        msg.state = MessageState.DEFERRED
        self._return(store, msg, self._now())
        self._flush()

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
        self._flush()

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
        self._flush()
        return out

    # ----------------------------------------------------------------------------------------- sessions

    def _session_store(self, path: str) -> MessageStore:
        store = self._store(path)
        if not store.settings.requires_session:
            raise InvalidOperation(f"{store.path} is not session-enabled")
        return store

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
            candidates = [
                (seq, sid) for seq, sid in store.available_session_ids() if not store.sessions[sid].is_locked
            ]
            if not candidates:
                self._flush()
                return None
            session_id = min(candidates)[1]
        record = store.session(session_id)
        if record.is_locked and record.owner != owner:
            raise SessionCannotBeLocked(
                f"The session {session_id!r} on {store.path} is locked by another receiver"
            )
        record.owner = owner
        record.locked_until = now + store.settings.lock_duration
        self._extend_session(store, record)
        self._flush()
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
            self._notify(store, record.session_id)
        store.forget_if_disposable(record.session_id)

    def release_session(self, path: str, session_id: str, owner: Owner) -> None:
        """Give up a session lock; unsettled messages return with delivery count + 1. Idempotent."""
        now = self._now()
        self._process_time()
        store = self._session_store(path)
        record = store.sessions.get(session_id)
        if record is not None and record.owner is not None and record.owner == owner:
            self._lose_session(store, record, now)
        self._flush()

    def renew_session_lock(self, path: str, session_id: str, owner: Owner) -> float:
        """Extend the session lock (and with it the locks of the session's received messages)."""
        now = self._now()
        self._process_time()
        store = self._session_store(path)
        record = self._session_for(store, session_id, owner, now)
        assert record is not None
        record.locked_until = now + store.settings.lock_duration
        self._extend_session(store, record)
        self._flush()
        return record.locked_until

    def get_session_state(self, path: str, session_id: str, owner: Owner) -> bytes | None:
        now = self._now()
        self._process_time()
        record = self._session_for(self._session_store(path), session_id, owner, now)
        assert record is not None
        self._flush()
        return record.state

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
        self._flush()

    def list_sessions(
        self, path: str, *, last_updated_since: float | None = None, skip: int = 0, top: int = 100
    ) -> list[str]:
        """Sessions with messages or state (``get-message-sessions``).

        With ``last_updated_since`` only sessions whose state or messages changed at or after that time.
        """
        self._process_time()
        store = self._session_store(path)
        ids = [
            record.session_id
            for record in store.sessions.values()
            if (record.message_count > 0 or record.state is not None)
            and (last_updated_since is None or record.last_updated >= last_updated_since)
        ]
        self._flush()
        return ids[max(0, skip) : max(0, skip) + max(0, top)]

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
        self._flush()

    # ------------------------------------------------------------------------------------------- counts

    def entity_counts(self, path: str) -> EntityCounts:
        """Counts of one queue, subscription, dead-letter queue, or (summed over subscriptions) topic."""
        self._process_time()
        ref = self._refs[self._key(path)]
        if ref.kind == "topic":
            parts = [self.entity_counts(sub.path) for sub in self._sendables[ref.path.lower()].subscriptions]
            return (
                EntityCounts(*(sum(values) for values in zip(*parts, strict=True)))
                if parts
                else EntityCounts(0, 0, 0, 0, 0)
            )
        store = self._stores[ref.path.lower()]
        active = scheduled = deferred = locked = 0
        for msg in store.messages.values():
            if msg.lock_token is not None:
                locked += 1
            elif msg.state == MessageState.ACTIVE:
                active += 1
            elif msg.state == MessageState.SCHEDULED:
                scheduled += 1
            else:
                deferred += 1
        dead = 0
        if ref.sub_queue is None:
            dead = len(self._receivables[ref.path.lower()].dead_letter)
        self._flush()
        return EntityCounts(active, scheduled, deferred, dead, locked)
