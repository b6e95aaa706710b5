"""The ``$cbs`` and ``$management`` nodes, and how broker messages look on the wire.

Service Bus answers claims-based security and management requests as AMQP request/response
messages: the reply carries the request's message-id as correlation-id (same AMQP type, since the
SDK compares decoded values), a status code, and a map body whose keys and value types the SDK
reads literally. The operations, keys and types follow the azure-servicebus SDK's request builders
and the Service Bus AMQP request-response contract.

Message stamping lives here as well because both the receive links and ``$management`` (peek,
receive-by-sequence-number) hand out the same broker messages: the stored bare message goes out
verbatim behind a fresh header and the ``x-opt-*`` annotations the SDK reads.
"""

from __future__ import annotations

import logging
import struct
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .amqp.codec import DecodeError, encode
from .amqp.link import IncomingLink, OutgoingLink
from .amqp.message import (
    AmqpValue,
    ApplicationProperties,
    Message,
    Properties,
    decode_message,
    encode_message,
)
from .amqp.performatives import Accepted, Attach, Error, Rejected, Transfer
from .amqp.session import Session
from .amqp.types import Array, Int, Long, Symbol, Timestamp
from .auth import Grants, SasError, resource_path, validate_sas_token
from .broker import Broker, BrokerError, BrokerMessage, IncomingMessage, InvalidOperation, MessageState, Owner

__all__ = [
    "NET_EPOCH_TICKS",
    "CbsNode",
    "ManagementNode",
    "NodeReplyLink",
    "NodeRequestLink",
    "RequestHandler",
    "SessionOwnerLookup",
    "dotnet_ticks",
    "incoming_message",
    "stamp_message",
]

log = logging.getLogger("dtf_sb.emulator")

#: .NET ticks (100 ns since 0001-01-01) at the Unix epoch; Service Bus reports session locks in ticks.
NET_EPOCH_TICKS = 621_355_968_000_000_000
#: ``DateTime.MaxValue`` in epoch milliseconds: the SDK's "any time" sentinel for get-message-sessions.
_DATETIME_MAX_MS = 253_402_300_800_000

RequestHandler = Callable[["NodeRequestLink", Message], Message]
"""Answers one request that arrived on a node link."""

SessionOwnerLookup = Callable[[str, str, "str | None"], Owner]
"""(entity path, session id, associated link name) -> the owner holding that session on this connection."""


def dotnet_ticks(epoch_seconds: float) -> int:
    return NET_EPOCH_TICKS + round(epoch_seconds * 10_000_000)


def _ms(epoch_seconds: float) -> Timestamp:
    return Timestamp(round(epoch_seconds * 1000))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# ------------------------------------------------------------------------------------- messages

_SYSTEM_FIELDS = (
    ("message_id", "message_id"),
    ("correlation_id", "correlation_id"),
    ("content_type", "content_type"),
    ("subject", "subject"),
    ("to", "to"),
    ("reply_to", "reply_to"),
    ("reply_to_group_id", "reply_to_session_id"),
    ("group_id", "session_id"),
)


def incoming_message(msg: Message) -> IncomingMessage:
    """What the broker needs of a sent message: its bare bytes and the fields it acts on."""
    props = msg.properties
    annotations = {str(k): v for k, v in (msg.message_annotations or {}).items()}
    scheduled = annotations.get("x-opt-scheduled-enqueue-time")
    if isinstance(scheduled, int):
        scheduled_at: float | None = int(scheduled) / 1000.0
    else:
        scheduled_at = None
    ttl = msg.header.ttl if msg.header is not None else None
    system: dict[str, Any] = {}
    if props is not None:
        for attr, key in _SYSTEM_FIELDS:
            value = getattr(props, attr)
            if value is not None:
                system[key] = value if isinstance(value, str) else _text(value)
    return IncomingMessage(
        msg.bare or b"",
        _text(props.message_id) if props is not None else None,
        props.group_id if props is not None else None,
        ttl / 1000.0 if ttl else None,
        scheduled_at,
        annotations,
        system_properties=system,
        application_properties=dict(msg.application_properties or {}),
    )


