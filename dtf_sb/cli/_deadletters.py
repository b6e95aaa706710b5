"""`dtf-sb deadletters list|resubmit|purge`: see and recover what the hub dead-lettered."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from ._instances import open_client
from ._output import Progress, emit_json, fmt_duration, print_table
from ._settings import CliError, add_connection_flags

__all__ = ["register"]

_QUEUES = ("orchestrator", "worker", "tracking")


def _queues(args: argparse.Namespace) -> list[str]:
    return [args.queue] if args.queue else list(_QUEUES)


async def _list(args: argparse.Namespace) -> int:
    async with open_client(args) as client:
        letters: list[Any] = []
        for queue in _queues(args):
            letters.extend(await client.list_dead_letters(queue=queue, max_count=args.limit))
    if args.json:
        emit_json(letters)
        return 0
    now = datetime.now(timezone.utc)
    print_table(
        ("queue", "seq", "instance id", "reason", "description", "age", "deliveries"),
        (
            [
                d.queue,
                d.sequence_number,
                d.instance_id,
                d.reason,
                d.description,
                fmt_duration((now - d.enqueued_time).total_seconds()) if d.enqueued_time else None,
                d.delivery_count,
            ]
            for d in letters
        ),
    )
    return 0


async def _show(args: argparse.Namespace) -> int:
    async with open_client(args) as client:
        letters = await client.list_dead_letters(queue=args.queue, max_count=5000)
    match = [d for d in letters if d.sequence_number == args.sequence_number]
    if not match:
        raise CliError(
            f"no dead-lettered message with sequence number {args.sequence_number} in {args.queue}", code=3
        )
    emit_json(match[0])
    return 0


async def _act(args: argparse.Namespace) -> int:
    if not args.all and not args.sequence_numbers:
        raise CliError(f"name the messages to {args.action} (SEQ ...) or pass --all")
    progress = Progress(f"{args.action} dead letters")
    total = 0
    async with open_client(args) as client:
        method = client.resubmit_dead_letters if args.action == "resubmit" else client.purge_dead_letters
        for queue in _queues(args):
            total += await method(
                queue=queue,
                sequence_numbers=None if args.all else args.sequence_numbers,
                on_progress=progress.advance,
            )
    progress.done()
    if args.json:
        emit_json({"action": args.action, "count": total})
    else:
        done = "resubmitted" if args.action == "resubmit" else "purged"
        print(f"{done} {total} dead-lettered message(s)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dl = sub.add_parser("deadletters", help="list, inspect, resubmit or purge dead-lettered messages")
    ds = dl.add_subparsers(dest="dl_command", required=True, metavar="{list,show,resubmit,purge}")

    def common(p: argparse.ArgumentParser, *, queue_required: bool = False) -> None:
        p.add_argument(
            "--queue", choices=_QUEUES, required=queue_required, help="one hub queue (default: all)"
        )
        add_connection_flags(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p = ds.add_parser("list", help="dead-lettered messages with reason, instance and age")
    common(p)
    p.add_argument("--limit", type=int, default=100, help="most messages per queue")
    p.set_defaults(async_handler=_list)
    p = ds.add_parser("show", help="one dead-lettered message in full")
    p.add_argument("sequence_number", type=int, metavar="SEQ")
    common(p, queue_required=True)
    p.set_defaults(async_handler=_show)
    for action, text in (
        ("resubmit", "send dead-lettered messages back to their queue (keeping their session id)"),
        ("purge", "delete dead-lettered messages"),
    ):
        p = ds.add_parser(action, help=text)
        p.add_argument("sequence_numbers", type=int, nargs="*", metavar="SEQ")
        p.add_argument("--all", action="store_true", help=f"{action} every dead-lettered message")
        common(p)
        p.set_defaults(async_handler=_act, action=action)
