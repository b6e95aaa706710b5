"""Broker core, sessions: accept, FIFO, exclusivity, lock expiry and renewal, state, listing."""

from __future__ import annotations

import pytest

from dtf_sb.emulator.broker import (
    Broker,
    EntityCounts,
    FakeClock,
    IncomingMessage,
    InvalidOperation,
    MessageLockLost,
    MessageNotFound,
    QueueProperties,
    SessionCannotBeLocked,
    SessionLock,
    SessionLockLost,
    SessionStateTooLarge,
)

START = 1_700_000_000.0
Q = "hub/orchestrator"


def msg(session_id: str, body: bytes = b"x", **kwargs: object) -> IncomingMessage:
    return IncomingMessage(body, None, session_id, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def broker(clock: FakeClock) -> Broker:
    return Broker(
        [
            QueueProperties(
                Q, requires_session=True, lock_duration=30.0, max_delivery_count=2, max_message_size=100
            )
        ],
        clock=clock,
    )


def bodies(broker: Broker, session_id: str, owner: str, count: int = 10) -> list[bytes]:
    return [m.bare for m in broker.receive(Q, max_count=count, session_id=session_id, owner=owner)]


def test_send_requires_a_session_id(broker: Broker) -> None:
    with pytest.raises(InvalidOperation):
        broker.send(Q, [IncomingMessage(b"no session")])


def test_next_available_picks_the_oldest_waiting_session(broker: Broker) -> None:
    broker.send(Q, [msg("b", b"b1"), msg("a", b"a1"), msg("b", b"b2")])
    assert broker.accept_session(Q, None, "w1") == SessionLock("b", START + 30.0)
    assert broker.accept_session(Q, None, "w2") == SessionLock("a", START + 30.0)
    assert broker.accept_session(Q, None, "w3") is None


def test_messages_are_fifo_per_session_and_only_for_the_holder(broker: Broker) -> None:
    broker.send(Q, [msg("s", b"1"), msg("other", b"o"), msg("s", b"2"), msg("s", b"3")])
    broker.accept_session(Q, "s", "w1")
    first = broker.receive(Q, max_count=1, session_id="s", owner="w1")
    assert [m.bare for m in first] == [b"1"]
    assert first[0].session_id == "s"
    assert bodies(broker, "s", "w1") == [b"2", b"3"]
    with pytest.raises(SessionLockLost):
        broker.receive(Q, max_count=1, session_id="s", owner="w2")
    with pytest.raises(SessionLockLost):
        broker.receive(Q, max_count=1, session_id="other", owner="w1")  # accepted by nobody
    assert first[0].lock_token is not None
    broker.abandon(Q, first[0].lock_token)
    assert bodies(broker, "s", "w1") == [b"1"]  # back at the head of its session


def test_named_session_can_be_locked_without_messages(broker: Broker) -> None:
    assert broker.accept_session(Q, "empty", "w1") == SessionLock("empty", START + 30.0)
    assert bodies(broker, "empty", "w1") == []
    broker.send(Q, [msg("empty", b"late")])
    assert bodies(broker, "empty", "w1") == [b"late"]


def test_a_locked_session_cannot_be_locked_by_another_owner(broker: Broker) -> None:
    broker.send(Q, [msg("s")])
    broker.accept_session(Q, "s", "w1")
    with pytest.raises(SessionCannotBeLocked) as info:
        broker.accept_session(Q, "s", "w2")
    assert info.value.condition == "com.microsoft:session-cannot-be-locked"
    assert broker.accept_session(Q, None, "w2") is None  # next-available skips locked sessions
    assert broker.accept_session(Q, "s", "w1") is not None  # the holder may accept again (renews)


def test_next_available_skips_sessions_with_nothing_receivable(broker: Broker, clock: FakeClock) -> None:
    broker.send(Q, [msg("scheduled", scheduled_enqueue_time=START + 100)])
    broker.accept_session(Q, "stateful", "w1")
    broker.set_session_state(Q, "stateful", "w1", b"state only")
    broker.release_session(Q, "stateful", "w1")
    assert broker.accept_session(Q, None, "w2") is None
    clock.advance(100)
    assert broker.accept_session(Q, None, "w2") == SessionLock("scheduled", START + 130.0)


def test_session_lock_expiry_returns_messages_and_reports_loss(broker: Broker, clock: FakeClock) -> None:
    lost: list[tuple[str, str, object]] = []
    available: list[tuple[str, str | None]] = []
    broker.add_session_lost_listener(lambda path, sid, owner: lost.append((path, sid, owner)))
    broker.add_listener(lambda path, sid: available.append((path, sid)))
    broker.send(Q, [msg("s", b"1"), msg("s", b"2")])
    broker.accept_session(Q, "s", "w1")
    (m,) = broker.receive(Q, max_count=1, session_id="s", owner="w1")
    assert m.locked_until == START + 30.0
    assert broker.next_deadline() == START + 30.0
    clock.advance(30)
    broker.tick()
    assert lost == [(Q, "s", "w1")]
    assert available[-1] == (Q, "s")
    assert m.lock_token is not None
    with pytest.raises(SessionLockLost) as info:
        broker.complete(Q, m.lock_token)
    assert info.value.condition == "com.microsoft:session-lock-lost"
    with pytest.raises(SessionLockLost):
        broker.renew_session_lock(Q, "s", "w1")
    with pytest.raises(SessionLockLost):
        broker.get_session_state(Q, "s", "w1")
    broker.accept_session(Q, None, "w2")
    got = broker.receive(Q, max_count=5, session_id="s", owner="w2")
    assert [(g.bare, g.delivery_count) for g in got] == [(b"1", 1), (b"2", 0)]


def test_settling_a_session_message_after_the_lock_lapsed_is_refused_without_tick(
    broker: Broker, clock: FakeClock
) -> None:
    broker.send(Q, [msg("s")])
    broker.accept_session(Q, "s", "w1")
    (m,) = broker.receive(Q, max_count=1, session_id="s", owner="w1")
    clock.advance(31)
    assert m.lock_token is not None
    with pytest.raises(SessionLockLost):
        broker.complete(Q, m.lock_token)


def test_renew_session_lock_extends_message_locks_too(broker: Broker, clock: FakeClock) -> None:
    broker.send(Q, [msg("s")])
    broker.accept_session(Q, "s", "w1")
    (m,) = broker.receive(Q, max_count=1, session_id="s", owner="w1")
    clock.advance(20)
    assert broker.renew_session_lock(Q, "s", "w1") == START + 50.0
    clock.advance(20)
    broker.tick()
    assert broker.peek(Q, 1, 1)[0].locked_until == START + 50.0
    assert m.lock_token is not None
    broker.complete(Q, m.lock_token)
    broker.send(Q, [msg("s")])
    (m2,) = broker.receive(Q, max_count=1, session_id="s", owner="w1")
    assert m2.lock_token is not None
    with pytest.raises(InvalidOperation):
        broker.renew_lock(Q, [m2.lock_token])  # session messages are renewed through their session


def test_release_session_returns_unsettled_messages(broker: Broker) -> None:
    broker.send(Q, [msg("s", b"1")])
    broker.accept_session(Q, "s", "w1")
    bodies(broker, "s", "w1")
    broker.release_session(Q, "s", "w2")  # not the holder: no effect
    assert broker.accept_session(Q, None, "w2") is None
    broker.release_session(Q, "s", "w1")
    broker.release_session(Q, "s", "w1")  # idempotent
    broker.accept_session(Q, None, "w2")
    assert [
        (m.bare, m.delivery_count) for m in broker.receive(Q, max_count=1, session_id="s", owner="w2")
    ] == [(b"1", 1)]


def test_release_owner_unlocks_all_of_its_sessions(broker: Broker) -> None:
    broker.send(Q, [msg("a"), msg("b")])
    broker.accept_session(Q, "a", "conn-1")
    broker.accept_session(Q, "b", "conn-1")
    broker.release_owner("conn-1")
    assert broker.accept_session(Q, "a", "conn-2") is not None
    assert broker.accept_session(Q, "b", "conn-2") is not None


def test_max_delivery_count_applies_to_session_messages(broker: Broker) -> None:
    broker.send(Q, [msg("s", b"poison")])
    for _ in range(2):
        broker.accept_session(Q, "s", "w1")
        (m,) = broker.receive(Q, max_count=1, session_id="s", owner="w1")
        assert m.lock_token is not None
        broker.abandon(Q, m.lock_token)
        broker.release_session(Q, "s", "w1")
    assert broker.entity_counts(Q) == EntityCounts(0, 0, 0, 1, 0)
    (dead,) = broker.receive(f"{Q}/$DeadLetterQueue", max_count=1)  # the DLQ is not session-enabled
    assert (dead.bare, dead.session_id, dead.dead_letter_reason) == (
        b"poison",
        "s",
        "MaxDeliveryCountExceeded",
    )


def test_session_state_set_get_clear_and_size_limit(broker: Broker) -> None:
    broker.accept_session(Q, "s", "w1")
    assert broker.get_session_state(Q, "s", "w1") is None
    broker.set_session_state(Q, "s", "w1", b"v1")
    assert broker.get_session_state(Q, "s", "w1") == b"v1"
    with pytest.raises(SessionStateTooLarge) as info:
        broker.set_session_state(Q, "s", "w1", b"x" * 101)
    assert info.value.condition == "amqp:link:message-size-exceeded"
    assert broker.get_session_state(Q, "s", "w1") == b"v1"
    with pytest.raises(SessionLockLost):
        broker.set_session_state(Q, "s", "w2", b"intruder")
    broker.release_session(Q, "s", "w1")
    broker.accept_session(Q, "s", "w2")
    assert broker.get_session_state(Q, "s", "w2") == b"v1"  # state outlives the lock
    broker.set_session_state(Q, "s", "w2", None)
    assert broker.get_session_state(Q, "s", "w2") is None


def test_list_sessions_with_messages_or_state(broker: Broker, clock: FakeClock) -> None:
    broker.send(Q, [msg("m1"), msg("m2")])
    broker.accept_session(Q, "st", "w1")
    broker.set_session_state(Q, "st", "w1", b"s")
    broker.accept_session(Q, "nothing", "w1")
    assert broker.list_sessions(Q) == ["m1", "m2", "st"]
    assert broker.list_sessions(Q, skip=1, top=1) == ["m2"]
    clock.advance(10)
    broker.set_session_state(Q, "st", "w1", b"newer")
    assert broker.list_sessions(Q, last_updated_since=START + 5) == ["st"]
    broker.set_session_state(Q, "st", "w1", None)
    broker.accept_session(Q, "m1", "w1")
    for m in broker.receive(Q, max_count=5, session_id="m1", owner="w1"):
        assert m.lock_token is not None
        broker.complete(Q, m.lock_token)
    assert broker.list_sessions(Q) == ["m2"]


def test_deferred_session_messages_need_the_session_lock(broker: Broker) -> None:
    broker.send(Q, [msg("s", b"1"), msg("s", b"2")])
    broker.accept_session(Q, "s", "w1")
    one, _two = broker.receive(Q, max_count=2, session_id="s", owner="w1")
    assert one.lock_token is not None
    broker.defer(Q, one.lock_token)
    with pytest.raises(SessionLockLost):
        broker.receive_deferred(Q, [1], session_id="s", owner="w2")
    broker.accept_session(Q, "t", "w1")
    with pytest.raises(MessageNotFound):
        broker.receive_deferred(Q, [1], session_id="t", owner="w1")  # belongs to another session
    (d,) = broker.receive_deferred(Q, [1], session_id="s", owner="w1")
    assert d.bare == b"1" and d.lock_token is not None
    broker.complete(Q, d.lock_token)


def test_peek_per_session(broker: Broker) -> None:
    broker.send(Q, [msg("a", b"a1"), msg("b", b"b1"), msg("a", b"a2")])
    assert [m.bare for m in broker.peek(Q, 1, 10, session_id="a")] == [b"a1", b"a2"]
    assert [m.bare for m in broker.peek(Q, 2, 10, session_id="a")] == [b"a2"]


def test_lock_lost_for_unknown_tokens_on_non_session_dlq(broker: Broker) -> None:
    import uuid

    with pytest.raises(MessageLockLost):
        broker.complete(f"{Q}/$DeadLetterQueue", uuid.uuid4())
    with pytest.raises(SessionLockLost):
        broker.complete(Q, uuid.uuid4())


def test_entity_refs_tell_the_server_how_to_attach(broker: Broker) -> None:
    main = broker.resolve(Q.upper())
    assert (main.path, main.kind, main.requires_session, main.lock_duration, main.max_message_size) == (
        Q,
        "queue",
        True,
        30.0,
        100,
    )
    assert main.sendable and main.receivable
    dead = broker.resolve(f"{Q}/$DeadLetterQueue")
    assert (dead.requires_session, dead.sendable, dead.receivable) == (False, False, True)


def test_session_ids_are_case_insensitive(broker: Broker) -> None:
    """Service Bus treats "AbC" and "abc" as one session: one lock, one FIFO, one state."""
    broker.send(Q, [msg("AbC", b"first"), msg("abc", b"second")])
    lock = broker.accept_session(Q, None, "owner-1")
    assert lock is not None and lock.session_id == "AbC"
    assert bodies(broker, "ABC", "owner-1") == [b"first", b"second"]
    with pytest.raises(SessionCannotBeLocked):
        broker.accept_session(Q, "abc", "owner-2")
    broker.set_session_state(Q, "aBc", "owner-1", b"state")
    assert broker.get_session_state(Q, "AbC", "owner-1") == b"state"
    assert broker.list_sessions(Q) == ["AbC"]
    assert [m.bare for m in broker.peek(Q, 1, 10, session_id="abc")] == [b"first", b"second"]
