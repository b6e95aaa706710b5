"""Kill storms: the mixed workload on worker processes that crash at the commit steps, then the audit.

A :class:`WorkerFleet` keeps ``size`` worker processes (``worker_proc.py``) alive: each one gets the
next crash plan from the fleet (a ``DTF_SB_FAULTS`` spec naming one fault point, so every exit is
attributable to a step), and a process that exits is replaced at once. :func:`run_storm` schedules
waves of ``mixed`` instances while the fleet burns its kill budget, lets clean workers drain the
rest, and then audits everything the issue asks for: results, duplicated history events (instance
store and every session-state write the broker accepted), messages left in any queue or dead-letter
queue, and extra activity runs. The slow test and ``benchmarks/faults.py`` both run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import worker_proc
from relkit import (
    BrokerJournal,
    SessionStateLog,
    StateWrite,
    activity_runs,
    duplicate_events,
    leftover_messages,
    regressed_writes,
    session_events,
    wait_for,
)
from workload import ACTIVITY_LOG_ENV, EVENT_NAME, event_data, expected_mixed, mixed

from dtf_sb.core.codec import decode_payload
from dtf_sb.core.history import SubOrchestrationInstanceCreatedEvent
from dtf_sb.core.state import OrchestrationStatus
from dtf_sb.servicebus.faults import CRASH_EXIT_CODE, ENV_VAR, FAULT_POINTS
from dtf_sb.testing.emulator import EmulatorThread
from dtf_sb.testing.runtime import HubConnection

__all__ = [
    "StormReport",
    "WorkerFleet",
    "each_point_once",
    "no_faults",
    "rotating_points",
    "run_storm",
]

WORKER_SCRIPT = Path(__file__).resolve().parent / "worker_proc.py"
CONFIG_ENV = "DTF_SB_REL_WORKER"
ACTIVITIES_PER_INSTANCE = 6  # 1 + fan-out of 3 in the parent, 2 in the child


def each_point_once() -> Iterator[str | None]:
    """One process per fault point, dying the first time it reaches it; then clean workers."""
    yield from (f"{point}:1.0" for point in FAULT_POINTS)
    while True:
        yield None


def rotating_points(probability: float, seed: int) -> Iterator[str | None]:
    """Fault points in turn, each process dying at its point with ``probability`` per pass."""
    rng = random.Random(seed)
    for point in itertools.cycle(FAULT_POINTS):
        yield f"{point}:{probability}:{rng.randrange(1 << 30)}"


def no_faults() -> Iterator[str | None]:
    """Clean workers only (for storms of another kind, such as broker restarts)."""
    while True:
        yield None


def _point_of(spec: str | None) -> str | None:
    return spec.split(":", 1)[0] if spec else None


class _Forked:
    """A ``multiprocessing.Process`` seen through the three ``Popen`` methods the fleet uses."""

    def __init__(self, process: Any) -> None:
        self._process = process

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int | None:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("worker", timeout or 0.0)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, sig)

    def kill(self) -> None:
        self._process.kill()


@dataclass
class _Slot:
    process: Any = None
    spec: str | None = None
    watchdog: bool = False


def _fork_server() -> Any:
    """A forkserver context whose server has already imported the worker and the Azure SDKs."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["worker_proc", "workload", "dtf_sb.worker", "azure.servicebus.aio"])
    return context


