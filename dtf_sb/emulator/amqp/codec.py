"""AMQP 1.0 type encoding and decoding (OASIS AMQP 1.0 part 1, section 1.6).

Decoding sits on the hot path of every frame, so it dispatches on the constructor byte through a
256-entry table of small functions, reads fixed-width values with precompiled ``struct`` unpackers
and never loops over bytes in Python. Malformed input of any kind surfaces as ``DecodeError``: the
decoder is fed straight from a socket, and a peer must not be able to crash the server with
anything else.

Encoding always picks the most compact constructor (``uint0``, ``smalluint``, ``list0``,
``list8``, ``str8`` ...), which is what the spec recommends and what other brokers send. Its
per-type tables live in :mod:`._encoder`; this module stays the public entry point for both ways.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any

from ._encoder import _encode
from .types import (
    Array,
    Byte,
    Char,
    Decimal32,
    Decimal64,
    Decimal128,
    Described,
    Double,
    Float,
    Int,
    Long,
    Short,
    Symbol,
    Timestamp,
    UByte,
    UInt,
    ULong,
    UShort,
)

__all__ = ["MAX_NESTING", "DecodeError", "decode", "decode_all", "encode", "encode_into"]

#: Deepest nesting of compound values the decoder accepts; deeper input is hostile, not useful.
MAX_NESTING = 64


class DecodeError(ValueError):
    """The bytes are not valid AMQP: truncated, unknown constructor, bad length, bad text, too deep."""


_Buffer = bytes | bytearray | memoryview
_Decoder = Callable[[Any, int, int], tuple[Any, int]]

_u8 = struct.Struct(">B").unpack_from
_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_u64 = struct.Struct(">Q").unpack_from
_i8 = struct.Struct(">b").unpack_from
_i16 = struct.Struct(">h").unpack_from
_i32 = struct.Struct(">i").unpack_from
_i64 = struct.Struct(">q").unpack_from
_f32 = struct.Struct(">f").unpack_from
_f64 = struct.Struct(">d").unpack_from
_u8u8 = struct.Struct(">BB").unpack_from
_u32u32 = struct.Struct(">II").unpack_from


# --------------------------------------------------------------------------------------------- decoding


def _bad_constructor(code: int) -> _Decoder:
    def fail(data: Any, offset: int, depth: int) -> tuple[Any, int]:
        raise DecodeError(f"unknown constructor 0x{code:02x} at offset {offset - 1}")

    return fail


_DECODERS: list[_Decoder] = [_bad_constructor(code) for code in range(256)]


def _register(code: int) -> Callable[[_Decoder], _Decoder]:
    def add(fn: _Decoder) -> _Decoder:
        _DECODERS[code] = fn
        return fn

    return add


def _fixed(code: int, unpack: Callable[[Any, int], tuple[Any, ...]], width: int, wrap: type) -> None:
    def dec(data: Any, offset: int, depth: int) -> tuple[Any, int]:
        return wrap(unpack(data, offset)[0]), offset + width

    _DECODERS[code] = dec


def _constant(code: int, value: Any) -> None:
    def dec(data: Any, offset: int, depth: int) -> tuple[Any, int]:
        return value, offset

    _DECODERS[code] = dec


_constant(0x40, None)
_constant(0x41, True)
_constant(0x42, False)
_constant(0x43, UInt(0))
_constant(0x44, ULong(0))


def _cached_byte(code: int, cache: list[Any]) -> None:
    """One-byte values (handles, small counts, section descriptors) come from a prebuilt table."""

    def dec(data: Any, offset: int, depth: int) -> tuple[Any, int]:
        return cache[data[offset]], offset + 1

    _DECODERS[code] = dec


_SMALL_UINT = [UInt(i) for i in range(256)]
_SMALL_ULONG = [ULong(i) for i in range(256)]
_cached_byte(0x52, _SMALL_UINT)
_cached_byte(0x53, _SMALL_ULONG)
_cached_byte(0x50, [UByte(i) for i in range(256)])
_fixed(0x51, _i8, 1, Byte)
_fixed(0x54, _i8, 1, Int)
_fixed(0x55, _i8, 1, Long)
_fixed(0x60, _u16, 2, UShort)
_fixed(0x61, _i16, 2, Short)
_fixed(0x70, _u32, 4, UInt)
_fixed(0x71, _i32, 4, Int)
_fixed(0x72, _f32, 4, Float)
_fixed(0x80, _u64, 8, ULong)
_fixed(0x81, _i64, 8, Long)
_fixed(0x82, _f64, 8, Double)
_fixed(0x83, _i64, 8, Timestamp)


@_register(0x56)
def _d_bool(data: Any, offset: int, depth: int) -> tuple[Any, int]:
    b = data[offset]
    if b > 1:
        raise DecodeError(f"invalid boolean byte 0x{b:02x}")
    return b == 1, offset + 1


@_register(0x73)
def _d_char(data: Any, offset: int, depth: int) -> tuple[Any, int]:
    try:
        return Char(chr(_u32(data, offset)[0])), offset + 4
    except (ValueError, OverflowError) as exc:
        raise DecodeError("char is not a unicode code point") from exc


def _raw(width: int, wrap: type) -> _Decoder:
    def dec(data: Any, offset: int, depth: int) -> tuple[Any, int]:
        end = offset + width
        if end > len(data):
            raise DecodeError("truncated fixed-width value")
        return wrap(bytes(data[offset:end])), end

    return dec


_DECODERS[0x74] = _raw(4, Decimal32)
_DECODERS[0x84] = _raw(8, Decimal64)
_DECODERS[0x94] = _raw(16, Decimal128)


@_register(0x98)
def _d_uuid(data: Any, offset: int, depth: int) -> tuple[Any, int]:
    end = offset + 16
    if end > len(data):
        raise DecodeError("truncated uuid")
    return uuid.UUID(bytes=bytes(data[offset:end])), end


def _variable(code: int, size_width: int, kind: type, encoding: str | None) -> None:
    size_of = _u8 if size_width == 1 else _u32
    what = "symbol is not ASCII" if encoding == "ascii" else "string is not valid UTF-8"

    def dec(data: Any, offset: int, depth: int) -> tuple[Any, int]:
        start = offset + size_width
        end = start + size_of(data, offset)[0]
        if end > len(data):
            raise DecodeError(f"length of 0x{code:02x} value runs past the end of the data")
        if encoding is None:
            return bytes(data[start:end]), end
        try:
            text = str(data[start:end], encoding)
        except UnicodeDecodeError as exc:
            raise DecodeError(what) from exc
        return (text if kind is str else kind(text)), end

    _DECODERS[code] = dec


_variable(0xA0, 1, bytes, None)
_variable(0xB0, 4, bytes, None)
_variable(0xA1, 1, str, "utf-8")
_variable(0xB1, 4, str, "utf-8")
_variable(0xA3, 1, Symbol, "ascii")
_variable(0xB3, 4, Symbol, "ascii")


def _compound_bounds(data: Any, offset: int, width: int, depth: int) -> tuple[int, int, int]:
    """Return (first element offset, end offset, count) of a list/map/array body, checked."""
    if depth >= MAX_NESTING:
        raise DecodeError(f"values nested deeper than {MAX_NESTING}")
    if width == 1:
        size, count = _u8u8(data, offset)
    else:
        size, count = _u32u32(data, offset)
    end = offset + width + size
    if size < width or end > len(data):
        raise DecodeError("compound size runs past the end of the data")
    if count > size:
        # Every element needs at least one byte (arrays of zero-width constructors aside, and those
        # are bounded the same way), so this caps work and memory at the input's length.
        raise DecodeError("compound count is larger than its size")
    return offset + 2 * width, end, count


def _list(width: int) -> _Decoder:
    def dec(data: Any, offset: int, depth: int) -> tuple[Any, int]:
        pos, end, count = _compound_bounds(data, offset, width, depth)
        items = []
        append = items.append
        table = _DECODERS
        depth += 1
        for _ in range(count):
            if pos >= end:
                raise DecodeError("list elements run past the list's size")
            code = data[pos]
            if code == 0x40:  # performative and section lists are mostly nulls
                append(None)
                pos += 1
                continue
            value, pos = table[code](data, pos + 1, depth)
            append(value)
        if pos > end:
            raise DecodeError("list elements run past the list's size")
        return items, end

    return dec


def _map(width: int) -> _Decoder:
    def dec(data: Any, offset: int, depth: int) -> tuple[Any, int]:
        pos, end, count = _compound_bounds(data, offset, width, depth)
        if count & 1:
            raise DecodeError("map has an odd number of elements")
        result: dict[Any, Any] = {}
        table = _DECODERS
        depth += 1
        for _ in range(count >> 1):
            if pos >= end:
                raise DecodeError("map elements run past the map's size")
            key, pos = table[data[pos]](data, pos + 1, depth)
            if pos >= end:
                raise DecodeError("map elements run past the map's size")
            value, pos = table[data[pos]](data, pos + 1, depth)
            try:
                result[key] = value
            except TypeError as exc:
                raise DecodeError("map key is not hashable") from exc
        if pos > end:
            raise DecodeError("map elements run past the map's size")
        return result, end

    return dec


def _array(width: int) -> _Decoder:
    def dec(data: Any, offset: int, depth: int) -> tuple[Any, int]:
        pos, end, count = _compound_bounds(data, offset, width, depth)
        if pos >= end:
            raise DecodeError("array has no element constructor")
        depth += 1
        descriptor = None
        code = data[pos]
        pos += 1
        if code == 0x00:
            descriptor, pos = _DECODERS[data[pos]](data, pos + 1, depth)
            if pos >= end:
                raise DecodeError("array has no element constructor")
            code = data[pos]
            pos += 1
            if code == 0x00:
                raise DecodeError("array element constructor is described twice")
        element = _DECODERS[code]
        items = []
        append = items.append
        for _ in range(count):
            value, pos = element(data, pos, depth)
            append(value)
        if pos > end:
            raise DecodeError("array elements run past the array's size")
        return Array(items, code, descriptor), end

    return dec


_DECODERS[0x45] = lambda data, offset, depth: ([], offset)
_DECODERS[0xC0] = _list(1)
_DECODERS[0xD0] = _list(4)
_DECODERS[0xC1] = _map(1)
_DECODERS[0xD1] = _map(4)
_DECODERS[0xE0] = _array(1)
_DECODERS[0xF0] = _array(4)


@_register(0x00)
def _d_described(data: Any, offset: int, depth: int) -> tuple[Any, int]:
    if depth >= MAX_NESTING:
        raise DecodeError(f"values nested deeper than {MAX_NESTING}")
    depth += 1
    descriptor, offset = _DECODERS[data[offset]](data, offset + 1, depth)
    value, offset = _DECODERS[data[offset]](data, offset + 1, depth)
    return Described(descriptor, value), offset


def decode(data: _Buffer, offset: int = 0) -> tuple[Any, int]:
    """Decode one value starting at ``offset``; return it and the offset just past it."""
    try:
        return _DECODERS[data[offset]](data, offset + 1, 0)
    except DecodeError:
        raise
    except (IndexError, struct.error) as exc:
        raise DecodeError(f"truncated AMQP value at offset {offset}") from exc
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise DecodeError(f"malformed AMQP value at offset {offset}: {exc}") from exc


def decode_all(data: _Buffer, offset: int = 0) -> list[Any]:
    """Decode consecutive values until the end of ``data`` (message sections are laid out this way)."""
    values = []
    end = len(data)
    while offset < end:
        value, offset = decode(data, offset)
        values.append(value)
    return values


# --------------------------------------------------------------------------------------------- encoding


def encode_into(buf: bytearray, value: Any) -> None:
    """Append the encoding of ``value`` to ``buf`` (lets frames be built without extra copies).

    On error ``buf`` may hold part of the encoding; callers build into a fresh buffer.
    """
    try:
        _encode(buf, value)
    except struct.error as exc:
        raise ValueError(f"value out of range for its AMQP type: {exc}") from exc


def encode(value: Any) -> bytes:
    """Return the most compact AMQP encoding of ``value``."""
    buf = bytearray()
    encode_into(buf, value)
    return bytes(buf)
