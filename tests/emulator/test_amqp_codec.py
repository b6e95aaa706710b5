"""The AMQP type codec against the encodings of the AMQP 1.0 spec (part 1) and the SDK's encoder."""

from __future__ import annotations

import datetime as dt
import enum
import math
import struct
import uuid
from typing import Any

import pytest
from azure.servicebus._pyamqp import _decode as sdk_decode
from azure.servicebus._pyamqp import _encode as sdk_encode
from azure.servicebus._pyamqp.types import AMQPTypes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtf_sb.emulator.amqp.codec import MAX_NESTING, DecodeError, decode, decode_all, encode, encode_into
from dtf_sb.emulator.amqp.types import (
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

U = uuid.UUID("12345678-9abc-def0-1234-56789abcdef0")

# (value, exact encoding) straight from the type tables of AMQP 1.0 part 1 section 1.6.
KNOWN = [
    (None, "40"),
    (True, "41"),
    (False, "42"),
    (UByte(7), "5007"),
    (UShort(0x1234), "601234"),
    (UInt(0), "43"),
    (UInt(200), "52c8"),
    (UInt(0x12345), "7000012345"),
    (ULong(0), "44"),
    (ULong(16), "5310"),
    (ULong(2**40), "800000010000000000"),
    (Byte(-2), "51fe"),
    (Short(-2), "61fffe"),
    (Int(-5), "54fb"),
    (Int(1000), "71000003e8"),
    (Long(-5), "55fb"),
    (5, "5505"),
    (2**40, "810000010000000000"),
    (Float(1.5), "723fc00000"),
    (1.5, "823ff8000000000000"),
    (Char("A"), "7300000041"),
    (Timestamp(1_700_000_000_000), "830000018bcfe56800"),
    (U, "98" + U.hex),
    (b"\x01\x02", "a0020102"),
    (b"x" * 256, "b000000100" + "78" * 256),
    ("héllo", "a106" + "héllo".encode().hex()),
    ("y" * 300, "b10000012c" + "79" * 300),
    (Symbol("amqp:open:list"), "a30e" + b"amqp:open:list".hex()),
    (Symbol("z" * 256), "b300000100" + "7a" * 256),
    ([], "45"),
    ([True, None], "c003024140"),
    ({Symbol("a"): UInt(1)}, "c10602a301615201"),
    ({}, "c10100"),
    (Array([Symbol("a"), Symbol("bc")], Symbol), "e00702a30161026263"),
    (Array([UInt(1), UInt(2)], UInt), "e00a027000000001" + "00000002"),
    (Described(ULong(0x10), [Symbol("x")]), "005310c00401a30178"),
    (Described(Symbol("amqp:accepted:list"), []), "00a312" + b"amqp:accepted:list".hex() + "45"),
    (Decimal32(b"\x01\x02\x03\x04"), "7401020304"),
    (Decimal64(bytes(range(8))), "84" + bytes(range(8)).hex()),
    (Decimal128(bytes(range(16))), "94" + bytes(range(16)).hex()),
]


@pytest.mark.parametrize(("value", "hex_encoding"), KNOWN, ids=[h[:12] for _, h in KNOWN])
def test_known_encodings(value: Any, hex_encoding: str) -> None:
    raw = bytes.fromhex(hex_encoding)
    assert encode(value) == raw
    decoded, end = decode(raw)
    assert end == len(raw)
    assert _same(value, decoded)
    assert encode(decoded) == raw  # decoded wrappers keep the exact type


@pytest.mark.parametrize(
    ("raw", "expected", "expected_type"),
    [
        ("5601", True, bool),
        ("5600", False, bool),
        ("8000000000000000ff", 255, ULong),  # non-compact encodings decode the same
        ("70000000ff", 255, UInt),
        ("b100000002c3a9", "é", str),
        ("b30000000161", "a", Symbol),
        ("c00100", [], list),
    ],
)
def test_non_compact_encodings_decode(raw: str, expected: Any, expected_type: type) -> None:
    value, end = decode(bytes.fromhex(raw))
    assert end == len(raw) // 2
    assert value == expected
    assert type(value) is expected_type


def test_plain_values_map_to_their_default_types() -> None:
    moment = dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)
    value, _ = decode(encode(moment))
    assert type(value) is Timestamp and value.to_datetime() == moment
    naive, _ = decode(encode(moment.replace(tzinfo=None)))
    assert naive == value
    assert decode(encode((1, "a")))[0] == [1, "a"]
    assert type(decode(encode(7))[0]) is Long
    assert type(decode(encode(0.25))[0]) is Double
    assert decode(encode(bytearray(b"ab")))[0] == b"ab"
    assert decode(encode(memoryview(b"ab")))[0] == b"ab"


