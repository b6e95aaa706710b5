"""Pytest fixtures for testing orchestrations end to end against local services.

Enable with ``-p dtf_sb.testing.plugin`` or ``pytest_plugins = ["dtf_sb.testing.plugin"]`` in a
root ``conftest.py``. One embedded Service Bus emulator and one Azurite serve the whole test session;
each test gets a hub of its own from a pool declared when the emulator starts (its entities are fixed
then), so no test sees another's messages. Size the pool with the ``dtf_sb_hubs`` ini option
(default 32), or override ``dtf_sb_environment`` to point the fixtures at other endpoints.

    async def test_greetings(dtf_sb_worker, dtf_sb_client):
        await dtf_sb_worker([greetings], [say_hello])
        iid = await dtf_sb_client.schedule_new_orchestration(greetings, input=["Tokyo"])
        state = await dtf_sb_client.wait_for_orchestration_completion(iid, timeout=30)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import pytest
import pytest_asyncio

from dtf_sb.options import WorkerOptions
from dtf_sb.testing.runtime import DevEnvironment, HubConnection, Registration, worker_for

if TYPE_CHECKING:
    from dtf_sb.client import TaskHubClient
    from dtf_sb.middleware import DispatchMiddleware
    from dtf_sb.worker import TaskHubWorker

__all__ = [
    "WorkerStarter",
    "dtf_sb_client",
    "dtf_sb_environment",
    "dtf_sb_hub",
    "dtf_sb_worker",
    "dtf_sb_worker_options",
    "pool_hub_names",
]

_HUBS_INI = "dtf_sb_hubs"
_DEFAULT_HUBS = 32


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _HUBS_INI,
        "number of task hubs the dtf-sb test environment declares (one per test that uses dtf_sb_hub)",
        default=str(_DEFAULT_HUBS),
    )


def pool_hub_names(count: int, *, prefix: str = "test") -> list[str]:
    """Hub names ``{prefix}-000`` ... for a pool of ``count`` hubs."""
    return [f"{prefix}-{i:03d}" for i in range(count)]


class WorkerStarter(Protocol):
    """Starts a worker for the test's hub; the fixture stops it when the test ends."""

    def __call__(
        self,
        orchestrators: Iterable[Callable[..., Any] | Registration] = (),
        activities: Iterable[Callable[..., Any] | Registration] = (),
        *,
        worker_options: WorkerOptions | None = None,
        orchestration_middleware: Iterable[DispatchMiddleware] = (),
        activity_middleware: Iterable[DispatchMiddleware] = (),
    ) -> Awaitable[TaskHubWorker]: ...


@pytest.fixture(scope="session")
def dtf_sb_environment(request: pytest.FixtureRequest) -> Iterator[DevEnvironment]:
    """The embedded emulator and Azurite with a pool of hubs, for the whole session."""
    count = int(request.config.getini(_HUBS_INI) or _DEFAULT_HUBS)
    env = DevEnvironment(pool_hub_names(count)).start()
    try:
        yield env
    finally:
        env.close()


@pytest.fixture
def dtf_sb_hub(dtf_sb_environment: DevEnvironment) -> HubConnection:
    """A hub no other test of this session has used."""
    try:
        return dtf_sb_environment.fresh_hub()
    except LookupError as exc:
        raise pytest.UsageError(f"{exc} (raise the {_HUBS_INI} ini option)") from None


@pytest.fixture
def dtf_sb_worker_options() -> WorkerOptions:
    """Worker settings for tests: short receive waits so a stop is quick, and a short back-off before
    work for code this worker lacks goes back to the queue for another worker."""
    return WorkerOptions(receive_timeout=1.0, type_missing_backoff=1.0, stop_timeout=10.0)


@pytest_asyncio.fixture
async def dtf_sb_client(dtf_sb_hub: HubConnection) -> AsyncIterator[TaskHubClient]:
    """A client of the test's hub."""
    async with dtf_sb_hub.client() as client:
        yield client


@pytest_asyncio.fixture
async def dtf_sb_worker(
    dtf_sb_hub: HubConnection, dtf_sb_worker_options: WorkerOptions
) -> AsyncIterator[WorkerStarter]:
    """Start workers for the test's hub with ``await dtf_sb_worker([orchestrators], [activities])``.

    Every worker started this way is stopped (newest first) when the test ends, even if it fails.
    """
    started: list[TaskHubWorker] = []

    async def start(
        orchestrators: Iterable[Callable[..., Any] | Registration] = (),
        activities: Iterable[Callable[..., Any] | Registration] = (),
        *,
        worker_options: WorkerOptions | None = None,
        orchestration_middleware: Iterable[DispatchMiddleware] = (),
        activity_middleware: Iterable[DispatchMiddleware] = (),
    ) -> TaskHubWorker:
        worker = worker_for(
            dtf_sb_hub,
            orchestrators,
            activities,
            worker_options=worker_options or dtf_sb_worker_options,
            orchestration_middleware=orchestration_middleware,
            activity_middleware=activity_middleware,
        )
        await worker.start()
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        errors: list[BaseException] = []
        for worker in reversed(started):
            try:
                await worker.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
