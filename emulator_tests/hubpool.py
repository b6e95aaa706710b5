"""Hub pools for the end-to-end suites that run orchestrations (runtime, operations, cli).

An emulator (ours or Microsoft's) creates its entities when it starts, so a suite declares up front a
pool of hubs, one per collected test plus spares, in one Config.json, and asks the chosen backend for an
endpoint serving it. Each test then takes a hub nobody used before; with Microsoft's emulator (at most
50 entities: 16 hubs of three queues) tests share hubs round-robin, which costs isolation, not meaning,
because instance ids are unique per test.

The conftest of ``emulator_tests`` imports the fixtures below; a suite's own conftest only says which
pool it wants:

    @pytest.fixture(scope="session")
    def dtf_sb_environment(hub_pool):
        return hub_pool("rt", Path(__file__).parent, spare=4)
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dtf_sb.options import TaskHubOptions, WorkerOptions
from dtf_sb.servicebus.entities import emulator_config
from dtf_sb.testing import plugin
from dtf_sb.testing.plugin import WorkerStarter, pool_hub_names
from dtf_sb.testing.runtime import DevEnvironment, HubConnection

if TYPE_CHECKING:
    from dtf_sb.client import TaskHubClient

__all__ = [
    "client",
    "dtf_sb_client",
    "dtf_sb_hub",
    "dtf_sb_worker",
    "dtf_sb_worker_options",
    "hub",
    "hub_pool",
    "hub_pool_config",
    "start_worker",
    "worker_options",
]

STORAGE_CONNECTION_STRING_ENV = "DTF_SB_STORAGE_CONNECTION_STRING"
CONTAINER_MAX_HUBS = 16

HubPool = Callable[..., DevEnvironment]


def hub_pool_config(hubs: list[TaskHubOptions]) -> dict[str, Any]:
    """One official-emulator Config.json holding the queues of every hub of the pool."""
    config = emulator_config(hubs[0])
    queues = config["UserConfig"]["Namespaces"][0]["Queues"]
    for extra in hubs[1:]:
        queues.extend(emulator_config(extra)["UserConfig"]["Namespaces"][0]["Queues"])
    return config


def _tests_under(session: pytest.Session, directory: Path) -> int:
    count = 0
    for item in session.items:
        try:
            Path(str(item.path)).resolve().relative_to(directory)
        except ValueError:
            continue
        count += 1
    return count


@pytest.fixture(scope="session")
def hub_pool(
    request: pytest.FixtureRequest, sb_backend: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubPool]:
    """``hub_pool(prefix, suite_dir, spare=N)``: a started DevEnvironment for the suite, closed at the end."""
    made: list[DevEnvironment] = []

    def make(prefix: str, suite_dir: Path, *, spare: int = 2) -> DevEnvironment:
        count = _tests_under(request.session, suite_dir.resolve()) + spare
        if sb_backend.name == "container":
            count = min(count, CONTAINER_MAX_HUBS)
        hubs = [TaskHubOptions(hub_name=name) for name in pool_hub_names(count, prefix=prefix)]
        config_path = tmp_path_factory.mktemp(f"{prefix}-hubs") / "Config.json"
        config_path.write_text(json.dumps(hub_pool_config(hubs), indent=2), encoding="utf-8")
        env = DevEnvironment(
            hubs,
            servicebus_connection_string=sb_backend.endpoint(config_path),
            storage_connection_string=os.environ.get(STORAGE_CONNECTION_STRING_ENV) or None,
        ).start()
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


# The plugin's fixtures, found by pytest under these names; dtf_sb_environment comes from each suite.
dtf_sb_client = plugin.dtf_sb_client
dtf_sb_worker = plugin.dtf_sb_worker
dtf_sb_worker_options = plugin.dtf_sb_worker_options

_shared_hubs = itertools.count()


@pytest.fixture
def dtf_sb_hub(dtf_sb_environment: DevEnvironment) -> HubConnection:
    """A hub no earlier test used, or (pool exhausted, container backend) the next one round-robin."""
    try:
        return dtf_sb_environment.fresh_hub()
    except LookupError:
        hubs = dtf_sb_environment.hubs
        return dtf_sb_environment.hub(hubs[next(_shared_hubs) % len(hubs)].hub_name)


@pytest.fixture
def hub(dtf_sb_hub: HubConnection) -> HubConnection:
    """The test's own hub (connection strings and options)."""
    return dtf_sb_hub


@pytest.fixture
def client(dtf_sb_client: TaskHubClient) -> TaskHubClient:
    """A client of the test's hub."""
    return dtf_sb_client


@pytest.fixture
def start_worker(dtf_sb_worker: WorkerStarter) -> WorkerStarter:
    """``await start_worker([orchestrators], [activities], ...)``; stopped when the test ends."""
    return dtf_sb_worker


@pytest.fixture
def worker_options(dtf_sb_worker_options: WorkerOptions) -> WorkerOptions:
    return dtf_sb_worker_options
