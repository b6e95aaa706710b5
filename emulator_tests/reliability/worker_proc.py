"""A worker process for the kill tests: serves one hub with the reliability workload until told to stop.

The emulator and Azurite live in the parent (test or benchmark) process, so killing this one takes
nothing else down. The parent passes the hub and endpoints as JSON in ``DTF_SB_REL_WORKER`` and the
crash points in ``DTF_SB_FAULTS`` (see ``dtf_sb.servicebus.faults``): at an injected point the
runtime ends this process with ``os._exit(137)``, with no cleanup, as a SIGKILL would. SIGTERM stops
it gracefully (exit 0). The fleet starts it either as a fresh interpreter (``python worker_proc.py``)
or forked from a server that already imported everything (:func:`run`), which makes a crash and
restart cost milliseconds instead of an interpreter start, so a benchmark can reach a thousand kills.

    DTF_SB_REL_WORKER='{"hub": ..., "servicebus": ..., "storage": ...}' python worker_proc.py
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workload import ACTIVITIES, ACTIVITY_LOG_ENV, ORCHESTRATORS

from dtf_sb.options import TaskHubOptions, WorkerOptions
from dtf_sb.servicebus.faults import ENV_VAR
from dtf_sb.worker import TaskHubWorker

CONFIG_ENV = "DTF_SB_REL_WORKER"


def hub_options_from(config: dict[str, Any]) -> TaskHubOptions:
    return TaskHubOptions(
        hub_name=config["hub"],
        lock_duration=float(config.get("lock_duration", 60.0)),
        max_delivery_count=int(config.get("max_delivery_count", 10)),
    )


def worker_options_from(config: dict[str, Any]) -> WorkerOptions:
    # Short waits and back-offs: a crashed peer's work should be picked up within seconds.
    return WorkerOptions(
        receive_timeout=1.0,
        type_missing_backoff=1.0,
        transient_backoff=0.2,
        max_backoff=2.0,
        stop_timeout=5.0,
        max_concurrent_orchestrations=int(config.get("max_concurrent_orchestrations", 20)),
        max_concurrent_activities=int(config.get("max_concurrent_activities", 10)),
    )


def dump_tasks() -> None:
    """Print every asyncio task and where it waits: a supervisor that finds this worker stuck asks for
    this before killing it, so the log says what was stuck."""
    tasks = asyncio.all_tasks()
    print(f"--- {len(tasks)} tasks of worker process {os.getpid()} ---", flush=True)
    for task in tasks:
        where: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                where.append(
                    f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_code.co_name}:{frame.f_lineno}"
                )
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        print(f"task {task.get_name()}: {' -> '.join(where)}", flush=True)


async def serve(config: dict[str, Any]) -> None:
    worker = TaskHubWorker(
        hub_options_from(config),
        servicebus_connection_string=config["servicebus"],
        storage_connection_string=config["storage"],
        worker_options=worker_options_from(config),
    )
    for orchestrator in ORCHESTRATORS:
        worker.add_orchestrator(orchestrator)
    for activity in ACTIVITIES:
        worker.add_activity(activity)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    async with worker:
        await stop.wait()


def run(config: dict[str, Any], env: dict[str, str], log_path: str | None = None) -> None:
    """Entry point of a forked worker (``multiprocessing``): take the environment, then serve.

    The fault injector and the activity log read the environment when the worker starts, so it is
    set here, in the child, before anything else runs.
    """
    for name in (ENV_VAR, ACTIVITY_LOG_ENV):
        os.environ.pop(name, None)
    os.environ.update(env)
    if log_path is not None:
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    main(config)


def main(config: dict[str, Any] | None = None) -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    if config is None:
        config = json.loads(os.environ[CONFIG_ENV])
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
