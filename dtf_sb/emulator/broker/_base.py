"""Shared state of the broker: topology, address resolution, listeners and the timer heap.

The broker's operations are split by concept into mixins over this base: ``routing`` (send, schedule,
duplicate detection, forwarding, topic fan-out), ``delivery`` (receive, peek, settlement, expiry) and
``sessions`` (session locks and state). They share one clock, one timer heap and one notification queue.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .clock import Clock, SystemClock
from .entities import EntityProperties, QueueProperties, SubscriptionProperties, TopicProperties
from .errors import EntityNotFound, InvalidOperation, SessionLockLost
from .messages import BrokerMessage, EntityRef, IncomingMessage, MessageState, Owner
from .queue import MessageStore, SessionRecord, StoreSettings

__all__ = ["AvailabilityListener", "BrokerBase", "SessionLostListener", "operation"]

log = logging.getLogger("dtf_sb.emulator.broker")

_P = ParamSpec("_P")
_R = TypeVar("_R")

AvailabilityListener = Callable[[str, "str | None"], None]
"""Called with (entity path, session id or None) when a message may have become receivable."""

SessionLostListener = Callable[[str, str, Owner], None]
"""Called with (entity path, session id, former owner) when a session lock expires."""

DEAD_LETTER_SUFFIX = "$DeadLetterQueue"
TRANSFER_DEAD_LETTER_SUFFIX = "$Transfer/$DeadLetterQueue"


def operation(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Mark a public broker operation: listeners hear about its effects when it returns or raises.

    Flushing in ``finally`` matters because an operation that fails (say, a lock already lost) may still
    have applied due time-driven changes first, and those must wake receivers.
    """

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        finally:
            broker = args[0]
            assert isinstance(broker, BrokerBase)
            broker._flush()

    return wrapper


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
    scheduled_live: int = 0

    def next_seq(self) -> int:
        if self.receivable is not None:
            return self.receivable.main.next_sequence_number()
        self.topic_seq += 1
        return self.topic_seq


class BrokerBase:
    """State and plumbing shared by the operation mixins; ``Broker`` is the class to use."""

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
                        self._call_listener(lost_cb, path, sid, owner)
                    continue
                path, maybe_sid = self._pending.pop(0)
                for cb in list(self._listeners):
                    self._call_listener(cb, path, maybe_sid)
        finally:
            self._flushing = False

    @staticmethod
    def _call_listener(callback: Callable[..., None], *args: Any) -> None:
        # The operation that caused the notification has already taken effect; a failing listener must not
        # make it look failed to its caller (a send reported as failed would be retried and duplicated).
        try:
            callback(*args)
        except Exception:
            log.exception("broker listener %r failed for %r", callback, args)

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

    # ------------------------------------------------------------------------------------------ lookups

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
        record = store.sessions.get(store.canonical_session_id(session_id))
        if record is None or not record.held_by(owner, now):
            raise SessionLockLost(f"The session lock for {session_id!r} on {store.path} is not held")
        return record

    if TYPE_CHECKING:
        # Implemented by the mixins; declared here so each mixin type-checks on its own.
        def _accept(
            self,
            target: _Sendable,
            msg: IncomingMessage,
            now: float,
            hops: int,
            carried: BrokerMessage | None = None,
            origin_seq: int | None = None,
        ) -> tuple[int | None, list[tuple[MessageStore, int]]]: ...

        def _activate(self, store: MessageStore, msg: BrokerMessage, now: float) -> None: ...

        def _expire(self, store: MessageStore, msg: BrokerMessage, now: float) -> None: ...

        def _unlock_failed(self, store: MessageStore, msg: BrokerMessage, now: float) -> None: ...

        def _lose_session(self, store: MessageStore, record: SessionRecord, now: float) -> None: ...
