"""Fixtures of the end-to-end orchestration suite: services, a fresh hub per test, workers, a client.

Service Bus comes from the backend chosen with ``--sb-backend`` (``emulator_tests/conftest.py``);
the suite writes a Config.json declaring the queues of a pool of hubs, one per collected test, because
an emulator (ours or Microsoft's) creates its entities at start-up. Blob Storage is Azurite unless
``DTF_SB_STORAGE_CONNECTION_STRING`` names an account (which the azure backend wants).

The fixtures themselves are the reusable ones from :mod:`dtf_sb.testing.plugin`; this file only
replaces the environment with a backend-aware one and gives them short names.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from rtkit import dead_letters

from dtf_sb.options import TaskHubOptions, WorkerOptions
from dtf_sb.servicebus.entities import emulator_config
from dtf_sb.testing import plugin
from dtf_sb.testing.plugin import WorkerStarter, pool_hub_names
from dtf_sb.testing.runtime import DevEnvironment, HubConnection

if TYPE_CHECKING:
    from dtf_sb.client import TaskHubClient

STORAGE_CONNECTION_STRING_ENV = "DTF_SB_STORAGE_CONNECTION_STRING"
RUNTIME_DIR = Path(__file__).resolve().parent

# Microsoft's emulator holds at most 50 entities: 16 hubs of three queues. With that backend, tests
# share hubs round-robin; instance ids are unique per test, so sharing costs isolation, not meaning.
_CONTAINER_MAX_HUBS = 16
_SPARE_HUBS = 4


def _runtime_test_count(session: pytest.Session) -> int:
    count = 0
    for item in session.items:
        try:
            Path(str(item.path)).resolve().relative_to(RUNTIME_DIR)
        except ValueError:
            continue
        count += 1
    return count


def _hub_pool_config(hubs: list[TaskHubOptions]) -> dict[str, Any]:
    """One official-emulator Config.json holding the queues of every hub of the pool."""
    config = emulator_config(hubs[0])
    queues = config["UserConfig"]["Namespaces"][0]["Queues"]
    for hub in hubs[1:]:
        queues.extend(emulator_config(hub)["UserConfig"]["Namespaces"][0]["Queues"])
    return config


@pytest.fixture(scope="session")
def dtf_sb_environment(
    request: pytest.FixtureRequest, sb_backend: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevEnvironment]:
    count = _runtime_test_count(request.session) + _SPARE_HUBS
    if sb_backend.name == "container":
        count = min(count, _CONTAINER_MAX_HUBS)
    hubs = [TaskHubOptions(hub_name=name) for name in pool_hub_names(count, prefix="rt")]
    config_path = tmp_path_factory.mktemp("runtime-hubs") / "Config.json"
    config_path.write_text(json.dumps(_hub_pool_config(hubs), indent=2), encoding="utf-8")
    servicebus = sb_backend.endpoint(config_path)
    env = DevEnvironment(
        hubs,
        servicebus_connection_string=servicebus,
        storage_connection_string=os.environ.get(STORAGE_CONNECTION_STRING_ENV) or None,
    ).start()
    try:
        yield env
    finally:
        env.close()


# The plugin's fixtures, found by pytest under these names.
dtf_sb_client = plugin.dtf_sb_client
dtf_sb_worker = plugin.dtf_sb_worker
dtf_sb_worker_options = plugin.dtf_sb_worker_options

_shared_hubs = itertools.count()


@pytest.fixture
def dtf_sb_hub(dtf_sb_environment: DevEnvironment) -> HubConnection:
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
async def no_dead_letters(dtf_sb_hub: HubConnection) -> AsyncIterator[None]:
    """Fails the test (at teardown, after its workers stopped) if any of its messages was dead-lettered."""
    yield
    letters = await dead_letters(dtf_sb_hub)
    assert not letters, "messages were dead-lettered:\n" + "\n".join(letters)


@pytest.fixture
def start_worker(no_dead_letters: None, dtf_sb_worker: WorkerStarter) -> WorkerStarter:
    """``await start_worker([orchestrators], [activities], ...)``; stopped when the test ends, and the
    hub's dead-letter queues must then be empty."""
    return dtf_sb_worker


@pytest.fixture
def worker_options(dtf_sb_worker_options: WorkerOptions) -> WorkerOptions:
    return dtf_sb_worker_options
