"""The activity dispatcher: work messages in, results out, each activity run at least once.

Per message from the worker queue (peek-lock): decode the ``TaskScheduled``, run the activity through
the activity middleware while renewing the message lock (synchronous functions in a thread pool,
``async def`` ones on the event loop), send the result (``TaskCompleted`` or ``TaskFailed`` with
``FailureDetails``) to the instance's session with a deterministic message id, then complete the work
message. A crash before completion redelivers the work and the activity runs again; its result is
sent with the same id, so the broker drops it if the first one got through, and the orchestration
drops it anyway if it already has a result for that task.

An activity this worker does not have is abandoned after ``type_missing_backoff`` (another worker may
have it, DTF TypeMissing) rather than failed; a message that cannot be decoded is dead-lettered with
reason ``MalformedMessage``. Exceptions raised by middleware (not by the activity) abandon the
message, as in DTF: they are infrastructure failures, not task failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.servicebus.exceptions import MessageAlreadySettled, ServiceBusError

from ..core.activity import ActivityContext, invoke_activity, task_completed_event, task_failed_event
from ..core.codec import decode_task_message, encode_task_message
from ..core.errors import ActivityNotRegisteredError
from ..core.history import TaskScheduledEvent
from ..core.messages import TaskMessage
from ..core.registry import Registry
from ..middleware import DispatchContext, DispatchMiddleware, run_pipeline
from ..options import TaskHubOptions, WorkerOptions
from ._loop import (
    Backoff,
    complete_by_lock_token,
    is_transient,
    renew_message_lock_while,
    with_short_batch_linger,
)
from ._outbound import Outbound
from ._senders import SenderPool
from .connection import ServiceBusConnection, redact
from .faults import FaultPoints
from .messages import MalformedMessageError, MessageEnvelope, deterministic_message_id

__all__ = ["ActivityDispatcher", "activity_result_message_id"]

_log = logging.getLogger("dtf_sb.servicebus.activities")


def activity_result_message_id(instance_id: str, execution_id: str | None, task_id: int) -> str:
    return deterministic_message_id(instance_id, execution_id, task_id, "taskresult")


class ActivityDispatcher:
    def __init__(
        self,
        *,
        options: TaskHubOptions,
        worker_options: WorkerOptions,
        connection: ServiceBusConnection,
        envelope: MessageEnvelope,
        registry: Registry,
        middlewares: Sequence[DispatchMiddleware],
        faults: FaultPoints,
        senders: SenderPool | None = None,
    ) -> None:
        self._options = options
        self._worker_options = worker_options
        self._connection = connection
        self._envelope = envelope
        self._registry = registry
        self._middlewares = middlewares
        self._faults = faults
        self._owns_senders = senders is None
        self._senders = senders if senders is not None else SenderPool(connection, envelope)
        self._slots = asyncio.Semaphore(worker_options.max_concurrent_activities)
        self._backoff = Backoff(worker_options.transient_backoff, worker_options.max_backoff)
        self._stopping = asyncio.Event()
        self._fetch_task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._paused_until = 0.0
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(
            max_workers=worker_options.activity_thread_pool_size, thread_name_prefix="dtf-sb-activity"
        )
        self.executed = 0

    def start(self) -> None:
        if self._fetch_task is None:
            self._fetch_task = asyncio.create_task(self._fetch_loop(), name="activity-dispatcher-fetch")

    def pause(self, seconds: float) -> None:
        """Receive nothing for ``seconds``; the current receiver is retired so it holds no credit.

        Used after an activity this worker does not have: the message it gives back must reach a
        worker that has the code, not this worker's next receive.
        """
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + seconds)
        self._wake.set()

    async def stop(self, *, graceful: bool, timeout: float) -> None:
        self._stopping.set()
        self._wake.set()
        if graceful and self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=10.0)
        if self._fetch_task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._fetch_task), timeout=15.0)
            self._fetch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._fetch_task
            self._fetch_task = None
        if self._owns_senders:
            await self._senders.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- fetching ------------------------------------------------------------------------------------
    def _paused(self) -> bool:
        return self._paused_until > asyncio.get_running_loop().time()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _fetch_loop(self) -> None:
        while not self._stopping.is_set():
            client = self._connection.client()
            try:
                async with client:
                    while not self._stopping.is_set():
                        delay = self._paused_until - asyncio.get_running_loop().time()
                        if delay > 0:
                            await self._sleep(delay)
                            continue
                        self._wake.clear()
                        receiver = with_short_batch_linger(
                            client.get_queue_receiver(
                                self._options.worker_queue,
                                max_wait_time=self._worker_options.receive_timeout,
                                socket_timeout=self._worker_options.receive_poll_interval,
                            )
                        )
                        await receiver.__aenter__()
                        owned: set[asyncio.Task[None]] = set()
                        try:
                            await self._receive_loop(receiver, owned)
                        finally:
                            # Settlement needs this receiver's link: close it once its work is done.
                            while owned:
                                await asyncio.wait(set(owned))
                            with contextlib.suppress(Exception):
                                await receiver.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self._backoff.next_delay()
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                _log.log(
                    level,
                    "activity dispatcher lost its receiver (%s: %s); reconnecting in %.1f s",
                    type(exc).__name__,
                    redact(str(exc))[:200],
                    delay,
                )
                await self._sleep(delay)

    async def _receive_loop(self, receiver: Any, owned: set[asyncio.Task[None]]) -> None:
        while not self._stopping.is_set() and not self._paused():
            await self._slots.acquire()
            taken = 1
            while taken < self._worker_options.max_concurrent_activities and not self._slots.locked():
                await self._slots.acquire()
                taken += 1
            messages: list[Any] = []
            try:
                receive = asyncio.ensure_future(
                    receiver.receive_messages(
                        max_message_count=taken, max_wait_time=self._worker_options.receive_timeout
                    )
                )
                wake = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({receive, wake}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    wake.cancel()
                if receive.done():
                    messages = receive.result()
                else:
                    receive.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await receive
            finally:
                for _ in range(taken - len(messages)):
                    self._slots.release()
            self._backoff.reset()
            for message in messages:
                task = asyncio.create_task(self._run(receiver, message), name="activity")
                self._inflight.add(task)
                owned.add(task)
                task.add_done_callback(self._inflight.discard)
                task.add_done_callback(owned.discard)

    async def _run(self, receiver: Any, message: Any) -> None:
        try:
            await self._process(receiver, message)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(receiver.abandon_message(message))
        except Exception as exc:
            _log.error(
                "activity message %s failed (%s: %s); abandoning it for redelivery",
                message.message_id,
                type(exc).__name__,
                redact(str(exc))[:500],
                exc_info=_log.isEnabledFor(logging.DEBUG),
            )
            with contextlib.suppress(Exception):
                await receiver.abandon_message(message)
        finally:
            self._slots.release()

    # -- processing ----------------------------------------------------------------------------------
    async def _decode(self, message: Any) -> tuple[TaskMessage, TaskScheduledEvent]:
        body = await self._envelope.read(message)
        try:
            task_message = decode_task_message(body)
        except Exception as exc:
            raise MalformedMessageError(f"body is not a task message: {exc}") from None
        event = task_message.event
        if not isinstance(event, TaskScheduledEvent):
            raise MalformedMessageError(
                f"worker queue message carries {type(event).__name__}, expected TaskScheduledEvent"
            )
        if not event.name:
            raise MalformedMessageError("TaskScheduledEvent has no activity name")
        return task_message, event

    async def _process(self, receiver: Any, message: Any) -> None:
        try:
            task_message, scheduled = await self._decode(message)
        except MalformedMessageError as exc:
            _log.error("dead-lettering malformed activity message %s: %s", message.message_id, exc)
            await receiver.dead_letter_message(
                message, reason="MalformedMessage", error_description=str(exc)[:1000]
            )
            return
        instance = task_message.orchestration_instance
        what = f"activity {scheduled.name}#{scheduled.event_id} of {instance.instance_id}"
        async with renew_message_lock_while(receiver, message, self._options.lock_duration, what=what):
            ctx = DispatchContext(
                kind="activity",
                instance_id=instance.instance_id,
                execution_id=instance.execution_id,
                name=scheduled.name,
                version=scheduled.version,
                tags=dict(task_message.tags),
                task_scheduled=scheduled,
                input=scheduled.input,
                delivery_count=message.delivery_count or 1,
            )
            try:
                await run_pipeline(self._middlewares, ctx, self._execute)
            except ActivityNotRegisteredError as exc:
                backoff = self._worker_options.type_missing_backoff
                _log.warning(
                    "%s; giving message %s back and receiving nothing for %.0f s so a worker that has "
                    "it can take it",
                    exc,
                    message.message_id,
                    backoff,
                )
                self.pause(backoff)
                await receiver.abandon_message(message)
                return
            self._faults("activity.after_run", instance_id=instance.instance_id, task_id=scheduled.event_id)
            response = ctx.result
            if response is None:
                response = task_completed_event(scheduled.event_id, None)
            result = TaskMessage(event=response, orchestration_instance=instance)
            await self._senders.send(
                [
                    Outbound(
                        queue=self._options.orchestrator_queue,
                        body=encode_task_message(result, compress=False),
                        message_id=activity_result_message_id(
                            instance.instance_id, instance.execution_id, scheduled.event_id
                        ),
                        session_id=instance.instance_id,
                        instance_id=instance.instance_id,
                        execution_id=instance.execution_id,
                        kind="taskresult",
                    )
                ]
            )
            self._faults("activity.after_send", instance_id=instance.instance_id, task_id=scheduled.event_id)
        await self._complete(receiver, message)
        self.executed += 1
        self._faults("activity.after_complete", instance_id=instance.instance_id, task_id=scheduled.event_id)

    async def _complete(self, receiver: Any, message: Any) -> None:
        """Complete the work message, by its lock token through a new link when its receiver's link is
        gone (the connection dropped while the activity ran): otherwise the message would stay locked
        until its lock ran out and the activity would run again."""
        try:
            await receiver.complete_message(message)
        except MessageAlreadySettled:
            raise
        except (ValueError, ServiceBusError) as exc:
            try:
                done = await complete_by_lock_token(
                    self._connection.client(), self._options.worker_queue, message.lock_token
                )
            except Exception as retry_exc:
                _log.debug("completing %s by lock token failed too: %s", message.message_id, retry_exc)
                done = False
            if not done:
                raise
            _log.info(
                "completed activity message %s by lock token: its receiver's link was gone (%s)",
                message.message_id,
                type(exc).__name__,
            )

    async def _execute(self, ctx: DispatchContext) -> None:
        """The innermost step: run the user's function and turn its outcome into a history event."""
        scheduled = ctx.task_scheduled
        fn = self._registry.get_activity(ctx.name)
        activity_ctx = ActivityContext(
            orchestration_id=ctx.instance_id,
            task_id=scheduled.event_id,
            name=ctx.name,
            execution_id=ctx.execution_id,
        )
        try:
            if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__):
                value = await invoke_activity(fn, activity_ctx, ctx.input)
            else:
                loop = asyncio.get_running_loop()
                value = await loop.run_in_executor(self._pool, invoke_activity, fn, activity_ctx, ctx.input)
                if inspect.isawaitable(value):
                    value = await value
            ctx.result = task_completed_event(scheduled.event_id, value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.debug("activity %s of %s failed: %s", ctx.name, ctx.instance_id, exc)
            ctx.result = task_failed_event(scheduled.event_id, exc)
