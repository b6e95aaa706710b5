"""Property-based check of the broker core: no message is lost or duplicated, whatever happens.

Random sequences of sends (immediate, scheduled, with TTL), receives in both modes, every settlement,
deferral, lock and TTL expiry by clock advances, and DLQ consumption must leave each sent message in exactly
one place: consumed (completed, received-and-deleted or cancelled), in the dead-letter queue, or still in
the queue.
"""

from __future__ import annotations

import uuid

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dtf_sb.emulator.broker import (
    Broker,
    FakeClock,
    IncomingMessage,
    MessageLockLost,
    MessageState,
    QueueProperties,
    SessionLockLost,
)

Q = "q"
DLQ = "q/$DeadLetterQueue"
S = "s"
START = 1_700_000_000.0


def body(n: int) -> bytes:
    return n.to_bytes(4, "big")


class BrokerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(START)
        self.broker = Broker(
            [
                QueueProperties(
                    Q, lock_duration=10.0, max_delivery_count=3, dead_lettering_on_expiration=True
                ),
                QueueProperties(
                    S,
                    requires_session=True,
                    lock_duration=10.0,
                    max_delivery_count=3,
                    dead_lettering_on_expiration=True,
                ),
            ],
            clock=self.clock,
        )
        self.sent: dict[str, set[bytes]] = {Q: set(), S: set()}
        self.consumed: dict[str, list[bytes]] = {Q: [], S: []}
        self.held: list[tuple[str, uuid.UUID, bytes]] = []
        self.next_id = 0
        self.owner = 0
        self.session: str | None = None

    # ------------------------------------------------------------------------------------------- actions

    @rule(
        count=st.integers(1, 3),
        delay=st.one_of(st.none(), st.floats(1, 30)),
        ttl=st.one_of(st.none(), st.floats(1, 40)),
        session=st.sampled_from(["a", "b", "c"]),
        entity=st.sampled_from([Q, S]),
    )
    def send(self, count: int, delay: float | None, ttl: float | None, session: str, entity: str) -> None:
        msgs = []
        for _ in range(count):
            self.next_id += 1
            when = None if delay is None else self.clock.now() + delay
            sid = session if entity == S else None
            msgs.append(IncomingMessage(body(self.next_id), None, sid, ttl, when))
            self.sent[entity].add(body(self.next_id))
        assert all(seq is not None for seq in self.broker.send(entity, msgs))

    @rule(count=st.integers(1, 4), delete=st.booleans())
    def receive(self, count: int, delete: bool) -> None:
        got = self.broker.receive(Q, max_count=count, mode="receive_and_delete" if delete else "peek_lock")
        self._took(Q, got, delete)

    @rule(count=st.integers(1, 4), delete=st.booleans())
    def receive_dead_letters(self, count: int, delete: bool) -> None:
        got = self.broker.receive(DLQ, max_count=count, mode="receive_and_delete" if delete else "peek_lock")
        self._took(DLQ, got, delete)

    @rule()
    def accept_next_session(self) -> None:
        if self.session is not None:
            self.broker.release_session(S, self.session, self.owner)
        self.owner += 1
        lock = self.broker.accept_session(S, None, self.owner)
        self.session = lock.session_id if lock else None
        if lock is None:  # with every session unlocked, nothing may be waiting
            waiting = [
                m
                for m in self.broker.peek(S, 1, 100_000)
                if m.state == MessageState.ACTIVE and m.lock_token is None
            ]
            assert waiting == [], "next-available missed a session with messages"

    @precondition(lambda self: self.session is not None)
    @rule(count=st.integers(1, 4))
    def receive_session(self, count: int) -> None:
        assert self.session is not None
        try:
            got = self.broker.receive(S, max_count=count, session_id=self.session, owner=self.owner)
        except SessionLockLost:
            self.session = None
            return
        self._took(S, got, False)

    def _took(self, path: str, got: list, delete: bool) -> None:  # type: ignore[type-arg]
        entity = S if path == S else Q
        for m in got:
            assert m.state != MessageState.SCHEDULED
            if delete:
                self.consumed[entity].append(m.bare)
            else:
                assert m.lock_token is not None
                self.held.append((path, m.lock_token, m.bare))

    @precondition(lambda self: self.held)
    @rule(
        index=st.integers(0, 100),
        action=st.sampled_from(["complete", "abandon", "release", "defer", "dead_letter"]),
    )
    def settle(self, index: int, action: str) -> None:
        path, token, data = self.held.pop(index % len(self.held))
        entity = S if path == S else Q
        try:
            if action == "complete":
                self.broker.complete(path, token)
                self.consumed[entity].append(data)
            elif action == "abandon":
                self.broker.abandon(path, token, {"n": 1})
            elif action == "release":
                self.broker.release(path, token)
            elif action == "defer":
                self.broker.defer(path, token)
            elif path != DLQ:
                self.broker.dead_letter(path, token, "test")
        except (MessageLockLost, SessionLockLost):
            pass

    @rule()
    def receive_a_deferred_message(self) -> None:
        deferred = [
            m.sequence_number
            for m in self.broker.peek(Q, 1, 10_000)
            if m.state == MessageState.DEFERRED and m.lock_token is None
        ]
        if deferred:
            self._took(Q, self.broker.receive_deferred(Q, deferred[:1]), False)

    @rule(entity=st.sampled_from([Q, S]), index=st.integers(0, 100))
    def cancel_a_scheduled_message(self, entity: str, index: int) -> None:
        scheduled = [m for m in self.broker.peek(entity, 1, 100_000) if m.state == MessageState.SCHEDULED]
        if scheduled:
            chosen = scheduled[index % len(scheduled)]
            self.broker.cancel_scheduled(entity, [chosen.sequence_number])
            self.consumed[entity].append(chosen.bare)

    @precondition(lambda self: any(path == Q for path, _, _ in self.held))
    @rule(index=st.integers(0, 100))
    def renew(self, index: int) -> None:
        tokens = [token for path, token, _ in self.held if path == Q]
        token = tokens[index % len(tokens)]
        try:
            (until,) = self.broker.renew_lock(Q, [token])
        except MessageLockLost:
            return
        assert until == self.clock.now() + 10.0

    @rule()
    def owner_goes_away(self) -> None:
        self.broker.release_owner(self.owner)
        self.session = None

    @rule(seconds=st.floats(0, 25))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.broker.tick()
        deadline = self.broker.next_deadline()
        assert deadline is None or deadline > self.clock.now()

    # ---------------------------------------------------------------------------------------- invariants

    @invariant()
    def every_message_is_in_exactly_one_place(self) -> None:
        for entity in (Q, S):
            stored = [m.bare for m in self.broker.peek(entity, 1, 100_000)]
            dead = [m.bare for m in self.broker.peek(f"{entity}/$DeadLetterQueue", 1, 100_000)]
            everywhere = stored + dead + self.consumed[entity]
            assert len(everywhere) == len(set(everywhere)), "a message was duplicated"
            assert set(everywhere) == self.sent[entity], "a message was lost"

    @invariant()
    def locks_are_unique_and_counts_agree(self) -> None:
        for path in (Q, DLQ, S):
            messages = self.broker.peek(path, 1, 100_000)
            tokens = [m.lock_token for m in messages if m.lock_token is not None]
            assert len(tokens) == len(set(tokens))
            counts = self.broker.entity_counts(path)
            assert counts.locked == len(tokens)
            assert counts.active + counts.scheduled + counts.deferred + counts.locked == len(messages)
            assert all(0 <= m.delivery_count <= 3 or path == DLQ for m in messages)


TestBrokerMachine = BrokerMachine.TestCase
TestBrokerMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
