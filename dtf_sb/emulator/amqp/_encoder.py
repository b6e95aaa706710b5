"""The AMQP 1.0 encoder behind :func:`.codec.encode` (OASIS AMQP 1.0 part 1, section 1.6).

Encoding dispatches on the value's exact class through a dict of small functions and always picks
the most compact constructor. Arrays need their own element encoders, which write an element's
bytes without a constructor; the tables for both live here so :mod:`.codec` stays the one public
entry point for decoding and encoding alike.
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
