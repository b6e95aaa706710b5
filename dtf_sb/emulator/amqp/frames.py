"""AMQP 1.0 framing: protocol headers, frame encoding and an incremental frame decoder.

The decoder is fed whatever the socket returns. It keeps at most one incomplete frame buffered
(bounded by the negotiated max-frame-size), so a peer cannot make it grow without limit, and it
rejects anything that is not a well-formed frame with ``DecodeError`` instead of waiting for bytes
that will never make sense. It also recognises the 8-byte protocol headers that open a connection
and follow a SASL exchange, because a client may pipeline the AMQP header right behind its last
SASL frame (spec part 5 section 5.3.1) and both can arrive in one read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from .codec import DecodeError, decode, encode_into
from .performatives import PERFORMATIVES, SASL_FRAMES, described_to_performative, performative_to_described
from .types import Described

__all__ = [
    "AMQP_HEADER",
    "AMQP_PROTOCOL_ID",
    "EMPTY_FRAME",
    "FRAME_TYPE_AMQP",
    "FRAME_TYPE_SASL",
    "MIN_MAX_FRAME_SIZE",
    "SASL_HEADER",
    "SASL_PROTOCOL_ID",
    "TLS_PROTOCOL_ID",
    "Frame",
    "FrameDecoder",
    "ProtocolHeader",
    "ProtocolHeaderError",
    "encode_frame",
    "parse_protocol_header",
]

AMQP_PROTOCOL_ID = 0
TLS_PROTOCOL_ID = 2
SASL_PROTOCOL_ID = 3
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"

FRAME_TYPE_AMQP = 0
FRAME_TYPE_SASL = 1

#: Every peer must accept frames of this size before open has negotiated anything (part 2, 2.7.1).
MIN_MAX_FRAME_SIZE = 512

#: A frame with no body: the heartbeat that keeps an idle connection alive (part 2, 2.4.5).
EMPTY_FRAME = b"\x00\x00\x00\x08\x02\x00\x00\x00"

_HEADER = struct.Struct(">IBBH")
_SASL_TYPES = frozenset(SASL_FRAMES)
_AMQP_TYPES = frozenset(PERFORMATIVES)


class ProtocolHeaderError(DecodeError):
    """The peer opened with a protocol header this server does not speak.

    The spec asks the server to answer with the header it does support and close the socket;
    ``supported`` is that header.
    """

    def __init__(self, reason: str, supported: bytes = AMQP_HEADER) -> None:
        super().__init__(reason)
        self.reason = reason
        self.supported = supported


@dataclass(frozen=True, slots=True)
class ProtocolHeader:
    """``AMQP`` + protocol id + major.minor.revision."""

    protocol_id: int
    major: int = 1
    minor: int = 0
    revision: int = 0

    @property
    def is_sasl(self) -> bool:
        return self.protocol_id == SASL_PROTOCOL_ID

    def to_bytes(self) -> bytes:
        return bytes((0x41, 0x4D, 0x51, 0x50, self.protocol_id, self.major, self.minor, self.revision))


def parse_protocol_header(data: bytes | bytearray | memoryview) -> ProtocolHeader:
    """Parse exactly 8 bytes as a protocol header; ``ProtocolHeaderError`` says what is wrong."""
    raw = bytes(data[:8])
    if len(raw) < 8:
        raise ProtocolHeaderError("protocol header is shorter than 8 bytes")
    if raw[:4] != b"AMQP":
        raise ProtocolHeaderError(f"not an AMQP protocol header: {raw!r}")
    protocol_id, major, minor, revision = raw[4], raw[5], raw[6], raw[7]
    if protocol_id == TLS_PROTOCOL_ID:
        raise ProtocolHeaderError("TLS is not supported; connect without TLS", SASL_HEADER)
    if protocol_id not in (AMQP_PROTOCOL_ID, SASL_PROTOCOL_ID):
        raise ProtocolHeaderError(f"unknown protocol id {protocol_id}")
    if (major, minor, revision) != (1, 0, 0):
        supported = SASL_HEADER if protocol_id == SASL_PROTOCOL_ID else AMQP_HEADER
        raise ProtocolHeaderError(f"unsupported AMQP version {major}.{minor}.{revision}", supported)
    return ProtocolHeader(protocol_id, major, minor, revision)


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame; ``performative`` is None for an empty (heartbeat) frame.

    ``payload`` is whatever follows the performative in the frame body: the message bytes of a
    transfer, empty for every other performative.
    """

    frame_type: int
    channel: int
    performative: Any
    payload: bytes = b""


