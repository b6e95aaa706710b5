"""AMQP 1.0 messages: sections, decoding with the bare-message span, and broker re-stamping.

A message is a run of described sections (part 3 section 3.2). Everything from properties through
the body is the *bare message*, which the spec forbids intermediaries to change; the header and
annotations around it are the broker's to rewrite. So the broker keeps each message's bare bytes
exactly as received and, on every delivery, only encodes a fresh header and message-annotations in
front of them (``encode_message_with``). That is both faithful and cheap.

Section fields hold exactly what was on the wire: ``None`` means absent, not the spec default.
The SDK reads ``header.delivery_count`` as ``None`` when it is absent, so the distinction matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .codec import DecodeError, decode, encode_into
from .types import Described, Symbol, Timestamp, UByte, UInt, ULong

__all__ = [
    "BATCH_MESSAGE_FORMAT",
    "AmqpSequence",
    "AmqpValue",
    "ApplicationProperties",
    "DeliveryAnnotations",
    "Footer",
    "Header",
    "Message",
    "MessageAnnotations",
    "Properties",
    "decode_message",
    "encode_message",
    "encode_message_with",
    "split_batch",
]

#: Transfer message-format of a Service Bus batch: each data section is a whole encoded message.
BATCH_MESSAGE_FORMAT = 0x80013700

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
FOOTER = 0x78

_SECTION_NAMES = {
    "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES,
    "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": AMQP_SEQUENCE,
    "amqp:amqp-value:*": AMQP_VALUE,
    "amqp:footer:map": FOOTER,
}


@dataclass(frozen=True, slots=True)
class Header:
    durable: bool | None = None
    priority: int | None = None
    ttl: int | None = None
    first_acquirer: bool | None = None
    delivery_count: int | None = None


@dataclass(frozen=True, slots=True)
class Properties:
    """Immutable message properties; ids keep their AMQP type (string, uuid, ulong or binary)."""

    message_id: Any = None
    user_id: bytes | None = None
    to: str | None = None
    subject: str | None = None
    reply_to: str | None = None
    correlation_id: Any = None
    content_type: str | None = None
    content_encoding: str | None = None
    absolute_expiry_time: int | None = None
    creation_time: int | None = None
    group_id: str | None = None
    group_sequence: int | None = None
    reply_to_group_id: str | None = None


class DeliveryAnnotations(dict):  # type: ignore[type-arg]
    """Annotations for the next hop only (symbol keys)."""


class MessageAnnotations(dict):  # type: ignore[type-arg]
    """Broker-set annotations such as ``x-opt-sequence-number`` (symbol keys)."""


class ApplicationProperties(dict):  # type: ignore[type-arg]
    """The user's own properties (string keys, simple values)."""


class Footer(dict):  # type: ignore[type-arg]
    """Trailing annotations, outside the bare message."""


@dataclass(frozen=True, slots=True)
class AmqpSequence:
    """One amqp-sequence body section."""

    items: list[Any]


@dataclass(frozen=True, slots=True)
class AmqpValue:
    """The single amqp-value body section (the value may be null)."""

    value: Any


