"""TaskHubWorker: hosts orchestrators and activities of one task hub.

A worker runs three dispatchers over the hub's queues (orchestrations, activities, tracking) and the
jump-start manager, each with its own Service Bus client so a reconnect of one never stalls the
others. Any number of workers may serve one hub: sessions give each instance to one worker at a time,
and activity messages go to whichever worker receives them first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .core.executor import OrchestrationExecutor
from .core.registry import Registry
from .middleware import DispatchMiddleware
from .options import TaskHubOptions, WorkerOptions
from .servicebus._senders import SenderPool
from .servicebus.activities import ActivityDispatcher
from .servicebus.connection import ServiceBusConnection
from .servicebus.faults import FaultPoints, env_fault_injector
from .servicebus.jumpstart import JumpStartManager
from .servicebus.messages import MessageEnvelope
from .servicebus.orchestrations import OrchestrationDispatcher
from .servicebus.store import HubStore
from .servicebus.tracking import TrackingDispatcher

__all__ = ["TaskHubWorker", "WorkerStats"]


@dataclass(frozen=True)
class WorkerStats:
    """Counters of one worker since it started (a snapshot; see :meth:`TaskHubWorker.stats`)."""

    orchestration_episodes: int = 0
    orchestration_sessions_accepted: int = 0
    """Fewer than episodes when held sessions take an instance's next messages without a new accept."""
    orchestration_pending_accepts: int = 0
    orchestration_peak_accepts: int = 0
    activities_executed: int = 0
    tracking_sessions_accepted: int = 0
    tracking_pending_accepts: int = 0
    tracking_peak_accepts: int = 0


_log = logging.getLogger("dtf_sb.worker")


