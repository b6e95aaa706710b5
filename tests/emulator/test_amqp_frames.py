"""Framing: protocol headers, frame encoding and the incremental decoder under split and hostile input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtf_sb.emulator.amqp.codec import DecodeError, encode
from dtf_sb.emulator.amqp.frames import (
    AMQP_HEADER,
    EMPTY_FRAME,
    FRAME_TYPE_AMQP,
    FRAME_TYPE_SASL,
    SASL_HEADER,
    Frame,
    FrameDecoder,
    ProtocolHeader,
    ProtocolHeaderError,
    encode_frame,
    parse_protocol_header,
)
from dtf_sb.emulator.amqp.performatives import (
    Begin,
    Close,
    Error,
    Flow,
    Open,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Transfer,
    performative_to_described,
)

PAYLOAD = b"\x00\x53\x75\xa0\x05hello"

# What a client sends on a fresh connection, SASL and AMQP pipelined (reference C.1).
CONVERSATION = b"".join(
    [
        SASL_HEADER,
        encode_frame(0, SaslInit(mechanism="ANONYMOUS", initial_response=b"", hostname="localhost")),
        AMQP_HEADER,
        encode_frame(0, Open(container_id="SBSender-1", hostname="localhost", max_frame_size=1 << 20)),
        encode_frame(1, Begin(next_outgoing_id=0, incoming_window=65536, outgoing_window=65536)),
        encode_frame(
            1, Transfer(handle=0, delivery_id=0, delivery_tag=b"\0\0\0\1", message_format=0), PAYLOAD
        ),
        EMPTY_FRAME,
        encode_frame(1, Close(error=Error(condition="amqp:connection:forced"))),
    ]
)


def _expected() -> list[Frame | ProtocolHeader]:
    return FrameDecoder(1 << 20).feed(CONVERSATION)


def test_conversation_decodes_in_order() -> None:
    items = _expected()
    assert items[0] == ProtocolHeader(3) and items[0].is_sasl
    assert items[1] == Frame(
        FRAME_TYPE_SASL,
        0,
        SaslInit(mechanism="ANONYMOUS", initial_response=b"", hostname="localhost"),
        b"",
    )
    assert items[2] == ProtocolHeader(0) and not items[2].is_sasl
    assert isinstance(items[3].performative, Open) and items[3].frame_type == FRAME_TYPE_AMQP
    assert items[4].channel == 1 and isinstance(items[4].performative, Begin)
    assert items[5].performative.delivery_tag == b"\0\0\0\1" and items[5].payload == PAYLOAD
    assert items[6] == Frame(FRAME_TYPE_AMQP, 0, None, b"")
    assert items[7].performative == Close(error=Error(condition="amqp:connection:forced"))
    assert len(items) == 8


def test_every_split_point_gives_the_same_items() -> None:
    expected = _expected()
    for cut in range(len(CONVERSATION) + 1):
        decoder = FrameDecoder(1 << 20)
        items = decoder.feed(CONVERSATION[:cut]) + decoder.feed(CONVERSATION[cut:])
        assert items == expected, cut
        assert decoder.buffered == 0


def test_byte_at_a_time() -> None:
    decoder = FrameDecoder(1 << 20)
    items = []
    for i in range(len(CONVERSATION)):
        items += decoder.feed(CONVERSATION[i : i + 1])
    assert items == _expected()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, len(CONVERSATION)), max_size=10))
def test_arbitrary_chunking(cuts: list[int]) -> None:
    decoder = FrameDecoder(1 << 20)
    items = []
    previous = 0
    for cut in [*sorted(cuts), len(CONVERSATION)]:
        items += decoder.feed(memoryview(CONVERSATION)[previous:cut])
        previous = cut
    assert items == _expected()


def test_encode_frame_layout() -> None:
    raw = encode_frame(5, Flow(incoming_window=1, next_outgoing_id=0, outgoing_window=1))
    body = encode(performative_to_described(Flow(incoming_window=1, next_outgoing_id=0, outgoing_window=1)))
    assert raw == struct.pack(">IBBH", 8 + len(body), 2, 0, 5) + body
    sasl = encode_frame(0, SaslOutcome(code=0))
    assert sasl[5] == FRAME_TYPE_SASL
    assert encode_frame(0, SaslMechanisms(("ANONYMOUS",)), frame_type=FRAME_TYPE_SASL)[5] == 1
    assert encode_frame(0, None) == EMPTY_FRAME == b"\x00\x00\x00\x08\x02\x00\x00\x00"
    described = performative_to_described(SaslOutcome(code=0))
    assert encode_frame(0, described, frame_type=FRAME_TYPE_SASL) == sasl


def test_extended_header_is_skipped() -> None:
    body = encode(performative_to_described(Close()))
    raw = struct.pack(">IBBH", 12 + len(body), 3, 0, 2) + b"\xde\xad\xbe\xef" + body
    [frame] = FrameDecoder(expect_header=False).feed(raw)
    assert frame == Frame(FRAME_TYPE_AMQP, 2, Close(), b"")


def test_max_frame_size_can_change() -> None:
    raw = encode_frame(1, Transfer(handle=0), b"x" * 600)
    decoder = FrameDecoder(expect_header=False)
    with pytest.raises(DecodeError, match="exceeds"):
        decoder.feed(raw)
    decoder = FrameDecoder(expect_header=False)
    decoder.max_frame_size = 1024
    assert decoder.feed(raw)[0].payload == b"x" * 600


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"HTTP/1.1", "not an AMQP protocol header"),
        (b"AMQP\x02\x01\x00\x00", "TLS"),
        (b"AMQP\x09\x01\x00\x00", "unknown protocol id"),
        (b"AMQP\x00\x00\x09\x01", "unsupported AMQP version"),
        (b"AMQP", "shorter"),
    ],
)
def test_bad_protocol_headers(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolHeaderError, match=reason) as info:
        parse_protocol_header(raw)
    assert info.value.supported in (AMQP_HEADER, SASL_HEADER)
    if len(raw) == 8:
        with pytest.raises(ProtocolHeaderError, match=reason):
            FrameDecoder().feed(raw)


def test_protocol_header_round_trip() -> None:
    assert parse_protocol_header(SASL_HEADER).to_bytes() == SASL_HEADER
    assert parse_protocol_header(AMQP_HEADER) == ProtocolHeader(0, 1, 0, 0)
    assert parse_protocol_header(b"AMQP\x03\x01\x00\x00").is_sasl


def test_version_mismatch_offers_the_supported_header() -> None:
    with pytest.raises(ProtocolHeaderError) as info:
        parse_protocol_header(b"AMQP\x03\x02\x00\x00")
    assert info.value.supported == SASL_HEADER


def _frame(size: int, doff: int = 2, frame_type: int = 0, channel: int = 0, body: bytes = b"") -> bytes:
    return struct.pack(">IBBH", size, doff, frame_type, channel) + body


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_frame(7), "smaller than a frame header"),
        (_frame(0), "smaller than a frame header"),
        (_frame(10_000), "exceeds the maximum"),
        (_frame(8, doff=1), "bad data offset"),
        (_frame(8, doff=3), "bad data offset"),
        (_frame(9, frame_type=7, body=b"\x40"), "unknown frame type"),
        (_frame(9, body=b"\x40"), "does not start with a performative"),
        (_frame(9, body=b"\x01"), "unknown constructor"),
        (_frame(12, body=b"\x00\x53\x99\x45"), "unknown composite"),
        (encode_frame(0, SaslOutcome(code=0), frame_type=FRAME_TYPE_AMQP), "not allowed"),
        (encode_frame(0, Close(), frame_type=FRAME_TYPE_SASL), "not allowed"),
        (_frame(12, body=b"\x00\x53\x10\xc0"), "truncated"),
    ],
)
def test_bad_frames(raw: bytes, reason: str) -> None:
    decoder = FrameDecoder(4096, expect_header=False)
    with pytest.raises(DecodeError, match=reason):
        decoder.feed(raw)
    # The stream is dead after an error: the connection must close, not resynchronise.
    with pytest.raises(DecodeError):
        decoder.feed(EMPTY_FRAME)
    assert decoder.buffered == 0


def test_partial_frame_buffer_is_bounded_by_max_frame_size() -> None:
    decoder = FrameDecoder(1024, expect_header=False)
    assert decoder.feed(_frame(1024)) == []
    for _ in range(1015):
        assert decoder.feed(b"\x40") == []
    assert decoder.buffered == 1023
    with pytest.raises(DecodeError):
        decoder.feed(b"\x40")  # completes a frame whose body is not a performative


# ------------------------------------------------------------------------------------- fuzzing


def _feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> None:
    for chunk in chunks:
        try:
            decoder.feed(chunk)
        except DecodeError:
            return
        assert decoder.buffered <= max(decoder.max_frame_size, 8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_random_bytes_only_raise_decode_error(chunks: list[bytes], expect_header: bool) -> None:
    _feed_all(FrameDecoder(512, expect_header=expect_header), chunks)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_and_truncated_frames_only_raise_decode_error(data: st.DataObject) -> None:
    raw = bytearray(CONVERSATION)
    for _ in range(data.draw(st.integers(0, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    split = data.draw(st.integers(0, cut))
    _feed_all(FrameDecoder(1 << 12), [bytes(raw[:split]), bytes(raw[split:cut])])
