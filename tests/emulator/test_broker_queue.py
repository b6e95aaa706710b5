"""Broker core, non-session queues: locks, settlement, delivery counts, TTL, scheduling, dedupe, errors."""

from __future__ import annotations

import uuid

import pytest

from dtf_sb.emulator.broker import (
    Broker,
    EntityCounts,
    EntityNotFound,
    FakeClock,
    IncomingMessage,
    InvalidOperation,
    MessageLockLost,
    MessageNotFound,
    MessageState,
    MessageTooLarge,
    QueueProperties,
)

START = 1_700_000_000.0


def msg(body: bytes = b"x", message_id: str | None = None, **kwargs: object) -> IncomingMessage:
    return IncomingMessage(body, message_id, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def make(clock: FakeClock, **props: object) -> Broker:
    return Broker([QueueProperties("Orders", **props)], clock=clock)  # type: ignore[arg-type]


def test_sequence_numbers_start_at_one_and_increase(clock: FakeClock) -> None:
    broker = make(clock)
    assert broker.send("orders", [msg(b"a"), msg(b"b")]) == [1, 2]
    assert broker.send("orders", [msg(b"c")]) == [3]
    got = broker.receive("orders", max_count=10)
    assert [(m.sequence_number, m.bare, m.delivery_count) for m in got] == [
        (1, b"a", 0),
        (2, b"b", 0),
        (3, b"c", 0),
    ]
    assert all(isinstance(m.lock_token, uuid.UUID) for m in got)
    assert len({m.lock_token for m in got}) == 3
    assert got[0].locked_until == START + 60.0
    assert got[0].enqueued_time == START


def test_complete_removes_and_a_second_settlement_is_lock_lost(clock: FakeClock) -> None:
    broker = make(clock)
    broker.send("orders", [msg()])
    (m,) = broker.receive("orders", max_count=1)
    assert m.lock_token is not None
    broker.complete("orders", m.lock_token)
    assert broker.entity_counts("orders") == EntityCounts(0, 0, 0, 0, 0)
    with pytest.raises(MessageLockLost) as info:
        broker.complete("orders", m.lock_token)
    assert info.value.condition == "com.microsoft:message-lock-lost"
    with pytest.raises(MessageLockLost):
        broker.abandon("orders", uuid.uuid4())


def test_locked_messages_are_not_redelivered_until_the_lock_expires(clock: FakeClock) -> None:
    broker = make(clock, lock_duration=30.0)
    broker.send("orders", [msg()])
    (first,) = broker.receive("orders", max_count=1)
    assert broker.receive("orders", max_count=1) == []
    assert broker.entity_counts("orders").locked == 1
    clock.advance(29.9)
    assert broker.receive("orders", max_count=1) == []
    clock.advance(0.1)
    (again,) = broker.receive("orders", max_count=1)
    assert again.sequence_number == first.sequence_number
    assert again.delivery_count == 1
    assert again.lock_token != first.lock_token
    assert first.lock_token is not None
    with pytest.raises(MessageLockLost):
        broker.complete("orders", first.lock_token)
    assert again.lock_token is not None
    broker.complete("orders", again.lock_token)


def test_renew_lock_extends_and_keeps_the_message(clock: FakeClock) -> None:
    broker = make(clock, lock_duration=30.0)
    broker.send("orders", [msg()])
    (m,) = broker.receive("orders", max_count=1)
    assert m.lock_token is not None
    clock.advance(20)
    assert broker.renew_lock("orders", [m.lock_token]) == [START + 50.0]
    clock.advance(20)
    broker.tick()
    assert broker.receive("orders", max_count=1) == []
    broker.complete("orders", m.lock_token)
    clock.advance(100)
    broker.tick()
    assert broker.entity_counts("orders") == EntityCounts(0, 0, 0, 0, 0)


def test_renewing_an_expired_lock_fails(clock: FakeClock) -> None:
    broker = make(clock, lock_duration=30.0)
    broker.send("orders", [msg()])
    (m,) = broker.receive("orders", max_count=1)
    assert m.lock_token is not None
    clock.advance(31)
    with pytest.raises(MessageLockLost):
        broker.renew_lock("orders", [m.lock_token])


def test_abandon_counts_a_delivery_and_merges_properties(clock: FakeClock) -> None:
    broker = make(clock)
    broker.send("orders", [msg()])
    (m,) = broker.receive("orders", max_count=1)
    assert m.lock_token is not None
    broker.abandon("orders", m.lock_token, {"reason": "busy"})
    (m2,) = broker.receive("orders", max_count=1)
    assert m2.delivery_count == 1
    assert m2.modified_properties == {"reason": "busy"}
    assert m2.lock_token is not None
    broker.abandon("orders", m2.lock_token, {"attempt": 2})
    (m3,) = broker.receive("orders", max_count=1)
    assert m3.modified_properties == {"reason": "busy", "attempt": 2}


def test_release_does_not_count_a_delivery(clock: FakeClock) -> None:
    broker = make(clock, max_delivery_count=1)
    broker.send("orders", [msg()])
    for _ in range(5):
        (m,) = broker.receive("orders", max_count=1)
        assert m.delivery_count == 0
        assert m.lock_token is not None
        broker.release("orders", m.lock_token)
    assert broker.entity_counts("orders") == EntityCounts(1, 0, 0, 0, 0)


def test_max_delivery_count_dead_letters_with_reason(clock: FakeClock) -> None:
    broker = make(clock, max_delivery_count=3, lock_duration=10.0)
    broker.send("orders", [msg(b"poison", "p1")])
    (m,) = broker.receive("orders", max_count=1)
    assert m.lock_token is not None
    broker.abandon("orders", m.lock_token)
    (m,) = broker.receive("orders", max_count=1)
    clock.advance(10)  # a lock expiry counts like an abandon
    broker.tick()
    (m,) = broker.receive("orders", max_count=1)
    assert m.delivery_count == 2
    assert m.lock_token is not None
    broker.abandon("orders", m.lock_token)
    assert broker.receive("orders", max_count=1) == []
    assert broker.entity_counts("orders") == EntityCounts(0, 0, 0, 1, 0)
    (dead,) = broker.receive("orders/$DeadLetterQueue", max_count=1)
    assert dead.bare == b"poison"
    assert dead.sequence_number == 1
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert dead.dead_letter_source == "Orders"
    assert dead.entity_path == "Orders/$DeadLetterQueue"
    assert dead.delivery_count == 3


def test_dead_letter_queue_behaves_like_a_queue(clock: FakeClock) -> None:
    broker = make(clock)
    broker.send("orders", [msg(b"a"), msg(b"b")])
    for m in broker.receive("orders", max_count=2):
        assert m.lock_token is not None
        broker.dead_letter("orders", m.lock_token, "Bad", "it was bad", {"k": "v"})
    dlq = "ORDERS/$deadletterqueue"
    peeked = broker.peek(dlq, 1, 10)
    assert [(p.sequence_number, p.dead_letter_reason, p.dead_letter_description) for p in peeked] == [
        (1, "Bad", "it was bad"),
        (2, "Bad", "it was bad"),
    ]
    assert peeked[0].modified_properties == {"k": "v"}
    a, b = broker.receive(dlq, max_count=2)
    assert a.lock_token is not None and b.lock_token is not None
    broker.abandon(dlq, a.lock_token)
    broker.complete(dlq, b.lock_token)
    (again,) = broker.receive(dlq, max_count=1)
    assert again.lock_token is not None
    with pytest.raises(InvalidOperation):
        broker.dead_letter(dlq, again.lock_token)
    assert broker.entity_counts(dlq) == EntityCounts(0, 0, 0, 0, 1)
    assert broker.entity_counts("orders").dead_lettered == 1


def test_dead_letter_queue_ignores_max_delivery_count(clock: FakeClock) -> None:
    broker = make(clock, max_delivery_count=1)
    broker.send("orders", [msg()])
    (m,) = broker.receive("orders", max_count=1)
    assert m.lock_token is not None
    broker.abandon("orders", m.lock_token)
    for count in range(1, 4):
        (d,) = broker.receive("orders/$DeadLetterQueue", max_count=1)
        assert d.delivery_count == count
        assert d.lock_token is not None
        broker.abandon("orders/$DeadLetterQueue", d.lock_token)


def test_receive_and_delete_removes_immediately(clock: FakeClock) -> None:
    broker = make(clock)
    broker.send("orders", [msg(b"a"), msg(b"b")])
    got = broker.receive("orders", max_count=1, mode="receive_and_delete")
    assert [(m.bare, m.lock_token) for m in got] == [(b"a", None)]
    assert broker.entity_counts("orders") == EntityCounts(1, 0, 0, 0, 0)


def test_ttl_expiry_drops_without_dead_lettering(clock: FakeClock) -> None:
    broker = make(clock, default_ttl=100.0)
    broker.send("orders", [msg(b"short", ttl=10.0), msg(b"default"), msg(b"longer", ttl=1000.0)])
    peeked = broker.peek("orders", 1, 10)
    assert [p.expires_at for p in peeked] == [START + 10, START + 100, START + 100]
    assert broker.next_deadline() == START + 10
    clock.advance(10)
    broker.tick()
    assert [m.bare for m in broker.peek("orders", 1, 10)] == [b"default", b"longer"]
    clock.advance(90)
    broker.tick()
    assert broker.entity_counts("orders") == EntityCounts(0, 0, 0, 0, 0)
    assert broker.next_deadline() is None


def test_ttl_expiry_dead_letters_when_configured(clock: FakeClock) -> None:
    broker = make(clock, dead_lettering_on_expiration=True)
    broker.send("orders", [msg(b"a", ttl=5.0)])
    clock.advance(5)
    (dead,) = broker.receive("orders/$DeadLetterQueue", max_count=1)
    assert dead.dead_letter_reason == "TTLExpiredException"
    assert dead.expires_at is None
    clock.advance(10_000)
    broker.tick()
    # dead-lettered messages never expire; the lock lapsed, so the message is simply available again
    assert broker.entity_counts("orders/$DeadLetterQueue") == EntityCounts(1, 0, 0, 0, 0)


def test_locked_message_expires_when_its_lock_ends(clock: FakeClock) -> None:
    broker = make(clock, lock_duration=30.0, dead_lettering_on_expiration=True)
    broker.send("orders", [msg(ttl=10.0)])
    (m,) = broker.receive("orders", max_count=1)
    clock.advance(20)
    broker.tick()
    assert broker.entity_counts("orders").locked == 1  # still held: expiry waits for the lock
    assert m.lock_token is not None
    broker.abandon("orders", m.lock_token)
    assert broker.entity_counts("orders") == EntityCounts(0, 0, 0, 1, 0)


def test_scheduled_message_waits_and_can_be_peeked(clock: FakeClock) -> None:
    broker = make(clock)
    (seq,) = broker.send("orders", [msg(b"later", scheduled_enqueue_time=START + 60)])
    assert broker.receive("orders", max_count=1) == []
    (peeked,) = broker.peek("orders", 1, 10)
    assert peeked.state == MessageState.SCHEDULED
    assert broker.entity_counts("orders") == EntityCounts(0, 1, 0, 0, 0)
    assert broker.next_deadline() == START + 60
    clock.advance(60)
    (m,) = broker.receive("orders", max_count=1)
    assert (m.sequence_number, m.state, m.enqueued_time) == (seq, MessageState.ACTIVE, START + 60)


def test_schedule_operation_and_cancel(clock: FakeClock) -> None:
    broker = make(clock)
    seqs = broker.schedule("orders", [msg(b"a"), msg(b"b")], START + 30)
    assert seqs == [1, 2]
    broker.cancel_scheduled("orders", [1])
    with pytest.raises(MessageNotFound):
        broker.cancel_scheduled("orders", [2, 99])
    assert broker.entity_counts("orders").scheduled == 1  # all-or-nothing
    clock.advance(30)
    (m,) = broker.receive("orders", max_count=5)
    assert m.bare == b"b"
    with pytest.raises(MessageNotFound):
        broker.cancel_scheduled("orders", [2])  # no longer scheduled


def test_scheduled_ttl_counts_from_the_enqueue_time(clock: FakeClock) -> None:
    broker = make(clock)
    broker.schedule("orders", [msg(ttl=10.0)], START + 100)
    clock.advance(105)
    (m,) = broker.peek("orders", 1, 1)
    assert m.expires_at == START + 110
    clock.advance(5)
    broker.tick()
    assert broker.peek("orders", 1, 1) == []


def test_defer_and_receive_deferred(clock: FakeClock) -> None:
    broker = make(clock, lock_duration=10.0)
    broker.send("orders", [msg(b"a"), msg(b"b")])
    a, _b = broker.receive("orders", max_count=2)
    assert a.lock_token is not None
    broker.defer("orders", a.lock_token, {"why": "later"})
    clock.advance(10)
    broker.tick()
    (b,) = broker.receive("orders", max_count=5)
    assert b.bare == b"b"
    counts = broker.entity_counts("orders")
    assert (counts.deferred, counts.locked) == (1, 1)
    (peeked,) = broker.peek("orders", 1, 1)
    assert peeked.state == MessageState.DEFERRED
    with pytest.raises(MessageNotFound):
        broker.receive_deferred("orders", [1, 2])  # 2 is not deferred
    (d,) = broker.receive_deferred("orders", [1])
    assert (d.bare, d.state, d.modified_properties) == (b"a", MessageState.DEFERRED, {"why": "later"})
    assert d.lock_token is not None
    broker.abandon("orders", d.lock_token)  # goes back to deferred, not to the queue
    assert broker.receive("orders", max_count=5) == []
    (d2,) = broker.receive_deferred("orders", [1], mode="receive_and_delete")
    assert d2.delivery_count == 1  # defer does not count a delivery; the abandon did
    assert broker.peek("orders", 1, 1)[0].bare == b"b"


def test_duplicate_detection_inside_and_outside_the_window(clock: FakeClock) -> None:
    broker = make(clock, requires_duplicate_detection=True, duplicate_detection_window=60.0)
    assert broker.send("orders", [msg(b"1", "id-1"), msg(b"2", "id-1")]) == [1, None]
    clock.advance(59)
    assert broker.send("orders", [msg(b"3", "id-1")]) == [None]
    assert broker.schedule("orders", [msg(b"4", "id-1")], START + 500) == [1]
    clock.advance(1)
    assert broker.send("orders", [msg(b"5", "id-1")]) == [2]
    assert broker.send("orders", [msg(b"no id"), msg(b"no id")]) == [3, 4]
    assert [m.bare for m in broker.receive("orders", max_count=10)] == [b"1", b"5", b"no id", b"no id"]


def test_duplicates_are_kept_without_detection(clock: FakeClock) -> None:
    broker = make(clock)
    assert broker.send("orders", [msg(b"1", "same"), msg(b"2", "same")]) == [1, 2]


def test_peek_from_sequence_number(clock: FakeClock) -> None:
    broker = make(clock)
    broker.send("orders", [msg(bytes([i])) for i in range(10)])
    broker.receive("orders", max_count=3)
    assert [m.sequence_number for m in broker.peek("orders", 2, 3)] == [2, 3, 4]
    assert [m.sequence_number for m in broker.peek("orders", 9, 5)] == [9, 10]
    assert broker.peek("orders", 11, 5) == []
    assert broker.peek("orders", 1, 1)[0].lock_token is not None  # peek shows the lock, does not take it


def test_returned_messages_are_snapshots(clock: FakeClock) -> None:
    broker = make(clock)
    broker.send("orders", [msg()])
    (m,) = broker.receive("orders", max_count=1)
    m.modified_properties["tamper"] = True
    m.delivery_count = 99
    (p,) = broker.peek("orders", 1, 1)
    assert p.modified_properties == {} and p.delivery_count == 0


def test_entity_names_are_case_insensitive_and_urls_resolve(clock: FakeClock) -> None:
    broker = make(clock)
    broker.send("ORDERS", [msg()])
    assert broker.resolve("amqps://localhost:5671/orders").path == "Orders"
    ref = broker.resolve("/orders/$DEADLETTERQUEUE")
    assert (ref.path, ref.entity, ref.sub_queue) == ("Orders/$DeadLetterQueue", "Orders", "deadletter")
    assert broker.resolve("orders/$Transfer/$DeadLetterQueue").sub_queue == "transfer_deadletter"
    assert len(broker.receive("oRdErS", max_count=1)) == 1


def test_unknown_entity_error_lists_configured_entities(clock: FakeClock) -> None:
    broker = Broker([QueueProperties("a"), QueueProperties("b")], clock=clock)
    with pytest.raises(EntityNotFound) as info:
        broker.send("c", [msg()])
    assert info.value.condition == "amqp:not-found"
    assert "'c'" in str(info.value) and "a, b" in str(info.value)
    with pytest.raises(EntityNotFound):
        broker.receive("a/Subscriptions/x", max_count=1)


def test_message_too_large_names_size_and_limit(clock: FakeClock) -> None:
    broker = make(clock, max_message_size=1024)
    with pytest.raises(MessageTooLarge) as info:
        broker.send("orders", [msg(b"ok"), msg(b"x" * 1025)])
    assert info.value.condition == "amqp:link:message-size-exceeded"
    assert "1025" in str(info.value) and "1024" in str(info.value)
    assert broker.entity_counts("orders").active == 0  # the batch is all-or-nothing
    broker.send("orders", [msg(b"x" * 1024)])


def test_invalid_operations(clock: FakeClock) -> None:
    broker = make(clock)
    with pytest.raises(InvalidOperation) as info:
        broker.send("orders/$DeadLetterQueue", [msg()])
    assert info.value.condition == "com.microsoft:argument-error"
    with pytest.raises(InvalidOperation):
        broker.receive("orders", max_count=1, session_id="s")
    with pytest.raises(InvalidOperation):
        broker.accept_session("orders", None, "owner")


def test_listener_hears_every_way_a_message_becomes_available(clock: FakeClock) -> None:
    broker = make(clock, lock_duration=10.0)
    calls: list[tuple[str, str | None]] = []
    broker.add_listener(lambda path, sid: calls.append((path, sid)))
    broker.send("orders", [msg()])
    assert calls == [("Orders", None)]
    (m,) = broker.receive("orders", max_count=1)
    assert m.lock_token is not None
    broker.abandon("orders", m.lock_token)
    (m,) = broker.receive("orders", max_count=1)
    assert m.lock_token is not None
    broker.release("orders", m.lock_token)
    broker.receive("orders", max_count=1)
    clock.advance(10)
    broker.tick()
    broker.schedule("orders", [msg()], START + 20)
    assert len(calls) == 4
    clock.advance(10)
    broker.tick()
    assert calls == [("Orders", None)] * 5
    (m,) = broker.receive("orders", max_count=1)
    assert m.lock_token is not None
    broker.dead_letter("orders", m.lock_token)
    assert calls[-1] == ("Orders/$DeadLetterQueue", None)


def test_listener_may_call_back_into_the_broker(clock: FakeClock) -> None:
    broker = make(clock)
    seen: list[bytes] = []
    broker.add_listener(lambda path, sid: seen.extend(m.bare for m in broker.receive(path, max_count=1)))
    broker.send("orders", [msg(b"a")])
    assert seen == [b"a"]


def test_next_deadline_tracks_the_earliest_live_timer(clock: FakeClock) -> None:
    broker = make(clock, lock_duration=30.0)
    assert broker.next_deadline() is None
    broker.schedule("orders", [msg()], START + 100)
    assert broker.next_deadline() == START + 100
    broker.send("orders", [msg()])
    (m,) = broker.receive("orders", max_count=1)
    assert broker.next_deadline() == START + 30
    assert m.lock_token is not None
    broker.complete("orders", m.lock_token)
    assert broker.next_deadline() == START + 100  # the completed lock's timer is gone
    broker.cancel_scheduled("orders", [1])
    assert broker.next_deadline() is None


def test_repeated_sequence_numbers_are_handled_once(clock: FakeClock) -> None:
    broker = make(clock)
    broker.schedule("orders", [msg(b"s")], START + 60)
    broker.cancel_scheduled("orders", [1, 1])
    assert broker.entity_counts("orders").scheduled == 0
    broker.send("orders", [msg(b"d")])
    (m,) = broker.receive("orders", max_count=1)
    assert m.lock_token is not None
    broker.defer("orders", m.lock_token)
    got = broker.receive_deferred("orders", [2, 2])
    assert [g.sequence_number for g in got] == [2]
    assert broker.entity_counts("orders").locked == 1


def test_listeners_hear_about_expiries_applied_by_a_failing_operation(clock: FakeClock) -> None:
    broker = make(clock, lock_duration=10.0)
    calls: list[tuple[str, str | None]] = []
    broker.send("orders", [msg()])
    (m,) = broker.receive("orders", max_count=1)
    broker.add_listener(lambda path, sid: calls.append((path, sid)))
    clock.advance(10)
    assert m.lock_token is not None
    with pytest.raises(MessageLockLost):
        broker.complete("orders", m.lock_token)  # applies the expiry first, then fails
    assert calls == [("Orders", None)]
    assert broker.next_deadline() is None


def test_a_failing_listener_does_not_fail_the_operation(clock: FakeClock) -> None:
    broker = make(clock)
    heard: list[str] = []

    def broken(path: str, session_id: str | None) -> None:
        raise RuntimeError("listener bug")

    broker.add_listener(broken)
    broker.add_listener(lambda path, sid: heard.append(path))
    assert broker.send("orders", [msg()]) == [1]
    assert heard == ["Orders"]
    broker.remove_listener(broken)
    broker.send("orders", [msg()])
    assert heard == ["Orders", "Orders"]


def test_unknown_receive_mode_is_refused(clock: FakeClock) -> None:
    broker = make(clock)
    broker.send("orders", [msg()])
    with pytest.raises(InvalidOperation):
        broker.receive("orders", max_count=1, mode="peek")  # type: ignore[arg-type]
    assert broker.entity_counts("orders").active == 1


def test_fake_clock_never_goes_backwards() -> None:
    clock = FakeClock(100.0)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(99.0)
    clock.set(150.0)
    assert clock.advance(5) == 155.0


def test_dead_letter_queue_is_browsed_in_sequence_order(clock: FakeClock) -> None:
    broker = make(clock)
    broker.send("orders", [msg(bytes([i])) for i in range(1, 6)])
    got = {m.sequence_number: m for m in broker.receive("orders", max_count=5)}
    for seq in (5, 2, 4):
        token = got[seq].lock_token
        assert token is not None
        broker.dead_letter("orders", token)
    assert [m.sequence_number for m in broker.peek("orders/$DeadLetterQueue", 1, 10)] == [2, 4, 5]
    assert [m.sequence_number for m in broker.peek("orders/$DeadLetterQueue", 3, 10)] == [4, 5]
    assert [m.sequence_number for m in broker.receive("orders/$DeadLetterQueue", max_count=10)] == [2, 4, 5]
