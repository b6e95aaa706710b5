"""CPU an idle worker costs, per receive poll interval, on the embedded emulator and Azurite.

A worker with nothing to do still polls: its pending session accepts and its activity receiver run
the SDK's receive loop, which wakes every ``WorkerOptions.receive_poll_interval``. Shorter polls cut
the latency of every message hop (see ``throughput.py``) and cost this. The figure is the process's
CPU time (worker plus the in-process emulator) over a quiet window, as a share of one core; the first
interval given is the baseline the others are compared with.

    .venv/bin/python benchmarks/idle_cpu.py                       # 0.05 (baseline), 0.02, 0.01
    .venv/bin/python benchmarks/idle_cpu.py --intervals 0.2 0.05 --seconds 30

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

from dtf_sb import OrchestrationContext, TaskHubOptions, WorkerOptions
from dtf_sb.testing.runtime import DevEnvironment


async def noop(ctx: OrchestrationContext, _: Any) -> None:
    return None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def idle_share(env: DevEnvironment, hub_name: str, interval: float, seconds: float) -> float:
    hub = env.hub(hub_name)
    options = WorkerOptions(receive_poll_interval=interval)
    async with hub.worker(orchestrators=[noop], worker_options=options):
        await asyncio.sleep(3.0)  # let the accepts and the activity receiver open
        cpu, wall = _cpu_seconds(), time.perf_counter()
        await asyncio.sleep(seconds)
        return (_cpu_seconds() - cpu) / (time.perf_counter() - wall)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    names = [f"idle-{i}" for i in range(len(args.intervals))]
    figures: dict[str, Any] = {"benchmark": "idle_cpu", "seconds": args.seconds}
    async with DevEnvironment([TaskHubOptions(hub_name=n) for n in names]) as env:
        shares = [
            await idle_share(env, n, i, args.seconds) for n, i in zip(names, args.intervals, strict=True)
        ]
    baseline = shares[0]
    for interval, share in zip(args.intervals, shares, strict=True):
        ratio = share / baseline if baseline else float("inf")
        print(f"receive_poll_interval {interval:g} s: {100 * share:.1f} % of a core ({ratio:.2f}x baseline)")
        figures[f"idle_cpu_percent_{interval:g}"] = round(100 * share, 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.05, 0.02, 0.01])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each quiet window")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
