"""The ``dtf-sb`` command: local emulators, hub management, workers and instance operations.

Exit codes: 0 success; 1 the instance shown ended Failed/Terminated/Canceled; 2 usage or
configuration error (the message says what to change); 3 the named instance or message does not
exist; 4 a service error (connection refused, unauthorized, timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from . import _deadletters, _dev, _hub, _instances, _worker
from ._settings import CliError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dtf-sb",
        description="Durable orchestrations on Azure Service Bus: run emulators, workers and operate a task hub.",
        epilog="Connection settings come from flags or the environment variables DTF_SB_HUB, "
        "DTF_SB_SERVICEBUS_CONNECTION_STRING (or DTF_SB_SERVICEBUS_NAMESPACE), DTF_SB_STORAGE_CONNECTION_STRING "
        "(or DTF_SB_STORAGE_ACCOUNT_URL). Without a connection string, azure-identity's DefaultAzureCredential "
        "is used.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (_dev, _hub, _worker, _instances, _deadletters):
        module.register(sub)
    return parser


def _service_error(exc: BaseException) -> str | None:
    """A one-line message for errors from the Azure SDKs, None for anything else."""
    try:
        from azure.core.exceptions import AzureError
        from azure.servicebus.exceptions import ServiceBusError
    except ImportError:  # pragma: no cover - both are dependencies
        return None
    if isinstance(exc, (ServiceBusError, AzureError)):
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{type(exc).__name__}: {text}"
    return None


def _missing_entity(exc: BaseException, args: argparse.Namespace) -> str | None:
    """Say what to do when the hub's queues are not there (a typo in the hub name, or not created)."""
    try:
        from azure.servicebus.exceptions import MessagingEntityNotFoundError
    except ImportError:  # pragma: no cover - a dependency
        return None
    if not isinstance(exc, MessagingEntityNotFoundError):
        return None
    import os

    hub = getattr(args, "hub", None) or os.environ.get("DTF_SB_HUB") or "?"
    return (
        f"task hub {hub!r} does not exist on this Service Bus namespace (its queues are missing): check "
        f"--hub / DTF_SB_HUB, or create it with `dtf-sb hub create --hub {hub}`"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        return asyncio.run(args.async_handler(args))
    except CliError as exc:
        print(f"dtf-sb: {exc}", file=sys.stderr)
        return exc.code
    except TimeoutError as exc:
        print(f"dtf-sb: timed out: {exc}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        missing = _missing_entity(exc, args)
        if missing is not None:
            print(f"dtf-sb: {missing}", file=sys.stderr)
            return 2
        message = _service_error(exc)
        if message is None:
            from dtf_sb.core.errors import DurableTaskError

            if isinstance(exc, (DurableTaskError, ValueError)):
                print(f"dtf-sb: {exc}", file=sys.stderr)
                return 2
            raise
        print(f"dtf-sb: {message}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
