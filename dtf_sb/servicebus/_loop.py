"""What every dispatcher loop shares: error classification, back-off and lock renewal.

Service Bus and the emulator can drop connections at any time (failover, restart); a dispatcher must
keep going with a growing delay rather than die or spin. Renewal loops follow DTF (reference 9.2):
renew a session lock well before it lapses while an episode runs, renew an activity message lock
every few seconds once it is within 30 s of expiry, and stop renewing as soon as renewal fails (the
commit will then fail and the work be redelivered, which is the safe outcome).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from azure.servicebus.exceptions import (
    MessageLockLostError,
    OperationTimeoutError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusServerBusyError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)

__all__ = [
    "SOCKET_TIMEOUT",
    "Backoff",
    "complete_by_lock_token",
    "is_lock_lost",
    "is_no_session_available",
    "is_transient",
    "pin_session",
    "renew_message_lock_while",
    "renew_session_lock_while",
]

_log = logging.getLogger("dtf_sb.servicebus.loop")

_TRANSIENT = (
    ServiceBusConnectionError,
    ServiceBusCommunicationError,
    ServiceBusServerBusyError,
    SessionCannotBeLockedError,
    OperationTimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying soon: the connection, not the request, was the problem."""
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, ServiceBusError) and getattr(exc, "retryable", False):
        return True
    try:
        from azure.core.exceptions import ServiceRequestError, ServiceResponseError

        return isinstance(exc, (ServiceRequestError, ServiceResponseError))
    except ImportError:  # pragma: no cover - azure-core always ships with the SDK
        return False


def is_no_session_available(exc: BaseException) -> bool:
    """Accepting the next session timed out because no session had messages: not an error."""
    return isinstance(exc, OperationTimeoutError)


def is_lock_lost(exc: BaseException) -> bool:
    return isinstance(exc, (MessageLockLostError, SessionLockLostError))


class Backoff:
    """Exponential delay that resets after a success; capped so recovery is noticed reasonably soon."""

    def __init__(self, first: float, maximum: float) -> None:
        self._first = first
        self._max = maximum
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._max, self._next * 2)
        return delay


# The SDK polls its socket with this timeout (default 0.2 s) and checks receive deadlines and
# settlement echoes only between polls, which puts a floor of one poll under every send; a shorter
# poll trades a little idle CPU for that latency. Receivers take WorkerOptions.receive_poll_interval.
SOCKET_TIMEOUT = 0.05


def _session_renew_interval(lock_duration: float) -> float:
    """DTF: renew at (lock - 30 s) clamped to [5 s, 30 s]; shorter locks renew at half their length."""
    if lock_duration <= 10:
        return max(0.5, lock_duration / 2)
    return min(30.0, max(5.0, lock_duration - 30.0))


# A renewal loop is stopped by a flag as well as by cancellation. Python 3.11's ``asyncio.wait_for``
# (which the SDK wraps around its requests, and pyamqp around every socket read) returns the inner
# result and drops the cancellation when both arrive in the same loop iteration; a loop relying on
# ``cancel()`` alone then goes on renewing for ever, the block that started it waits for it for ever,
# and the session stays locked to a worker that is done with it: its next message (a timer, an
# activity result) reaches nobody until the process dies. Stopping waits only briefly for a renewal
# in flight; one whose cancellation was lost sees the flag when its request returns.
_STOP_WAIT = 5.0


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set; True when the loop must end."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def _stop(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    task.cancel()
    await asyncio.wait({task}, timeout=_STOP_WAIT)


@contextlib.asynccontextmanager
async def renew_session_lock_while(receiver: Any, lock_duration: float, *, what: str) -> AsyncIterator[None]:
    """Keep the receiver's session lock alive for the duration of the block."""
    stop = asyncio.Event()

    async def loop() -> None:
        interval = _session_renew_interval(lock_duration)
        while not await _stopped(stop, interval):
            try:
                await receiver.session.renew_lock()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("renewing the session lock of %s failed: %s", what, type(exc).__name__)
                if is_lock_lost(exc):
                    return

    task = asyncio.create_task(loop(), name=f"renew-session:{what}")
    try:
        yield
    finally:
        await _stop(task, stop)