class WorkerFleet:
    """Worker processes for one hub, replaced as they die, with a kill budget.

    ``plan`` yields each new process's ``DTF_SB_FAULTS`` spec (None: no faults). Once ``kill_budget``
    injected crashes happened, new processes start clean so the remaining work can drain. With
    ``forked`` the processes fork from a preloaded server instead of starting an interpreter each.
    """

    def __init__(
        self,
        hub: HubConnection,
        *,
        workdir: Path,
        size: int,
        plan: Iterator[str | None],
        kill_budget: int,
        activity_log: Path,
        max_delivery_count: int,
        forked: bool = False,
    ) -> None:
        self._hub = hub
        self._workdir = workdir
        self._plan = plan
        self._budget = kill_budget
        self._activity_log = activity_log
        self._max_delivery_count = max_delivery_count
        self._slots = [_Slot() for _ in range(size)]
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.kills = 0
        self.kills_by_point: Counter[str] = Counter()
        self.unexpected_exits: list[str] = []
        self.spawned = 0
        self.stall_restarts = 0
        self._log_path = workdir / "workers.log"
        self._stderr = open(self._log_path, "ab")
        self._context = _fork_server() if forked else None

    @property
    def budget_spent(self) -> bool:
        return self.kills >= self._budget

    def _spawn(self, slot: _Slot) -> None:
        spec = None if self.budget_spent else next(self._plan)
        options = self._hub.options
        config = {
            "hub": options.hub_name,
            "lock_duration": options.lock_duration,
            "max_delivery_count": self._max_delivery_count,
            "servicebus": self._hub.servicebus_connection_string,
            "storage": self._hub.storage_connection_string,
        }
        env = {ACTIVITY_LOG_ENV: str(self._activity_log)}
        if spec:
            env[ENV_VAR] = spec
        slot.spec = spec
        if self._context is not None:
            process = self._context.Process(
                target=worker_proc.run, args=(config, env, str(self._log_path)), daemon=True
            )
            process.start()
            slot.process = _Forked(process)
        else:
            full_env = dict(os.environ)
            full_env.pop(ENV_VAR, None)
            full_env.update(env)
            full_env[CONFIG_ENV] = json.dumps(config)
            slot.process = subprocess.Popen(
                [sys.executable, str(WORKER_SCRIPT)],
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=self._stderr,
                stderr=self._stderr,
            )
        self.spawned += 1

    def _reap(self, slot: _Slot) -> bool:
        """Account for a process that exited; True when the slot is free."""
        process = slot.process
        if process is None:
            return True
        code = process.poll()
        if code is None:
            return False
        point = _point_of(slot.spec)
        if code == CRASH_EXIT_CODE and point is not None:
            self.kills += 1
            self.kills_by_point[point] += 1
        elif not (code == 0 and self._stopping) and not slot.watchdog:
            self.unexpected_exits.append(f"exit {code} (faults: {slot.spec})")
        slot.process = None
        slot.watchdog = False
        return True

    async def _supervise(self) -> None:
        while not self._stopping:
            for slot in self._slots:
                if self._reap(slot) and not self._stopping:
                    self._spawn(slot)
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="worker-fleet")

    async def kill_all(self) -> None:
        """SIGKILL every live worker after asking each for its stacks (into the workers' log); the
        supervisor replaces them. These are not counted as injected kills."""
        self.stall_restarts += 1
        live = [s for s in self._slots if s.process is not None and s.process.poll() is None]
        for slot in live:
            slot.process.send_signal(signal.SIGUSR1)
        await asyncio.sleep(1.0)
        for slot in live:
            if slot.process is not None and slot.process.poll() is None:
                slot.watchdog = True
                slot.process.kill()

    def live_specs(self) -> list[str | None]:
        return [s.spec for s in self._slots if s.process is not None]

    async def stop(self, *, timeout: float = 30.0) -> None:
        """SIGTERM every process (a graceful stop), SIGKILL what is still alive after ``timeout``."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for slot in self._slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for slot in self._slots:
            process = slot.process
            if process is not None:
                try:
                    await asyncio.to_thread(process.wait, max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    await asyncio.to_thread(process.wait)
            self._reap(slot)
        self._stderr.close()


@dataclass
class StormReport:
    """What a storm did and what the audit found; the goal is zeros everywhere but the first lines."""

    kills: int = 0
    kills_by_point: dict[str, int] = field(default_factory=dict)
    worker_processes: int = 0
    instances: int = 0
    completed: int = 0
    lost_instances: list[str] = field(default_factory=list)
    wrong_results: list[str] = field(default_factory=list)
    duplicated_history_events: list[str] = field(default_factory=list)
    regressed_session_states: list[str] = field(default_factory=list)
    extra_activity_runs: int = 0
    missing_activity_runs: int = 0
    leftover_messages: dict[str, Any] = field(default_factory=dict)
    unexpected_exits: list[str] = field(default_factory=list)
    session_state_writes: int = 0
    stall_restarts: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "kills": self.kills,
            "kills_by_point": self.kills_by_point,
            "worker_processes": self.worker_processes,
            "instances": self.instances,
            "completed": self.completed,
            "lost_instances": len(self.lost_instances),
            "wrong_results": len(self.wrong_results),
            "duplicated_history_events": len(self.duplicated_history_events),
            "regressed_session_states": len(self.regressed_session_states),
            "extra_activity_runs": self.extra_activity_runs,
            "missing_activity_runs": self.missing_activity_runs,
            "leftover_messages": {q: list(c) for q, c in self.leftover_messages.items()},
            "unexpected_exits": len(self.unexpected_exits),
            "session_state_writes": self.session_state_writes,
            "stall_restarts": self.stall_restarts,
            "seconds": round(self.seconds, 1),
        }

    def problems(self) -> list[str]:
        """Everything that contradicts the commit protocol's guarantees, described."""
        out = [f"lost: {i}" for i in self.lost_instances]
        out += [f"wrong result: {w}" for w in self.wrong_results]
        out += [f"duplicated: {d}" for d in self.duplicated_history_events]
        out += [f"history erased by a stale write: {r}" for r in self.regressed_session_states]
        out += [f"left in {q}: {c}" for q, c in self.leftover_messages.items()]
        out += [f"worker died unexpectedly: {e}" for e in self.unexpected_exits]
        if self.missing_activity_runs:
            out.append(f"{self.missing_activity_runs} activities never ran")
        if self.stall_restarts:
            # Work only moved on after the fleet was killed: some worker held it without progressing.
            out.append(f"workers stalled and were killed {self.stall_restarts} time(s)")
        return out