Body = list[bytes] | list[AmqpSequence] | AmqpValue | None


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded message.

    ``body`` is a list of data sections (``bytes``), a list of ``AmqpSequence`` sections, an
    ``AmqpValue`` or ``None`` when the message has no body. ``bare`` holds the original bytes of the
    bare message (properties through the body) when the message was decoded, so it can be
    forwarded verbatim; it does not take part in equality.
    """

    header: Header | None = None
    delivery_annotations: dict[Any, Any] | None = None
    message_annotations: dict[Any, Any] | None = None
    properties: Properties | None = None
    application_properties: dict[Any, Any] | None = None
    body: Body = None
    footer: dict[Any, Any] | None = None
    bare: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def data(self) -> bytes:
        """All data sections joined: the payload for the common single-data-section message."""
        body = self.body
        if isinstance(body, list) and all(isinstance(b, bytes) for b in body):
            return b"".join(body)
        raise TypeError("message body is not made of data sections")


# ---------------------------------------------------------------------------------------- decoding


def _optional_list(value: Any, size: int, section: str) -> list[Any]:
    if type(value) is not list:
        raise DecodeError(f"{section} section must be a list")
    return (value + [None] * size)[:size]


def _checked(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise DecodeError(f"{name} has the wrong type {type(value).__name__}")
    return value


def _header(value: Any) -> Header:
    durable, priority, ttl, first_acquirer, delivery_count = _optional_list(value, 5, "header")
    return Header(
        _checked(durable, bool, "header.durable"),
        _checked(priority, int, "header.priority"),
        _checked(ttl, int, "header.ttl"),
        _checked(first_acquirer, bool, "header.first-acquirer"),
        _checked(delivery_count, int, "header.delivery-count"),
    )


def _properties(value: Any) -> Properties:
    f = _optional_list(value, 13, "properties")
    for i, name in ((2, "to"), (3, "subject"), (4, "reply-to"), (10, "group-id"), (12, "reply-to-group-id")):
        _checked(f[i], str, f"properties.{name}")
    _checked(f[1], bytes, "properties.user-id")
    _checked(f[6], str, "properties.content-type")
    _checked(f[7], str, "properties.content-encoding")
    for i in (8, 9, 11):
        _checked(f[i], int, "properties time/sequence field")
    return Properties(*f)


def _map_section(value: Any, cls: type, section: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"{section} section must be a map")
    return cls(value)


def _section_code(descriptor: Any) -> int:
    if isinstance(descriptor, str):
        code = _SECTION_NAMES.get(descriptor)
    elif isinstance(descriptor, int) and not isinstance(descriptor, bool):
        code = descriptor if HEADER <= descriptor <= FOOTER else None
    else:
        code = None
    if code is None:
        raise DecodeError(f"unknown message section descriptor {descriptor!r}")
    return code


def decode_message(data: bytes | bytearray | memoryview) -> Message:
    """Decode a message, keeping the exact bytes of its bare part.

    The bare sections must be contiguous and in the spec's order, no section but the body may
    repeat, and the body must be of one kind (data, sequence or a single value); anything else is
    a ``DecodeError``. Header and annotations are accepted anywhere outside the bare message.
    """
    header = delivery_annotations = message_annotations = properties = None
    application_properties = footer = None
    data_sections: list[bytes] = []
    sequences: list[AmqpSequence] = []
    value: AmqpValue | None = None
    bare_start = bare_end = -1
    bare_closed = False
    last_bare = 0
    seen: set[int] = set()
    offset = 0
    end = len(data)
    while offset < end:
        start = offset
        section, offset = decode(data, offset)
        if not isinstance(section, Described):
            raise DecodeError("message section is not a described type")
        code = _section_code(section.descriptor)
        if code in seen and code not in (DATA, AMQP_SEQUENCE):
            raise DecodeError(f"message section 0x{code:02x} appears twice")
        seen.add(code)
        if PROPERTIES <= code <= AMQP_VALUE:
            if bare_closed:
                raise DecodeError("the bare message is interrupted by another section")
            if code < last_bare:
                raise DecodeError(f"message section 0x{code:02x} is out of order")
            if DATA <= last_bare and code != last_bare:
                raise DecodeError("message body mixes section kinds")
            last_bare = code
            if bare_start < 0:
                bare_start = start
            bare_end = offset
        elif bare_start >= 0:
            # Annotations after the body happen (pyamqp writes delivery-annotations last); they
            # are tolerated as long as they do not split the bare message.
            bare_closed = True
        content = section.value
        if PROPERTIES <= code <= AMQP_VALUE:
            if bare_start < 0:
                bare_start = start
            bare_end = offset
        if code == HEADER:
            header = _header(content)
        elif code == DELIVERY_ANNOTATIONS:
            delivery_annotations = _map_section(content, DeliveryAnnotations, "delivery-annotations")
        elif code == MESSAGE_ANNOTATIONS:
            message_annotations = _map_section(content, MessageAnnotations, "message-annotations")
        elif code == PROPERTIES:
            properties = _properties(content)
        elif code == APPLICATION_PROPERTIES:
            application_properties = _map_section(content, ApplicationProperties, "application-properties")
        elif code == DATA:
            if not isinstance(content, bytes):
                raise DecodeError("data section must be binary")
            data_sections.append(content)
        elif code == AMQP_SEQUENCE:
            if type(content) is not list:
                raise DecodeError("amqp-sequence section must be a list")
            sequences.append(AmqpSequence(content))
        elif code == AMQP_VALUE:
            value = AmqpValue(content)
        else:
            footer = _map_section(content, Footer, "footer")
    body: Body = data_sections or sequences or value
    bare = bytes(data[bare_start:bare_end]) if bare_start >= 0 else b""
    return Message(
        header,
        delivery_annotations,
        message_annotations,
        properties,
        application_properties,
        body,
        footer,
        bare,
    )


# ---------------------------------------------------------------------------------------- encoding


def _trimmed(values: list[Any]) -> list[Any]:
    while values and values[-1] is None:
        values.pop()
    return values


def _symbol_keys(value: dict[Any, Any]) -> dict[Any, Any]:
    return {(Symbol(k) if type(k) is str else k): v for k, v in value.items()}


def _opt(wrap: type, value: Any) -> Any:
    return None if value is None else wrap(value)


def _message_id(value: Any) -> Any:
    """A plain ``int`` id means the ulong form: message ids have no signed integer variant."""
    return ULong(value) if type(value) is int else value


def _encode_header(buf: bytearray, header: Header) -> None:
    values = [
        header.durable,
        _opt(UByte, header.priority),
        _opt(UInt, header.ttl),
        header.first_acquirer,
        _opt(UInt, header.delivery_count),
    ]
    encode_into(buf, Described(ULong(HEADER), _trimmed(values)))


def _encode_annotations(buf: bytearray, code: int, annotations: dict[Any, Any] | None) -> None:
    if annotations is not None:
        encode_into(buf, Described(ULong(code), _symbol_keys(annotations)))


def _encode_bare(buf: bytearray, msg: Message) -> None:
    p = msg.properties
    if p is not None:
        values = [
            _message_id(p.message_id),
            _opt(bytes, p.user_id),
            p.to,
            p.subject,
            p.reply_to,
            _message_id(p.correlation_id),
            _opt(Symbol, p.content_type),
            _opt(Symbol, p.content_encoding),
            _opt(Timestamp, p.absolute_expiry_time),
            _opt(Timestamp, p.creation_time),
            p.group_id,
            _opt(UInt, p.group_sequence),
            p.reply_to_group_id,
        ]
        encode_into(buf, Described(ULong(PROPERTIES), _trimmed(values)))
    if msg.application_properties is not None:
        encode_into(buf, Described(ULong(APPLICATION_PROPERTIES), dict(msg.application_properties)))
    body = msg.body
    if isinstance(body, AmqpValue):
        encode_into(buf, Described(ULong(AMQP_VALUE), body.value))
    elif body is not None:
        for section in body:
            if isinstance(section, AmqpSequence):
                encode_into(buf, Described(ULong(AMQP_SEQUENCE), list(section.items)))
            else:
                encode_into(buf, Described(ULong(DATA), bytes(section)))


def encode_message(msg: Message) -> bytes:
    """Encode every section from the fields (``msg.bare`` is ignored; see ``encode_message_with``)."""
    buf = bytearray()
    if msg.header is not None:
        _encode_header(buf, msg.header)
    _encode_annotations(buf, DELIVERY_ANNOTATIONS, msg.delivery_annotations)
    _encode_annotations(buf, MESSAGE_ANNOTATIONS, msg.message_annotations)
    _encode_bare(buf, msg)
    _encode_annotations(buf, FOOTER, msg.footer)
    return bytes(buf)


def encode_message_with(
    header: Header | None,
    annotations: dict[Any, Any] | None,
    bare: bytes,
    *,
    delivery_annotations: dict[Any, Any] | None = None,
) -> bytes:
    """Put a freshly encoded header and annotations in front of stored bare-message bytes.

    This is the broker's per-delivery path: the bare message is copied, never re-encoded.
    """
    buf = bytearray()
    if header is not None:
        _encode_header(buf, header)
    _encode_annotations(buf, DELIVERY_ANNOTATIONS, delivery_annotations)
    _encode_annotations(buf, MESSAGE_ANNOTATIONS, annotations)
    buf += bare
    return bytes(buf)


def split_batch(msg: Message) -> list[bytes]:
    """The encoded messages inside a batch (transfer message-format ``BATCH_MESSAGE_FORMAT``)."""
    body = msg.body
    if body is None:
        return []
    if not isinstance(body, list) or not all(isinstance(section, bytes) for section in body):
        raise DecodeError("a batch message body must be data sections")
    return list(body)
