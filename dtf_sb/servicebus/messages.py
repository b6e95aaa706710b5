"""The Service Bus message envelope: encoded body, compression, overflow to blob, deterministic ids.

Every body is an encoded, versioned JSON document (a core ``TaskMessage`` or a tracking record). On
the wire it carries DTF's application properties so an operator looking at a queue sees what DTF
would show: ``CompressionType`` (``gzip`` or ``none``) and, when the body was too large for a message,
``MessageBlobKey`` naming the blob that holds it (the message body is then empty). Readers accept all
three forms whatever the writer's settings were, so compression can be switched on a live hub.

Message ids are deterministic functions of what the message means (instance, execution, event id,
kind): an episode replayed after a crash re-sends the same ids, and the broker's duplicate detection
drops the repeats. That is what replaces DTF's cross-entity transaction.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from azure.servicebus import ServiceBusMessage

from ..options import TaskHubOptions

__all__ = [
    "BLOB_KEY_PROPERTY",
    "COMPRESSION_PROPERTY",
    "MAX_MESSAGE_ID_LENGTH",
    "MalformedMessageError",
    "MessageEnvelope",
    "MessageTooLargeError",
    "PayloadStoreLike",
    "application_property",
    "deterministic_message_id",
    "maybe_gzip",
    "received_body",
]

COMPRESSION_PROPERTY = "CompressionType"
BLOB_KEY_PROPERTY = "MessageBlobKey"
MAX_MESSAGE_ID_LENGTH = 128
_GZIP_MAGIC = b"\x1f\x8b"


class MalformedMessageError(Exception):
    """A message this runtime cannot read; it is dead-lettered with this text as the description."""


class MessageTooLargeError(ValueError):
    """An encoded body above ``message_max_size``; never retried (it would fail the same way)."""


class PayloadStoreLike(Protocol):
    """What the envelope needs from the blob payload store (``dtf_sb.storage.PayloadStore``)."""

    async def upload(
        self, data: bytes, *, instance_id: str, execution_id: str, kind: str, payload_id: str | None = None
    ) -> str: ...

    async def download(self, key: str) -> bytes: ...


def deterministic_message_id(
    instance_id: str, execution_id: str | None, event_id: int | str, kind: str
) -> str:
    """``{instance}:{execution}:{event id}:{kind}``, hashed when longer than Service Bus allows.

    The hash form keeps a readable prefix of the kind so operators can still tell messages apart.
    """
    text = f"{instance_id}:{execution_id or ''}:{event_id}:{kind}"
    if len(text) <= MAX_MESSAGE_ID_LENGTH:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{kind[:32]}-{digest}"


def maybe_gzip(data: bytes, threshold: int) -> tuple[bytes, bool]:
    """Gzip ``data`` when it is above ``threshold`` and compression actually makes it smaller."""
    if len(data) <= threshold:
        return data, False
    packed = gzip.compress(data, compresslevel=6, mtime=0)
    if len(packed) < len(data):
        return packed, True
    return data, False


def application_property(message: Any, name: str) -> str | None:
    """Read a string application property whatever the SDK decoded it to (str or bytes keys/values)."""
    props: Mapping[Any, Any] | None = getattr(message, "application_properties", None)
    if not props:
        return None
    value = props.get(name)
    if value is None:
        value = props.get(name.encode("utf-8"))
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def received_body(message: Any) -> bytes:
    """The raw body bytes of a received message (data sections joined)."""
    body = message.body
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    try:
        return b"".join(bytes(part) for part in body)
    except TypeError as exc:
        raise MalformedMessageError(f"message body is not binary data ({type(body).__name__})") from exc


@dataclass(frozen=True)
class MessageEnvelope:
    """Builds and reads Service Bus messages for one hub."""

    options: TaskHubOptions
    payloads: PayloadStoreLike | None = None

    async def build(
        self,
        body: bytes,
        *,
        message_id: str,
        session_id: str | None,
        instance_id: str,
        execution_id: str | None,
        scheduled_enqueue_time: datetime | None = None,
        kind: str = "message",
    ) -> ServiceBusMessage:
        """Wrap an encoded body: compress when it pays, spill to blob past the overflow threshold.

        The blob key of a spilled body is derived from the message id, so a replayed episode
        re-uploads to the same key (an immutable upload of identical content) instead of leaving
        a second copy behind.
        """
        data, compressed = maybe_gzip(body, self.options.compress_threshold)
        properties: dict[str | bytes, Any] = {COMPRESSION_PROPERTY: "gzip" if compressed else "none"}
        if len(data) >= self.options.message_overflow_threshold:
            if len(data) > self.options.message_max_size:
                raise MessageTooLargeError(
                    f"the encoded message of {len(data)} bytes for instance {instance_id!r} is larger than "
                    f"message_max_size ({self.options.message_max_size} bytes)"
                )
            if self.payloads is None:
                raise MessageTooLargeError(
                    f"the encoded message of {len(data)} bytes exceeds message_overflow_threshold "
                    f"({self.options.message_overflow_threshold} bytes) and no payload store is configured"
                )
            key = await self.payloads.upload(
                data,
                instance_id=instance_id,
                execution_id=execution_id or "none",
                kind="message",
                payload_id=hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:32],
            )
            properties[BLOB_KEY_PROPERTY] = key
            data = b""
        message = ServiceBusMessage(
            data,
            message_id=message_id,
            session_id=session_id,
            application_properties=properties,
            content_type="application/json",
        )
        if scheduled_enqueue_time is not None:
            message.scheduled_enqueue_time_utc = scheduled_enqueue_time
        return message

    async def read(self, message: Any) -> bytes:
        """The encoded body of a received message, decompressed and fetched from blob as needed."""
        compression = application_property(message, COMPRESSION_PROPERTY)
        blob_key = application_property(message, BLOB_KEY_PROPERTY)
        if blob_key:
            if self.payloads is None:
                raise MalformedMessageError(
                    f"message body is in blob {blob_key!r} but this worker has no payload store configured"
                )
            try:
                data = await self.payloads.download(blob_key)
            except LookupError as exc:
                # The blob is uploaded (immutably) before the message that names it is sent, so a
                # missing one never appears later: retrying would only spend the delivery count and
                # end in a dead letter that no longer says what was wrong.
                raise MalformedMessageError(f"message body blob {blob_key!r} does not exist: {exc}") from None
        else:
            data = received_body(message)
        if compression is None or compression == "":
            # Not one of ours or a legacy writer: accept gzip by its magic, plain otherwise.
            compression = "gzip" if data[:2] == _GZIP_MAGIC else "none"
        if compression == "gzip":
            if data[:2] != _GZIP_MAGIC:
                raise MalformedMessageError(
                    "message says CompressionType gzip but its content is not gzip data"
                )
            try:
                return gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise MalformedMessageError(f"message gzip content is corrupt: {exc}") from None
        if compression == "none":
            return data
        raise MalformedMessageError(f"message has an invalid CompressionType {compression!r}")