def _bare_with_properties(msg: BrokerMessage) -> bytes:
    """The bare message, re-encoded only when the broker added application properties."""
    extra: dict[str, Any] = dict(msg.modified_properties)
    if msg.dead_letter_reason is not None:
        extra["DeadLetterReason"] = msg.dead_letter_reason
    if msg.dead_letter_description is not None:
        extra["DeadLetterErrorDescription"] = msg.dead_letter_description
    if not extra:
        return msg.bare
    decoded = decode_message(msg.bare)
    app = ApplicationProperties(decoded.application_properties or {})
    for key, value in extra.items():
        app[str(key)] = value
    rebuilt = Message(properties=decoded.properties, application_properties=app, body=decoded.body)
    return encode_message(rebuilt)


_STAMPED = (
    "x-opt-sequence-number",
    "x-opt-enqueued-time",
    "x-opt-enqueue-sequence-number",
    "x-opt-locked-until",
    "x-opt-message-state",
    "x-opt-deadletter-source",
)
_KEY = {name: encode(Symbol(name)) for name in _STAMPED}
_LOCK_TOKEN_KEY = encode(Symbol("x-opt-lock-token"))
# delivery-annotations {x-opt-lock-token: uuid}: map8 of one pair, then the uuid constructor.
_LOCK_TOKEN_SECTION = (
    bytes((0x00, 0x53, 0x71, 0xC1, len(_LOCK_TOKEN_KEY) + 17 + 1, 2)) + _LOCK_TOKEN_KEY + b"\x98"
)
_typed64 = struct.Struct(">Bq").pack


def _uint(value: int) -> bytes:
    if value == 0:
        return b"\x43"
    if value < 256:
        return bytes((0x52, value))
    return b"\x70" + value.to_bytes(4, "big")


def _map_section(code: int, body: bytes, count: int) -> bytes:
    if len(body) < 255 and count < 256:
        return bytes((0x00, 0x53, code, 0xC1, len(body) + 1, count)) + body
    return (
        bytes((0x00, 0x53, code, 0xD1)) + (len(body) + 4).to_bytes(4, "big") + count.to_bytes(4, "big") + body
    )


def stamp_message(msg: BrokerMessage, *, lock_token: uuid.UUID | None = None, peek: bool = False) -> bytes:
    """Encode a broker message for delivery: fresh header and annotations before the bare bytes.

    This runs once per delivered message, so the header and the broker's annotations are laid out
    byte by byte (the same encodings the codec would pick); only annotations the sender set go
    through the general encoder.
    """
    parts: list[bytes] = []
    count = 0
    for key, value in msg.annotations.items():
        if key in _KEY:
            continue
        parts.append(encode(Symbol(key) if type(key) is str else key))
        parts.append(encode(value))
        count += 1
    parts.append(_KEY["x-opt-sequence-number"])
    parts.append(_typed64(0x81, msg.sequence_number))
    parts.append(_KEY["x-opt-enqueued-time"])
    parts.append(_typed64(0x83, round(msg.enqueued_time * 1000)))
    count += 2
    if msg.enqueued_sequence_number:
        parts.append(_KEY["x-opt-enqueue-sequence-number"])
        parts.append(_typed64(0x81, msg.enqueued_sequence_number))
        count += 1
    if lock_token is not None and msg.locked_until is not None:
        parts.append(_KEY["x-opt-locked-until"])
        parts.append(_typed64(0x83, round(msg.locked_until * 1000)))
        count += 1
    if msg.state != MessageState.ACTIVE or peek:
        parts.append(_KEY["x-opt-message-state"])
        parts.append(bytes((0x54, int(msg.state))))
        count += 1
    if msg.dead_letter_source is not None:
        parts.append(_KEY["x-opt-deadletter-source"])
        parts.append(encode(msg.dead_letter_source))
        count += 1
    # header.ttl is a uint of milliseconds: longer lifetimes (Service Bus allows years) saturate.
    ttl = min(round(msg.ttl * 1000), 0xFFFFFFFF) if msg.ttl else None
    fields = b"\x40\x40" + (b"\x40" if ttl is None else _uint(ttl)) + b"\x40" + _uint(msg.delivery_count)
    header = bytes((0x00, 0x53, 0x70, 0xC0, len(fields) + 1, 5)) + fields
    delivery = _LOCK_TOKEN_SECTION + lock_token.bytes if lock_token is not None else b""
    annotations = _map_section(0x72, b"".join(parts), count * 2)
    return b"".join((header, delivery, annotations, _bare_with_properties(msg)))


