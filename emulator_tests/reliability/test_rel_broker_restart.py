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
from relkit import wait_for
from storm import no_faults, run_storm

from dtf_sb import OrchestrationContext, OrchestrationStatus
from dtf_sb.options import WorkerOptions
from dtf_sb.testing.runtime import HubConnection, worker_for


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


_runs: list[str] = []
_proceed = asyncio.Event()


async def slow_stamp(value: str) -> str:
    _runs.append(value)
    await _proceed.wait()
    return f"stamped {value}"


async def one_slow_activity(ctx: OrchestrationContext, _: Any) -> str:
    return await ctx.call_activity(slow_stamp, "x")


async def test_an_activity_that_outlives_its_receiver_across_a_restart_runs_once(
    hub: HubConnection, emulator: Any
) -> None:
    # The broker restarts while the activity runs: the link that received its work message is gone
    # when the activity finishes. Service Bus keeps the lock on the message, so the worker completes
    # it by lock token instead of leaving it locked until the lock runs out and running it again.
    _runs.clear()
    _proceed.clear()
    options = WorkerOptions(receive_timeout=1.0, transient_backoff=0.2, max_backoff=1.0, stop_timeout=10.0)
    async with worker_for(hub, [one_slow_activity], [slow_stamp], worker_options=options):
        async with hub.client() as client:
            iid = await client.schedule_new_orchestration(one_slow_activity)

            async def running() -> bool:
                return len(_runs) == 1

            await wait_for(running, timeout=30, what="the activity to start")
            await asyncio.to_thread(emulator.stop)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(emulator.restart)
            _proceed.set()
            state = await client.wait_for_orchestration_completion(iid, timeout=60)
            assert state.status is OrchestrationStatus.COMPLETED

            async def worker_queue_empty() -> bool:
                counts = await asyncio.to_thread(
                    emulator.broker_call, "entity_counts", hub.options.worker_queue
                )
                return sum(counts) == 0

            # Left locked, the message would come back once its lock ran out (10 s) and run again.
            await wait_for(worker_queue_empty, timeout=60, what="the work message to be settled")
            assert _runs == ["x"]
