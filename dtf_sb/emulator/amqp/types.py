"""Python representations of AMQP 1.0 primitive types (OASIS AMQP 1.0 part 1).

Plain Python values have an obvious default encoding (``int`` is an AMQP ``long``, ``str`` a ``string``),
but a broker must often put a *specific* type on the wire: a handle is a ``uint``, a delivery tag a
``binary``, an annotation key a ``symbol``, and the peer's decoder may care. The wrappers here are
thin subclasses of the builtin types, so they compare and hash like the builtins while carrying the
exact AMQP type through an encode/decode round trip.

Range checks happen at encode time (``struct`` refuses values that do not fit), not in the
constructors: the decoder creates millions of these and must stay cheap.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Array",
    "Byte",
    "Char",
    "Decimal32",
    "Decimal64",
    "Decimal128",
    "Described",
    "Double",
    "Float",
    "Int",
    "Long",
    "Short",
    "Symbol",
    "Timestamp",
    "UByte",
    "UInt",
    "ULong",
    "UShort",
]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


class _TypedInt(int):
    """An ``int`` that remembers which AMQP integer type it came from."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"


class UByte(_TypedInt):
    """AMQP ``ubyte`` (0..255)."""

    __slots__ = ()


class UShort(_TypedInt):
    """AMQP ``ushort`` (0..65535)."""

    __slots__ = ()


class UInt(_TypedInt):
    """AMQP ``uint``; handles, windows and sequence numbers travel as this."""

    __slots__ = ()


class ULong(_TypedInt):
    """AMQP ``ulong``; also the numeric form of descriptors."""

    __slots__ = ()


class Byte(_TypedInt):
    """AMQP ``byte`` (signed 8 bit)."""

    __slots__ = ()


class Short(_TypedInt):
    """AMQP ``short`` (signed 16 bit)."""

    __slots__ = ()


class Int(_TypedInt):
    """AMQP ``int`` (signed 32 bit)."""

    __slots__ = ()


class Long(_TypedInt):
    """AMQP ``long`` (signed 64 bit); what a plain Python ``int`` encodes as."""

    __slots__ = ()


class Timestamp(_TypedInt):
    """AMQP ``timestamp``: milliseconds since the Unix epoch, signed 64 bit.

    Kept as an integer rather than a ``datetime`` so decoding is exact and cheap and values far
    outside ``datetime``'s range (such as .NET's ``DateTime.MaxValue`` sentinel) survive.
    """

    __slots__ = ()

    @classmethod
    def from_datetime(cls, value: _dt.datetime) -> Timestamp:
        """Convert a datetime; a naive datetime is taken to be UTC, as the Azure SDK does."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        delta = value - _EPOCH
        return cls((delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000)

    def to_datetime(self) -> _dt.datetime:
        """Return an aware UTC datetime (raises ``OverflowError`` outside datetime's range)."""
        return _EPOCH + _dt.timedelta(milliseconds=int(self))


class Symbol(str):
    """AMQP ``symbol``: an ASCII name, used for keys of annotations, conditions and capabilities."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Symbol({str.__repr__(self)})"


class Char(str):
    """AMQP ``char``: a single unicode code point encoded as UTF-32BE."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Char({str.__repr__(self)})"


class Float(float):
    """AMQP ``float`` (IEEE 754 binary32)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Float({float(self)!r})"


class Double(float):
    """AMQP ``double`` (IEEE 754 binary64); what a plain Python ``float`` encodes as."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Double({float(self)!r})"


class _Decimal(bytes):
    """Raw IEEE 754 decimal bytes; the broker never does arithmetic on them, it only carries them."""

    SIZE = 0

    def __new__(cls, value: bytes = b"") -> _Decimal:
        if len(value) != cls.SIZE:
            raise ValueError(f"{cls.__name__} needs exactly {cls.SIZE} bytes, got {len(value)}")
        return super().__new__(cls, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({bytes(self)!r})"


class Decimal32(_Decimal):
    """AMQP ``decimal32`` as its 4 raw bytes."""

    SIZE = 4


class Decimal64(_Decimal):
    """AMQP ``decimal64`` as its 8 raw bytes."""

    SIZE = 8


class Decimal128(_Decimal):
    """AMQP ``decimal128`` as its 16 raw bytes."""

    SIZE = 16


@dataclass(frozen=True, slots=True)
class Described:
    """A described type: a descriptor (``ULong`` code or ``Symbol`` name) applied to a value.

    Performatives, message sections, filters and delivery states all travel in this form.
    A plain ``int`` descriptor is encoded as a ``ulong``, since the spec allows nothing else.
    """

    descriptor: Any
    value: Any


@dataclass(frozen=True, slots=True)
class Array:
    """An AMQP array: every element shares one constructor.

    ``element_type`` is either the constructor code byte (decoded arrays carry the exact code so
    they re-encode byte for byte) or a wrapper/builtin class (``Symbol``, ``UInt``, ``uuid.UUID``,
    ``str``, ``bytes``, ...) from which the encoder picks a code. ``descriptor`` is set for arrays of
    described values; the items are then the undescribed values.
    """

    items: list[Any] = field(default_factory=list)
    element_type: Any = None
    descriptor: Any = None