@contextlib.asynccontextmanager
async def renew_message_lock_while(
    receiver: Any, message: Any, lock_duration: float, *, what: str
) -> AsyncIterator[None]:
    """Keep one peek-locked message's lock alive for the duration of the block (activity execution)."""

    margin = min(30.0, lock_duration / 2)
    check = min(5.0, max(0.5, lock_duration / 4))
    stop = asyncio.Event()

    async def loop() -> None:
        locked_until = time.monotonic() + lock_duration
        while not await _stopped(stop, check):
            if time.monotonic() < locked_until - margin:
                continue
            try:
                await receiver.renew_message_lock(message)
                locked_until = time.monotonic() + lock_duration
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning(
                    "renewing the message lock of %s failed (%s); giving up", what, type(exc).__name__
                )
                return

    task = asyncio.create_task(loop(), name=f"renew-message:{what}")
    try:
        yield
    finally:
        await _stop(task, stop)


# After the first message of a receive call the SDK keeps pulling for a fixed 0.2 s (the receiver's
# `_further_pull_receive_timeout`, set in its constructor, not configurable) hoping to fill the batch.
# An episode wants what has already arrived, not 0.2 s more per step: with it, a sequential
# orchestration cannot go faster than about three activities per second. A short linger still
# batches messages that arrive together (a fan-in's results).
_BATCH_LINGER = 0.01


def with_short_batch_linger(receiver: Any) -> Any:
    """Shorten the SDK's post-first-message linger on ``receiver`` (a no-op on SDKs without it)."""
    if hasattr(receiver, "_further_pull_receive_timeout"):
        factor = getattr(getattr(receiver, "_amqp_transport", None), "TIMEOUT_FACTOR", 1)
        receiver._further_pull_receive_timeout = _BATCH_LINGER * factor
    return receiver


def pin_session(receiver: Any) -> Any:
    """Make an accepted session receiver fail, rather than accept its session again, once its link closes.

    After a retryable error the SDK closes the receiver's link and, on the next call or its own retry,
    opens a new one to the same session id (only a connection error or a lost lock, seen while the link
    is still open, marks the session lost). The broker gives the session up when the first link goes,
    so another worker may take it and move the instance on before the second link locks it again:
    history this worker read before (and keeps between episodes) is stale then, and writing it as the
    session state would erase the other worker's episodes. A pinned receiver raises
    ``SessionLockLostError`` instead of opening again; the dispatcher then accepts afresh and reloads.
    A no-op on SDKs without the private ``_open``.
    """
    open_link = getattr(receiver, "_open", None)
    if open_link is None or not getattr(receiver, "_running", False):
        return receiver

    async def open_once(*args: Any, **kwargs: Any) -> None:
        if receiver._running:
            return await open_link(*args, **kwargs)
        session = getattr(receiver, "_session", None)
        if session is not None:
            session._lock_lost = True
        raise SessionLockLostError(
            message="The link of this session receiver closed, which gives up the session lock; "
            "accept the session again (and read its state again) to go on."
        )

    receiver._open = open_once
    return receiver


async def complete_by_lock_token(client: Any, queue: str, lock_token: str) -> bool:
    """Complete a peek-locked message of ``queue`` (not a session queue) by its lock token.

    Service Bus keeps such a lock on the message, not on the link that received it, and accepts a
    settlement by lock token through the entity's management node from any link. The SDK offers that
    only privately (the link it opens here receives nothing: it asks for no messages). Returns False
    on SDKs without it.
    """
    async with client:
        receiver = client.get_queue_receiver(queue, prefetch_count=0)
        async with receiver:
            settle = getattr(receiver, "_settle_message_via_mgmt_link", None)
            if settle is None:
                return False
            await settle("completed", [lock_token])  # the management node's name for complete
    return True
