"""Shared helpers for the Service Bus conformance suite.

Every test is written once, against the shape of ``azure.servicebus.aio``, and runs twice: once with
the real async SDK and once with the real sync SDK seen through :class:`SyncAsAsync`. The adapter does
not reimplement anything; it calls the sync object's own method in a worker thread exactly where the
aio API has a coroutine, and calls it directly where the aio API is synchronous too (for example
``get_queue_receiver`` or ``AutoLockRenewer.register``). Which is which is read from the aio classes
themselves, so the sync flavour exercises the sync SDK's code paths (its own threads, its own
connection handling), not the async ones.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import azure.servicebus as sb
from azure.core.paging import ItemPaged
from azure.servicebus import aio as sb_aio
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError

SDK_VERSION = tuple(int(p) for p in sb.__version__.split(".")[:2])

_AIO_COUNTERPART: dict[type, type] = {
    sb.ServiceBusClient: sb_aio.ServiceBusClient,
    sb.ServiceBusSender: sb_aio.ServiceBusSender,
    sb.ServiceBusReceiver: sb_aio.ServiceBusReceiver,
    sb.ServiceBusSession: sb_aio.ServiceBusSession,
    sb.AutoLockRenewer: sb_aio.AutoLockRenewer,
}


def _wrap(value: Any) -> Any:
    for sync_cls, aio_cls in _AIO_COUNTERPART.items():
        if isinstance(value, sync_cls):
            return SyncAsAsync(value, aio_cls)
    if isinstance(value, ItemPaged):
        return _AsyncPages(value)
    return value


def _unwrap(value: Any) -> Any:
    return value._target if isinstance(value, SyncAsAsync) else value


class _AsyncPages:
    """A sync ``ItemPaged`` iterated with ``async for``, each page fetched in a worker thread."""

    def __init__(self, pages: ItemPaged) -> None:
        self._it = iter(pages)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[Any]:
        sentinel = object()
        while True:
            item = await asyncio.to_thread(next, self._it, sentinel)
            if item is sentinel:
                return
            yield item


class SyncAsAsync:
    """A sync SDK object that presents the aio API's shape (see the module docstring)."""

    def __init__(self, target: Any, aio_cls: type) -> None:
        self._target = target
        self._aio_cls = aio_cls

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return _wrap(value)
        if inspect.iscoroutinefunction(getattr(self._aio_cls, name, None)):

            async def threaded(*args: Any, **kwargs: Any) -> Any:
                args = tuple(_unwrap(a) for a in args)
                return _wrap(await asyncio.to_thread(value, *args, **kwargs))

            return threaded

        def direct(*args: Any, **kwargs: Any) -> Any:
            return _wrap(value(*(_unwrap(a) for a in args), **kwargs))

        return direct

    async def __aenter__(self) -> SyncAsAsync:
        await asyncio.to_thread(self._target.__enter__)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await asyncio.to_thread(self._target.__exit__, *exc_info)


@dataclass(frozen=True)
class Sdk:
    """One SDK flavour (``sync`` or ``async``) bound to the backend's connection string."""

    flavor: str
    conn_str: str

    def client(self, conn_str: str | None = None, **kwargs: Any) -> Any:
        conn = conn_str or self.conn_str
        if self.flavor == "async":
            return sb_aio.ServiceBusClient.from_connection_string(conn, **kwargs)
        return SyncAsAsync(
            sb.ServiceBusClient.from_connection_string(conn, **kwargs), sb_aio.ServiceBusClient
        )

    def auto_lock_renewer(self, **kwargs: Any) -> Any:
        if self.flavor == "async":
            return sb_aio.AutoLockRenewer(**kwargs)
        return SyncAsAsync(sb.AutoLockRenewer(**kwargs), sb_aio.AutoLockRenewer)

    def ids(self, prefix: str, n: int) -> list[str]:
        """Message or session ids unique to this flavour and run, so the two flavours never collide."""
        run = uuid.uuid4().hex[:8]
        return [f"{prefix}-{self.flavor}-{run}-{i}" for i in range(n)]


