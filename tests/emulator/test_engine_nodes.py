"""``$management`` and ``$cbs`` request handling without sockets: keys, types and status codes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.servicebus._pyamqp._decode import decode_payload as sdk_decode_payload
from hypothesis import given, settings
from hypothesis import strategies as st

from dtf_sb.emulator import generate_sas_token
from dtf_sb.emulator.amqp import (
    AmqpValue,
    ApplicationProperties,
    Array,
    Header,
    Int,
    Long,
    Message,
    MessageAnnotations,
    Properties,
    Timestamp,
    decode_message,
    encode_message,
    encode_message_with,
)
from dtf_sb.emulator.auth import Grants
from dtf_sb.emulator.broker import (
    Broker,
    BrokerMessage,
    FakeClock,
    IncomingMessage,
    MessageState,
    QueueProperties,
)
from dtf_sb.emulator.nodes import CbsNode, ManagementNode, dotnet_ticks, incoming_message, stamp_message

NOW = 1_800_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def broker(clock: FakeClock) -> Broker:
    return Broker(
        [QueueProperties("q1", lock_duration=30), QueueProperties("s1", requires_session=True)], clock=clock
    )


def _request(operation: str, body: dict[str, Any], **app: Any) -> Message:
    return Message(
        properties=Properties(message_id=uuid.uuid4(), reply_to="q1/$management"),
        application_properties=ApplicationProperties({"operation": operation, **app}),
        body=AmqpValue(body),
    )


def _send(broker: Broker, path: str, *bodies: bytes, session: str | None = None) -> None:
    msgs = [
        incoming_message(
            decode_message(encode_message(Message(properties=Properties(group_id=session), body=[b])))
        )
        for b in bodies
    ]
    broker.send(path, msgs)


def _no_owner(path: str, session_id: str, link: str | None) -> Any:
    return "owner"


def _status(response: Message) -> int:
    return int(response.application_properties["statusCode"])


def test_response_correlates_with_the_request_id_and_its_type(broker: Broker) -> None:
    node = ManagementNode(broker)
    request = _request("com.microsoft:peek-message", {"from-sequence-number": Long(1), "message-count": 1})
    response = node.handle("q1", request, _no_owner)
    assert response.properties.correlation_id == request.properties.message_id
    assert isinstance(response.properties.correlation_id, uuid.UUID)
    assert _status(response) == 204, "an empty peek is 204 No Content"


def test_peek_returns_encoded_messages_in_order(broker: Broker) -> None:
    _send(broker, "q1", b"a", b"b", b"c")
    node = ManagementNode(broker)
    response = node.handle(
        "q1",
        _request("com.microsoft:peek-message", {"from-sequence-number": Long(2), "message-count": 5}),
        _no_owner,
    )
    assert _status(response) == 200
    messages = [decode_message(m["message"]) for m in response.body.value["messages"]]
    assert [m.body for m in messages] == [[b"b"], [b"c"]]
    assert [m.message_annotations["x-opt-sequence-number"] for m in messages] == [2, 3]
    assert broker.entity_counts("q1").active == 3, "peek does not lock"


def test_renew_lock_returns_timestamps_and_410_for_unknown_tokens(broker: Broker, clock: FakeClock) -> None:
    _send(broker, "q1", b"a")
    [msg] = broker.receive("q1", max_count=1)
    node = ManagementNode(broker)
    clock.advance(10)
    response = node.handle(
        "q1",
        _request("com.microsoft:renew-lock", {"lock-tokens": Array([msg.lock_token], uuid.UUID)}),
        _no_owner,
    )
    [expiration] = response.body.value["expirations"].items
    assert isinstance(expiration, Timestamp) and expiration == int((NOW + 40) * 1000)
    lost = node.handle(
        "q1",
        _request("com.microsoft:renew-lock", {"lock-tokens": Array([uuid.uuid4()], uuid.UUID)}),
        _no_owner,
    )
    assert _status(lost) == 410
    assert lost.application_properties["errorCondition"] == "com.microsoft:message-lock-lost"


def test_schedule_and_cancel(broker: Broker, clock: FakeClock) -> None:
    node = ManagementNode(broker)
    encoded = encode_message(
        Message(
            message_annotations=MessageAnnotations(
                {"x-opt-scheduled-enqueue-time": Timestamp(int((NOW + 60) * 1000))}
            ),
            properties=Properties(message_id="m1"),
            body=[b"later"],
        )
    )
    response = node.handle(
        "q1",
        _request("com.microsoft:schedule-message", {"messages": [{"message-id": "m1", "message": encoded}]}),
        _no_owner,
    )
    [seq] = response.body.value["sequence-numbers"].items
    assert isinstance(seq, Long)
    assert broker.entity_counts("q1").scheduled == 1
    cancel = node.handle(
        "q1",
        _request("com.microsoft:cancel-scheduled-message", {"sequence-numbers": Array([seq], Long)}),
        _no_owner,
    )
    assert _status(cancel) == 200
    assert broker.entity_counts("q1").scheduled == 0
    again = node.handle(
        "q1",
        _request("com.microsoft:cancel-scheduled-message", {"sequence-numbers": Array([seq], Long)}),
        _no_owner,
    )
    assert _status(again) == 404


def test_deferred_message_round_trip_through_management(broker: Broker) -> None:
    _send(broker, "q1", b"later")
    [msg] = broker.receive("q1", max_count=1)
    broker.defer("q1", msg.lock_token)
    node = ManagementNode(broker)
    response = node.handle(
        "q1",
        _request(
            "com.microsoft:receive-by-sequence-number",
            {"sequence-numbers": Array([Long(msg.sequence_number)], Long), "receiver-settle-mode": 1},
        ),
        _no_owner,
    )
    [entry] = response.body.value["messages"]
    token = entry["lock-token"]
    assert isinstance(token, uuid.UUID)
    assert decode_message(entry["message"]).message_annotations["x-opt-message-state"] == 1
    done = node.handle(
        "q1",
        _request(
            "com.microsoft:update-disposition",
            {"disposition-status": "completed", "lock-tokens": Array([token], uuid.UUID)},
        ),
        _no_owner,
    )
    assert _status(done) == 200
    assert broker.entity_counts("q1") == (0, 0, 0, 0, 0)


def test_dead_letter_through_management_sets_reason_properties(broker: Broker) -> None:
    _send(broker, "q1", b"bad")
    [msg] = broker.receive("q1", max_count=1)
    node = ManagementNode(broker)
    node.handle(
        "q1",
        _request(
            "com.microsoft:update-disposition",
            {
                "disposition-status": "suspended",
                "lock-tokens": Array([msg.lock_token], uuid.UUID),
                "deadletter-reason": "r",
                "deadletter-description": "d",
            },
        ),
        _no_owner,
    )
    [dead] = broker.receive("q1/$DeadLetterQueue", max_count=1)
    stamped = decode_message(stamp_message(dead, lock_token=dead.lock_token))
    assert stamped.application_properties["DeadLetterReason"] == "r"
    assert stamped.application_properties["DeadLetterErrorDescription"] == "d"
    assert stamped.message_annotations["x-opt-deadletter-source"] == "q1"
    assert stamped.body == [b"bad"]


def test_session_operations_use_the_lock_holder(broker: Broker) -> None:
    _send(broker, "s1", b"x", session="A")
    lock = broker.accept_session("s1", None, "holder")
    assert lock is not None
    node = ManagementNode(broker)

    def owners(path: str, session_id: str, link: str | None) -> Any:
        return "holder" if link == "recv" else "stranger"

    state = node.handle(
        "s1",
        _request(
            "com.microsoft:set-session-state",
            {"session-id": "A", "session-state": b"st"},
            **{"associated-link-name": "recv"},
        ),
        owners,
    )
    assert _status(state) == 200
    got = node.handle(
        "s1",
        _request("com.microsoft:get-session-state", {"session-id": "A"}, **{"associated-link-name": "recv"}),
        owners,
    )
    assert got.body.value == {"session-state": b"st"}
    stranger = node.handle("s1", _request("com.microsoft:get-session-state", {"session-id": "A"}), owners)
    assert _status(stranger) == 410
    assert stranger.application_properties["errorCondition"] == "com.microsoft:session-lock-lost"
    sessions = node.handle(
        "s1",
        _request(
            "com.microsoft:get-message-sessions",
            {"last-updated-time": Timestamp(253_402_300_800_000), "skip": 0, "top": 100},
        ),
        owners,
    )
    assert list(sessions.body.value["sessions-ids"].items) == ["A"]
    renewed = node.handle(
        "s1",
        _request("com.microsoft:renew-session-lock", {"session-id": "A"}, **{"associated-link-name": "recv"}),
        owners,
    )
    assert isinstance(renewed.body.value["expiration"], Timestamp)


def test_unknown_operation_is_501(broker: Broker) -> None:
    response = ManagementNode(broker).handle("q1", _request("com.microsoft:frobnicate", {}), _no_owner)
    assert _status(response) == 501
    assert response.application_properties["errorCondition"] == "amqp:not-implemented"


def test_cbs_put_token_grants_and_refuses(clock: FakeClock) -> None:
    node = CbsNode({"k": "secret"}, now=clock.now)
    grants = Grants()

    def put(token: str, audience: str) -> int:
        request = Message(
            properties=Properties(message_id=uuid.uuid4()),
            application_properties=ApplicationProperties(
                {"operation": "put-token", "name": audience, "type": "jwt"}
            ),
            body=AmqpValue(token),
        )
        response = node.handle(request, grants)
        assert response.properties.correlation_id == request.properties.message_id
        return int(response.application_properties["status-code"])

    good = generate_sas_token("sb://h/q1", "k", "secret", expiry=int(NOW) + 60)
    assert put(good, "sb://h/q1") == 202
    assert grants.allows("q1", NOW) and not grants.allows("q2", NOW)
    assert put(generate_sas_token("sb://h/q2", "k", "nope", expiry=int(NOW) + 60), "sb://h/q2") == 401
    assert put(good, "sb://h/q2") == 401, "a token for q1 is no good for q2"
    assert not grants.allows("q2", NOW)


def test_stamp_keeps_bare_bytes_and_sets_header(broker: Broker) -> None:
    _send(broker, "q1", b"payload")
    [msg] = broker.receive("q1", max_count=1)
    wire = stamp_message(msg, lock_token=msg.lock_token)
    assert wire.endswith(msg.bare), "the bare message goes out verbatim"
    decoded = decode_message(wire)
    assert decoded.header.delivery_count == 0
    assert decoded.delivery_annotations["x-opt-lock-token"] == msg.lock_token
    assert dotnet_ticks(0) == 621_355_968_000_000_000


def test_incoming_message_reads_service_bus_fields() -> None:
    encoded = encode_message(
        Message(
            message_annotations=MessageAnnotations({"x-opt-scheduled-enqueue-time": Timestamp(5000)}),
            properties=Properties(message_id="m", group_id="g", correlation_id="c", subject="s"),
            body=[b"x"],
        )
    )
    msg = incoming_message(decode_message(encoded))
    assert (msg.message_id, msg.session_id, msg.scheduled_enqueue_time) == ("m", "g", 5.0)
    assert msg.system_properties["correlation_id"] == "c" and msg.system_properties["subject"] == "s"
    assert isinstance(msg, IncomingMessage)


@settings(max_examples=150, deadline=None)
@given(
    seq=st.integers(1, 2**62),
    enqueued=st.floats(0, 4_000_000_000, allow_nan=False),
    ttl=st.none() | st.floats(0.001, 10**9, allow_nan=False),
    delivery_count=st.integers(0, 100_000),
    state=st.sampled_from(list(MessageState)),
    source=st.none() | st.text(max_size=300),
    extra=st.dictionaries(
        st.sampled_from(["x-opt-partition-key", "x-opt-scheduled-enqueue-time", "custom"]),
        st.text(max_size=200) | st.integers(-(2**40), 2**40),
        max_size=3,
    ),
    locked=st.booleans(),
    peek=st.booleans(),
)
def test_fast_stamp_matches_the_codec(
    seq: int,
    enqueued: float,
    ttl: float | None,
    delivery_count: int,
    state: MessageState,
    source: str | None,
    extra: dict[str, Any],
    locked: bool,
    peek: bool,
) -> None:
    bare = encode_message(Message(properties=Properties(message_id="m"), body=[b"body"]))
    token = uuid.uuid4() if locked else None
    msg = BrokerMessage(
        bare,
        "m",
        None,
        dict(extra),
        seq,
        enqueued,
        "q1",
        ttl=ttl,
        delivery_count=delivery_count,
        state=state,
        dead_letter_source=source,
        lock_token=token,
        locked_until=enqueued + 30 if locked else None,
    )
    wire = stamp_message(msg, lock_token=token, peek=peek)
    ann: dict[Any, Any] = dict(extra)
    ann["x-opt-sequence-number"] = Long(seq)
    ann["x-opt-enqueued-time"] = Timestamp(round(enqueued * 1000))
    if locked:
        ann["x-opt-locked-until"] = Timestamp(round((enqueued + 30) * 1000))
    if state != MessageState.ACTIVE or peek:
        ann["x-opt-message-state"] = Int(int(state))
    if source is not None:
        ann["x-opt-deadletter-source"] = source
    expected = encode_message_with(
        Header(ttl=min(round(ttl * 1000), 0xFFFFFFFF) if ttl else None, delivery_count=delivery_count),
        ann,
        bare,
        delivery_annotations={"x-opt-lock-token": token} if token else None,
    )
    assert decode_message(wire) == decode_message(expected)
    sdk = sdk_decode_payload(memoryview(wire))
    assert sdk.message_annotations[b"x-opt-sequence-number"] == seq
    assert sdk.header[4] == delivery_count
