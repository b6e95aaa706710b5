"""`dtf-sb hub create|delete|config`: the hub's queues on Azure, or as emulator configuration."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ._output import emit_json
from ._settings import ENV, CliError, add_connection_flags, connection_settings

__all__ = ["register"]


def _options(hub: str | None) -> Any:
    from dtf_sb.options import TaskHubOptions

    hub = hub or os.environ.get(ENV["hub"])
    if not hub:
        raise CliError(f"no task hub given: pass --hub NAME or set {ENV['hub']}")
    try:
        return TaskHubOptions(hub_name=hub)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _is_emulator(connection_string: str | None) -> bool:
    return (
        bool(connection_string)
        and "usedevelopmentemulator=true" in connection_string.replace(" ", "").lower()
    )


async def _create_or_delete(args: argparse.Namespace) -> int:
    settings = connection_settings(args, storage=False)
    if _is_emulator(settings.servicebus_connection_string):
        raise CliError(
            "emulators take their queues from their configuration, not from management calls: start the "
            f"embedded one with `dtf-sb emulator --hub {settings.hub}` (or `dtf-sb dev --hub {settings.hub}`), or "
            f"generate Microsoft's emulator Config.json with `dtf-sb hub config --hub {settings.hub}`"
        )
    options = _options(settings.hub)
    from dtf_sb.servicebus.connection import ServiceBusConnection
    from dtf_sb.servicebus.entities import create_hub_queues, delete_hub_queues

    # Only Service Bus is involved: the instance store creates its containers on first use.
    credential = None
    if not settings.servicebus_connection_string:
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
    connection = ServiceBusConnection(
        connection_string=settings.servicebus_connection_string,
        fully_qualified_namespace=settings.fully_qualified_namespace,
        credential=credential,
    )
    async with connection.admin_client() as admin:
        if args.action == "create":
            names = await create_hub_queues(admin, options, if_not_exists=not args.recreate)
        else:
            names = await delete_hub_queues(admin, options)
    key = "created" if args.action == "create" else "deleted"
    if args.json:
        emit_json({"hub": settings.hub, key: names})
    else:
        none = "(none: all existed)" if args.action == "create" else "(none: none existed)"
        print(f"{key} {len(names)} queue(s) of hub {settings.hub}: {', '.join(names) or none}")
    return 0


async def _config(args: argparse.Namespace) -> int:
    from dtf_sb.servicebus.entities import emulator_config, hub_queue_definitions

    options = _options(args.hub)
    if args.format == "emulator":
        print(json.dumps(emulator_config(options), indent=2))
    else:
        emit_json(hub_queue_definitions(options))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    hub = sub.add_parser("hub", help="create, delete or describe a task hub's queues")
    hs = hub.add_subparsers(dest="hub_command", required=True, metavar="{create,delete,config}")
    for action, text in (
        ("create", "create the hub's queues on Azure"),
        ("delete", "delete the hub's queues"),
    ):
        p = hs.add_parser(action, help=text)
        add_connection_flags(p, storage=False)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if action == "create":
            p.add_argument(
                "--recreate",
                action="store_true",
                help="delete and re-create existing queues (destroys every in-flight instance)",
            )
        p.set_defaults(async_handler=_create_or_delete, action=action)
    c = hs.add_parser("config", help="print the hub's queue definitions")
    c.add_argument("--hub", help=f"task hub name (${ENV['hub']})")
    c.add_argument(
        "--format",
        choices=("emulator", "definitions"),
        default="emulator",
        help="emulator: Microsoft's emulator Config.json; definitions: the queue properties as JSON",
    )
    c.set_defaults(async_handler=_config)
