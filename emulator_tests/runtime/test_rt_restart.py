"""A broker restart under a running worker: connections drop, broker state survives, and the worker
and client reconnect on their own so the instance finishes (runtime spec: reconnect with back-off).

Needs an emulator this test owns, so it runs only on the embedded backend.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rtkit import kinds, of_type, output, status_when, wait_until

from dtf_sb import OrchestrationContext, OrchestrationStatus
from dtf_sb.core.history import EventRaisedEvent, TaskCompletedEvent
from dtf_sb.options import WorkerOptions
from dtf_sb.testing.runtime import dev_environment, worker_for

TIMEOUT = 60


async def stamp(value: str) -> str:
    return f"stamped {value}"


async def survives_restart(ctx: OrchestrationContext, _: Any) -> str:
    before = await ctx.call_activity(stamp, "before")
    value = await ctx.wait_for_external_event("AfterRestart")
    after = await ctx.call_activity(stamp, value)
    return f"{before} / {after}"


async def test_worker_and_client_reconnect_after_a_broker_restart(sb_backend: Any) -> None:
    if sb_backend.name != "embedded":
        pytest.skip(f"restarting the broker needs the embedded emulator; this run targets {sb_backend.name}")
    options = WorkerOptions(receive_timeout=1.0, transient_backoff=0.2, max_backoff=1.0, stop_timeout=10.0)
    async with dev_environment("restart") as env:
        hub = env.hub()
        emulator = env.emulator
        assert emulator is not None
        async with worker_for(hub, [survives_restart], [stamp], worker_options=options):
            async with hub.client() as client:
                iid = await client.schedule_new_orchestration(survives_restart)
                await status_when(client, iid, OrchestrationStatus.RUNNING)

                async def first_result_recorded() -> bool:
                    history = await client.get_orchestration_history(iid)
                    return bool(of_type(history, TaskCompletedEvent))

                await wait_until(first_result_recorded, timeout=TIMEOUT, what="the first activity result")

                await asyncio.to_thread(emulator.stop)
                await asyncio.sleep(0.5)  # the broker is down for a moment, as in a real restart
                await asyncio.to_thread(emulator.restart)

                await client.raise_orchestration_event(iid, "AfterRestart", data="after")
                state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

                assert state.status == OrchestrationStatus.COMPLETED
                assert output(state) == "stamped before / stamped after"
                history = await client.get_orchestration_history(iid)
                assert len(of_type(history, TaskCompletedEvent)) == 2
                assert [e.name for e in of_type(history, EventRaisedEvent)] == ["AfterRestart"]
                assert kinds(history).count("EXECUTION_STARTED") == 1