def _broker_picture(emulator: EmulatorThread, hub: HubConnection) -> list[str]:
    """Every message still on the hub's queues, with its lock and schedule, for a stall report."""
    now = time.time()
    lines: list[str] = []
    for queue in (hub.options.orchestrator_queue, hub.options.worker_queue, hub.options.tracking_queue):
        for m in emulator.broker_call("peek", queue, 1, 200):
            locked = f"locked {m.locked_until - now:+.0f} s" if m.locked_until else "unlocked"
            due = f" due {m.scheduled_enqueue_time - now:+.0f} s" if m.scheduled_enqueue_time else ""
            lines.append(
                f"  {queue} session={m.session_id} id={m.message_id} state={m.state.name} "
                f"deliveries={m.delivery_count} {locked}{due}"
            )
    return lines


async def _status(client: Any, instance_id: str) -> OrchestrationStatus | None:
    state = await client.get_orchestration_state(instance_id)
    return state.status if state is not None else None


async def run_storm(
    hub: HubConnection,
    emulator: EmulatorThread,
    *,
    workdir: Path,
    kill_budget: int,
    plan: Iterator[str | None],
    workers: int = 3,
    wave: int = 10,
    max_instances: int | None = None,
    min_instances: int = 1,
    max_delivery_count: int = 10,
    drain_timeout: float = 300.0,
    during: Callable[[], Awaitable[None]] | None = None,
    forked: bool = False,
    stall_timeout: float = 90.0,
    progress: Callable[[str], None] | None = None,
) -> StormReport:
    """Run instances of ``mixed`` until the fleet spent its kill budget, drain, then audit.

    ``during`` (for example broker restarts) is awaited once scheduling is over, while the
    workload is still in flight; the drain starts when it returns. When no instance finishes for
    ``stall_timeout`` seconds while some are open, every worker is SIGKILLed and replaced (as a
    liveness probe would); the report counts these as ``stall_restarts``.
    """
    started = time.monotonic()
    activity_log = workdir / "activities.log"
    states = SessionStateLog.install(emulator, hub.options.orchestrator_queue)
    journal = BrokerJournal.install(emulator, hub.options.orchestrator_queue, hub.options.worker_queue)
    fleet = WorkerFleet(
        hub,
        workdir=workdir,
        size=workers,
        plan=plan,
        kill_budget=kill_budget,
        activity_log=activity_log,
        max_delivery_count=max_delivery_count,
        forked=forked,
    )
    report = StormReport()
    inputs: dict[str, int] = {}
    finished: set[str] = set()
    fleet.start()
    try:
        async with hub.client() as client:

            async def schedule(count: int) -> None:
                for _ in range(count):
                    n = len(inputs)
                    instance_id = f"storm-{n:05d}"
                    await client.schedule_new_orchestration(mixed, input=n, instance_id=instance_id)
                    await client.raise_orchestration_event(instance_id, EVENT_NAME, data=event_data(n))
                    inputs[instance_id] = n

            last_progress = time.monotonic()

            async def poll_finished() -> None:
                nonlocal last_progress
                open_ids = [i for i in inputs if i not in finished]
                statuses = await asyncio.gather(*(_status(client, i) for i in open_ids))
                for instance_id, status in zip(open_ids, statuses, strict=True):
                    if status is not None and status.is_terminal:
                        finished.add(instance_id)
                        last_progress = time.monotonic()
                if len(finished) < len(inputs) and time.monotonic() - last_progress > stall_timeout:
                    # A liveness probe's answer to a worker that holds work without progressing.
                    # Always told (to the test's output when no progress callback is given).
                    say = progress or print
                    stuck = [i for i in inputs if i not in finished][:5]
                    say(
                        f"no instance finished for {stall_timeout:.0f} s (open: {', '.join(stuck)}): "
                        "killing every worker"
                    )
                    for line in await asyncio.to_thread(_broker_picture, emulator, hub):
                        say(line)
                    await fleet.kill_all()
                    last_progress = time.monotonic()

            last_note = 0.0
            while (not fleet.budget_spent or len(inputs) < min_instances) and (
                max_instances is None or len(inputs) < max_instances
            ):
                await poll_finished()
                in_flight = len(inputs) - len(finished)
                if in_flight < wave:
                    room = wave * 2 - in_flight
                    if max_instances is not None:
                        room = min(room, max_instances - len(inputs))
                    await schedule(room)
                if progress is not None and time.monotonic() - last_note > 10:
                    last_note = time.monotonic()
                    progress(
                        f"kills={fleet.kills} instances={len(inputs)} finished={len(finished)} "
                        f"processes={fleet.spawned}"
                    )
                await asyncio.sleep(0.5)

            if during is not None:
                await during()

            async def all_finished() -> bool:
                await poll_finished()
                if progress is not None:
                    progress(f"draining: finished {len(finished)}/{len(inputs)}, kills={fleet.kills}")
                return len(finished) == len(inputs)

            with contextlib.suppress(AssertionError):
                await wait_for(
                    all_finished, timeout=drain_timeout, what="every instance to finish", interval=2
                )

            async def queues_empty() -> bool:
                return not await asyncio.to_thread(leftover_messages, emulator, hub.options)

            with contextlib.suppress(AssertionError):
                await wait_for(queues_empty, timeout=60, what="the hub's queues to empty", interval=1)
            await fleet.stop()
            report.leftover_messages = await asyncio.to_thread(leftover_messages, emulator, hub.options)
            await _audit(client, inputs, report, activity_log)
    finally:
        await fleet.stop()
        journal.uninstall()
        states.uninstall()
    writes = states.snapshot()
    _write_post_mortems(report, journal, writes, workdir)
    report.session_state_writes = len(writes)
    report.regressed_session_states = regressed_writes(writes)
    for write in writes:
        if write.data is None:
            continue
        events, chunked = session_events(write.data)
        if chunked:
            continue  # the workload's histories never reach a chunk; only whole histories are checked
        for dup in duplicate_events(events):
            report.duplicated_history_events.append(f"session state of {write.session_id}: {dup}")
    report.kills = fleet.kills
    report.kills_by_point = dict(fleet.kills_by_point)
    report.worker_processes = fleet.spawned
    report.stall_restarts = fleet.stall_restarts
    report.unexpected_exits = fleet.unexpected_exits
    report.seconds = time.monotonic() - started
    return report


