"""AMQP 1.0 performatives, link terminus, delivery states and SASL frames as dataclasses.

Each class is a described list on the wire (OASIS AMQP 1.0 part 2 section 2.7, part 3 sections
3.4-3.5, part 5 section 5.3). The field order of each dataclass is the wire order; every field's
AMQP type is declared once in its metadata, so encoding puts exactly the spec's types on the wire
(a handle is a ``uint``, max-message-size a ``ulong``, capabilities an array of symbols) whatever
plain Python values the caller used. Decoding fills absent or null fields with the spec's defaults
and rejects a missing mandatory field or a field of the wrong type with ``DecodeError``, so the
connection engine can trust what it gets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .codec import DecodeError
from .types import Array, Described, Symbol, Timestamp, UByte, UInt, ULong, UShort

__all__ = [
    "DELIVERY_STATES",
    "PERFORMATIVES",
    "SASL_FRAMES",
    "Accepted",
    "Attach",
    "Begin",
    "Close",
    "Detach",
    "Disposition",
    "End",
    "Error",
    "Flow",
    "Modified",
    "Open",
    "Received",
    "ReceiverSettleMode",
    "Rejected",
    "Released",
    "Role",
    "SaslChallenge",
    "SaslCode",
    "SaslInit",
    "SaslMechanisms",
    "SaslOutcome",
    "SaslResponse",
    "SenderSettleMode",
    "Source",
    "Target",
    "Transfer",
    "described_to_performative",
    "performative_to_described",
]


class Role:
    """Link roles travel as a boolean."""

    SENDER = False
    RECEIVER = True


class SenderSettleMode:
    UNSETTLED = 0
    SETTLED = 1
    MIXED = 2


class ReceiverSettleMode:
    FIRST = 0
    SECOND = 1


class SaslCode:
    OK = 0
    AUTH = 1
    SYS = 2
    SYS_PERM = 3
    SYS_TEMP = 4


# ------------------------------------------------------------------------------------ field kinds


def _check_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError(f"expected an integer, got {type(value).__name__}")
    return value


def _check_range(low: int, high: int, what: str) -> Callable[[Any], int]:
    """A field checker that also refuses values its wire type cannot hold, so whatever is accepted can be
    encoded again (a negative handle would otherwise pass decoding and fail only when echoed)."""

    def check(value: Any) -> int:
        value = _check_int(value)
        if not low <= value <= high:
            raise DecodeError(f"expected {what}, got {value}")
        return value

    return check


def _check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise DecodeError(f"expected a boolean, got {type(value).__name__}")
    return value


def _check_str(value: Any) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"expected a string, got {type(value).__name__}")
    return value


def _check_symbol(value: Any) -> Symbol:
    if not isinstance(value, str):
        raise DecodeError(f"expected a symbol, got {type(value).__name__}")
    if not value.isascii():
        raise DecodeError(f"symbols are ASCII, got {value!r}")
    return value if type(value) is Symbol else Symbol(value)


def _check_binary(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError(f"expected binary, got {type(value).__name__}")
    return value


def _check_map(value: Any) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"expected a map, got {type(value).__name__}")
    return value


def _check_symmap(value: Any) -> dict[Any, Any]:
    """A ``fields`` map: its text keys are symbols, so they must be ASCII to be written back."""
    mapping = _check_map(value)
    for key in mapping:
        if isinstance(key, str) and not key.isascii():
            raise DecodeError(f"map keys of a fields value are symbols (ASCII), got {key!r}")
    return mapping


def _symbols_to_wire(value: Any) -> Array:
    if isinstance(value, str):
        value = (value,)
    return Array([v if type(v) is Symbol else Symbol(v) for v in value], Symbol)


def _symbols_from_wire(value: Any) -> tuple[Symbol, ...]:
    """A "multiple" symbol field may arrive as one symbol or as an array of them."""
    if isinstance(value, str):
        return (_check_symbol(value),)
    if isinstance(value, Array):
        return tuple(_check_symbol(v) for v in value.items)
    if isinstance(value, list):
        return tuple(_check_symbol(v) for v in value)
    raise DecodeError(f"expected symbols, got {type(value).__name__}")


def _symmap_to_wire(value: Mapping[Any, Any]) -> dict[Any, Any]:
    return {(Symbol(k) if type(k) is str else k): v for k, v in value.items()}


def _composite_to_wire(value: Any) -> Any:
    return performative_to_described(value) if type(value) in _SPECS else value


def _composite_from_wire(value: Any) -> Any:
    """Nested composites of a kind this module does not model stay ``Described``.

    A transactional delivery state or a coordinator target (``amqp:coordinator:list``) is legal
    AMQP; the link engine should refuse such a link or delivery politely, not lose the connection.
    """
    if not isinstance(value, Described):
        raise DecodeError(f"expected a described type, got {type(value).__name__}")
    descriptor = value.descriptor
    if not isinstance(descriptor, (int, str)) or isinstance(descriptor, bool):
        raise DecodeError(f"descriptor must be a ulong or a symbol, got {type(descriptor).__name__}")
    if descriptor not in _BY_CODE and descriptor not in _BY_NAME:
        return value
    return described_to_performative(value)


def _identity(value: Any) -> Any:
    return value


# kind -> (to wire, from wire)
_KINDS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "ubyte": (UByte, _check_range(0, 2**8 - 1, "a ubyte")),
    "ushort": (UShort, _check_range(0, 2**16 - 1, "a ushort")),
    "uint": (UInt, _check_range(0, 2**32 - 1, "a uint")),
    "ulong": (ULong, _check_range(0, 2**64 - 1, "a ulong")),
    "timestamp": (Timestamp, _check_range(-(2**63), 2**63 - 1, "a timestamp")),
    "bool": (bool, _check_bool),
    "str": (str, _check_str),
    "symbol": (Symbol, _check_symbol),
    "symbols": (_symbols_to_wire, _symbols_from_wire),
    "binary": (bytes, _check_binary),
    "map": (_identity, _check_map),
    "symmap": (_symmap_to_wire, _check_symmap),
    "composite": (_composite_to_wire, _composite_from_wire),
    "any": (_identity, _identity),
}


def _f(kind: str, default: Any = None, *, mandatory: bool = False) -> Any:
    return field(default=default, metadata={"amqp": kind, "mandatory": mandatory})


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    to_wire: Callable[[Any], Any]
    from_wire: Callable[[Any], Any]
    default: Any
    mandatory: bool


_BY_CODE: dict[int, tuple[type, tuple[_Spec, ...]]] = {}
_BY_NAME: dict[str, tuple[type, tuple[_Spec, ...]]] = {}
_SPECS: dict[type, tuple[_Spec, ...]] = {}


def _composite(code: int, name: str) -> Callable[[type], type]:
    """Register a dataclass as the described list ``name`` with descriptor ``code``."""

    def register(cls: type) -> type:
        cls = dataclass(frozen=True, slots=True)(cls)
        cls.DESCRIPTOR = code  # type: ignore[attr-defined]
        cls.NAME = name  # type: ignore[attr-defined]
        specs = tuple(
            _Spec(f.name, *_KINDS[f.metadata["amqp"]], f.default, f.metadata["mandatory"])
            for f in dataclasses.fields(cls)
        )
        _BY_CODE[code] = _BY_NAME[name] = (cls, specs)
        _SPECS[cls] = specs
        return cls

    return register


# ------------------------------------------------------------------------------ delivery states


@_composite(0x1D, "amqp:error:list")
class Error:
    """Why a link, session or connection ended, or why a delivery was rejected."""

    condition: str = _f("symbol", mandatory=True)
    description: str | None = _f("str")
    info: dict[Any, Any] | None = _f("symmap")


@_composite(0x23, "amqp:received:list")
class Received:
    section_number: int = _f("uint", mandatory=True)
    section_offset: int = _f("ulong", mandatory=True)


@_composite(0x24, "amqp:accepted:list")
class Accepted:
    pass


@_composite(0x25, "amqp:rejected:list")
class Rejected:
    error: Error | None = _f("composite")


@_composite(0x26, "amqp:released:list")
class Released:
    pass


@_composite(0x27, "amqp:modified:list")
class Modified:
    delivery_failed: bool | None = _f("bool")
    undeliverable_here: bool | None = _f("bool")
    message_annotations: dict[Any, Any] | None = _f("symmap")


# ------------------------------------------------------------------------------------ terminus


@_composite(0x28, "amqp:source:list")
class Source:
    address: str | None = _f("str")
    durable: int = _f("uint", 0)
    expiry_policy: str = _f("symbol", Symbol("session-end"))
    timeout: int = _f("uint", 0)
    dynamic: bool = _f("bool", False)
    dynamic_node_properties: dict[Any, Any] | None = _f("symmap")
    distribution_mode: str | None = _f("symbol")
    filter: dict[Any, Any] | None = _f("symmap")
    default_outcome: Any = _f("composite")
    outcomes: tuple[Symbol, ...] | None = _f("symbols")
    capabilities: tuple[Symbol, ...] | None = _f("symbols")


@_composite(0x29, "amqp:target:list")
class Target:
    address: str | None = _f("str")
    durable: int = _f("uint", 0)
    expiry_policy: str = _f("symbol", Symbol("session-end"))
    timeout: int = _f("uint", 0)
    dynamic: bool = _f("bool", False)
    dynamic_node_properties: dict[Any, Any] | None = _f("symmap")
    capabilities: tuple[Symbol, ...] | None = _f("symbols")


# ------------------------------------------------------------------------------- performatives


@_composite(0x10, "amqp:open:list")
class Open:
    container_id: str = _f("str", mandatory=True)
    hostname: str | None = _f("str")
    max_frame_size: int = _f("uint", 4294967295)
    channel_max: int = _f("ushort", 65535)
    idle_time_out: int | None = _f("uint")
    outgoing_locales: tuple[Symbol, ...] | None = _f("symbols")
    incoming_locales: tuple[Symbol, ...] | None = _f("symbols")
    offered_capabilities: tuple[Symbol, ...] | None = _f("symbols")
    desired_capabilities: tuple[Symbol, ...] | None = _f("symbols")
    properties: dict[Any, Any] | None = _f("symmap")


@_composite(0x11, "amqp:begin:list")
class Begin:
    remote_channel: int | None = _f("ushort")
    next_outgoing_id: int = _f("uint", mandatory=True)
    incoming_window: int = _f("uint", mandatory=True)
    outgoing_window: int = _f("uint", mandatory=True)
    handle_max: int = _f("uint", 4294967295)
    offered_capabilities: tuple[Symbol, ...] | None = _f("symbols")
    desired_capabilities: tuple[Symbol, ...] | None = _f("symbols")
    properties: dict[Any, Any] | None = _f("symmap")


@_composite(0x12, "amqp:attach:list")
class Attach:
    name: str = _f("str", mandatory=True)
    handle: int = _f("uint", mandatory=True)
    role: bool = _f("bool", mandatory=True)
    snd_settle_mode: int = _f("ubyte", SenderSettleMode.MIXED)
    rcv_settle_mode: int = _f("ubyte", ReceiverSettleMode.FIRST)
    source: Source | None = _f("composite")
    target: Target | None = _f("composite")
    unsettled: dict[Any, Any] | None = _f("map")
    incomplete_unsettled: bool = _f("bool", False)
    initial_delivery_count: int | None = _f("uint")
    max_message_size: int | None = _f("ulong")
    offered_capabilities: tuple[Symbol, ...] | None = _f("symbols")
    desired_capabilities: tuple[Symbol, ...] | None = _f("symbols")
    properties: dict[Any, Any] | None = _f("symmap")


@_composite(0x13, "amqp:flow:list")
class Flow:
    next_incoming_id: int | None = _f("uint")
    incoming_window: int = _f("uint", mandatory=True)
    next_outgoing_id: int = _f("uint", mandatory=True)
    outgoing_window: int = _f("uint", mandatory=True)
    handle: int | None = _f("uint")
    delivery_count: int | None = _f("uint")
    link_credit: int | None = _f("uint")
    available: int | None = _f("uint")
    drain: bool = _f("bool", False)
    echo: bool = _f("bool", False)
    properties: dict[Any, Any] | None = _f("symmap")


@_composite(0x14, "amqp:transfer:list")
class Transfer:
    handle: int = _f("uint", mandatory=True)
    delivery_id: int | None = _f("uint")
    delivery_tag: bytes | None = _f("binary")
    message_format: int | None = _f("uint")
    settled: bool | None = _f("bool")
    more: bool = _f("bool", False)
    rcv_settle_mode: int | None = _f("ubyte")
    state: Any = _f("composite")
    resume: bool = _f("bool", False)
    aborted: bool = _f("bool", False)
    batchable: bool = _f("bool", False)


@_composite(0x15, "amqp:disposition:list")
class Disposition:
    role: bool = _f("bool", mandatory=True)
    first: int = _f("uint", mandatory=True)
    last: int | None = _f("uint")
    settled: bool = _f("bool", False)
    state: Any = _f("composite")
    batchable: bool = _f("bool", False)


@_composite(0x16, "amqp:detach:list")
class Detach:
    handle: int = _f("uint", mandatory=True)
    closed: bool = _f("bool", False)
    error: Error | None = _f("composite")


@_composite(0x17, "amqp:end:list")
class End:
    error: Error | None = _f("composite")


@_composite(0x18, "amqp:close:list")
class Close:
    error: Error | None = _f("composite")


# ---------------------------------------------------------------------------------------- SASL


@_composite(0x40, "amqp:sasl-mechanisms:list")
class SaslMechanisms:
    sasl_server_mechanisms: tuple[Symbol, ...] = _f("symbols", mandatory=True)


@_composite(0x41, "amqp:sasl-init:list")
class SaslInit:
    mechanism: str = _f("symbol", mandatory=True)
    initial_response: bytes | None = _f("binary")
    hostname: str | None = _f("str")


@_composite(0x42, "amqp:sasl-challenge:list")
class SaslChallenge:
    challenge: bytes = _f("binary", mandatory=True)


@_composite(0x43, "amqp:sasl-response:list")
class SaslResponse:
    response: bytes = _f("binary", mandatory=True)


@_composite(0x44, "amqp:sasl-outcome:list")
class SaslOutcome:
    code: int = _f("ubyte", mandatory=True)
    additional_data: bytes | None = _f("binary")


PERFORMATIVES: tuple[type, ...] = (Open, Begin, Attach, Flow, Transfer, Disposition, Detach, End, Close)
SASL_FRAMES: tuple[type, ...] = (SaslMechanisms, SaslInit, SaslChallenge, SaslResponse, SaslOutcome)
DELIVERY_STATES: tuple[type, ...] = (Received, Accepted, Rejected, Released, Modified)


# ------------------------------------------------------------------------------------ conversion


def performative_to_described(p: Any) -> Described:
    """Turn a performative/terminus/state dataclass into its described list.

    Trailing fields that are null or hold the spec's default are left off (spec part 1 section 1.4
    allows it, and pyamqp pads them back with the defaults); earlier fields are written as given.
    """
    specs = _SPECS.get(type(p))
    if specs is None:
        raise TypeError(f"{type(p).__name__} is not an AMQP composite type")
    values = []
    keep = 0
    for spec in specs:
        value = getattr(p, spec.name)
        if value is None:
            values.append(None)
            continue
        values.append(spec.to_wire(value))
        if spec.default is None or value != spec.default:
            keep = len(values)
    del values[keep:]
    return Described(ULong(p.DESCRIPTOR), values)


def described_to_performative(d: Described) -> Any:
    """Turn a decoded described list into its dataclass; descriptor by ulong code or symbolic name."""
    descriptor = d.descriptor
    if isinstance(descriptor, str):
        entry = _BY_NAME.get(descriptor)
    elif isinstance(descriptor, int) and not isinstance(descriptor, bool):
        entry = _BY_CODE.get(descriptor)
    else:
        entry = None
    if entry is None:
        raise DecodeError(f"unknown composite descriptor {descriptor!r}")
    cls, specs = entry
    values = d.value
    if type(values) is not list:
        raise DecodeError(f"{cls.__name__} must be a described list")
    if len(values) > len(specs):
        # Later protocol versions may append fields; ignore them rather than fail (spec 1.3).
        values = values[: len(specs)]
    args = []
    n = len(values)
    for i, spec in enumerate(specs):
        value = values[i] if i < n else None
        if value is None:
            if spec.mandatory:
                raise DecodeError(f"{cls.__name__}.{spec.name} is mandatory")
            args.append(spec.default)
        else:
            args.append(spec.from_wire(value))
    return cls(*args)
