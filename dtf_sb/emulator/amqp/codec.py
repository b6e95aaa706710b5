"""AMQP 1.0 type encoding and decoding (OASIS AMQP 1.0 part 1, section 1.6).

Decoding sits on the hot path of every frame, so it dispatches on the constructor byte through a
256-entry table of small functions, reads fixed-width values with precompiled ``struct`` unpackers
and never loops over bytes in Python. Malformed input of any kind surfaces as ``DecodeError``: the
decoder is fed straight from a socket, and a peer must not be able to crash the server with
anything else.

Encoding always picks the most compact constructor (``uint0``, ``smalluint``, ``list0``,
``list8``, ``str8`` ...), which is what the spec recommends and what other brokers send.
"""

from __future__ import annotations

import datetime as _dt
import struct
import uuid
from collections.abc import Callable
from typing import Any

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

_p_u8 = struct.Struct(">BB").pack
_p_u16 = struct.Struct(">BH").pack
_p_u32 = struct.Struct(">BI").pack
_p_u64 = struct.Struct(">BQ").pack
_p_i8 = struct.Struct(">Bb").pack
_p_i16 = struct.Struct(">Bh").pack
_p_i32 = struct.Struct(">Bi").pack
_p_i64 = struct.Struct(">Bq").pack
_p_f32 = struct.Struct(">Bf").pack
_p_f64 = struct.Struct(">Bd").pack
_p_hdr8 = struct.Struct(">BBB").pack
_p_hdr32 = struct.Struct(">BII").pack

_Encoder = Callable[[bytearray, Any], None]


def _e_null(buf: bytearray, value: Any) -> None:
    buf.append(0x40)


def _e_bool(buf: bytearray, value: bool) -> None:
    buf.append(0x41 if value else 0x42)


def _e_ubyte(buf: bytearray, value: int) -> None:
    buf += _p_u8(0x50, value)


def _e_ushort(buf: bytearray, value: int) -> None:
    buf += _p_u16(0x60, value)


def _e_uint(buf: bytearray, value: int) -> None:
    if value == 0:
        buf.append(0x43)
    elif 0 < value < 256:
        buf += _p_u8(0x52, value)
    else:
        buf += _p_u32(0x70, value)


def _e_ulong(buf: bytearray, value: int) -> None:
    if value == 0:
        buf.append(0x44)
    elif 0 < value < 256:
        buf += _p_u8(0x53, value)
    else:
        buf += _p_u64(0x80, value)


def _e_byte(buf: bytearray, value: int) -> None:
    buf += _p_i8(0x51, value)


def _e_short(buf: bytearray, value: int) -> None:
    buf += _p_i16(0x61, value)


def _e_int(buf: bytearray, value: int) -> None:
    if -128 <= value <= 127:
        buf += _p_i8(0x54, value)
    else:
        buf += _p_i32(0x71, value)


def _e_long(buf: bytearray, value: int) -> None:
    if -128 <= value <= 127:
        buf += _p_i8(0x55, value)
    else:
        buf += _p_i64(0x81, value)


def _e_timestamp(buf: bytearray, value: int) -> None:
    buf += _p_i64(0x83, value)


def _e_datetime(buf: bytearray, value: _dt.datetime) -> None:
    buf += _p_i64(0x83, Timestamp.from_datetime(value))


def _e_float(buf: bytearray, value: float) -> None:
    buf += _p_f32(0x72, value)


def _e_double(buf: bytearray, value: float) -> None:
    buf += _p_f64(0x82, value)


def _e_char(buf: bytearray, value: str) -> None:
    if len(value) != 1:
        raise ValueError("an AMQP char holds exactly one code point")
    buf += _p_u32(0x73, ord(value))


def _e_decimal(code: int) -> _Encoder:
    def enc(buf: bytearray, value: bytes) -> None:
        buf.append(code)
        buf += value

    return enc


def _e_uuid(buf: bytearray, value: uuid.UUID) -> None:
    buf.append(0x98)
    buf += value.bytes


def _e_variable(buf: bytearray, raw: bytes, code8: int, code32: int) -> None:
    n = len(raw)
    if n < 256:
        buf += _p_u8(code8, n)
    else:
        buf += _p_u32(code32, n)
    buf += raw


def _e_binary(buf: bytearray, value: bytes) -> None:
    _e_variable(buf, value, 0xA0, 0xB0)


def _e_string(buf: bytearray, value: str) -> None:
    _e_variable(buf, value.encode("utf-8"), 0xA1, 0xB1)