def _write_post_mortems(
    report: StormReport, journal: BrokerJournal, writes: list[StateWrite], workdir: Path
) -> None:
    """For each lost instance, the broker's account of it (and its children) and every session state
    written for it, to a file."""
    for i, entry in enumerate(report.lost_instances):
        instance_id = entry.split(" ", 1)[0]
        keys = sorted({key for _, key, _, _ in journal.entries if key.startswith(instance_id.lower())})
        path = workdir / f"lost-{instance_id}.txt"
        lines: list[str] = []
        for key in keys:
            lines.append(f"== {key}")
            lines += journal.story(key)
            for n, write in enumerate(w for w in writes if w.session_id.lower() == key):
                if write.data is None:
                    lines.append(f"state write {n}: cleared")
                    continue
                events, chunked = session_events(write.data)
                described = ", ".join(map(_describe, events))
                lines.append(f"state write {n}: {write.size} bytes, {chunked} chunked, {described}")
        path.write_text("\n".join(lines) + "\n")
        report.lost_instances[i] = f"{entry}, broker journal in {path}"


def _describe(event: Any) -> str:
    ident = next(
        (v for a in ("task_scheduled_id", "timer_id") if (v := getattr(event, a, None)) is not None),
        event.event_id,
    )
    return f"{type(event).__name__.removesuffix('Event')}#{ident}"


async def _audit(client: Any, inputs: dict[str, int], report: StormReport, activity_log: Path) -> None:
    report.instances = len(inputs)
    expected_activities: set[str] = set()
    for instance_id, n in inputs.items():
        state = await client.get_orchestration_state(instance_id)
        if state is None or state.status is not OrchestrationStatus.COMPLETED:
            status = state.status.name if state is not None else "unknown"
            report.lost_instances.append(f"{instance_id} ({status})")
            continue
        report.completed += 1
        result = decode_payload(state.output)
        if result != expected_mixed(n):
            report.wrong_results.append(f"{instance_id}: {result!r} != {expected_mixed(n)!r}")
        history = list(await client.get_orchestration_history(instance_id))
        children = [e.instance_id for e in history if isinstance(e, SubOrchestrationInstanceCreatedEvent)]
        for dup in duplicate_events(history):
            report.duplicated_history_events.append(f"instance store of {instance_id}: {dup}")
        expected_activities.add(instance_id)
        for child in children:
            expected_activities.add(child)
            for dup in duplicate_events(await client.get_orchestration_history(child)):
                report.duplicated_history_events.append(f"instance store of {child}: {dup}")
    runs = activity_runs(activity_log)
    counted = {key: count for key, count in runs.items() if key[0] in expected_activities}
    report.extra_activity_runs = sum(counted.values()) - len(counted)
    report.missing_activity_runs = max(0, report.completed * ACTIVITIES_PER_INSTANCE - len(counted))
