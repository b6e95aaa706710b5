"""Messages: section round trips, the exact bare-message span, broker re-stamping and batches."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.servicebus._pyamqp import _decode as sdk_decode
from azure.servicebus._pyamqp import _encode as sdk_encode
from azure.servicebus._pyamqp import message as sdk_message
from azure.servicebus._pyamqp.utils import add_batch
from hypothesis import given, settings
from hypothesis import strategies as st

from dtf_sb.emulator.amqp.codec import DecodeError, encode
from dtf_sb.emulator.amqp.message import (
    BATCH_MESSAGE_FORMAT,
    AmqpSequence,
    AmqpValue,
    Header,
    Message,
    Properties,
    decode_message,
    encode_message,
    encode_message_with,
    split_batch,
)
from dtf_sb.emulator.amqp.types import Described, Symbol, Timestamp, UInt, ULong

PROPS = Properties(
    message_id="m1",
    user_id=b"u",
    to="q1",
    subject="s",
    reply_to="r",
    correlation_id=uuid.UUID(int=7),
    content_type="application/json",
    content_encoding="gzip",
    absolute_expiry_time=Timestamp(2_000),
    creation_time=Timestamp(1_000),
    group_id="session-1",
    group_sequence=3,
    reply_to_group_id="rs",
)

FULL = Message(
    header=Header(durable=True, priority=4, ttl=30_000, first_acquirer=False, delivery_count=2),
    delivery_annotations={"x-opt-lock-token": uuid.UUID(int=1)},
    message_annotations={"x-opt-partition-key": "s1", "x-opt-scheduled-enqueue-time": Timestamp(5)},
    properties=PROPS,
    application_properties={"k": "v", "n": 5},
    body=[b"hello", b"world"],
    footer={"f": 1},
)


def _section(code: int, value: Any) -> bytes:
    return encode(Described(ULong(code), value))


def test_round_trip_of_every_section() -> None:
    raw = encode_message(FULL)
    msg = decode_message(raw)
    assert msg == FULL
    assert encode_message(msg) == raw
    assert all(type(k) is Symbol for k in msg.message_annotations)
    assert all(type(k) is Symbol for k in msg.delivery_annotations)
    assert type(msg.properties.content_type) is Symbol
    assert type(msg.properties.creation_time) is Timestamp
    assert type(msg.header.delivery_count) is UInt
    assert msg.data == b"helloworld"


@pytest.mark.parametrize(
    "body",
    [AmqpValue({"a": [1, 2]}), AmqpValue(None), [AmqpSequence([1, "x"]), AmqpSequence([])], None, [b""]],
)
def test_body_kinds(body: Any) -> None:
    msg = Message(properties=Properties(message_id="x"), body=body)
    assert decode_message(encode_message(msg)) == msg


def test_data_property_refuses_other_bodies() -> None:
    with pytest.raises(TypeError):
        _ = Message(body=AmqpValue("x")).data


@pytest.mark.parametrize("message_id", ["s", uuid.UUID(int=3), ULong(9), b"\x01\x02"])
def test_message_ids_keep_their_type(message_id: Any) -> None:
    msg = decode_message(
        encode_message(Message(properties=Properties(message_id=message_id, correlation_id=message_id)))
    )
    assert msg.properties.message_id == message_id
    assert type(msg.properties.message_id) is type(message_id)
    assert type(msg.properties.correlation_id) is type(message_id)


def test_plain_int_message_id_is_a_ulong() -> None:
    msg = decode_message(encode_message(Message(properties=Properties(message_id=5))))
    assert type(msg.properties.message_id) is ULong


def test_bare_span_is_exact() -> None:
    header = _section(0x70, [True])
    delivery = _section(0x71, {Symbol("d"): 1})
    annotations = _section(0x72, {Symbol("x-opt-sequence-number"): 1})
    bare = _section(0x73, ["id"]) + _section(0x74, {"k": "v"}) + _section(0x75, b"a") + _section(0x75, b"b")
    footer = _section(0x78, {Symbol("f"): 1})
    msg = decode_message(header + delivery + annotations + bare + footer)
    assert msg.bare == bare
    assert decode_message(bare).bare == bare
    assert decode_message(header + _section(0x77, "v")).bare == _section(0x77, "v")
    assert decode_message(header).bare == b""


def test_sdk_encoded_message_decodes_with_its_bare_span() -> None:
    sdk_msg = sdk_message.Message(
        header=sdk_message.Header(ttl=30_000),
        message_annotations={b"x-opt-partition-key": "s1"},
        properties=sdk_message.Properties(message_id="m1", group_id="s1", creation_time=1_000),
        application_properties={"k": "v", "n": 5},
        data=[b"payload"],
    )
    raw = bytes(sdk_encode.encode_payload(bytearray(), sdk_msg))
    msg = decode_message(raw)
    assert msg.header.ttl == 30_000
    assert msg.message_annotations == {"x-opt-partition-key": "s1"}
    assert msg.properties.message_id == "m1" and msg.properties.group_id == "s1"
    assert msg.application_properties == {"k": "v", "n": 5}
    assert msg.body == [b"payload"]
    start = raw.index(b"\x00\x53\x73")
    assert msg.bare == raw[start:]


def test_sdk_decodes_our_restamped_message() -> None:
    original = decode_message(
        encode_message(Message(properties=PROPS, application_properties={"k": "v"}, body=[b"x"]))
    )
    stamped = encode_message_with(
        Header(delivery_count=0),
        {"x-opt-sequence-number": 42, "x-opt-enqueued-time": Timestamp(1_700_000_000_000)},
        original.bare,
        delivery_annotations={"x-opt-lock-token": uuid.UUID(int=9)},
    )
    sdk_msg = sdk_decode.decode_payload(memoryview(stamped))
    assert sdk_msg.header.delivery_count == 0
    assert sdk_msg.message_annotations[b"x-opt-sequence-number"] == 42
    assert sdk_msg.properties.group_id == b"session-1"
    assert sdk_msg.data == [b"x"]


def test_encode_message_with_stamps_header_and_annotations() -> None:
    original = decode_message(encode_message(FULL))
    header = Header(delivery_count=3, ttl=30_000)
    annotations = {"x-opt-sequence-number": 7, "x-opt-locked-until": Timestamp(99)}
    stamped = decode_message(encode_message_with(header, annotations, original.bare))
    assert stamped.header == Header(ttl=30_000, delivery_count=3)
    assert stamped.message_annotations == annotations
    assert stamped.delivery_annotations is None
    assert stamped.properties == FULL.properties
    assert stamped.application_properties == FULL.application_properties
    assert stamped.body == FULL.body
    assert stamped.bare == original.bare
    assert encode_message_with(None, None, original.bare) == original.bare


def test_header_keeps_explicit_zero_delivery_count() -> None:
    raw = encode_message(Message(header=Header(delivery_count=0)))
    assert raw == _section(0x70, [None, None, None, None, UInt(0)])
    assert decode_message(raw).header.delivery_count == 0


def test_split_batch() -> None:
    first = encode_message(Message(properties=Properties(message_id="a1"), body=[b"one"]))
    second = encode_message(Message(properties=Properties(message_id="b"), body=[b"two"]))
    envelope = Message(properties=Properties(message_id="a1"), body=[first, second])
    parts = split_batch(decode_message(encode_message(envelope)))
    assert parts == [first, second]
    assert [decode_message(p).properties.message_id for p in parts] == ["a1", "b"]
    assert BATCH_MESSAGE_FORMAT == 0x80013700
    assert split_batch(Message()) == []
    with pytest.raises(DecodeError):
        split_batch(Message(body=AmqpValue([first])))


def test_split_batch_built_by_the_sdk() -> None:
    batch = sdk_message.BatchMessage(
        data=[], properties=sdk_message.Properties(message_id="a1", group_id="s")
    )
    for message_id, body in (("a1", b"one"), ("b", b"two")):
        add_batch(
            batch, sdk_message.Message(properties=sdk_message.Properties(message_id=message_id), data=[body])
        )
    envelope = decode_message(bytes(sdk_encode.encode_payload(bytearray(), batch)))
    assert envelope.properties.message_id == "a1"
    parts = [decode_message(p) for p in split_batch(envelope)]
    assert [(p.properties.message_id, p.body) for p in parts] == [("a1", [b"one"]), ("b", [b"two"])]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (encode("not a section"), "not a described type"),
        (_section(0x79, []), "unknown message section"),
        (_section(0x70, []) + _section(0x70, []), "appears twice"),
        (_section(0x74, {}) + _section(0x73, []), "out of order"),
        (_section(0x75, b"a") + _section(0x77, 1), "mixes"),
        (_section(0x75, b"a") + _section(0x72, {}) + _section(0x75, b"b"), "interrupted"),
        (_section(0x70, {}), "must be a list"),
        (_section(0x70, ["yes"]), "header.durable"),
        (_section(0x73, [None, "user"]), "user-id"),
        (_section(0x73, [None, None, 5]), "properties.to"),
        (_section(0x72, []), "must be a map"),
        (_section(0x75, "text"), "must be binary"),
        (_section(0x76, "x"), "must be a list"),
        (b"\x00\x53\x75\xa0\x05he", "past the end"),
    ],
)
def test_malformed_messages(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_message(raw)


def test_symbolic_section_descriptors() -> None:
    raw = encode(Described(Symbol("amqp:properties:list"), ["id"])) + encode(
        Described(Symbol("amqp:data:binary"), b"x")
    )
    msg = decode_message(raw)
    assert msg.properties.message_id == "id" and msg.body == [b"x"] and msg.bare == raw


def test_annotations_after_the_body_are_tolerated() -> None:
    bare = _section(0x73, ["id"]) + _section(0x75, b"x")
    msg = decode_message(bare + _section(0x71, {Symbol("d"): 1}))
    assert msg.bare == bare and msg.delivery_annotations == {"d": 1}


_TEXT = st.text(max_size=20)
_ASCII = st.text(alphabet=st.characters(max_codepoint=127), max_size=20)
_MESSAGES = st.builds(
    Message,
    header=st.none() | st.builds(Header, st.none() | st.booleans(), st.none() | st.integers(0, 255)),
    message_annotations=st.none()
    | st.dictionaries(_ASCII.map(Symbol), st.integers(-5, 5) | _TEXT, max_size=3),
    properties=st.none()
    | st.builds(
        Properties,
        message_id=st.none()
        | _TEXT
        | st.uuids()
        | st.integers(0, 2**64 - 1).map(ULong)
        | st.binary(max_size=8),
        group_id=st.none() | _TEXT,
        creation_time=st.none() | st.integers(0, 2**40).map(Timestamp),
    ),
    application_properties=st.none()
    | st.dictionaries(_TEXT, st.integers(-5, 5) | _TEXT | st.none(), max_size=3),
    body=st.none()
    | st.lists(st.binary(max_size=300), min_size=1, max_size=3)
    | st.builds(AmqpValue, st.none() | _TEXT | st.lists(st.integers(-3, 3), max_size=3)),
)


@settings(max_examples=200, deadline=None)
@given(_MESSAGES)
def test_message_round_trip_property(msg: Message) -> None:
    raw = encode_message(msg)
    decoded = decode_message(raw)
    assert decoded == msg
    restamped = decode_message(
        encode_message_with(Header(delivery_count=1), {"x-opt-sequence-number": 1}, decoded.bare)
    )
    assert restamped.properties == msg.properties
    assert restamped.application_properties == msg.application_properties
    assert restamped.body == msg.body
