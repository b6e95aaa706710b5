"""The accept-next-session loop shared by the orchestration and tracking dispatchers.

One fetch loop per dispatcher accepts the next session that has messages, but only after a
concurrency slot is free, so an idle worker holds one pending accept (one connection) rather than
one per slot. Each accepted session is processed on its own task; when it finishes the slot is
released (before the receiver's close, which the SDK makes last up to a second). A subclass may hold
a session after its work, waiting for the session's next message, through
:meth:`SessionDispatcher.receive_while_idle`: accepting a session costs a new connection and about
half a second in the SDK, so a held session saves that for an instance whose next message is near.
Holds end early when the worker stops or runs out of slots. Connection loss (the broker restarting, a failover) is met with an exponential back-off
and a fresh client, never by giving up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from azure.servicebus import NEXT_AVAILABLE_SESSION

from ._loop import Backoff, is_no_session_available, is_transient, pin_session, with_short_batch_linger
from .connection import ServiceBusConnection, redact

__all__ = ["SessionDispatcher"]

# A pending accept waits at the broker, which hands it a session the moment one has messages; a long
# wait therefore costs nothing, while a short one leaves gaps (timeout, SDK back-off, reconnect) in
# which a new session waits for nobody. Stopping cancels the wait, so this does not delay shutdown.
_ACCEPT_WAIT = 30.0
# An accept that returns a session within this many seconds (the SDK's open alone takes about half
# of it) found the session already waiting: a sign of backlog.
_BACKLOG_SIGN = 1.0


class SessionDispatcher:
    """Base class: subclasses implement ``process_session(receiver)``."""

    def __init__(
        self,
        *,
        name: str,
        connection: ServiceBusConnection,
        queue: str,
        max_concurrent: int,
        accept_concurrency: int = 1,
        max_accept_concurrency: int = 1,
        receive_timeout: float,
        poll_interval: float = 0.05,
        transient_backoff: float,
        max_backoff: float,
        logger: logging.Logger,
    ) -> None:
        self.name = name
        self._connection = connection
        self._queue = queue
        self._slots = asyncio.Semaphore(max_concurrent)
        self._receive_timeout = receive_timeout
        self._poll_interval = poll_interval
        self._backoff = Backoff(transient_backoff, max_backoff)
        self._log = logger
        self._stopping = asyncio.Event()
        self._accept_concurrency = max(1, min(accept_concurrency, max_concurrent))
        self._max_accept_concurrency = max(
            self._accept_concurrency, min(max_accept_concurrency, max_concurrent)
        )
        self._fetch_tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[asyncio.Task[None]] = set()
        self._paused_until = 0.0
        self._accepting: set[asyncio.Future[Any]] = set()
        self._starved = asyncio.Event()
        self.sessions_accepted = 0
        self.peak_accepts = 0
        """Most accepts pending at once so far: above ``accept_concurrency`` only after a surge."""
        self._slot_waiters = 0

    async def process_session(self, receiver: Any) -> None:
        raise TypeError(f"{type(self).__name__} must implement process_session")

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def receive_while_idle(self, receiver: Any, *, wait: float, max_message_count: int) -> list[Any]:
        """Wait up to ``wait`` for the held session's next messages; ``[]`` when the wait is given up.

        The wait ends early, with nothing, when the worker stops or when every slot is taken and the
        fetch loop is waiting for one: an idle held session then makes room for a session that has work.
        """
        if self._stopping.is_set() or self._starved.is_set():
            return []
        receive = asyncio.ensure_future(
            receiver.receive_messages(max_message_count=max_message_count, max_wait_time=wait)
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        starved = asyncio.ensure_future(self._starved.wait())
        try:
            await asyncio.wait({receive, stopping, starved}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            starved.cancel()
        if receive.done():
            return receive.result()
        receive.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receive
        return []

    def start(self) -> None:
        if not self._fetch_tasks:
            # Each pending accept is one connection waiting at the broker; an idle worker keeps
            # ``accept_concurrency`` of them, a busy one surges (see ``_surge``).
            for _ in range(self._accept_concurrency):
                self._spawn_fetch_loop(surge=False)

    def _spawn_fetch_loop(self, *, surge: bool) -> None:
        task = asyncio.create_task(
            self._fetch_loop(surge=surge), name=f"{self.name}-fetch-{len(self._fetch_tasks)}"
        )
        self._fetch_tasks.add(task)
        task.add_done_callback(self._fetch_tasks.discard)
        self.peak_accepts = max(self.peak_accepts, len(self._fetch_tasks))

    @property
    def pending_accepts(self) -> int:
        return len(self._fetch_tasks)

    def _surge(self) -> None:
        """Add one pending accept after an accept that found a session at once.

        The SDK needs about half a second of its own polling to open a receiver, so one pending
        accept takes at most two sessions a second however much work is waiting. A session that was
        there immediately means more may be: another accept joins, up to ``max_accept_concurrency``
        while slots are free. A surge accept ends the first time it finds no session, so the count
        falls back once the backlog is gone.
        """
        if (
            len(self._fetch_tasks) < self._max_accept_concurrency
            and not self._stopping.is_set()
            and not self._slots.locked()
        ):
            self._spawn_fetch_loop(surge=True)

    def pause(self, seconds: float) -> None:
        """Stop accepting sessions for ``seconds``, withdrawing pending accepts at once.

        Used when this worker cannot process what it got (an orchestrator it does not have): the
        session it releases must go to another worker, not straight back to this one's pending accept.
        Sessions in progress are not affected.
        """
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + seconds)
        self._withdraw_accepts()

    def _withdraw_accepts(self) -> None:
        for task in list(self._accepting):
            task.cancel()

    async def stop(self, *, graceful: bool, timeout: float) -> None:
        """Stop accepting; let in-flight sessions finish (bounded) when graceful, then cancel the rest.

        The clients the sessions were accepted on stay open until those sessions are done: closing a
        client closes every receiver it made.
        """
        self._stopping.set()
        self._withdraw_accepts()
        if graceful and self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=10.0)
        fetch_tasks = set(self._fetch_tasks)
        if fetch_tasks:
            await asyncio.wait(fetch_tasks, timeout=10.0)
        for task in fetch_tasks:
            task.cancel()
        for task in fetch_tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._fetch_tasks.clear()

    async def _fetch_loop(self, *, surge: bool) -> None:
        while not self._stopping.is_set():
            client = self._connection.client(retry_total=1)
            owned: set[asyncio.Task[None]] = set()
            try:
                async with client:
                    try:
                        await self._accept_loop(client, owned, surge=surge)
                        if surge:
                            return
                    finally:
                        if owned:
                            await asyncio.wait(set(owned))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if surge:
                    return  # the steady accepts reconnect; a surge is not worth a back-off
                delay = self._backoff.next_delay()
                self._log.warning(
                    "%s lost its connection (%s: %s); reconnecting in %.1f s",
                    self.name,
                    type(exc).__name__,
                    redact(str(exc))[:200],
                    delay,
                )
                await self._sleep(delay)

    async def _accept_loop(self, client: Any, owned: set[asyncio.Task[None]], *, surge: bool) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            delay = self._paused_until - loop.time()
            if delay > 0:
                await self._sleep(delay)
                continue
            if self._slots.locked():
                self._slot_waiters += 1
                self._starved.set()
                try:
                    await self._slots.acquire()
                finally:
                    self._slot_waiters -= 1
                    if not self._slot_waiters:
                        self._starved.clear()
            else:
                await self._slots.acquire()
            receiver = None
            try:
                if self._stopping.is_set():
                    self._slots.release()
                    return
                receiver = with_short_batch_linger(
                    client.get_queue_receiver(
                        self._queue,
                        session_id=NEXT_AVAILABLE_SESSION,
                        max_wait_time=self._receive_timeout
                        if surge
                        else max(self._receive_timeout, _ACCEPT_WAIT),
                        socket_timeout=self._poll_interval,
                    )
                )
                started = loop.time()
                accept = asyncio.ensure_future(receiver.__aenter__())
                self._accepting.add(accept)
                try:
                    await accept
                finally:
                    self._accepting.discard(accept)
            except asyncio.CancelledError:
                self._slots.release()
                if receiver is not None:
                    await _close_quietly(receiver)
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                if surge:
                    return
                continue  # only the accept was withdrawn (pause or stop)
            except Exception as exc:
                self._slots.release()
                if receiver is not None:
                    await _close_quietly(receiver)
                if is_no_session_available(exc):
                    if surge:
                        return
                    continue
                if is_transient(exc):
                    raise
                delay = self._backoff.next_delay()
                self._log.error(
                    "%s could not accept a session (%s: %s); retrying in %.1f s",
                    self.name,
                    type(exc).__name__,
                    redact(str(exc))[:200],
                    delay,
                )
                await self._sleep(delay)
                continue
            pin_session(receiver)
            self._backoff.reset()
            self.sessions_accepted += 1
            if loop.time() - started < _BACKLOG_SIGN:
                self._surge()
            task = asyncio.create_task(self._run(receiver), name=f"{self.name}-session")
            self._inflight.add(task)
            owned.add(task)
            task.add_done_callback(self._inflight.discard)
            task.add_done_callback(owned.discard)

    async def _run(self, receiver: Any) -> None:
        try:
            await self.process_session(receiver)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            self._log.error(
                "%s failed processing session %s: %s: %s",
                self.name,
                _session_id(receiver),
                type(exc).__name__,
                redact(str(exc))[:500],
                exc_info=self._log.isEnabledFor(logging.DEBUG),
            )
        finally:
            # The session lock is gone once the link detaches, at the start of close; the rest of the
            # close is the SDK waiting out its keep-alive tick, which need not hold a slot.
            self._slots.release()
            await _close_quietly(receiver)

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)


def _session_id(receiver: Any) -> str:
    try:
        return str(receiver.session.session_id)
    except Exception:
        return "?"


async def _close_quietly(receiver: Any) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(receiver.close()), timeout=10.0)