def encode_frame(
    channel: int, performative: Any, payload: bytes = b"", *, frame_type: int | None = None
) -> bytes:
    """Encode one frame; ``performative=None`` gives an empty frame.

    ``frame_type`` defaults to SASL (1) for SASL performatives and AMQP (0) otherwise.
    """
    buf = bytearray(8)
    if performative is not None:
        if frame_type is None:
            frame_type = FRAME_TYPE_SASL if type(performative) in _SASL_TYPES else FRAME_TYPE_AMQP
        described = (
            performative if isinstance(performative, Described) else performative_to_described(performative)
        )
        encode_into(buf, described)
        buf += payload
    elif frame_type is None:
        frame_type = FRAME_TYPE_AMQP
    _HEADER.pack_into(buf, 0, len(buf), 2, frame_type, channel)
    return bytes(buf)


class FrameDecoder:
    """Turns a byte stream into ``Frame`` and ``ProtocolHeader`` items.

    ``max_frame_size`` may be raised or lowered as the connection negotiates (assign the attribute).
    With ``expect_header`` (the default) the stream must begin with a protocol header; one may also
    appear at any later frame boundary, which is how the AMQP header follows the SASL exchange.
    After a ``DecodeError`` the stream is unusable and the connection should be closed.
    """

    def __init__(self, max_frame_size: int = MIN_MAX_FRAME_SIZE, *, expect_header: bool = True) -> None:
        self.max_frame_size = max_frame_size
        self._expect_header = expect_header
        self._buffer = bytearray()
        self._failed: DecodeError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | ProtocolHeader]:
        """Add bytes; return every item now complete, in order."""
        if self._failed is not None:
            raise self._failed
        buf = self._buffer
        buf += data
        items: list[Frame | ProtocolHeader] = []
        pos = 0
        try:
            while len(buf) - pos >= 8:
                if self._expect_header or (buf[pos] == 0x41 and buf[pos : pos + 4] == b"AMQP"):
                    items.append(parse_protocol_header(buf[pos : pos + 8]))
                    self._expect_header = False
                    pos += 8
                    continue
                size, doff, frame_type, channel = _HEADER.unpack_from(buf, pos)
                if size < 8:
                    raise DecodeError(f"frame size {size} is smaller than a frame header")
                if size > self.max_frame_size:
                    raise DecodeError(f"frame size {size} exceeds the maximum {self.max_frame_size}")
                if doff < 2 or doff * 4 > size:
                    raise DecodeError(f"bad data offset {doff} for a frame of {size} bytes")
                if frame_type not in (FRAME_TYPE_AMQP, FRAME_TYPE_SASL):
                    raise DecodeError(f"unknown frame type {frame_type}")
                if len(buf) - pos < size:
                    break
                items.append(self._frame(buf, pos + doff * 4, pos + size, frame_type, channel))
                pos += size
        except DecodeError as exc:
            self._failed = exc
            self._buffer = bytearray()
            raise
        finally:
            if pos and self._failed is None:
                del buf[:pos]
        return items

    @staticmethod
    def _frame(buf: bytearray, start: int, end: int, frame_type: int, channel: int) -> Frame:
        if start == end:
            return Frame(frame_type, channel, None, b"")
        with memoryview(buf) as view:
            body = bytes(view[start:end])  # one copy; slicing bytes is cheaper than views later
        value, offset = decode(body)
        if not isinstance(value, Described):
            raise DecodeError("frame body does not start with a performative")
        performative = described_to_performative(value)
        allowed = _SASL_TYPES if frame_type == FRAME_TYPE_SASL else _AMQP_TYPES
        if type(performative) not in allowed:
            name = type(performative).__name__
            raise DecodeError(f"{name} is not allowed in a type {frame_type} frame")
        return Frame(frame_type, channel, performative, body[offset:])
