"""Runs one sample end to end and prints its result and a readable history.

Without configuration it starts the embedded Service Bus emulator and Azurite in-process (Azurite from
node_modules: run scripts/bootstrap.sh once). With DTF_SB_SERVICEBUS_CONNECTION_STRING and
DTF_SB_STORAGE_CONNECTION_STRING set, it uses those endpoints instead (Azure, or Microsoft's emulator)
and creates the hub's queues there first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from dtf_sb import OrchestrationState, TaskHubOptions
from dtf_sb.cli._output import fmt_duration, fmt_time, print_table
from dtf_sb.cli._timeline import timeline
from dtf_sb.testing.runtime import DevEnvironment

Interaction = Callable[[Any, str], Awaitable[None]]


async def run_sample(
    orchestrator: Callable[..., Any],
    input: Any = None,
    *,
    orchestrators: Sequence[Callable[..., Any]] = (),
    activities: Sequence[Callable[..., Any]] = (),
    orchestration_middleware: Sequence[Any] = (),
    activity_middleware: Sequence[Any] = (),
    options: TaskHubOptions | None = None,
    interact: Interaction | None = None,
    timeout: float = 120.0,
    quiet: bool = False,
) -> OrchestrationState:
    """Start ``orchestrator`` with ``input`` on a worker serving the given code; return its final state."""
    hub = options or TaskHubOptions(hub_name="samples")
    env = DevEnvironment(
        [hub],
        servicebus_connection_string=os.environ.get("DTF_SB_SERVICEBUS_CONNECTION_STRING"),
        storage_connection_string=os.environ.get("DTF_SB_STORAGE_CONNECTION_STRING"),
    )
    async with env:
        conn = env.hub(hub.hub_name)
        worker = conn.worker(
            orchestrators=[orchestrator, *orchestrators],
            activities=activities,
            orchestration_middleware=orchestration_middleware,
            activity_middleware=activity_middleware,
        )
        async with worker, conn.client() as client:
            instance_id = await client.schedule_new_orchestration(orchestrator, input=input)
            if interact is not None:
                await interact(client, instance_id)
            state = await client.wait_for_orchestration_completion(instance_id, timeout=timeout)
            history = await client.get_orchestration_history(instance_id)
    if not quiet:
        print(f"\n{orchestrator.__name__} ({instance_id}): {state.status.name}")
        output = state.output
        if output is not None and len(output) > 300:
            output = f"{output[:300]}... ({len(output)} characters)"
        print(f"output: {output}\n")
        print_table(
            ("time", "+offset", "event", "id", "detail", "took"),
            (
                [
                    fmt_time(r.timestamp),
                    fmt_duration(r.offset_seconds),
                    r.event,
                    r.event_id,
                    r.detail,
                    fmt_duration(r.duration_seconds) if r.duration_seconds is not None else "",
                ]
                for r in timeline(history)
            ),
        )
    return state


def output_of(state: OrchestrationState) -> Any:
    """The orchestration's result as a Python value."""
    return None if state.output is None else json.loads(state.output)
