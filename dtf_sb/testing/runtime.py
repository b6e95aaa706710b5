"""A local dtf-sb environment for development and tests: Service Bus, Blob Storage and hubs on them.

A hub needs three Service Bus queues with sessions and duplicate detection, and an instance store in
Blob Storage. Locally both come from processes we start ourselves: the embedded Service Bus emulator
(in a background thread) and Azurite (from ``node_modules``). The embedded emulator takes its entities
from its configuration when it starts, so an environment is told up front which hubs it will serve;
tests that want a fresh hub each get one from that list instead of sharing queues with the previous
test's leftovers.

Either service can be replaced by an existing endpoint (a real namespace or storage account, or
Microsoft's emulator container) by passing its connection string; the environment then starts only
what is missing and creates the hubs' queues on that namespace when asked to.

    async with dev_environment(["orders"]) as env:
        hub = env.hub("orders")
        async with worker_for(hub, orchestrators=[greetings], activities=[say_hello]):
            async with hub.client() as client:
                instance_id = await client.schedule_new_orchestration(greetings, input=["Tokyo"])
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dtf_sb.options import TaskHubOptions, WorkerOptions

if TYPE_CHECKING:
    from dtf_sb.client import TaskHubClient
    from dtf_sb.middleware import DispatchMiddleware
    from dtf_sb.testing.azurite import Azurite
    from dtf_sb.testing.emulator import EmulatorThread
    from dtf_sb.worker import TaskHubWorker

__all__ = [
    "DevEnvironment",
    "HubConnection",
    "Registration",
    "dev_environment",
    "hub_options",
    "named",
    "worker_for",
]

DEFAULT_HUB = "dev"


@dataclass(frozen=True)
class Registration:
    """A function registered under an explicit name and/or version (plain callables use their own name)."""

    fn: Callable[..., Any]
    name: str | None = None
    version: str | None = None


def named(fn: Callable[..., Any], *, name: str | None = None, version: str | None = None) -> Registration:
    """Register ``fn`` as ``name`` (and ``version``) when handed to :func:`worker_for`."""
    return Registration(fn, name=name, version=version)


@dataclass(frozen=True)
class HubConnection:
    """Everything a client or worker needs to reach one hub.

    Connection strings are kept out of the repr: they carry account keys, and a repr ends up in test
    reports and logs.
    """

    options: TaskHubOptions
    servicebus_connection_string: str = field(repr=False)
    storage_connection_string: str = field(repr=False)

    @property
    def hub_name(self) -> str:
        return self.options.hub_name

    def client(self) -> TaskHubClient:
        """A new client for this hub; use it as ``async with`` so its connections are closed."""
        from dtf_sb.client import TaskHubClient

        return TaskHubClient(
            self.options,
            servicebus_connection_string=self.servicebus_connection_string,
            storage_connection_string=self.storage_connection_string,
        )

    def worker(
        self,
        *,
        orchestrators: Iterable[Callable[..., Any] | Registration] = (),
        activities: Iterable[Callable[..., Any] | Registration] = (),
        worker_options: WorkerOptions | None = None,
        orchestration_middleware: Iterable[DispatchMiddleware] = (),
        activity_middleware: Iterable[DispatchMiddleware] = (),
    ) -> TaskHubWorker:
        """Same as :func:`worker_for` with this hub."""
        return worker_for(
            self,
            orchestrators,
            activities,
            worker_options=worker_options,
            orchestration_middleware=orchestration_middleware,
            activity_middleware=activity_middleware,
        )


def worker_for(
    hub: HubConnection,
    orchestrators: Iterable[Callable[..., Any] | Registration] = (),
    activities: Iterable[Callable[..., Any] | Registration] = (),
    *,
    worker_options: WorkerOptions | None = None,
    orchestration_middleware: Iterable[DispatchMiddleware] = (),
    activity_middleware: Iterable[DispatchMiddleware] = (),
) -> TaskHubWorker:
    """A worker for ``hub`` with the given code and middleware registered, not started yet.

    Start it with ``async with`` (or ``await worker.start()``); middleware is added in the order
    given, so the first one runs outermost.
    """
    from dtf_sb.worker import TaskHubWorker

    worker = TaskHubWorker(
        hub.options,
        servicebus_connection_string=hub.servicebus_connection_string,
        storage_connection_string=hub.storage_connection_string,
        worker_options=worker_options if worker_options is not None else WorkerOptions(),
    )
    for item in orchestrators:
        reg = item if isinstance(item, Registration) else Registration(item)
        worker.add_orchestrator(reg.fn, name=reg.name, version=reg.version)
    for item in activities:
        reg = item if isinstance(item, Registration) else Registration(item)
        if reg.version is not None:
            raise ValueError(f"activities have no version; drop version={reg.version!r} for {reg.fn!r}")
        worker.add_activity(reg.fn, name=reg.name)
    for mw in orchestration_middleware:
        worker.add_orchestration_middleware(mw)
    for mw in activity_middleware:
        worker.add_activity_middleware(mw)
    return worker


def hub_options(hub: str | TaskHubOptions) -> TaskHubOptions:
    """Options for a hub given by name (DTF's defaults) or already as options."""
    return hub if isinstance(hub, TaskHubOptions) else TaskHubOptions(hub_name=hub)


class DevEnvironment:
    """Service Bus and Blob Storage endpoints serving a fixed list of hubs.

    Without connection strings it starts the embedded emulator (with every hub's queues) and Azurite;
    with one, that endpoint is used as it is. Start and stop it synchronously (``with``, or
    :meth:`start`/:meth:`close`, which suits session-scoped pytest fixtures) or with ``async with``,
    which also creates the hubs' queues on an external namespace.
    """

    def __init__(
        self,
        hubs: Iterable[str | TaskHubOptions] = (DEFAULT_HUB,),
        *,
        servicebus_connection_string: str | None = None,
        storage_connection_string: str | None = None,
    ) -> None:
        self._hubs: tuple[TaskHubOptions, ...] = tuple(hub_options(h) for h in hubs)
        if not self._hubs:
            raise ValueError("a DevEnvironment needs at least one hub")
        names = [h.hub_name.lower() for h in self._hubs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"hub names must be unique (case-insensitively); repeated: {', '.join(duplicates)}"
            )
        self._external_servicebus = servicebus_connection_string
        self._external_storage = storage_connection_string
        self._emulator: EmulatorThread | None = None
        self._azurite: Azurite | None = None
        self._next_fresh = 0

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"DevEnvironment({len(self._hubs)} hubs, {state})"

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        servicebus = self._external_servicebus is not None or self._emulator is not None
        storage = self._external_storage is not None or self._azurite is not None
        return servicebus and storage

    def start(self) -> DevEnvironment:
        """Start the local services that were not given as connection strings.

        If the second one fails to start, the first is stopped again so nothing is left behind.
        """
        try:
            if self._external_servicebus is None and self._emulator is None:
                from dtf_sb.servicebus.entities import emulator_queues
                from dtf_sb.testing.emulator import EmulatorThread

                queues = [q for hub in self._hubs for q in emulator_queues(hub)]
                self._emulator = EmulatorThread(queues).start()
            if self._external_storage is None and self._azurite is None:
                from dtf_sb.testing.azurite import Azurite

                self._azurite = Azurite().start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop what :meth:`start` started; external endpoints are left alone. Safe to call twice."""
        emulator, azurite = self._emulator, self._azurite
        self._emulator = None
        self._azurite = None
        try:
            if emulator is not None:
                emulator.close()
        finally:
            if azurite is not None:
                azurite.stop()

    async def create_hubs(self) -> None:
        """Create every hub's queues on an external namespace (existing queues are kept).

        The embedded emulator already has them from its configuration, so this is a no-op there.
        """
        if self._external_servicebus is None:
            return
        for hub in self._hubs:
            async with self.hub(hub.hub_name).client() as client:
                await client.create_hub(if_not_exists=True)

    def __enter__(self) -> DevEnvironment:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> DevEnvironment:
        await asyncio.to_thread(self.start)
        try:
            await self.create_hubs()
        except BaseException:
            await asyncio.to_thread(self.close)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    # -- access ------------------------------------------------------------------------------------

    @property
    def servicebus_connection_string(self) -> str:
        if self._external_servicebus is not None:
            return self._external_servicebus
        if self._emulator is None:
            raise RuntimeError("the environment is not started; call start() or use it as a context manager")
        return self._emulator.connection_string

    @property
    def storage_connection_string(self) -> str:
        if self._external_storage is not None:
            return self._external_storage
        if self._azurite is None:
            raise RuntimeError("the environment is not started; call start() or use it as a context manager")
        return self._azurite.connection_string

    @property
    def hubs(self) -> tuple[TaskHubOptions, ...]:
        return self._hubs

    @property
    def emulator(self) -> EmulatorThread | None:
        """The embedded emulator, or None when Service Bus is an external endpoint.

        Tests use it to stop and restart the broker under a running worker.
        """
        return self._emulator

    @property
    def azurite(self) -> Azurite | None:
        return self._azurite

    def hub(self, name: str | None = None) -> HubConnection:
        """The connection to hub ``name`` (the first hub when omitted)."""
        if name is None:
            options = self._hubs[0]
        else:
            found = [h for h in self._hubs if h.hub_name.lower() == name.lower()]
            if not found:
                known = ", ".join(h.hub_name for h in self._hubs)
                raise KeyError(f"hub {name!r} is not served by this environment (it serves: {known})")
            options = found[0]
        return HubConnection(
            options,
            servicebus_connection_string=self.servicebus_connection_string,
            storage_connection_string=self.storage_connection_string,
        )

    def fresh_hub(self) -> HubConnection:
        """The next hub nobody has taken yet, so a test starts from empty queues.

        Raises ``LookupError`` once every hub is taken: sharing a hub between tests silently would
        let one test's leftover messages reach the next test's worker.
        """
        if self._next_fresh >= len(self._hubs):
            raise LookupError(
                f"all {len(self._hubs)} hubs of this environment are taken; create it with more hubs"
            )
        options = self._hubs[self._next_fresh]
        self._next_fresh += 1
        return self.hub(options.hub_name)


@contextlib.asynccontextmanager
async def dev_environment(
    hubs: str | TaskHubOptions | Sequence[str | TaskHubOptions] = (DEFAULT_HUB,),
    *,
    servicebus_connection_string: str | None = None,
    storage_connection_string: str | None = None,
) -> AsyncIterator[DevEnvironment]:
    """Start the embedded emulator and Azurite (or use the endpoints given) for ``hubs``.

    Yields the running :class:`DevEnvironment`: its connection strings, hub options and
    :meth:`~DevEnvironment.hub` connections. Everything started here is stopped on exit.
    """
    if isinstance(hubs, (str, TaskHubOptions)):
        hubs = [hubs]
    env = DevEnvironment(
        hubs,
        servicebus_connection_string=servicebus_connection_string,
        storage_connection_string=storage_connection_string,
    )
    async with env:
        yield env
