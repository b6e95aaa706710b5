"""Broker restarts under load: the emulator drops every connection and comes back with its state.

Worker processes run the mixed workload while the embedded emulator is stopped and restarted (the
same port, every queue, session and lock it held kept, as a Service Bus node failover would).
Workers must notice, back off, reconnect and carry on: every instance completes with the right
result, no history event is applied twice and nothing is left in any queue. In-flight work may
repeat (extra activity runs are reported, not failed).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from storm import no_faults, run_storm

from dtf_sb.testing.runtime import HubConnection


def _restarts(emulator: Any, *, count: int, up: float, down: float) -> Any:
    async def run() -> None:
        for _ in range(count):
            await asyncio.sleep(up)
            await asyncio.to_thread(emulator.stop)
            await asyncio.sleep(down)
            await asyncio.to_thread(emulator.restart)

    return run


@pytest.mark.parametrize(
    ("restarts", "instances"),
    [pytest.param(2, 8, id="2-restarts"), pytest.param(6, 40, id="6-restarts", marks=pytest.mark.slow)],
)
async def test_workers_reconnect_after_broker_restarts_and_every_instance_completes(
    hub: HubConnection, emulator: Any, workdir: Path, restarts: int, instances: int
) -> None:
    report = await run_storm(
        hub,
        emulator,
        workdir=workdir,
        kill_budget=0,
        plan=no_faults(),
        workers=2,
        wave=instances,
        min_instances=instances,
        max_instances=instances,
        drain_timeout=300,
        during=_restarts(emulator, count=restarts, up=3.0, down=2.0),
    )
    print("broker restart report:", json.dumps(report.summary(), sort_keys=True))
    assert report.instances == instances
    assert report.completed == instances
    assert not report.problems(), "\n".join(report.problems())
