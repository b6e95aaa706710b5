"""Fixtures of the reliability suite: one embedded emulator and Azurite in this process, fresh hubs.

The suite stops and restarts the broker, wraps its session-state writes and reads its entity counts,
so it needs the embedded emulator in the test process; worker processes it kills connect to it over
loopback and cannot take it down. Other backends skip the suite with that reason.

Hub queues use a 10 s lock: a worker killed while holding an activity message leaves it locked
until the lock expires (Service Bus ties the lock to the message, not the connection), and the
default 60 s would only make the suite slow, not more truthful. Storm hubs also raise the maximum
delivery count: a storm crashes processes far more often than any deployment, and every crash
counts one delivery against each message its sessions held, so the broker's poison threshold would
otherwise end the experiment rather than test the commit protocol.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dtf_sb.options import TaskHubOptions
from dtf_sb.testing.runtime import DevEnvironment, HubConnection

LOCK_DURATION = 10.0
STORM_MAX_DELIVERY_COUNT = 100
_POOL = 40
_STORM_POOL = 4


def _pool() -> list[TaskHubOptions]:
    hubs = [TaskHubOptions(hub_name=f"rel-{i:03d}", lock_duration=LOCK_DURATION) for i in range(_POOL)]
    hubs += [
        TaskHubOptions(
            hub_name=f"relstorm-{i:03d}",
            lock_duration=LOCK_DURATION,
            max_delivery_count=STORM_MAX_DELIVERY_COUNT,
        )
        for i in range(_STORM_POOL)
    ]
    return hubs


@pytest.fixture(scope="session")
def rel_env(sb_backend: Any) -> Iterator[DevEnvironment]:
    if sb_backend.name != "embedded":
        pytest.skip(
            "the reliability suite stops, restarts and inspects the broker in-process, "
            f"which only the embedded emulator allows (backend: {sb_backend.name})"
        )
    env = DevEnvironment(_pool()).start()
    try:
        yield env
    finally:
        env.close()


_fresh = itertools.count()
_storm = itertools.count()


@pytest.fixture
def hub(rel_env: DevEnvironment) -> HubConnection:
    """A hub no other test of the session used (10 s locks, delivery count 10)."""
    index = next(_fresh)
    if index >= _POOL:
        raise pytest.UsageError(f"the reliability suite declares {_POOL} hubs; raise _POOL")
    return rel_env.hub(f"rel-{index:03d}")


@pytest.fixture
def storm_hub(rel_env: DevEnvironment) -> HubConnection:
    """A hub for kill storms (10 s locks, delivery count raised, see the module docstring)."""
    index = next(_storm)
    if index >= _STORM_POOL:
        raise pytest.UsageError(f"the reliability suite declares {_STORM_POOL} storm hubs")
    return rel_env.hub(f"relstorm-{index:03d}")


@pytest.fixture
def emulator(rel_env: DevEnvironment) -> Any:
    assert rel_env.emulator is not None
    return rel_env.emulator


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
