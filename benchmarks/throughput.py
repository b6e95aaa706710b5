"""End-to-end throughput on the embedded emulator and Azurite (or any endpoints given by env vars).

Three workloads, each on its own hub:
  (a) sequential: one orchestration awaiting N activities one after another; activities per second, and
      the mean per-step time over the first and the last 100 steps (equal if an episode costs O(1),
      growing if it costs O(history));
  (b) fan-out: one orchestration scheduling M activities at once and summing them; seconds to completion;
  (c) concurrent: K orchestrations of three sequential activities each, started together; orchestrations
      per second.

    .venv/bin/python benchmarks/throughput.py                      # the defaults: 500 / 1000 / 500
    .venv/bin/python benchmarks/throughput.py --sequential 100 --fan-out 200 --concurrent 50
    .venv/bin/python benchmarks/throughput.py --extended-sessions 30   # keep sessions and coroutines warm

With DTF_SB_SERVICEBUS_CONNECTION_STRING and DTF_SB_STORAGE_CONNECTION_STRING set, the same workloads run
against those endpoints. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import time
from typing import Any

from dtf_sb import OrchestrationContext, TaskHubOptions, WorkerOptions
from dtf_sb.core.history import TaskScheduledEvent
from dtf_sb.testing.runtime import DevEnvironment


async def increment(x: int) -> int:
    return x + 1


async def sequential(ctx: OrchestrationContext, steps: int) -> int:
    value = 0
    for _ in range(steps):
        value = await ctx.call_activity(increment, value)
    return value


async def fan_out(ctx: OrchestrationContext, width: int) -> int:
    results = await ctx.when_all([ctx.call_activity(increment, i) for i in range(width)])
    return sum(results)


async def three_steps(ctx: OrchestrationContext, start: int) -> int:
    value = start
    for _ in range(3):
        value = await ctx.call_activity(increment, value)
    return value


def _step_times(history: list[Any]) -> list[float]:
    """Seconds between consecutive TaskScheduled events: one full step of a sequential orchestration."""
    stamps = [e.timestamp for e in history if isinstance(e, TaskScheduledEvent)]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    hubs = [TaskHubOptions(hub_name=f"bench-{name}") for name in ("seq", "fan", "conc")]
    worker_options = WorkerOptions(
        max_concurrent_orchestrations=args.max_orchestrations,
        max_concurrent_activities=args.max_activities,
        extended_session_idle_seconds=args.extended_sessions,
        session_hold_seconds=args.session_hold,
        orchestration_accept_concurrency=args.accept_concurrency,
        tracking_accept_concurrency=max(1, args.accept_concurrency // 2),
    )
    env = DevEnvironment(
        hubs,
        servicebus_connection_string=os.environ.get("DTF_SB_SERVICEBUS_CONNECTION_STRING"),
        storage_connection_string=os.environ.get("DTF_SB_STORAGE_CONNECTION_STRING"),
    )
    figures: dict[str, Any] = {"benchmark": "throughput"}
    async with env:
        code = {"orchestrators": [sequential, fan_out, three_steps], "activities": [increment]}

        if args.sequential:
            hub = env.hub("bench-seq")
            async with hub.worker(**code, worker_options=worker_options), hub.client() as client:
                started = time.perf_counter()
                iid = await client.schedule_new_orchestration(sequential, input=args.sequential)
                state = await client.wait_for_orchestration_completion(iid, timeout=args.timeout)
                elapsed = time.perf_counter() - started
                assert state.output == str(args.sequential), state
                steps = _step_times(await client.get_orchestration_history(iid))
            window = min(100, len(steps))
            figures.update(
                sequential_activities=args.sequential,
                sequential_seconds=round(elapsed, 3),
                sequential_activities_per_s=round(args.sequential / elapsed, 1),
                sequential_first100_step_ms=round(1000 * statistics.fmean(steps[:window]), 2),
                sequential_last100_step_ms=round(1000 * statistics.fmean(steps[-window:]), 2),
            )
            print(
                f"(a) {args.sequential} sequential activities: {elapsed:.2f} s, "
                f"{figures['sequential_activities_per_s']} activities/s, step {figures['sequential_first100_step_ms']} ms "
                f"(first {window}) vs {figures['sequential_last100_step_ms']} ms (last {window})",
                flush=True,
            )

        if args.fan_out:
            hub = env.hub("bench-fan")
            async with hub.worker(**code, worker_options=worker_options), hub.client() as client:
                started = time.perf_counter()
                iid = await client.schedule_new_orchestration(fan_out, input=args.fan_out)
                state = await client.wait_for_orchestration_completion(iid, timeout=args.timeout)
                elapsed = time.perf_counter() - started
                expected = sum(range(1, args.fan_out + 1))
                assert state.output == str(expected), state
            figures.update(fan_out_activities=args.fan_out, fan_out_seconds=round(elapsed, 3))
            print(f"(b) fan-out of {args.fan_out} activities: {elapsed:.2f} s", flush=True)

        if args.concurrent:
            hub = env.hub("bench-conc")
            async with hub.worker(**code, worker_options=worker_options) as worker, hub.client() as client:
                started = time.perf_counter()
                ids = await asyncio.gather(
                    *(client.schedule_new_orchestration(three_steps, input=i) for i in range(args.concurrent))
                )
                # one waiter at a time: K concurrent pollers would load the instance store (and this
                # process, which also hosts the worker) more than the orchestrations themselves
                states = [
                    await client.wait_for_orchestration_completion(i, timeout=args.timeout) for i in ids
                ]
                elapsed = time.perf_counter() - started
                assert all(s.output == str(i + 3) for i, s in enumerate(states))
                stats = worker.stats()
            figures.update(
                concurrent_orchestrations=args.concurrent,
                concurrent_seconds=round(elapsed, 3),
                concurrent_orchestrations_per_s=round(args.concurrent / elapsed, 2),
                concurrent_episodes=stats.orchestration_episodes,
                concurrent_sessions_accepted=stats.orchestration_sessions_accepted,
                concurrent_peak_accepts=stats.orchestration_peak_accepts,
                concurrent_tracking_sessions_accepted=stats.tracking_sessions_accepted,
            )
            print(
                f"(c) {args.concurrent} concurrent three-activity orchestrations: {elapsed:.2f} s, "
                f"{figures['concurrent_orchestrations_per_s']} orchestrations/s",
                flush=True,
            )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sequential", type=int, default=500, help="activities in (a); 0 skips it")
    parser.add_argument("--fan-out", type=int, default=1000, help="activities in (b); 0 skips it")
    parser.add_argument("--concurrent", type=int, default=500, help="orchestrations in (c); 0 skips it")
    parser.add_argument("--max-orchestrations", type=int, default=100)
    parser.add_argument("--max-activities", type=int, default=50)
    parser.add_argument("--extended-sessions", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument(
        "--session-hold",
        type=float,
        default=WorkerOptions().session_hold_seconds,
        metavar="SECONDS",
        help="how long a session is kept after an episode for the instance's next message (0 = off)",
    )
    parser.add_argument(
        "--accept-concurrency",
        type=int,
        default=WorkerOptions().orchestration_accept_concurrency,
        help="pending orchestration session accepts per worker (tracking gets half)",
    )
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
