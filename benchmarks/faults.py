"""Crash storm: worker processes killed at the commit steps, a thousand times, then a full audit.

Starts the embedded Service Bus emulator and Azurite in this process, and a fleet of worker
processes forked from a preloaded server (so a crash and restart costs milliseconds, not an
interpreter start). Each worker is told one fault point of ``dtf_sb.servicebus.faults`` in turn and
ends itself there with ``os._exit(137)`` with the given probability per pass, as a SIGKILL would.
Instances of the reliability suite's mixed workload (activities, a timer, a fan-out, a
sub-orchestration, an external event) are scheduled in waves until the kill budget is spent; then
clean workers drain what is left and the audit checks every instance's result, duplicated history
events (instance store and every session-state write the broker accepted), messages left in any
queue or dead-letter queue, and extra activity runs.

    .venv/bin/python benchmarks/faults.py --kills 1000

Goal: at least 1,000 kills, 0 lost instances, 0 duplicated history events. The last line printed is
one JSON object for tooling; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

RELIABILITY = Path(__file__).resolve().parent.parent / "emulator_tests" / "reliability"
sys.path.insert(0, str(RELIABILITY))

from storm import rotating_points, run_storm  # noqa: E402

from dtf_sb.options import TaskHubOptions  # noqa: E402
from dtf_sb.testing.runtime import DevEnvironment  # noqa: E402


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=1000, help="injected crashes to reach (default 1000)")
    parser.add_argument("--workers", type=int, default=6, help="worker processes at once (default 6)")
    parser.add_argument(
        "--probability", type=float, default=0.5, help="chance of dying at the fault point per pass"
    )
    parser.add_argument("--wave", type=int, default=16, help="instances kept in flight (about)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lock-duration", type=float, default=10.0, help="queue lock, seconds")
    parser.add_argument(
        "--max-delivery-count",
        type=int,
        default=1000,
        help="queue poison threshold; every crash counts a delivery for each message a worker held",
    )
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--exec", action="store_true", help="start each worker as a fresh interpreter")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs here (default: a temp dir)")
    return parser.parse_args()


async def _main(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    hub_options = TaskHubOptions(
        hub_name="faults",
        lock_duration=args.lock_duration,
        max_delivery_count=args.max_delivery_count,
    )
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {line}", file=sys.stderr, flush=True)

    async with DevEnvironment([hub_options]) as env:
        assert env.emulator is not None
        report = await run_storm(
            env.hub("faults"),
            env.emulator,
            workdir=workdir,
            kill_budget=args.kills,
            plan=rotating_points(args.probability, seed=args.seed),
            workers=args.workers,
            wave=args.wave,
            max_delivery_count=args.max_delivery_count,
            drain_timeout=args.drain_timeout,
            forked=not args.exec,
            progress=progress,
        )
    for problem in report.problems()[:50]:
        print("PROBLEM:", problem, file=sys.stderr)
    summary = report.summary()
    return {
        "kills_injected": report.kills,
        "instances_completed": report.completed,
        "lost_instances": len(report.lost_instances) + len(report.wrong_results),
        "duplicated_history_events": len(report.duplicated_history_events),
        "extra_activity_runs": report.extra_activity_runs,
        **{k: v for k, v in summary.items() if k not in ("kills", "completed")},
        "workers": args.workers,
        "probability": args.probability,
    }


def main() -> None:
    args = _parse()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(_main(args, args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="dtf-sb-faults-") as tmp:
            result = asyncio.run(_main(args, Path(tmp)))
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
