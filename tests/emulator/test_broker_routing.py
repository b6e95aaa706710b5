"""Broker core, routing: auto-forwarding, forwarding of dead-lettered messages, topics and filters."""

from __future__ import annotations

import pytest

from dtf_sb.emulator.broker import (
    Broker,
    CorrelationFilter,
    EntityCounts,
    FakeClock,
    IncomingMessage,
    InvalidOperation,
    MessageNotFound,
    MessageState,
    QueueProperties,
    Rule,
    SqlFilter,
    SubscriptionProperties,
    TopicProperties,
)

START = 1_700_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def test_forward_to_moves_messages_to_the_target(clock: FakeClock) -> None:
    broker = Broker([QueueProperties("in", forward_to="out"), QueueProperties("out")], clock=clock)
    assert broker.send("in", [IncomingMessage(b"a"), IncomingMessage(b"b")]) == [1, 2]
    assert broker.entity_counts("in") == EntityCounts(0, 0, 0, 0, 0)
    got = broker.receive("out", max_count=5)
    assert [(m.bare, m.sequence_number, m.enqueued_sequence_number, m.entity_path) for m in got] == [
        (b"a", 1, 1, "out"),
        (b"b", 2, 2, "out"),
    ]


def test_forwarded_messages_keep_their_first_sequence_number(clock: FakeClock) -> None:
    broker = Broker([QueueProperties("in", forward_to="out"), QueueProperties("out")], clock=clock)
    broker.send("in", [IncomingMessage(b"1"), IncomingMessage(b"2"), IncomingMessage(b"3")])
    broker.send("out", [IncomingMessage(b"direct")])
    assert broker.send("in", [IncomingMessage(b"4")]) == [4]
    got = broker.peek("out", 1, 10)
    assert [(m.bare, m.sequence_number, m.enqueued_sequence_number) for m in got] == [
        (b"1", 1, 1),
        (b"2", 2, 2),
        (b"3", 3, 3),
        (b"direct", 4, 4),
        (b"4", 5, 4),
    ]


def test_forwarded_scheduled_messages_can_be_cancelled_at_the_source(clock: FakeClock) -> None:
    broker = Broker([QueueProperties("in", forward_to="out"), QueueProperties("out")], clock=clock)
    broker.send("out", [IncomingMessage(b"occupies seq 1 in out")])
    (seq,) = broker.schedule("in", [IncomingMessage(b"later")], START + 60)
    assert broker.entity_counts("out").scheduled == 1
    broker.cancel_scheduled("in", [seq])
    assert broker.entity_counts("out").scheduled == 0


def test_forward_chains_stop_after_four_hops(clock: FakeClock) -> None:
    names = ["q0", "q1", "q2", "q3", "q4", "q5"]
    props = [QueueProperties(n, forward_to=names[i + 1]) for i, n in enumerate(names[:-1])]
    broker = Broker([*props, QueueProperties("q5")], clock=clock)
    broker.send("q0", [IncomingMessage(b"far")])
    assert broker.entity_counts("q5").active == 0
    (parked,) = broker.receive("q4/$Transfer/$DeadLetterQueue", max_count=1)
    assert parked.bare == b"far"


def test_forward_dead_lettered_messages_keeps_the_reason(clock: FakeClock) -> None:
    broker = Broker(
        [
            QueueProperties("work", forward_dead_lettered_to="parking", max_delivery_count=1),
            QueueProperties("parking"),
        ],
        clock=clock,
    )
    broker.send("work", [IncomingMessage(b"a"), IncomingMessage(b"b")])
    a, b = broker.receive("work", max_count=2)
    assert a.lock_token is not None and b.lock_token is not None
    broker.dead_letter("work", a.lock_token, "Invalid", "bad input", {"x": 1})
    broker.abandon("work", b.lock_token)
    assert broker.entity_counts("work") == EntityCounts(0, 0, 0, 0, 0)
    got = broker.receive("parking", max_count=5)
    assert [(m.bare, m.dead_letter_reason, m.dead_letter_source) for m in got] == [
        (b"a", "Invalid", "work"),
        (b"b", "MaxDeliveryCountExceeded", "work"),
    ]
    assert got[0].dead_letter_description == "bad input"
    assert got[0].modified_properties == {"x": 1}


def test_unknown_forward_target_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="nowhere"):
        Broker([QueueProperties("a", forward_to="nowhere")])


def test_duplicate_entity_names_differ_only_in_case() -> None:
    with pytest.raises(ValueError, match="twice"):
        Broker([QueueProperties("a"), QueueProperties("A")])