async def send(
    client: Any, queue: str, messages: sb.ServiceBusMessage | Sequence[sb.ServiceBusMessage]
) -> None:
    async with client.get_queue_sender(queue) as sender:
        await sender.send_messages(messages)


async def receive_n(
    receiver: Any, n: int, *, max_wait_time: float = 5.0, max_rounds: int = 20
) -> list[sb.ServiceBusReceivedMessage]:
    """Receive until ``n`` messages arrived or a round came back empty (bounded, never hangs)."""
    got: list[sb.ServiceBusReceivedMessage] = []
    for _ in range(max_rounds):
        if len(got) >= n:
            break
        batch = await receiver.receive_messages(max_message_count=n - len(got), max_wait_time=max_wait_time)
        if not batch:
            break
        got.extend(batch)
    return got


async def send_each(client: Any, queue: str, messages: Sequence[sb.ServiceBusMessage]) -> None:
    """One send per message: Service Bus may refuse a batch whose messages name different sessions."""
    async with client.get_queue_sender(queue) as sender:
        for message in messages:
            await sender.send_messages(message)


async def peek_all(receiver: Any) -> list[sb.ServiceBusReceivedMessage]:
    """Peek the whole entity (or session) from its first sequence number.

    Without ``sequence_number`` the SDK peeks from the last *received* sequence number + 1, which
    would hide messages received earlier on the same receiver.
    """
    return await receiver.peek_messages(max_message_count=250, sequence_number=1)


def body_of(message: sb.ServiceBusReceivedMessage) -> bytes:
    """The data body as one bytes value (the SDK yields data sections as a generator)."""
    return b"".join(message.body)


def text_of(message: sb.ServiceBusReceivedMessage) -> str:
    return body_of(message).decode()


def ids_of(messages: Iterable[sb.ServiceBusReceivedMessage]) -> list[str | None]:
    return [m.message_id for m in messages]


def purge_queue(conn_str: str, queue: str, *, sessions: bool) -> None:
    """Empty a queue after a failed test so the other flavour starts clean.

    Uses the sync SDK directly and only public operations: receive-and-delete for active messages,
    peek to find deferred and scheduled ones, receive-by-sequence-number and cancel for those, and
    next-available session receivers for session queues.
    """
    with sb.ServiceBusClient.from_connection_string(conn_str, retry_total=0) as client:
        if sessions:
            _purge_sessions(client, queue)
        else:
            _purge_plain(client, queue)
        with client.get_queue_receiver(
            queue,
            sub_queue=sb.ServiceBusSubQueue.DEAD_LETTER,
            receive_mode=sb.ServiceBusReceiveMode.RECEIVE_AND_DELETE,
        ) as dlq:
            while dlq.receive_messages(max_message_count=100, max_wait_time=1):
                pass


def _purge_plain(client: sb.ServiceBusClient, queue: str) -> None:
    with client.get_queue_receiver(queue, receive_mode=sb.ServiceBusReceiveMode.RECEIVE_AND_DELETE) as rx:
        while rx.receive_messages(max_message_count=100, max_wait_time=1):
            pass
        peeked = rx.peek_messages(max_message_count=250, sequence_number=1)
        deferred = [m.sequence_number for m in peeked if m.state == sb.ServiceBusMessageState.DEFERRED]
        scheduled = [m.sequence_number for m in peeked if m.state == sb.ServiceBusMessageState.SCHEDULED]
        if deferred:
            rx.receive_deferred_messages(deferred)
    if scheduled:
        with client.get_queue_sender(queue) as sender:
            sender.cancel_scheduled_messages(scheduled)


def _purge_sessions(client: sb.ServiceBusClient, queue: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with client.get_queue_receiver(
                queue,
                session_id=sb.NEXT_AVAILABLE_SESSION,
                receive_mode=sb.ServiceBusReceiveMode.RECEIVE_AND_DELETE,
                max_wait_time=1,
            ) as rx:
                while rx.receive_messages(max_message_count=100, max_wait_time=1):
                    pass
                rx.session.set_state(None)
        except (OperationTimeoutError, ServiceBusError):
            return
