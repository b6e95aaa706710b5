"""Fixtures of the CLI suite: an environment with a hub per test, and a way to run ``dtf-sb``.

The command runs as a user runs it, in a subprocess (``python -m dtf_sb.cli``) configured through
environment variables, while the worker runs in the test's own event loop. The subprocess is
awaited with asyncio so the worker keeps working while the command waits for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dtf_sb.testing.runtime import DevEnvironment, HubConnection

SUITE_DIR = Path(__file__).resolve().parent
REPO = SUITE_DIR.parents[1]
COMMAND_TIMEOUT = 120.0


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture(scope="session")
def dtf_sb_environment(hub_pool: Callable[..., DevEnvironment]) -> DevEnvironment:
    return hub_pool("cli", SUITE_DIR, spare=2)


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
