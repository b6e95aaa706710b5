"""Fixtures of the Service Bus conformance suite.

One endpoint serves the whole session (entities from ``Config.json`` beside this file). Tests keep
their entity clean when they pass; when one fails, its queue is purged so the other SDK flavour, which
shares the queue, starts from an empty entity instead of failing for an unrelated reason.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sbkit import Sdk, purge_queue

CONFIG = Path(__file__).with_name("Config.json")
HANG_LIMIT_SECONDS = float(os.environ.get("DTF_SB_HANG_LIMIT", "180"))


@pytest.fixture(autouse=True)
def hang_watchdog(request: pytest.FixtureRequest) -> Iterator[None]:
    """Turn a hung test into a failed run showing every thread's stack, instead of a silent CI timeout.

    A broker that never answers leaves the SDK waiting in places (a session attach, a sync receive in
    a worker thread) that no asyncio timeout can cancel, so the last resort is ending the process.
    """
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def fire() -> None:
        stacks = "\n".join(
            f"--- thread {ident}\n{''.join(traceback.format_stack(frame))}"
            for ident, frame in sys._current_frames().items()
        )
        with capture.global_and_fixture_disabled():
            sys.stderr.write(
                f"\n{request.node.nodeid} still running after {HANG_LIMIT_SECONDS} s; thread stacks:\n{stacks}\n"
            )
            sys.stderr.flush()
        os._exit(3)

    timer = threading.Timer(HANG_LIMIT_SECONDS, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def backend_name(sb_backend) -> str:  # type: ignore[no-untyped-def]
    return sb_backend.name


@pytest.fixture(scope="session")
def conn_str(sb_backend) -> str:  # type: ignore[no-untyped-def]
    return sb_backend.endpoint(CONFIG)


@pytest.fixture(params=["sync", "async"])
def sdk(request: pytest.FixtureRequest, conn_str: str) -> Sdk:
    """The SDK flavour under test; every test runs once with each."""
    return Sdk(request.param, conn_str)


@pytest.fixture
def entity(request: pytest.FixtureRequest, conn_str: str) -> Iterator[Callable[..., str]]:
    """Names the queue a test uses and purges it if the test fails."""
    used: list[tuple[str, bool]] = []

    def use(name: str, *, sessions: bool = False) -> str:
        used.append((name, sessions))
        return name

    yield use
    if request.node.stash.get(_FAILED, False):
        for name, sessions in used:
            try:
                purge_queue(conn_str, name, sessions=sessions)
            except Exception as exc:
                print(f"purge of {name} after failure did not finish: {exc!r}")