def _e_symbol(buf: bytearray, value: str) -> None:
    _e_variable(buf, value.encode("ascii"), 0xA3, 0xB3)


def _e_compound(buf: bytearray, body: bytearray, count: int, code8: int, code32: int) -> None:
    size = len(body)
    if size < 255 and count < 256:
        buf += _p_hdr8(code8, size + 1, count)
    else:
        buf += _p_hdr32(code32, size + 4, count)
    buf += body


def _e_list(buf: bytearray, value: list[Any] | tuple[Any, ...]) -> None:
    if not value:
        buf.append(0x45)
        return
    body, count = _list_body(value)
    _e_compound(buf, body, count, 0xC0, 0xD0)


def _e_map(buf: bytearray, value: dict[Any, Any]) -> None:
    body, count = _map_body(value)
    _e_compound(buf, body, count, 0xC1, 0xD1)


def _e_described(buf: bytearray, value: Described) -> None:
    buf.append(0x00)
    descriptor = value.descriptor
    if type(descriptor) is int:
        _e_ulong(buf, descriptor)
    else:
        _encode(buf, descriptor)
    _encode(buf, value.value)


# Array element encoders write only the element's bytes, without a constructor.
def _ae_struct(fmt: str) -> _Encoder:
    pack = struct.Struct(fmt).pack

    def enc(buf: bytearray, value: Any) -> None:
        buf += pack(value)

    return enc


def _ae_nothing(buf: bytearray, value: Any) -> None:
    return None


def _ae_bool(buf: bytearray, value: Any) -> None:
    buf.append(1 if value else 0)


def _ae_char(buf: bytearray, value: str) -> None:
    buf += struct.pack(">I", ord(value))


def _ae_raw(buf: bytearray, value: bytes) -> None:
    buf += value


def _ae_uuid(buf: bytearray, value: uuid.UUID) -> None:
    buf += value.bytes


def _ae_timestamp(buf: bytearray, value: Any) -> None:
    if isinstance(value, _dt.datetime):
        value = Timestamp.from_datetime(value)
    buf += struct.pack(">q", value)


def _ae_var(width: int, to_bytes: Callable[[Any], bytes]) -> _Encoder:
    prefix = struct.Struct(">B" if width == 1 else ">I").pack

    def enc(buf: bytearray, value: Any) -> None:
        raw = to_bytes(value)
        buf += prefix(len(raw))
        buf += raw

    return enc


def _list_body(value: Any) -> tuple[bytearray, int]:
    body = bytearray()
    for item in value:
        _encode(body, item)
    return body, len(value)


def _map_body(value: Any) -> tuple[bytearray, int]:
    body = bytearray()
    for key, item in value.items():
        _encode(body, key)
        _encode(body, item)
    return body, 2 * len(value)


def _array_body(value: Any) -> tuple[bytearray, int]:
    code = _array_code(value)
    element = _ARRAY_ELEMENT.get(code)
    if element is None:
        raise ValueError(f"unsupported array constructor 0x{code:02x}")
    body = bytearray()
    if value.descriptor is not None:
        body.append(0x00)
        if type(value.descriptor) is int:
            _e_ulong(body, value.descriptor)
        else:
            _encode(body, value.descriptor)
    body.append(code)
    for item in value.items:
        element(body, item)
    return body, len(value.items)


def _ae_compound(code: int) -> _Encoder:
    """Encode a list, map or array as an array element: it must use the array's exact width."""
    make_body = {0xC0: _list_body, 0xD0: _list_body, 0xC1: _map_body, 0xD1: _map_body}.get(code, _array_body)
    wide = code in (0xD0, 0xD1, 0xF0)

    def enc(buf: bytearray, value: Any) -> None:
        body, count = make_body(value)
        if wide:
            buf += struct.pack(">II", len(body) + 4, count)
        elif len(body) < 255 and count < 256:
            buf += struct.pack(">BB", len(body) + 1, count)
        else:
            raise ValueError(f"array element too large for constructor 0x{code:02x}")
        buf += body

    return enc


def _to_utf8(value: str) -> bytes:
    return value.encode("utf-8")


def _to_ascii(value: str) -> bytes:
    return value.encode("ascii")


