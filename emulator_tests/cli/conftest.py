"""Fixtures of the CLI suite: an environment with a hub per test, and a way to run ``dtf-sb``.

The command runs as a user runs it, in a subprocess (``python -m dtf_sb.cli``) configured through
environment variables, while the worker runs in the test's own event loop. The subprocess is
awaited with asyncio so the worker keeps working while the command waits for it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
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

SUITE_DIR = Path(__file__).resolve().parent
REPO = SUITE_DIR.parents[1]
COMMAND_TIMEOUT = 120.0
_SPARE_HUBS = 2


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def _suite_test_count(session: pytest.Session) -> int:
    count = 0
    for item in session.items:
        try:
            Path(str(item.path)).resolve().relative_to(SUITE_DIR)
        except ValueError:
            continue
        count += 1
    return count


@pytest.fixture(scope="session")
def dtf_sb_environment(
    request: pytest.FixtureRequest, sb_backend: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevEnvironment]:
    count = min(_suite_test_count(request.session) + _SPARE_HUBS, 16)
    hubs = [TaskHubOptions(hub_name=name) for name in pool_hub_names(count, prefix="cli")]
    config = emulator_config(hubs[0])
    queues = config["UserConfig"]["Namespaces"][0]["Queues"]
    for extra in hubs[1:]:
        queues.extend(emulator_config(extra)["UserConfig"]["Namespaces"][0]["Queues"])
    config_path = tmp_path_factory.mktemp("cli-hubs") / "Config.json"
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    env = DevEnvironment(
        hubs,
        servicebus_connection_string=sb_backend.endpoint(config_path),
        storage_connection_string=os.environ.get("DTF_SB_STORAGE_CONNECTION_STRING") or None,
    ).start()
    try:
        yield env
    finally:
        env.close()


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


def hub_env(hub: HubConnection) -> dict[str, str]:
    """The environment a user would export for this hub (and nothing else from dtf-sb)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTF_SB_")}
    env.update(
        {
            "DTF_SB_HUB": hub.hub_name,
            "DTF_SB_SERVICEBUS_CONNECTION_STRING": hub.servicebus_connection_string,
            "DTF_SB_STORAGE_CONNECTION_STRING": hub.storage_connection_string,
        }
    )
    return env


async def run_cli(*args: str, env: dict[str, str]) -> CliResult:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dtf_sb.cli",
        *args,
        env=env,
        cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=COMMAND_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"dtf-sb {' '.join(args)} did not finish within {COMMAND_TIMEOUT} s") from None
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())


@pytest.fixture
def cli(hub: HubConnection) -> Any:
    """``await cli("status", iid, "--json")`` runs dtf-sb against the test's hub."""
    env = hub_env(hub)

    async def run(*args: str, extra_env: dict[str, str] | None = None) -> CliResult:
        return await run_cli(*args, env={**env, **(extra_env or {})})

    return run
