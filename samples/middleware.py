"""Middleware: log and time every orchestration episode and activity execution on a worker.

Middleware wraps the built-in execution (first registered runs outermost), as DTF's dispatcher
middleware does. It sees the work item and the result; it must not change what the orchestration
decides, or replay stops being deterministic.

    python samples/middleware.py
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from dtf_sb import OrchestrationContext
from dtf_sb.middleware import DispatchContext

log = logging.getLogger("samples.middleware")
TIMINGS: list[tuple[str, str, float]] = []


async def timing(ctx: DispatchContext, next: Callable[[], Awaitable[None]]) -> None:
    started = time.perf_counter()
    try:
        await next()
    finally:
        TIMINGS.append((ctx.kind, ctx.name, time.perf_counter() - started))


async def logging_middleware(ctx: DispatchContext, next: Callable[[], Awaitable[None]]) -> None:
    log.info("%s %s of %s: %d new event(s)", ctx.kind, ctx.name, ctx.instance_id, len(ctx.new_events))
    await next()


async def double(x: int) -> int:
    return 2 * x


async def doubling(ctx: OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(double, await ctx.call_activity(double, x))


async def main() -> list[tuple[str, str, float]]:
    from _run import run_sample

    TIMINGS.clear()
    await run_sample(
        doubling,
        5,
        activities=[double],
        orchestration_middleware=[timing, logging_middleware],
        activity_middleware=[timing],
    )
    print()
    for kind, name, seconds in TIMINGS:
        print(f"{kind:13} {name:10} {seconds * 1000:8.1f} ms")
    return list(TIMINGS)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    asyncio.run(main())