# ----------------------------------------------------------------------------------- responses


def _response(request: Message, status: int, description: str, body: Any = None, **extra: Any) -> Message:
    props = request.properties
    app: dict[str, Any] = {"statusCode": Int(status), "statusDescription": description}
    app.update(extra)
    return Message(
        properties=Properties(correlation_id=props.message_id if props is not None else None),
        application_properties=ApplicationProperties(app),
        body=AmqpValue(body),
    )


def _app(request: Message, key: str) -> Any:
    return (request.application_properties or {}).get(key)


class CbsNode:
    """``$cbs``: put-token validates a SAS token and adds what it grants to the connection."""

    def __init__(self, keys: Mapping[str, str], *, now: Callable[[], float]) -> None:
        self._keys = dict(keys)
        self._now = now

    def handle(self, request: Message, grants: Grants) -> Message:
        operation = _text(_app(request, "operation"))
        props = request.properties
        correlation = props.message_id if props is not None else None
        status, description = 202, "Accepted"
        if operation != "put-token":
            status, description = 400, f"unsupported $cbs operation {operation!r}"
        else:
            body = request.body
            token = _text(body.value) if isinstance(body, AmqpValue) else None
            audience = _text(_app(request, "name")) or ""
            try:
                if token is None:
                    raise SasError("put-token carries no token")
                granted = validate_sas_token(token, self._keys, now=self._now)
                if not granted.covers(audience) and audience:
                    raise SasError(f"the token does not cover {audience}")
                grants.add(granted)
            except SasError as exc:
                status, description = 401, f"Unauthorized: {exc}"
            log.debug("$cbs put-token for %s -> %d", audience, status)
        return Message(
            properties=Properties(correlation_id=correlation),
            application_properties=ApplicationProperties(
                {"status-code": Int(status), "status-description": description}
            ),
        )


