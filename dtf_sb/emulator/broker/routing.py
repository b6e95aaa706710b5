"""Sending: batches, scheduling, duplicate detection, auto-forwarding and topic fan-out.

Every message enters through ``_accept`` on a sendable entity (queue or topic), so duplicate detection,
forwarding hops and subscription rules are applied the same way to sends, schedules and forwarded
dead-letters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from ._base import BrokerBase, _Receivable, _Sendable, operation
from .entities import SubscriptionProperties
from .errors import InvalidOperation, MessageNotFound, MessageTooLarge
from .filters import MessageView
from .messages import BrokerMessage, IncomingMessage, MessageState
from .queue import MessageStore

__all__ = ["MAX_FORWARD_HOPS", "RoutingMixin"]

MAX_FORWARD_HOPS = 4
"""Service Bus refuses auto-forwarding chains longer than four hops; the message is parked instead."""


class RoutingMixin(BrokerBase):
    """Send-side operations of ``Broker``; a batch is validated whole before any message is stored."""

    @operation
    def send(self, path: str, messages: list[IncomingMessage]) -> list[int | None]:
        """Enqueue a batch atomically; returns sequence numbers, None for duplicates dropped silently."""
        now = self._now()
        self._process_time()
        target = self._sendable(path, messages)
        result = [self._accept(target, msg, now, 0)[0] for msg in messages]
        return result

    @operation
    def schedule(self, path: str, messages: list[IncomingMessage], enqueue_time: float) -> list[int]:
        """The ``schedule-message`` operation: each message becomes visible at ``enqueue_time``."""
        now = self._now()
        self._process_time()
        target = self._sendable(path, messages)
        result: list[int] = []
        for original in messages:
            msg = replace(original, scheduled_enqueue_time=enqueue_time)
            seq, placements = self._accept(target, msg, now, 0)
            if seq is None:
                # A duplicate: answer with the number the first copy got, as a retried schedule expects.
                assert msg.message_id is not None
                seq = target.seen[msg.message_id][1]
            elif target.receivable is None or placements != [(target.receivable.main, seq)]:
                self._index_scheduled(target, seq, placements)
            result.append(seq)
        return result

    def _index_scheduled(
        self, target: _Sendable, seq: int, placements: list[tuple[MessageStore, int]]
    ) -> None:
        """Remember where a forwarded or fanned-out scheduled message landed, for ``cancel_scheduled``.

        Entries of messages that have since become active are dropped whenever the index doubles, so a
        long run of timers does not grow it without bound.
        """
        target.scheduled[seq] = placements
        if len(target.scheduled) >= max(64, 2 * target.scheduled_live):
            target.scheduled = {
                key: live
                for key, where in target.scheduled.items()
                if (
                    live := [
                        (s, n)
                        for s, n in where
                        if n in s.messages and s.messages[n].state == MessageState.SCHEDULED
                    ]
                )
            }
            target.scheduled_live = len(target.scheduled)

    @operation
    def cancel_scheduled(self, path: str, sequence_numbers: Iterable[int]) -> None:
        """Remove scheduled messages; all-or-nothing, MessageNotFound if any is not scheduled here."""
        self._process_time()
        target = self._sendable(path, [])
        seqs = list(dict.fromkeys(sequence_numbers))
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
        origin_seq: int | None = None,
    ) -> tuple[int | None, list[tuple[MessageStore, int]]]:
        """Route one message into ``target``.

        Returns the entity's sequence number (None for a duplicate) and where scheduled copies landed.
        """
        if self._is_duplicate(target, msg, now):
            return None, []
        seq = target.next_seq()
        self._remember(target, msg, now, seq)
        origin = seq if origin_seq is None else origin_seq
        placements: list[tuple[MessageStore, int]] = []
        if target.receivable is not None:
            self._deliver_to(target.receivable, msg, now, hops, seq, origin, carried, placements)
        else:
            view = MessageView(
                {**msg.system_properties, "message_id": msg.message_id, "session_id": msg.session_id},
                msg.application_properties,
            )
            for sub in target.subscriptions:
                assert isinstance(sub.props, SubscriptionProperties)
                if any(rule.filter.matches(view) for rule in sub.props.effective_rules):
                    self._deliver_to(sub, msg, now, hops, None, origin, carried, placements)
        return seq, placements

    def _deliver_to(
        self,
        rec: _Receivable,
        msg: IncomingMessage,
        now: float,
        hops: int,
        seq: int | None,
        origin_seq: int,
        carried: BrokerMessage | None,
        placements: list[tuple[MessageStore, int]],
    ) -> None:
        """Place a message in a queue or subscription, following its ForwardTo.

        ``seq`` is the number already assigned by the queue itself, None when the store must assign one.
        """
        forward = rec.props.forward_to
        if forward:
            if hops >= MAX_FORWARD_HOPS:
                self._enqueue(rec.transfer_dead_letter, msg, now, None, origin_seq, carried, placements)
                return
            _, more = self._accept(self._sendables[forward.lower()], msg, now, hops + 1, carried, origin_seq)
            placements.extend(more)
            return
        if rec.props.requires_session and not msg.session_id:
            # Only reachable through a topic or forwarding: Service Bus cannot deliver it, so it is parked.
            self._dead_letter_new(rec, msg, now, origin_seq, "SessionIdIsMissing")
            return
        self._enqueue(rec.main, msg, now, seq, origin_seq, carried, placements)

    def _dead_letter_new(
        self,
        rec: _Receivable,
        msg: IncomingMessage,
        now: float,
        origin_seq: int,
        reason: str,
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
