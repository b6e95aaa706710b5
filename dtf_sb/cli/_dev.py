"""`dtf-sb emulator` and `dtf-sb dev`: local Service Bus (and Blob Storage) without Azure or Docker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

from ._settings import CliError

__all__ = ["register"]


def _emulator_config(args: argparse.Namespace) -> Any:
    """An official-emulator Config.json (path) or the queues of the named hubs."""
    if args.config and args.hubs:
        raise CliError("pass either --config or --hub, not both")
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise CliError(
                f"config file {path} does not exist (an official-emulator Config.json is expected)"
            )
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CliError(f"config file {path} is not valid JSON: {exc}") from None
    from dtf_sb.options import TaskHubOptions
    from dtf_sb.servicebus.entities import emulator_queues

    queues: list[Any] = []
    for hub in args.hubs or ["dtfsb"]:
        try:
            queues.extend(emulator_queues(TaskHubOptions(hub_name=hub)))
        except ValueError as exc:
            raise CliError(str(exc)) from None
    return queues


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _run_emulator(args: argparse.Namespace) -> int:
    from dtf_sb.emulator import Emulator

    config = _emulator_config(args)
    kwargs: dict[str, Any] = {"host": args.host, "port": args.port}
    if args.health_port is not None:
        kwargs["health_port"] = args.health_port
    async with Emulator(config, **kwargs) as emu:
        print(f"Service Bus emulator listening on {args.host}:{emu.port}", flush=True)
        print(f"connection string: {emu.connection_string}", flush=True)
        await _wait_for_signal()
    return 0


async def _run_dev(args: argparse.Namespace) -> int:
    from dtf_sb.emulator import Emulator
    from dtf_sb.testing.azurite import Azurite, AzuriteError

    args.config = None
    config = _emulator_config(args)
    hub = (args.hubs or ["dtfsb"])[0]
    try:
        azurite = Azurite(port=args.blob_port) if args.blob_port else Azurite()
        azurite.start()
    except AzuriteError as exc:
        raise CliError(str(exc)) from None
    try:
        async with Emulator(config, host="127.0.0.1", port=args.port) as emu:
            print("dtf-sb development services are running (Ctrl-C stops them).\n", flush=True)
            print(f"export DTF_SB_HUB='{hub}'")
            print(f"export DTF_SB_SERVICEBUS_CONNECTION_STRING='{emu.connection_string}'")
            print(f"export DTF_SB_STORAGE_CONNECTION_STRING='{azurite.connection_string}'", flush=True)
            await _wait_for_signal()
    finally:
        azurite.stop()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "emulator",
        help="run the embedded Service Bus emulator",
        description="Run the embedded Service Bus emulator until interrupted. Entities come from an "
        "official-emulator Config.json (--config) or from task hub names (--hub, repeatable).",
    )
    p.add_argument("--config", help="path to an official-emulator Config.json")
    p.add_argument("--hub", dest="hubs", action="append", help="create the queues of this task hub")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5672, help="AMQP port (0 picks a free one)")
    p.add_argument("--health-port", type=int, default=None, help="HTTP port of GET /health")
    p.set_defaults(async_handler=_run_emulator)

    d = sub.add_parser(
        "dev",
        help="run the emulator and Azurite for local development",
        description="Start the embedded Service Bus emulator with a hub's queues and Azurite, print the "
        "environment variables to export, and run until interrupted.",
    )
    d.add_argument("--hub", dest="hubs", action="append", help="task hub name (default dtfsb; repeatable)")
    d.add_argument("--port", type=int, default=5672, help="AMQP port (0 picks a free one)")
    d.add_argument("--blob-port", type=int, default=None, help="Azurite blob port (default: a free one)")
    d.set_defaults(async_handler=_run_dev)