def topic_broker(clock: FakeClock) -> Broker:
    return Broker(
        [
            TopicProperties(
                "events",
                requires_duplicate_detection=True,
                subscriptions=(
                    SubscriptionProperties("all"),
                    SubscriptionProperties(
                        "json", rules=(Rule("j", CorrelationFilter(content_type="app/json")),)
                    ),
                    SubscriptionProperties(
                        "big",
                        rules=(Rule("b", SqlFilter("size > 10 AND sys.Label LIKE 'ord%'")),),
                        forward_to="q",
                    ),
                    SubscriptionProperties(
                        "sessions", requires_session=True, rules=(Rule("s", SqlFilter("EXISTS(s)")),)
                    ),
                ),
            ),
            QueueProperties("q"),
        ],
        clock=clock,
    )


def test_topic_fans_out_by_rules(clock: FakeClock) -> None:
    broker = topic_broker(clock)
    broker.send(
        "events",
        [
            IncomingMessage(b"plain", "1"),
            IncomingMessage(b"json", "2", system_properties={"content_type": "app/json"}),
            IncomingMessage(
                b"big", "3", application_properties={"size": 11}, system_properties={"subject": "order"}
            ),
            IncomingMessage(
                b"small", "4", application_properties={"size": 3}, system_properties={"subject": "order"}
            ),
            IncomingMessage(b"dup", "1"),
        ],
    )
    assert [m.bare for m in broker.peek("events/Subscriptions/all", 1, 10)] == [
        b"plain",
        b"json",
        b"big",
        b"small",
    ]
    assert [m.bare for m in broker.peek("EVENTS/subscriptions/JSON", 1, 10)] == [b"json"]
    assert [m.bare for m in broker.peek("q", 1, 10)] == [b"big"]
    assert broker.entity_counts("events") == EntityCounts(5, 0, 0, 0, 0)


def test_session_subscription_parks_messages_without_session(clock: FakeClock) -> None:
    broker = topic_broker(clock)
    broker.send("events", [IncomingMessage(b"s", None, "sid", application_properties={"s": 1})])
    broker.send("events", [IncomingMessage(b"no sid", None, None, application_properties={"s": 1})])
    path = "events/Subscriptions/sessions"
    assert broker.accept_session(path, None, "w") is not None
    assert [m.bare for m in broker.receive(path, max_count=5, session_id="sid", owner="w")] == [b"s"]
    (dead,) = broker.peek(f"{path}/$DeadLetterQueue", 1, 5)
    assert dead.dead_letter_reason == "SessionIdIsMissing"


def test_topic_scheduling_and_cancel_cover_every_subscription(clock: FakeClock) -> None:
    broker = topic_broker(clock)
    (seq,) = broker.schedule(
        "events", [IncomingMessage(b"t", "x", system_properties={"content_type": "app/json"})], START + 5
    )
    assert [m.state for m in broker.peek("events/Subscriptions/json", 1, 5)] == [MessageState.SCHEDULED]
    broker.cancel_scheduled("events", [seq])
    assert broker.entity_counts("events") == EntityCounts(0, 0, 0, 0, 0)


def test_topics_and_subscriptions_are_one_way(clock: FakeClock) -> None:
    broker = topic_broker(clock)
    with pytest.raises(InvalidOperation):
        broker.receive("events", max_count=1)
    with pytest.raises(InvalidOperation):
        broker.send("events/Subscriptions/all", [IncomingMessage(b"x")])
    kinds = {ref.path: ref.kind for ref in broker.entities()}
    assert (
        kinds["events"] == "topic"
        and kinds["events/Subscriptions/all"] == "subscription"
        and kinds["q"] == "queue"
    )


def test_cancel_still_finds_topic_schedules_after_the_index_is_pruned(clock: FakeClock) -> None:
    broker = topic_broker(clock)
    early = broker.schedule("events", [IncomingMessage(b"e", f"e{i}") for i in range(100)], START + 1)
    late = broker.schedule("events", [IncomingMessage(b"l", f"l{i}") for i in range(100)], START + 100)
    clock.advance(1)
    broker.tick()  # the early ones are active now, so their index entries are dead weight
    broker.schedule("events", [IncomingMessage(b"x", f"x{i}") for i in range(100)], START + 100)
    with pytest.raises(MessageNotFound):
        broker.cancel_scheduled("events", [early[0]])
    broker.cancel_scheduled("events", late)
    counts = broker.entity_counts("events/Subscriptions/all")
    assert (counts.active, counts.scheduled) == (100, 100)


def test_schedule_leaves_the_callers_message_alone(clock: FakeClock) -> None:
    broker = Broker([QueueProperties("q")], clock=clock)
    message = IncomingMessage(b"x")
    broker.schedule("q", [message], START + 10)
    assert message.scheduled_enqueue_time is None
