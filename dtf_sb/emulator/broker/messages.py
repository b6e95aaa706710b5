"""Message records: what a sender hands the broker, and what the broker keeps and delivers.

The broker never decodes AMQP. The server passes the encoded bare message untouched plus the few fields
Service Bus semantics depend on; everything the broker decides (sequence number, lock, delivery count,
dead-letter reason, properties to merge) lives beside those bytes, and the server re-stamps the message
annotations from these fields on every delivery.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Hashable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal, NamedTuple

__all__ = [
    "BrokerMessage",
    "EntityCounts",
    "EntityRef",
    "IncomingMessage",
    "MessageState",
    "Owner",
    "ReceiveMode",
    "SessionLock",
]

ReceiveMode = Literal["peek_lock", "receive_and_delete"]
Owner = Hashable
"""Whoever holds a session lock: the server passes a link or connection identity."""


class MessageState(enum.IntEnum):
    """Values of the ``x-opt-message-state`` annotation the SDK reads."""

    ACTIVE = 0
    DEFERRED = 1
    SCHEDULED = 2


@dataclass
class IncomingMessage:
    """A message as sent: the encoded bare message and the fields the broker acts on.

    ``ttl`` is seconds (AMQP header ttl / 1000) or None; ``scheduled_enqueue_time`` is epoch seconds from the
    ``x-opt-scheduled-enqueue-time`` annotation. ``system_properties`` (snake_case keys such as
    ``correlation_id``, ``content_type``, ``subject``, ``to``) and ``application_properties`` are only read by
    subscription filters, so a server that serves queues alone may leave them empty.
    """

    bare: bytes
    message_id: str | None = None
    session_id: str | None = None
    ttl: float | None = None
    scheduled_enqueue_time: float | None = None
    annotations: dict[str, Any] = field(default_factory=dict)
    _: KW_ONLY
    system_properties: Mapping[str, Any] = field(default_factory=dict)
    application_properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class BrokerMessage:
    """A stored message. ``receive``/``peek`` return snapshots (copies), never the live record.

    ``delivery_count`` is the raw AMQP header value: 0 on the first delivery, +1 per abandon or lock expiry.
    ``enqueued_sequence_number`` is the sequence number in the entity the message was first sent to (it
    differs from ``sequence_number`` after auto-forwarding). ``modified_properties`` accumulates the
    properties to modify from abandon/defer/dead-letter; the server merges them into the application
    properties when it re-encodes the message. ``dead_letter_*`` are set once the message is dead-lettered.
    """

    bare: bytes
    message_id: str | None
    session_id: str | None
    annotations: dict[str, Any]
    sequence_number: int
    enqueued_time: float
    entity_path: str
    _: KW_ONLY
    enqueued_sequence_number: int = 0
    ttl: float | None = None
    expires_at: float | None = None
    scheduled_enqueue_time: float | None = None
    delivery_count: int = 0
    state: MessageState = MessageState.ACTIVE
    lock_token: uuid.UUID | None = None
    locked_until: float | None = None
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None
    dead_letter_source: str | None = None
    modified_properties: dict[str, Any] = field(default_factory=dict)
    system_properties: Mapping[str, Any] = field(default_factory=dict)
    application_properties: Mapping[str, Any] = field(default_factory=dict)
    # True while the lock came from receive-by-sequence-number of a deferred message, so an abandon or
    # lock expiry puts the message back into the deferred state instead of the active queue.
    from_deferred: bool = False

    @property
    def is_locked(self) -> bool:
        return self.lock_token is not None

    def snapshot(self) -> BrokerMessage:
        """A copy whose mutable parts are independent of the stored record.

        Copies the instance dictionary directly: ``dataclasses.replace`` re-runs ``__init__`` and was the
        single largest cost of a receive.
        """
        copy = object.__new__(BrokerMessage)
        copy.__dict__.update(self.__dict__)
        copy.annotations = dict(self.annotations)
        copy.modified_properties = dict(self.modified_properties)
        return copy


@dataclass(frozen=True)
class SessionLock:
    """The result of accepting a session: which one, and until when it is locked."""

    session_id: str
    locked_until: float


class EntityCounts(NamedTuple):
    """Message counts of an entity, as the administration client's runtime properties report them.

    ``active`` excludes locked messages; ``locked`` counts messages currently under a peek-lock.
    """

    active: int
    scheduled: int
    deferred: int
    dead_lettered: int
    locked: int


@dataclass(frozen=True)
class EntityRef:
    """A resolved address.

    ``path`` is the canonical spelling (configured case), e.g. ``orders``, ``orders/$DeadLetterQueue``,
    ``events/Subscriptions/audit``. ``entity`` is the entity without the sub-queue suffix. ``kind`` tells a
    sendable topic from a receivable subscription; ``sub_queue`` is None, ``"deadletter"`` or
    ``"transfer_deadletter"``.
    """

    path: str
    entity: str
    kind: Literal["queue", "topic", "subscription"]
    sub_queue: Literal["deadletter", "transfer_deadletter"] | None
    requires_session: bool
    lock_duration: float
    max_message_size: int

    @property
    def receivable(self) -> bool:
        return self.kind != "topic"

    @property
    def sendable(self) -> bool:
        return self.kind != "subscription" and self.sub_queue is None