def test_list8_and_list32_boundary() -> None:
    small = [b"x" * 250]  # 252 bytes of elements -> size 253 fits list8
    assert encode(small)[0] == 0xC0
    big = [b"x" * 253]  # 255 bytes of elements -> size would be 256
    assert encode(big)[0] == 0xD0
    many = [None] * 256  # count does not fit a byte
    assert encode(many)[:1] == b"\xd0"
    for value in (small, big, many):
        assert decode(encode(value))[0] == value


def test_map32_and_array32() -> None:
    value = {f"k{i}": i for i in range(100)}
    raw = encode(value)
    assert raw[0] == 0xD1
    assert decode(raw)[0] == value
    arr = Array([Long(i) for i in range(100)], Long)
    raw = encode(arr)
    assert raw[0] == 0xF0
    assert decode(raw)[0].items == arr.items


def test_arrays_of_compound_and_described_elements() -> None:
    for arr in (
        Array([[1], [2, 3]], list),
        Array([{"a": 1}, {}], dict),
        Array([Array([UInt(1)], UInt), Array([], UInt)], Array),
        Array([uuid.UUID(int=1), uuid.UUID(int=2)], uuid.UUID),
        Array(["a" * 300], str),
        Array([True, False], bool),
        Array([Symbol("x")], Symbol, descriptor=ULong(0x77)),
    ):
        raw = encode(arr)
        decoded, end = decode(raw)
        assert end == len(raw)
        assert isinstance(decoded, Array)
        assert encode(decoded) == raw
        assert decoded.descriptor == arr.descriptor


def test_array_code_is_kept_for_exact_reencoding() -> None:
    # An array of smallulong, as other encoders send it, must survive a round trip byte for byte.
    raw = bytes.fromhex("e00402530102")
    decoded, _ = decode(raw)
    assert decoded.items == [1, 2] and decoded.element_type == 0x53
    assert encode(decoded) == raw


def test_int_descriptor_encodes_as_ulong() -> None:
    assert encode(Described(0x24, [])) == bytes.fromhex("00532445")


@pytest.mark.parametrize(
    "value",
    [UByte(256), UInt(-1), ULong(2**64), Byte(128), Short(2**15), Int(2**31), 2**63, Timestamp(2**63)],
)
def test_out_of_range_values_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        encode(value)


def test_unencodable_values_are_refused() -> None:
    with pytest.raises(TypeError):
        encode(object())
    with pytest.raises(ValueError):
        encode(Symbol("naïve"))
    with pytest.raises(ValueError):
        encode(Char("ab"))
    with pytest.raises(ValueError):
        Decimal32(b"abc")


def test_subclasses_encode_like_their_nearest_base() -> None:
    class Code(enum.IntEnum):
        THREE = 3

    class Name(str):
        pass

    class Key(Symbol):
        pass

    assert encode(Code.THREE) == encode(3)
    assert encode(Name("a")) == encode("a")
    assert encode(Key("a")) == encode(Symbol("a"))


def test_encode_into_appends() -> None:
    buf = bytearray(b"\xff")
    encode_into(buf, UInt(1))
    assert buf == b"\xff\x52\x01"


