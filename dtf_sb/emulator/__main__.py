"""Run the emulator standalone, like Microsoft's container: ``python -m dtf_sb.emulator``.

    python -m dtf_sb.emulator --config Config.json --port 5672 [--host 127.0.0.1] [--health-port 5300]

It prints the connection string once it listens and serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from .server import DEFAULT_SAS_KEY, DEFAULT_SAS_KEY_NAME, Emulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dtf_sb.emulator",
        description="Embedded Azure Service Bus emulator (AMQP 1.0 over TCP)",
    )
    parser.add_argument("--config", help="official-emulator Config.json with the entities to create")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5672, help="AMQP port (default 5672; 0 picks a free one)")
    parser.add_argument("--health-port", type=int, default=None, help="serve GET /health on this port")
    parser.add_argument("--namespace", default=None, help="namespace name (default from the config)")
    parser.add_argument("--sas-key-name", default=DEFAULT_SAS_KEY_NAME)
    parser.add_argument("--sas-key", default=DEFAULT_SAS_KEY)
    parser.add_argument("--log-level", default="INFO", help="DEBUG shows what every connection does")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    emulator = Emulator(
        args.config,
        host=args.host,
        port=args.port,
        health_port=args.health_port,
        namespace=args.namespace,
        sas_key_name=args.sas_key_name,
        sas_key=args.sas_key,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with emulator:
        print(emulator.connection_string, flush=True)
        if emulator.health_port is not None:
            print(f"health: http://{emulator.host}:{emulator.health_port}/health", flush=True)
        print("Emulator Service is Successfully Up!", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
