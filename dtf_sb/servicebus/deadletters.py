"""Dead-letter recovery: see, resubmit and purge what a hub's queues dead-lettered.

DTF's Service Bus provider leaves dead-lettered messages to the portal (DTF issue #620). Here an
operator lists them per hub queue (peeked, so listing never changes delivery counts or locks a
message away from another operator), resubmits them once a fix is deployed, or purges them.

Resubmitting keeps what makes a message land where it belongs: body, session id (the instance) and
application properties (compression, overflow blob key). It gets a new message id derived from the
old id and its dead-letter sequence number: the original id is still inside the queue's duplicate
detection window more often than not, and the broker would silently drop a copy with the same id.
Because the new id is deterministic, a resubmit cut short between the send and the completion of the
dead-lettered copy can simply be run again: the second send is dropped as a duplicate and the copy is
completed then.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue

from ..core.codec import decode_task_message
from ..options import TaskHubOptions
from .messages import (
    BLOB_KEY_PROPERTY,
    MAX_MESSAGE_ID_LENGTH,
    MessageEnvelope,
    application_property,
    received_body,
)

__all__ = [
    "DeadLetter",
    "HubQueue",
    "list_dead_letters",
    "purge_dead_letters",
    "resubmit_dead_letters",
    "resubmitted_message_id",
]

HubQueue = Literal["orchestrator", "worker", "tracking"]
ProgressCallback = Callable[[int], Any]

_HUB_QUEUES: tuple[str, ...] = ("orchestrator", "worker", "tracking")
_PEEK_PAGE = 100
_RECEIVE_PAGE = 50
_RECEIVE_WAIT = 2.0
# Set by the broker when it dead-letters; a resubmitted message must not carry the old verdict.
_DEAD_LETTER_PROPERTIES = frozenset({"DeadLetterReason", "DeadLetterErrorDescription"})


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message as an operator needs to judge it."""

    queue: str
    sequence_number: int
    message_id: str | None
    session_id: str | None
    instance_id: str | None
    event_type: str | None
    reason: str | None
    description: str | None
    enqueued_time: datetime | None
    delivery_count: int | None
    body_size: int


def queue_name(options: TaskHubOptions, queue: str) -> str:
    """The entity name of a hub queue given by its role."""
    if queue not in _HUB_QUEUES:
        raise ValueError(f"queue must be one of {', '.join(_HUB_QUEUES)}, got {queue!r}")
    return {
        "orchestrator": options.orchestrator_queue,
        "worker": options.worker_queue,
        "tracking": options.tracking_queue,
    }[queue]


def resubmitted_message_id(message_id: str | None, sequence_number: int) -> str:
    """A new id for a resubmitted copy: stable per dead-lettered message, unlike the original id."""
    text = f"{message_id or ''}~dlq{sequence_number}"
    if len(text) <= MAX_MESSAGE_ID_LENGTH:
        return text
    return "dlq-" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


async def _describe(queue: str, message: Any, envelope: MessageEnvelope) -> DeadLetter:
    """What the message is about, as far as its body can be read (a poison body often cannot)."""
    instance_id: str | None = message.session_id
    event_type: str | None = None
    try:
        raw = received_body(message)
    except Exception:
        raw = b""
    try:
        body = await envelope.read(message)
        if queue == "tracking":
            from .tracking import decode_tracking_record

            record = decode_tracking_record(body)
            instance_id, event_type = record.instance_id, "Tracking"
        else:
            task_message = decode_task_message(body)
            instance_id = task_message.orchestration_instance.instance_id
            event_type = type(task_message.event).__name__
    except Exception:
        pass
    return DeadLetter(
        queue=queue,
        sequence_number=int(message.sequence_number),
        message_id=None if message.message_id is None else str(message.message_id),
        session_id=message.session_id,
        instance_id=instance_id,
        event_type=event_type,
        reason=message.dead_letter_reason,
        description=message.dead_letter_error_description,
        enqueued_time=_utc(message.enqueued_time_utc),
        delivery_count=message.delivery_count,
        body_size=len(raw) if raw or not application_property(message, BLOB_KEY_PROPERTY) else 0,
    )


async def _peek_all(receiver: Any, max_count: int) -> list[Any]:
    peeked: list[Any] = []
    next_number = 0
    while len(peeked) < max_count:
        page = await receiver.peek_messages(
            max_message_count=min(_PEEK_PAGE, max_count - len(peeked)), sequence_number=next_number
        )
        if not page:
            break
        peeked.extend(page)
        next_number = max(int(m.sequence_number) for m in page) + 1
    return peeked