def test_decode_at_offset_and_decode_all() -> None:
    raw = encode(UInt(1)) + encode("a") + encode(None)
    value, end = decode(raw, 2)
    assert value == "a" and end == 5
    assert decode_all(raw) == [1, "a", None]
    assert decode(memoryview(raw), 2)[0] == "a"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "truncated"),
        ("70000001", "truncated"),
        ("a105616263", "past the end"),
        ("b0ffffffff00", "past the end"),
        ("a102c328", "UTF-8"),
        ("a301ff", "ASCII"),
        ("01", "unknown constructor"),
        ("5602", "boolean"),
        ("c00502", "past the end"),
        ("c00103", "count"),
        ("c0020241", "run past"),
        ("c1020241", "run past"),
        ("c1020141", "odd number"),
        ("c10502c0010041", "hashable"),
        ("d0ffffffff00000001", "past the end"),
        ("e0020540", "count"),
        ("e00100", "constructor"),
        ("e00401004000", "described twice"),
        ("e0020101", "unknown constructor"),
        ("73ffffffff", "code point"),
        ("98" + "00" * 15, "truncated uuid"),
        ("0053", "truncated"),
    ],
)
def test_malformed_input_raises_decode_error(raw: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(bytes.fromhex(raw))


def test_nesting_is_bounded() -> None:
    assert decode(_nested_lists(10))[0] == _nest(10)
    with pytest.raises(DecodeError, match="nested"):
        decode(_nested_lists(MAX_NESTING + 1))
    described = b"\x00\x53\x01" * (MAX_NESTING + 1) + b"\x40"
    with pytest.raises(DecodeError, match="nested"):
        decode(described)


def _nest(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def _nested_lists(depth: int) -> bytes:
    raw = b"\x45"
    for _ in range(depth):
        raw = struct.pack(">BII", 0xD0, len(raw) + 4, 1) + raw
    return raw


def test_timestamp_helpers() -> None:
    moment = dt.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=dt.timezone.utc)
    assert Timestamp.from_datetime(moment) == -1
    assert Timestamp(-1).to_datetime() == moment
    assert repr(UInt(3)) == "UInt(3)" and repr(Symbol("a")) == "Symbol('a')"


# ------------------------------------------------------------------------------- SDK cross-check


def _sdk(amqp_type: str | None, value: Any) -> bytes:
    out = bytearray()
    sdk_encode.encode_value(out, {"TYPE": amqp_type, "VALUE": value})
    return bytes(out)


@pytest.mark.parametrize(
    ("ours", "amqp_type", "sdk_value"),
    [
        (None, AMQPTypes.null, None),
        (UInt(0), AMQPTypes.uint, 0),
        (UInt(100), AMQPTypes.uint, 100),
        (UInt(100000), AMQPTypes.uint, 100000),
        (ULong(0x53), AMQPTypes.ulong, 0x53),
        (ULong(2**33), AMQPTypes.ulong, 2**33),
        (UByte(1), AMQPTypes.ubyte, 1),
        (UShort(65535), AMQPTypes.ushort, 65535),
        (Int(-3), AMQPTypes.int, -3),
        (Long(2**40), AMQPTypes.long, 2**40),
        (Timestamp(1893456000000), AMQPTypes.timestamp, 1893456000000),
        (U, AMQPTypes.uuid, U),
        (b"abc", AMQPTypes.binary, b"abc"),
        ("abc", AMQPTypes.string, "abc"),
        (Symbol("com.microsoft:session-filter"), AMQPTypes.symbol, b"com.microsoft:session-filter"),
        (Double(2.5), AMQPTypes.double, 2.5),
        (Float(2.5), AMQPTypes.float, 2.5),
    ],
)
def test_scalar_encodings_match_the_sdk(ours: Any, amqp_type: str, sdk_value: Any) -> None:
    assert encode(ours) == _sdk(amqp_type, sdk_value)


def test_compound_encodings_match_the_sdk() -> None:
    sdk_map = _sdk(
        AMQPTypes.map,
        [
            ({"TYPE": AMQPTypes.symbol, "VALUE": b"k"}, {"TYPE": AMQPTypes.string, "VALUE": "v"}),
            ({"TYPE": AMQPTypes.symbol, "VALUE": b"n"}, {"TYPE": AMQPTypes.uint, "VALUE": 5}),
        ],
    )
    assert encode({Symbol("k"): "v", Symbol("n"): UInt(5)}) == sdk_map
    sdk_list = _sdk(
        AMQPTypes.list, [{"TYPE": AMQPTypes.string, "VALUE": "a"}, {"TYPE": AMQPTypes.null, "VALUE": None}]
    )
    assert encode(["a", None]) == sdk_list
    sdk_array = _sdk(AMQPTypes.array, [{"TYPE": AMQPTypes.symbol, "VALUE": b"ANONYMOUS"}])
    ours = encode(Array([Symbol("ANONYMOUS")], Symbol))
    # Both are arrays of symbols; the SDK always uses sym32 elements, we use sym8 when they fit.
    assert decode(sdk_array)[0].items == decode(ours)[0].items == ["ANONYMOUS"]


def test_sdk_decoder_reads_our_encodings() -> None:
    value = {
        Symbol("s"): [UInt(1), ULong(2), Long(-3), "x", b"y", U, Timestamp(5), None, True],
        Symbol("a"): Array([Symbol("p"), Symbol("q")], Symbol),
    }
    raw = encode(value)
    _, decoded = sdk_decode._DECODE_BY_CONSTRUCTOR[raw[0]](memoryview(raw)[1:])
    assert decoded == {b"s": [1, 2, -3, b"x", b"y", U, 5, None, True], b"a": [b"p", b"q"]}


# ----------------------------------------------------------------------------------- properties

_KEYS = st.one_of(
    st.text(max_size=10),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=10).map(Symbol),
    st.integers(0, 2**64 - 1).map(ULong),
    st.uuids(),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(0, 255).map(UByte),
    st.integers(0, 2**16 - 1).map(UShort),
    st.integers(0, 2**32 - 1).map(UInt),
    st.integers(0, 2**64 - 1).map(ULong),
    st.integers(-(2**7), 2**7 - 1).map(Byte),
    st.integers(-(2**15), 2**15 - 1).map(Short),
    st.integers(-(2**31), 2**31 - 1).map(Int),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(2**63), 2**63 - 1).map(Timestamp),
    st.floats(allow_nan=False),
    st.floats(width=32, allow_nan=False).map(Float),
    st.characters().map(Char),
    st.text(max_size=300),
    st.binary(max_size=300),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=20).map(Symbol),
    st.uuids(),
    st.binary(min_size=16, max_size=16).map(Decimal128),
)
_ARRAYS = st.one_of(
    st.lists(st.integers(0, 2**32 - 1).map(UInt), max_size=5).map(lambda xs: Array(xs, UInt)),
    st.lists(st.text(alphabet=st.characters(max_codepoint=127), max_size=5).map(Symbol), max_size=5).map(
        lambda xs: Array(xs, Symbol)
    ),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=5).map(lambda xs: Array(xs, Long)),
)
VALUES = st.recursive(
    st.one_of(_SCALARS, _ARRAYS),
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(_KEYS, children, max_size=6),
        st.builds(Described, st.integers(0, 2**64 - 1).map(ULong), children),
        st.builds(Described, _KEYS.filter(lambda k: isinstance(k, Symbol)), children),
    ),
    max_leaves=30,
)


