"""The jump-start manager: makes sure every start a client recorded is eventually sent.

A client writes a jump-start record, then sends ``ExecutionStarted``. If it dies in between (or the
send fails), only the record exists. Every ``interval`` the manager looks at records whose grace
window (``ignore_window`` since creation or the last re-send) has passed: if the execution is in the
instance store by now the record is deleted; otherwise the start is sent again with the original
message id (``{instance}_{execution}``), so if the first send did get through within the duplicate
detection window the broker drops the copy (DTF's JumpStartManager, reference 6.5). A scheduled start
is re-sent for its scheduled time, not for now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta, timezone

from ..core.codec import decode_task_message
from ..core.history import ExecutionStartedEvent
from ..options import TaskHubOptions
from ._outbound import Outbound, start_message_id
from ._senders import SenderPool
from .connection import redact
from .store import HubStore

__all__ = ["JumpStartManager"]

_log = logging.getLogger("dtf_sb.servicebus.jumpstart")


class JumpStartManager:
    def __init__(self, options: TaskHubOptions, store: HubStore, senders: SenderPool) -> None:
        self._options = options
        self._store = store
        self._senders = senders
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.resent = 0

    def start(self) -> None:
        if self._task is None and self._options.jump_start.enabled:
            self._task = asyncio.create_task(self._loop(), name="jump-start-manager")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.scan_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("jump-start scan failed (%s: %s)", type(exc).__name__, redact(str(exc))[:200])
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._options.jump_start.interval)

    async def scan_once(self) -> int:
        """One pass; returns how many starts were re-sent."""
        now = datetime.now(timezone.utc)
        window = timedelta(seconds=self._options.jump_start.ignore_window)
        resent = 0
        for record in await self._store.due_jump_starts(now - window):
            if await self._store.execution_recorded(record.instance_id, record.execution_id):
                await self._store.delete_jump_start(record.instance_id, record.execution_id)
                continue
            try:
                message = decode_task_message(record.message)
            except Exception as exc:
                _log.error("jump-start record of %s is unreadable (%s); deleting it", record.instance_id, exc)
                await self._store.delete_jump_start(record.instance_id, record.execution_id)
                continue
            event = message.event
            scheduled = event.scheduled_start_time if isinstance(event, ExecutionStartedEvent) else None
            if scheduled is not None and scheduled + window > now:
                continue  # not due yet: the original scheduled message is still waiting in the queue
            await self._senders.send(
                [
                    Outbound(
                        queue=self._options.orchestrator_queue,
                        body=record.message,
                        message_id=start_message_id(record.instance_id, record.execution_id),
                        session_id=record.instance_id,
                        instance_id=record.instance_id,
                        execution_id=record.execution_id,
                        kind="start",
                    )
                ]
            )
            await self._store.mark_jump_start_sent(record.instance_id, record.execution_id)
            _log.info("re-sent the start of %s (execution %s)", record.instance_id, record.execution_id)
            resent += 1
        self.resent += resent
        return resent
