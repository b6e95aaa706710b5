"""`dtf-sb worker MODULE:ATTR`: run a worker defined in user code until SIGTERM/SIGINT.

ATTR is a ``dtf_sb.Registry`` of orchestrators and activities (the worker is then built from the
connection flags or DTF_SB_* variables, with azure-identity where no connection string is given: what a
container deployment wants), a ``TaskHubWorker``, or a callable (sync or async, no arguments) that
returns one. Containers get
``/health`` (the process serves) and ``/ready`` (the worker has started) over plain HTTP so that
orchestrators such as Container Apps can probe it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from ._settings import CliError, add_connection_flags, connection_settings

__all__ = ["HealthServer", "load_worker", "register"]

_log = logging.getLogger("dtf_sb.cli")


def _import_target(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"expected MODULE:ATTR (e.g. app.worker:worker), got {spec!r}")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise CliError(
            f"cannot import module {module_name!r}: {exc}. Run from your project's root."
        ) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


async def load_worker(spec: str, args: argparse.Namespace | None = None) -> Any:
    from dtf_sb.core.registry import Registry
    from dtf_sb.worker import TaskHubWorker

    obj = _import_target(spec)
    if isinstance(obj, Registry):
        return _worker_from_registry(obj, args if args is not None else argparse.Namespace())
    if not isinstance(obj, TaskHubWorker) and callable(obj):
        obj = obj()
        if inspect.isawaitable(obj):
            obj = await obj
    if not isinstance(obj, TaskHubWorker):
        raise CliError(
            f"{spec} is a {type(obj).__name__}, expected a dtf_sb.Registry, a TaskHubWorker or a function "
            "returning one"
        )
    return obj


def _worker_from_registry(registry: Any, args: argparse.Namespace) -> Any:
    from dtf_sb.options import TaskHubOptions
    from dtf_sb.worker import TaskHubWorker

    settings = connection_settings(args)
    try:
        options = TaskHubOptions(hub_name=settings.hub)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    worker = TaskHubWorker(options, **settings.client_kwargs())
    for name, version, fn in registry.orchestrators():
        worker.add_orchestrator(fn, name=name, version=version)
    for name, fn in registry.activities():
        worker.add_activity(fn, name=name)
    return worker


class HealthServer:
    """GET /health -> 200 while serving; GET /ready -> 200 once ``ready`` is set, else 503."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.ready = False
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            if path == "/health":
                status, body = 200, b'{"status":"healthy"}'
            elif path == "/ready":
                status, body = (200, b'{"status":"ready"}') if self.ready else (503, b'{"status":"starting"}')
            else:
                status, body = 404, b'{"status":"not found"}'
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


async def _run(args: argparse.Namespace) -> int:
    worker = await load_worker(args.target, args)
    health = HealthServer(args.health_host, args.health_port) if args.health_port else None
    if health:
        await health.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await worker.start()
        if health:
            health.ready = True
        print(f"worker {args.target} started; Ctrl-C or SIGTERM stops it gracefully", flush=True)
        await stop.wait()
        print("stopping: finishing in-flight work", flush=True)
        await worker.stop()
    finally:
        if health:
            await health.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "worker",
        help="run a worker defined in your code",
        description="Import MODULE:ATTR (a dtf_sb.Registry, a TaskHubWorker, or a function returning one) "
        "and run it until SIGINT/SIGTERM, then stop gracefully. A Registry is served by a worker built "
        "from the connection flags or environment variables.",
    )
    add_connection_flags(p)
    p.add_argument("target", metavar="MODULE:ATTR")
    p.add_argument("--health-port", type=int, default=None, help="serve GET /health and /ready on this port")
    p.add_argument("--health-host", default="0.0.0.0")
    p.set_defaults(async_handler=_run)
