"""Long-lived senders per queue, turning ``Outbound`` records into sends.

Opening a sender costs a connection, a CBS token exchange and a link attach, so senders are kept per
queue for the life of a dispatcher and rebuilt only after a failure. Messages of one session go in one
batch (Service Bus rejects batches that mix session ids on partitioned entities, and per-session
batches keep the order of one instance's messages); worker-queue messages go in batches of any mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from azure.servicebus.exceptions import MessageSizeExceededError

from ._loop import SOCKET_TIMEOUT
from .connection import ServiceBusConnection
from .messages import MessageEnvelope

__all__ = ["SenderPool"]

_log = logging.getLogger("dtf_sb.servicebus.senders")


class SenderPool:
    """Senders for the queues of one hub on one client, opened lazily."""

    def __init__(self, connection: ServiceBusConnection, envelope: MessageEnvelope) -> None:
        self._connection = connection
        self._envelope = envelope
        self._client: Any = None
        self._senders: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._send_locks: dict[str, asyncio.Lock] = {}

    async def _sender(self, queue: str) -> Any:
        async with self._lock:
            sender = self._senders.get(queue)
            if sender is None:
                if self._client is None:
                    self._client = self._connection.client()
                sender = self._client.get_queue_sender(queue, socket_timeout=SOCKET_TIMEOUT)
                await sender.__aenter__()
                self._senders[queue] = sender
            return sender

    async def _discard(self, queue: str) -> None:
        async with self._lock:
            sender = self._senders.pop(queue, None)
        if sender is not None:
            with contextlib.suppress(Exception):
                await sender.close()

    async def send(self, messages: Sequence[Any]) -> None:
        """Send ``Outbound`` records, grouped by queue and session; raises on the first failure."""
        groups: dict[tuple[str, str | None], list[Any]] = {}
        for item in messages:
            groups.setdefault((item.queue, item.session_id), []).append(item)
        for (queue, _session), items in groups.items():
            built = [
                await self._envelope.build(
                    item.body,
                    message_id=item.message_id,
                    session_id=item.session_id,
                    instance_id=item.instance_id,
                    execution_id=item.execution_id,
                    scheduled_enqueue_time=item.scheduled_enqueue_time,
                    kind=item.kind,
                )
                for item in items
            ]
            await self.send_built(queue, built)

    async def send_built(self, queue: str, built: list[Any]) -> None:
        # One send at a time per sender: concurrent sends on one SDK link can lose their
        # acknowledgement and hang (the SDK matches dispositions loosely), so they are serialised.
        lock = self._send_locks.setdefault(queue, asyncio.Lock())
        try:
            async with lock:
                sender = await self._sender(queue)
                await _send_batched(sender, built)
        except Exception:
            await self._discard(queue)
            raise

    async def close(self) -> None:
        async with self._lock:
            senders, self._senders = list(self._senders.values()), {}
            client, self._client = self._client, None
        for sender in senders:
            with contextlib.suppress(Exception):
                await sender.close()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


# The SDK waits for a send's outcome without limit by default; a send whose outcome never arrives
# (a half-dead link) would then hold its episode, session and slot forever. Bounded, the send fails,
# the episode is abandoned and redone, and the sender is rebuilt.
SEND_TIMEOUT = 30.0


async def _send_batched(sender: Any, messages: list[Any]) -> None:
    if len(messages) == 1:
        await sender.send_messages(messages[0], timeout=SEND_TIMEOUT)
        return
    batch = await sender.create_message_batch()
    for message in messages:
        try:
            batch.add_message(message)
        except MessageSizeExceededError:
            if len(batch) == 0:
                raise
            await sender.send_messages(batch, timeout=SEND_TIMEOUT)
            batch = await sender.create_message_batch()
            batch.add_message(message)
    if len(batch):
        await sender.send_messages(batch, timeout=SEND_TIMEOUT)
