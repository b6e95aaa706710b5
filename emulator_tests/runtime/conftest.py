"""Fixtures of the end-to-end orchestration suite: services, a fresh hub per test, workers, a client.

Service Bus comes from the backend chosen with ``--sb-backend`` (``emulator_tests/conftest.py``);
the suite writes a Config.json declaring the queues of a pool of hubs, one per collected test, because
an emulator (ours or Microsoft's) creates its entities at start-up. Blob Storage is Azurite unless
``DTF_SB_STORAGE_CONNECTION_STRING`` names an account (which the azure backend wants).

The pool and the worker/client fixtures (the reusable ones of :mod:`dtf_sb.testing.plugin` under short
names) come from ``emulator_tests/hubpool.py``; this file picks the pool and makes every worker a test
starts also assert, at teardown, that nothing of the test's hub was dead-lettered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from rtkit import dead_letters

from dtf_sb.testing.plugin import WorkerStarter
from dtf_sb.testing.runtime import DevEnvironment, HubConnection


@pytest.fixture(scope="session")
def dtf_sb_environment(hub_pool: Callable[..., DevEnvironment]) -> DevEnvironment:
    return hub_pool("rt", Path(__file__).parent, spare=4)


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
