"""The mixed workload the reliability suite runs under fire, shared by tests, worker processes and
benchmarks/faults.py.

One ``mixed`` instance touches every kind of message the runtime sends: activities, a durable timer,
a fan-out, a sub-orchestration (itself a fan-out) and an external event. Its result is a pure
function of its input, so a check after any number of crashes can say whether each instance ended
exactly right. Every activity run appends one line (instance, task id, process id) to the file named
by ``DTF_SB_REL_ACTIVITY_LOG``: activities run at least once, and the log is how extra runs are
counted.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from dtf_sb.core.activity import ActivityContext
from dtf_sb.core.context import OrchestrationContext

__all__ = [
    "ACTIVITIES",
    "ACTIVITY_LOG_ENV",
    "EVENT_NAME",
    "ORCHESTRATORS",
    "child_sum",
    "event_data",
    "expected_mixed",
    "mixed",
    "square",
]

ACTIVITY_LOG_ENV = "DTF_SB_REL_ACTIVITY_LOG"
EVENT_NAME = "go"
FAN_OUT = 3


def _log_run(ctx: ActivityContext) -> None:
    path = os.environ.get(ACTIVITY_LOG_ENV)
    if not path:
        return
    line = f"{ctx.orchestration_id}\t{ctx.task_id}\t{os.getpid()}\n".encode()
    # One O_APPEND write per run: lines of concurrent runs (threads, processes) never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def square(ctx: ActivityContext, x: int) -> int:
    _log_run(ctx)
    return x * x


async def child_sum(ctx: OrchestrationContext, values: list[int]) -> int:
    squares = await ctx.when_all([ctx.call_activity(square, v) for v in values])
    return sum(squares)


def event_data(n: int) -> str:
    return f"go-{n}"


async def mixed(ctx: OrchestrationContext, n: int) -> dict[str, Any]:
    first = await ctx.call_activity(square, n)
    await ctx.create_timer(timedelta(seconds=1))
    fan = await ctx.when_all([ctx.call_activity(square, n + i) for i in range(1, FAN_OUT + 1)])
    child = await ctx.call_sub_orchestrator(child_sum, [n, n + 1])
    signal = await ctx.wait_for_external_event(EVENT_NAME)
    return {"first": first, "fan": fan, "child": child, "signal": signal}


def expected_mixed(n: int) -> dict[str, Any]:
    return {
        "first": n * n,
        "fan": [(n + i) ** 2 for i in range(1, FAN_OUT + 1)],
        "child": n * n + (n + 1) ** 2,
        "signal": event_data(n),
    }


ORCHESTRATORS = (mixed, child_sum)
ACTIVITIES = (square,)