class TaskHubWorker:
    """Register orchestrators and activities, then ``async with worker:`` (or ``start``/``stop``)."""

    def __init__(
        self,
        options: TaskHubOptions,
        *,
        servicebus_connection_string: str | None = None,
        fully_qualified_namespace: str | None = None,
        storage_connection_string: str | None = None,
        storage_account_url: str | None = None,
        credential: Any = None,
        worker_options: WorkerOptions | None = None,
    ) -> None:
        self.options = options
        self.worker_options = worker_options or WorkerOptions()
        self._connection = ServiceBusConnection(
            connection_string=servicebus_connection_string,
            fully_qualified_namespace=fully_qualified_namespace,
            credential=credential,
        )
        self._storage = {
            "connection_string": storage_connection_string,
            "account_url": storage_account_url,
            "credential": credential,
        }
        if not storage_connection_string and not storage_account_url:
            raise ValueError(
                "a Blob Storage account is required (instance store and large payloads): pass "
                "storage_connection_string, or storage_account_url with a credential"
            )
        self.registry = Registry()
        self._orchestration_middleware: list[DispatchMiddleware] = []
        self._activity_middleware: list[DispatchMiddleware] = []
        self._store: HubStore | None = None
        self._orchestrations: OrchestrationDispatcher | None = None
        self._activities: ActivityDispatcher | None = None
        self._tracking: TrackingDispatcher | None = None
        self._jump_start: JumpStartManager | None = None
        self._senders: SenderPool | None = None
        self._started = False

    def __repr__(self) -> str:
        return f"TaskHubWorker(hub={self.options.hub_name!r}, namespace={self._connection.namespace!r})"

    # -- registration --------------------------------------------------------------------------------
    def add_orchestrator(
        self, fn: Callable[..., Any], *, name: str | None = None, version: str | None = None
    ) -> str:
        """Register an orchestrator (``async def f(ctx, input)`` or a generator); returns its name."""
        return self.registry.add_orchestrator(fn, name=name, version=version)

    def add_activity(self, fn: Callable[..., Any], *, name: str | None = None) -> str:
        """Register an activity (sync functions run in a thread pool, ``async def`` on the loop)."""
        return self.registry.add_activity(fn, name=name)

    def add_orchestration_middleware(self, middleware: DispatchMiddleware) -> None:
        """Wrap every orchestration episode; the first added runs outermost."""
        self._check_not_started()
        self._orchestration_middleware.append(middleware)

    def add_activity_middleware(self, middleware: DispatchMiddleware) -> None:
        """Wrap every activity execution; the first added runs outermost."""
        self._check_not_started()
        self._activity_middleware.append(middleware)

    def _check_not_started(self) -> None:
        if self._started:
            raise RuntimeError("add middleware before the worker starts")

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._started

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("the worker is already started")
        self._started = True
        options, worker_options = self.options, self.worker_options
        store = HubStore(options, **self._storage)
        self._store = store
        envelope = MessageEnvelope(options, store.payloads)
        faults = FaultPoints(worker_options.fault_injector, env_fault_injector())
        executor = OrchestrationExecutor(self.registry)
        # One sender per queue for the whole worker: every open sender is a connection, and some
        # namespaces (Microsoft's emulator: 10) allow few of them.
        senders = SenderPool(self._connection, envelope)
        self._senders = senders
        self._orchestrations = OrchestrationDispatcher(
            options=options,
            worker_options=worker_options,
            connection=self._connection,
            envelope=envelope,
            payloads=store.payloads,
            executor=executor,
            middlewares=tuple(self._orchestration_middleware),
            faults=faults,
            senders=senders,
            forget_start=store.delete_jump_start,
        )
        self._activities = ActivityDispatcher(
            options=options,
            worker_options=worker_options,
            connection=self._connection,
            envelope=envelope,
            registry=self.registry,
            middlewares=tuple(self._activity_middleware),
            faults=faults,
            senders=senders,
        )
        self._tracking = TrackingDispatcher(
            options=options,
            worker_options=worker_options,
            connection=self._connection,
            envelope=envelope,
            store=store,
            faults=faults,
        )
        self._jump_start = JumpStartManager(options, store, senders)
        self._orchestrations.start()
        self._activities.start()
        self._tracking.start()
        self._jump_start.start()
        _log.info(
            "worker started for hub %s on %s (%d orchestrators, %d activities)",
            options.hub_name,
            self._connection.namespace,
            len(self.registry.orchestrator_names),
            len(self.registry.activity_names),
        )

    def stats(self) -> WorkerStats:
        """What the dispatchers have done so far (zeros before :meth:`start`)."""
        orchestrations, activities, tracking = self._orchestrations, self._activities, self._tracking
        if orchestrations is None or activities is None or tracking is None:
            return WorkerStats()
        return WorkerStats(
            orchestration_episodes=orchestrations.episodes,
            orchestration_sessions_accepted=orchestrations.sessions_accepted,
            orchestration_pending_accepts=orchestrations.pending_accepts,
            orchestration_peak_accepts=orchestrations.peak_accepts,
            activities_executed=activities.executed,
            tracking_sessions_accepted=tracking.sessions_accepted,
            tracking_pending_accepts=tracking.pending_accepts,
            tracking_peak_accepts=tracking.peak_accepts,
        )

    async def stop(self, graceful: bool = True) -> None:
        """Stop accepting work; when graceful, let in-flight work finish (bounded by ``stop_timeout``)."""
        if not self._started:
            return
        timeout = self.worker_options.stop_timeout
        if self._jump_start is not None:
            await self._jump_start.stop()
        stops = [
            d.stop(graceful=graceful, timeout=timeout)
            for d in (self._orchestrations, self._activities, self._tracking)
            if d is not None
        ]
        await asyncio.gather(*stops, return_exceptions=True)
        if self._senders is not None:
            await self._senders.close()
        if self._store is not None:
            await self._store.close()
        self._started = False
        _log.info("worker for hub %s stopped", self.options.hub_name)

    async def __aenter__(self) -> TaskHubWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
