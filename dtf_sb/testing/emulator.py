"""Run the embedded Service Bus emulator beside code that blocks its thread.

The synchronous azure-servicebus client blocks the calling thread while it waits for the broker, so an
emulator on the same event loop would never get to answer. :class:`EmulatorThread` gives the emulator an
event loop of its own in a daemon thread; everything a test needs from the broker is hopped onto that
loop, because the broker core is not thread-safe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from dtf_sb.emulator import Emulator

__all__ = ["EmulatorThread"]

T = TypeVar("T")


class EmulatorThread:
    """An :class:`~dtf_sb.emulator.Emulator` served from a background thread.

    ``EmulatorThread(config, **kw)`` takes the same arguments as ``Emulator``. Use it as a context
    manager (sync or async) or call :meth:`start` / :meth:`close` yourself.
    """

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        self._config = config
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._emulator: Emulator | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, *, timeout: float = 30.0) -> EmulatorThread:
        """Start the loop thread and the emulator on it; returns once it accepts connections."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="dtf-sb-emulator", daemon=True)
        self._thread.start()
        ready.wait(timeout)
        self._emulator = self.run(self._create(), timeout=timeout)
        return self

    async def _create(self) -> Emulator:
        emulator = Emulator(self._config, **self._kwargs)
        await emulator.start()
        return emulator

    def close(self, *, timeout: float = 30.0) -> None:
        """Stop the emulator for good and end its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if self._emulator is not None:
                self.run(self._emulator.close(), timeout=timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._loop = None
            self._thread = None
            self._emulator = None

    def stop(self, *, timeout: float = 30.0) -> None:
        """Drop every connection and refuse new ones; broker state stays (see :meth:`restart`)."""
        self.run(self.emulator.stop(), timeout=timeout)

    def restart(self, *, timeout: float = 30.0) -> None:
        """Serve again on the same port with the state kept, as after a broker restart."""
        self.run(self.emulator.restart(), timeout=timeout)

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> EmulatorThread:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    # -- access ----------------------------------------------------------------------------------

    @property
    def emulator(self) -> Emulator:
        """The emulator object; touch it only through :meth:`call` / :meth:`run` from other threads."""
        if self._emulator is None:
            raise RuntimeError("the emulator thread is not running")
        return self._emulator

    @property
    def connection_string(self) -> str:
        return self.emulator.connection_string

    @property
    def port(self) -> int:
        return self.emulator.port

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the emulator thread is not running")
        return self._loop

    def run(self, awaitable: Awaitable[T], *, timeout: float | None = 30.0) -> T:
        """Run a coroutine on the emulator's loop and wait for its result from this thread."""

        async def wrapper() -> T:
            return await awaitable

        future = asyncio.run_coroutine_threadsafe(wrapper(), self.loop)
        return future.result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = 30.0, **kwargs: Any) -> T:
        """Call ``fn(*args, **kwargs)`` on the emulator's loop (where the broker lives) and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def invoke() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        self.loop.call_soon_threadsafe(invoke)
        return future.result(timeout)

    def broker_call(self, method: str, *args: Any, timeout: float | None = 30.0, **kwargs: Any) -> Any:
        """Call a broker method by name on the emulator's loop, e.g. ``broker_call("peek", "q1")``."""
        return self.call(lambda: getattr(self.emulator.broker, method)(*args, **kwargs), timeout=timeout)