class ManagementNode:
    """``<entity>/$management``: the request/response operations of the Service Bus SDKs."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._ops: dict[str, Callable[[str, dict[str, Any], Message, SessionOwnerLookup], Any]] = {
            "com.microsoft:renew-lock": self._renew_lock,
            "com.microsoft:renew-session-lock": self._renew_session_lock,
            "com.microsoft:get-session-state": self._get_session_state,
            "com.microsoft:set-session-state": self._set_session_state,
            "com.microsoft:schedule-message": self._schedule,
            "com.microsoft:cancel-scheduled-message": self._cancel,
            "com.microsoft:peek-message": self._peek,
            "com.microsoft:receive-by-sequence-number": self._receive_by_sequence_number,
            "com.microsoft:update-disposition": self._update_disposition,
            "com.microsoft:get-message-sessions": self._get_message_sessions,
        }

    def handle(self, entity_path: str, request: Message, owners: SessionOwnerLookup) -> Message:
        operation = _text(_app(request, "operation")) or ""
        body = request.body.value if isinstance(request.body, AmqpValue) else None
        args = {_text(k) or "": v for k, v in body.items()} if isinstance(body, dict) else {}
        op = self._ops.get(operation)
        if op is None:
            return _response(
                request,
                501,
                f"The operation {operation!r} is not supported",
                errorCondition=Symbol("amqp:not-implemented"),
            )
        try:
            result = op(entity_path, args, request, owners)
        except BrokerError as exc:
            log.debug("$management %s on %s -> %d %s", operation, entity_path, exc.status_code, exc.condition)
            return _response(request, exc.status_code, exc.message, errorCondition=Symbol(exc.condition))
        except (KeyError, TypeError, ValueError) as exc:
            log.debug("$management %s on %s: bad request %r", operation, entity_path, exc)
            return _response(
                request,
                400,
                f"Malformed {operation} request: {exc!r}",
                errorCondition=Symbol("amqp:invalid-field"),
            )
        if result is None:
            log.debug("$management %s on %s -> 204", operation, entity_path)
            return _response(request, 204, "No Content", {})
        log.debug("$management %s on %s -> 200", operation, entity_path)
        return _response(request, 200, "OK", result)

    # -- operations --------------------------------------------------------------------------

    @staticmethod
    def _items(value: Any) -> list[Any]:
        if isinstance(value, Array):
            return list(value.items)
        if isinstance(value, (list, tuple)):
            return list(value)
        raise TypeError(f"expected an array, got {type(value).__name__}")

    @staticmethod
    def _link_name(request: Message) -> str | None:
        return _text(_app(request, "associated-link-name"))

    def _renew_lock(
        self, path: str, args: dict[str, Any], request: Message, owners: SessionOwnerLookup
    ) -> Any:
        tokens = [_uuid(t) for t in self._items(args["lock-tokens"])]
        expirations = self.broker.renew_lock(path, tokens)
        return {"expirations": Array([_ms(e) for e in expirations], Timestamp)}

    def _owner(self, path: str, args: dict[str, Any], request: Message, owners: SessionOwnerLookup) -> Any:
        return owners(path, _text(args["session-id"]) or "", self._link_name(request))

    def _renew_session_lock(
        self, path: str, args: dict[str, Any], request: Message, owners: SessionOwnerLookup
    ) -> Any:
        sid = _text(args["session-id"]) or ""
        until = self.broker.renew_session_lock(path, sid, self._owner(path, args, request, owners))
        return {"expiration": _ms(until)}

    def _get_session_state(
        self, path: str, args: dict[str, Any], request: Message, owners: SessionOwnerLookup
    ) -> Any:
        sid = _text(args["session-id"]) or ""
        state = self.broker.get_session_state(path, sid, self._owner(path, args, request, owners))
        return {"session-state": state}

    def _set_session_state(
        self, path: str, args: dict[str, Any], request: Message, owners: SessionOwnerLookup
    ) -> Any:
        sid = _text(args["session-id"]) or ""
        state = args.get("session-state")
        if state is not None and not isinstance(state, bytes):
            raise TypeError("session-state must be binary or null")
        self.broker.set_session_state(path, sid, self._owner(path, args, request, owners), state)
        return {}

    def _schedule(self, path: str, args: dict[str, Any], request: Message, owners: SessionOwnerLookup) -> Any:
        sequence_numbers: list[Long] = []
        for entry in self._items(args["messages"]):
            fields = {_text(k): v for k, v in entry.items()}
            msg = incoming_message(decode_message(fields["message"]))
            if msg.message_id is None and fields.get("message-id") is not None:
                msg.message_id = _text(fields["message-id"])
            if msg.session_id is None and fields.get("session-id") is not None:
                msg.session_id = _text(fields["session-id"])
            when = msg.scheduled_enqueue_time
            if when is None:
                raise InvalidOperation("a scheduled message needs x-opt-scheduled-enqueue-time")
            sequence_numbers.extend(Long(s) for s in self.broker.schedule(path, [msg], when))
        return {"sequence-numbers": Array(sequence_numbers, Long)}

    def _cancel(self, path: str, args: dict[str, Any], request: Message, owners: SessionOwnerLookup) -> Any:
        self.broker.cancel_scheduled(path, [int(s) for s in self._items(args["sequence-numbers"])])
        return {}

    def _peek(self, path: str, args: dict[str, Any], request: Message, owners: SessionOwnerLookup) -> Any:
        start = int(args.get("from-sequence-number") or 1)
        count = int(args.get("message-count") or 1)
        sid = _text(args.get("session-id"))
        found = self.broker.peek(path, start, count, session_id=sid or None)
        if not found:
            return None
        return {"messages": [{"message": stamp_message(m, peek=True)} for m in found]}

    def _receive_by_sequence_number(
        self, path: str, args: dict[str, Any], request: Message, owners: SessionOwnerLookup
    ) -> Any:
        seqs = [int(s) for s in self._items(args["sequence-numbers"])]
        settle_mode = int(args.get("receiver-settle-mode", 1) or 0)
        mode = "receive_and_delete" if settle_mode == 0 else "peek_lock"
        sid = _text(args.get("session-id")) or None
        owner = owners(path, sid, self._link_name(request)) if sid else None
        found = self.broker.receive_deferred(path, seqs, mode=mode, session_id=sid, owner=owner)
        if not found:
            return None
        messages = []
        for m in found:
            entry: dict[str, Any] = {"message": stamp_message(m, lock_token=m.lock_token)}
            if m.lock_token is not None:
                entry["lock-token"] = m.lock_token
            messages.append(entry)
        return {"messages": messages}

    def _update_disposition(
        self, path: str, args: dict[str, Any], request: Message, owners: SessionOwnerLookup
    ) -> Any:
        status = (_text(args["disposition-status"]) or "").lower()
        tokens = [_uuid(t) for t in self._items(args["lock-tokens"])]
        modify = args.get("properties-to-modify")
        properties = {_text(k) or "": v for k, v in modify.items()} if isinstance(modify, dict) else None
        for token in tokens:
            if status == "completed":
                self.broker.complete(path, token)
            elif status == "abandoned":
                self.broker.abandon(path, token, properties)
            elif status in ("defered", "deferred"):
                self.broker.defer(path, token, properties)
            elif status == "suspended":
                self.broker.dead_letter(
                    path,
                    token,
                    _text(args.get("deadletter-reason")),
                    _text(args.get("deadletter-description")),
                    properties,
                )
            else:
                raise InvalidOperation(f"unknown disposition-status {status!r}")
        return {}

    def _get_message_sessions(
        self, path: str, args: dict[str, Any], request: Message, owners: SessionOwnerLookup
    ) -> Any:
        since = args.get("last-updated-time")
        since_s = None if since is None or int(since) >= _DATETIME_MAX_MS else int(since) / 1000.0
        skip = int(args.get("skip") or 0)
        top = int(args.get("top") or 100)
        ids = self.broker.list_sessions(path, last_updated_since=since_s, skip=skip, top=top)
        if not ids:
            return None
        return {"skip": Int(skip + len(ids)), "sessions-ids": Array(list(ids), str)}


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, bytes) and len(value) == 16:
        return uuid.UUID(bytes=value)
    return uuid.UUID(str(value))


# ---------------------------------------------------------------------------------- node links


class NodeRequestLink(IncomingLink):
    """The client's sender to ``$cbs`` or ``<entity>/$management``: requests arrive here."""

    def __init__(self, session: Session, attach: Attach, handler: RequestHandler, node: str) -> None:
        super().__init__(session, attach)
        self.handle_request = handler
        self.node = node

    def on_delivery(self, transfer: Transfer, data: bytes) -> Any:
        try:
            request = decode_message(data)
        except DecodeError as exc:
            return Rejected(Error("amqp:decode-error", str(exc), {}))
        response = self.handle_request(self, request)
        reply_to = request.properties.reply_to if request.properties is not None else None
        reply = self._reply_link(reply_to)
        if reply is None:
            log.debug("no reply link for %s request on %r", self.node, self.name)
        else:
            reply.enqueue(response)
        return Accepted()

    def _reply_link(self, reply_to: str | None) -> NodeReplyLink | None:
        wanted = resource_path(reply_to) if reply_to else self.node
        fallback = None
        for link in self.session.links.values():
            if isinstance(link, NodeReplyLink) and not link.detached:
                if link.address == wanted:
                    return link
                if link.node == self.node:
                    fallback = link
        return fallback


class NodeReplyLink(OutgoingLink):
    """The client's receiver on a node: responses go out pre-settled, in order, within credit."""

    def __init__(self, session: Session, attach: Attach, node: str) -> None:
        super().__init__(session, attach)
        self.node = node
        target = attach.target.address if attach.target is not None else None
        self.address = resource_path(target) if target else node
        self._queue: list[bytes] = []
        self._tag = 0

    def enqueue(self, response: Message) -> None:
        self._queue.append(encode_message(response))
        self.pump()

    def pump(self) -> None:
        while self._queue and self.can_send():
            self._tag += 1
            self.send_delivery(self._tag.to_bytes(4, "big"), self._queue.pop(0), settled=True)