def _dead_letter_receiver(client: Any, name: str, *, peek: bool) -> Any:
    return client.get_queue_receiver(
        name,
        sub_queue=ServiceBusSubQueue.DEAD_LETTER,
        receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
        max_wait_time=_RECEIVE_WAIT if not peek else None,
        prefetch_count=0,
    )


async def list_dead_letters(
    client: Any,
    options: TaskHubOptions,
    envelope: MessageEnvelope,
    *,
    queue: str,
    max_count: int = 100,
) -> list[DeadLetter]:
    """Dead-lettered messages of one hub queue, oldest first, by peeking (nothing is locked)."""
    name = queue_name(options, queue)
    async with _dead_letter_receiver(client, name, peek=True) as receiver:
        messages = await _peek_all(receiver, max_count)
    return [await _describe(queue, m, envelope) for m in messages]


def _copy_for_resubmit(message: Any) -> ServiceBusMessage:
    properties = {
        (k.decode("utf-8") if isinstance(k, bytes) else k): v
        for k, v in (message.application_properties or {}).items()
    }
    for key in _DEAD_LETTER_PROPERTIES:
        properties.pop(key, None)
    copy = ServiceBusMessage(
        received_body(message),
        message_id=resubmitted_message_id(
            None if message.message_id is None else str(message.message_id), int(message.sequence_number)
        ),
        session_id=message.session_id,
        application_properties=properties or None,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        subject=message.subject,
    )
    return copy


async def _settle_matching(
    client: Any,
    name: str,
    targets: set[int],
    act: Callable[[Any, Any], Any],
    on_progress: ProgressCallback | None,
) -> int:
    """Receive dead-lettered messages, apply ``act`` to those in ``targets``, release the rest.

    Messages that are not targets stay locked until the end so the next receive does not return
    them again; they are abandoned (back to the dead-letter queue, unchanged) when done.
    """
    done = 0
    held: list[Any] = []
    remaining = set(targets)
    async with _dead_letter_receiver(client, name, peek=False) as receiver:
        try:
            while remaining:
                batch = await receiver.receive_messages(
                    max_message_count=_RECEIVE_PAGE, max_wait_time=_RECEIVE_WAIT
                )
                if not batch:
                    break
                for message in batch:
                    number = int(message.sequence_number)
                    if number not in remaining:
                        held.append(message)
                        continue
                    await act(receiver, message)
                    remaining.discard(number)
                    done += 1
                    if on_progress is not None:
                        on_progress(1)
        finally:
            for message in held:
                try:
                    await receiver.abandon_message(message)
                except Exception:
                    pass  # the lock expires and the message is back in the dead-letter queue anyway
    return done


async def _targets(client: Any, name: str, sequence_numbers: Iterable[int] | None) -> set[int]:
    if sequence_numbers is not None:
        return {int(n) for n in sequence_numbers}
    # "All" means what is dead-lettered now: a resubmitted message that fails again must not be
    # picked up by the same run, or a poison message would circle forever.
    async with _dead_letter_receiver(client, name, peek=True) as receiver:
        return {int(m.sequence_number) for m in await _peek_all(receiver, 1_000_000)}


async def resubmit_dead_letters(
    client: Any,
    options: TaskHubOptions,
    *,
    queue: str,
    sequence_numbers: Iterable[int] | None = None,
    on_progress: ProgressCallback | None = None,
) -> int:
    """Send dead-lettered messages back to their hub queue; returns how many were resubmitted."""
    name = queue_name(options, queue)
    targets = await _targets(client, name, sequence_numbers)
    if not targets:
        return 0
    async with client.get_queue_sender(name) as sender:

        async def resend(receiver: Any, message: Any) -> None:
            await sender.send_messages(_copy_for_resubmit(message))
            await receiver.complete_message(message)

        return await _settle_matching(client, name, targets, resend, on_progress)


async def purge_dead_letters(
    client: Any,
    options: TaskHubOptions,
    *,
    queue: str,
    sequence_numbers: Iterable[int] | None = None,
    on_progress: ProgressCallback | None = None,
) -> int:
    """Delete dead-lettered messages; returns how many were removed."""
    name = queue_name(options, queue)
    targets = await _targets(client, name, sequence_numbers)
    if not targets:
        return 0

    async def drop(receiver: Any, message: Any) -> None:
        await receiver.complete_message(message)

    return await _settle_matching(client, name, targets, drop, on_progress)
