"""Fixtures of the hub-operations suite: one environment, a fresh hub per test, workers, a client.

Like the runtime suite, it declares the queues of a pool of hubs (one per collected test here) in a
Config.json for the backend chosen with ``--sb-backend``, because an emulator creates its entities
at start-up. Blob Storage is Azurite unless ``DTF_SB_STORAGE_CONNECTION_STRING`` names an account.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
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

STORAGE_CONNECTION_STRING_ENV = "DTF_SB_STORAGE_CONNECTION_STRING"
SUITE_DIR = Path(__file__).resolve().parent
_CONTAINER_MAX_HUBS = 16
_SPARE_HUBS = 2


def _suite_test_count(session: pytest.Session) -> int:
    count = 0
    for item in session.items:
        try:
            Path(str(item.path)).resolve().relative_to(SUITE_DIR)
        except ValueError:
            continue
        count += 1
    return count


def _hub_pool_config(hubs: list[TaskHubOptions]) -> dict[str, Any]:
    config = emulator_config(hubs[0])
    queues = config["UserConfig"]["Namespaces"][0]["Queues"]
    for hub in hubs[1:]:
        queues.extend(emulator_config(hub)["UserConfig"]["Namespaces"][0]["Queues"])
    return config


@pytest.fixture(scope="session")
def ops_environment(
    request: pytest.FixtureRequest, sb_backend: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevEnvironment]:
    count = _suite_test_count(request.session) + _SPARE_HUBS
    if sb_backend.name == "container":
        count = min(count, _CONTAINER_MAX_HUBS)
    hubs = [TaskHubOptions(hub_name=name) for name in pool_hub_names(count, prefix="op")]
    config_path = tmp_path_factory.mktemp("ops-hubs") / "Config.json"
    config_path.write_text(json.dumps(_hub_pool_config(hubs), indent=2), encoding="utf-8")
    env = DevEnvironment(
        hubs,
        servicebus_connection_string=sb_backend.endpoint(config_path),
        storage_connection_string=os.environ.get(STORAGE_CONNECTION_STRING_ENV) or None,
    ).start()
    try:
        yield env
    finally:
        env.close()


@pytest.fixture(scope="session")
def dtf_sb_environment(ops_environment: DevEnvironment) -> DevEnvironment:
    return ops_environment


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
    return dtf_sb_hub


@pytest.fixture
def client(dtf_sb_client: TaskHubClient) -> TaskHubClient:
    return dtf_sb_client


@pytest.fixture
def start_worker(dtf_sb_worker: WorkerStarter) -> WorkerStarter:
    return dtf_sb_worker


@pytest.fixture
def worker_options(dtf_sb_worker_options: WorkerOptions) -> WorkerOptions:
    return dtf_sb_worker_options