def _same(a: Any, b: Any) -> bool:
    """``b`` (decoded) equals ``a`` (encoded) with the AMQP type ``a`` maps to.

    A decoded array carries its constructor code where the original named a class, so arrays
    compare by items; their exact bytes are checked by re-encoding.
    """
    if isinstance(a, Array) and isinstance(b, Array):
        return a.items == b.items
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, Described) and isinstance(b, Described):
        return a.descriptor == b.descriptor and _same(a.value, b.value)
    if isinstance(a, float) and isinstance(b, float):
        same_type = type(a) is type(b) or (type(a) is float and type(b) is Double)
        return same_type and (a == b or (math.isnan(a) and math.isnan(b)))
    return (a == b and type(a) is type(b)) or (type(a) is int and type(b) is Long and a == b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES)
def test_round_trip_of_arbitrary_values(value: Any) -> None:
    raw = encode(value)
    decoded, end = decode(raw)
    assert end == len(raw)
    assert _same(value, decoded)
    assert encode(decoded) == raw


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_decode_error(raw: bytes) -> None:
    try:
        _, end = decode(raw)
    except DecodeError:
        return
    assert 0 < end <= len(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES, st.data())
def test_mutated_encodings_only_raise_decode_error(value: Any, data: st.DataObject) -> None:
    raw = bytearray(encode(value))
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=4))
    for index, byte in flips:
        raw[index] = byte
    for candidate in (bytes(raw), bytes(raw[:cut])):
        try:
            _, end = decode(candidate)
        except DecodeError:
            continue
        assert 0 < end <= len(candidate)