_ARRAY_ELEMENT: dict[int, _Encoder] = {
    0x40: _ae_nothing,
    0x41: _ae_nothing,
    0x42: _ae_nothing,
    0x43: _ae_nothing,
    0x44: _ae_nothing,
    0x45: _ae_nothing,
    0x56: _ae_bool,
    0x50: _ae_struct(">B"),
    0x51: _ae_struct(">b"),
    0x52: _ae_struct(">B"),
    0x53: _ae_struct(">B"),
    0x54: _ae_struct(">b"),
    0x55: _ae_struct(">b"),
    0x60: _ae_struct(">H"),
    0x61: _ae_struct(">h"),
    0x70: _ae_struct(">I"),
    0x71: _ae_struct(">i"),
    0x72: _ae_struct(">f"),
    0x73: _ae_char,
    0x74: _ae_raw,
    0x80: _ae_struct(">Q"),
    0x81: _ae_struct(">q"),
    0x82: _ae_struct(">d"),
    0x83: _ae_timestamp,
    0x84: _ae_raw,
    0x94: _ae_raw,
    0x98: _ae_uuid,
    0xA0: _ae_var(1, bytes),
    0xB0: _ae_var(4, bytes),
    0xA1: _ae_var(1, _to_utf8),
    0xB1: _ae_var(4, _to_utf8),
    0xA3: _ae_var(1, _to_ascii),
    0xB3: _ae_var(4, _to_ascii),
    **{code: _ae_compound(code) for code in (0xC0, 0xC1, 0xD0, 0xD1, 0xE0, 0xF0)},
}

# Element class -> fixed constructor; variable-width ones get (short code, long code, to_bytes).
_ARRAY_FIXED_CODE: dict[type, int] = {
    bool: 0x56,
    UByte: 0x50,
    Byte: 0x51,
    UShort: 0x60,
    Short: 0x61,
    UInt: 0x70,
    Int: 0x71,
    ULong: 0x80,
    Long: 0x81,
    int: 0x81,
    Float: 0x72,
    Double: 0x82,
    float: 0x82,
    Char: 0x73,
    Timestamp: 0x83,
    _dt.datetime: 0x83,
    Decimal32: 0x74,
    Decimal64: 0x84,
    Decimal128: 0x94,
    uuid.UUID: 0x98,
    list: 0xD0,
    tuple: 0xD0,
    dict: 0xD1,
    Array: 0xF0,
}
_ARRAY_VARIABLE_CODE: dict[type, tuple[int, int, Callable[[Any], bytes]]] = {
    Symbol: (0xA3, 0xB3, _to_ascii),
    str: (0xA1, 0xB1, _to_utf8),
    bytes: (0xA0, 0xB0, bytes),
}


def _array_code(value: Array) -> int:
    element_type = value.element_type
    if isinstance(element_type, int):
        return element_type
    if element_type in _ARRAY_FIXED_CODE:
        return _ARRAY_FIXED_CODE[element_type]
    if element_type in _ARRAY_VARIABLE_CODE:
        short, long, to_bytes = _ARRAY_VARIABLE_CODE[element_type]
        return short if all(len(to_bytes(x)) < 256 for x in value.items) else long
    if element_type is None and not value.items:
        return 0x40
    raise ValueError(f"cannot choose an array constructor for element type {element_type!r}")


def _e_array(buf: bytearray, value: Array) -> None:
    body, count = _array_body(value)
    _e_compound(buf, body, count, 0xE0, 0xF0)


_ENCODERS: dict[type, _Encoder] = {
    type(None): _e_null,
    bool: _e_bool,
    int: _e_long,
    float: _e_double,
    str: _e_string,
    bytes: _e_binary,
    bytearray: _e_binary,
    memoryview: lambda buf, v: _e_binary(buf, v.tobytes()),
    uuid.UUID: _e_uuid,
    dict: _e_map,
    list: _e_list,
    tuple: _e_list,
    _dt.datetime: _e_datetime,
    UByte: _e_ubyte,
    UShort: _e_ushort,
    UInt: _e_uint,
    ULong: _e_ulong,
    Byte: _e_byte,
    Short: _e_short,
    Int: _e_int,
    Long: _e_long,
    Timestamp: _e_timestamp,
    Float: _e_float,
    Double: _e_double,
    Char: _e_char,
    Symbol: _e_symbol,
    Decimal32: _e_decimal(0x74),
    Decimal64: _e_decimal(0x84),
    Decimal128: _e_decimal(0x94),
    Described: _e_described,
    Array: _e_array,
}


def _encode(buf: bytearray, value: Any) -> None:
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        # A subclass (an IntEnum, a str subclass, ...) encodes like its nearest known base.
        for base in type(value).__mro__[1:]:
            encoder = _ENCODERS.get(base)
            if encoder is not None:
                _ENCODERS[type(value)] = encoder
                break
        else:
            raise TypeError(f"no AMQP encoding for {type(value).__name__}")
    encoder(buf, value)


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
