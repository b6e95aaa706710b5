"""Instance commands: start, status, history, list, raise, terminate, suspend, resume, rewind, purge."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from ._output import Progress, emit_json, fmt_duration, fmt_time, print_table
from ._settings import CliError, add_connection_flags, connection_settings
from ._timeline import timeline

__all__ = ["open_client", "register"]


def open_client(args: argparse.Namespace) -> Any:
    settings = connection_settings(args)
    from dtf_sb.client import TaskHubClient
    from dtf_sb.options import TaskHubOptions

    try:
        options = TaskHubOptions(hub_name=settings.hub)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return TaskHubClient(options, **settings.client_kwargs())


def _json_arg(text: str | None, flag: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{flag} must be JSON (quote strings: --input '\"Tokyo\"'): {exc}") from None


def _time_arg(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"{flag} must be an ISO-8601 time such as 2026-11-28T10:00:00Z, got {text!r}"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _status_arg(values: list[str] | None) -> list[Any] | None:
    if not values:
        return None
    from dtf_sb.core.status import OrchestrationStatus

    out = []
    for v in values:
        for part in v.split(","):
            key = part.strip().upper().replace("-", "_")
            if key not in OrchestrationStatus.__members__:
                names = ", ".join(s.name.lower() for s in OrchestrationStatus)
                raise CliError(f"unknown status {part!r}; use one of: {names}")
            out.append(OrchestrationStatus[key])
    return out


def _state_row(state: Any) -> list[Any]:
    return [
        state.orchestration_instance.instance_id,
        state.name,
        state.status.name,
        state.created_time,
        state.last_updated_time,
        state.orchestration_instance.execution_id,
    ]


_STATE_HEADERS = ("instance id", "name", "status", "created", "updated", "execution")


async def _not_found(client: Any, instance_id: str) -> CliError:
    return CliError(
        f"no instance {instance_id!r} in hub {client.options.hub_name!r} (check the id and --hub / DTF_SB_HUB; "
        "`dtf-sb list` shows the instances)",
        code=3,
    )


async def _start(args: argparse.Namespace, client: Any) -> int:
    tags = {}
    for tag in args.tag or []:
        key, sep, value = tag.partition("=")
        if not sep:
            raise CliError(f"--tag takes KEY=VALUE, got {tag!r}")
        tags[key] = value
    instance_id = await client.schedule_new_orchestration(
        args.name,
        input=_json_arg(args.input, "--input"),
        instance_id=args.id,
        start_at=_time_arg(args.start_at, "--start-at"),
        tags=tags or None,
        version=args.version,
    )
    if args.wait:
        state = await client.wait_for_orchestration_completion(instance_id, timeout=args.wait)
        return _print_state(args, state)
    if args.json:
        emit_json({"instance_id": instance_id})
    else:
        print(instance_id)
    return 0


def _print_state(args: argparse.Namespace, state: Any) -> int:
    if args.json:
        emit_json(state)
    else:
        inst = state.orchestration_instance
        fields = [
            ("instance id", inst.instance_id),
            ("execution id", inst.execution_id),
            ("name", state.name),
            ("version", state.version),
            ("status", state.status.name),
            ("created", fmt_time(state.created_time)),
            ("updated", fmt_time(state.last_updated_time)),
            ("completed", fmt_time(state.completed_time)),
            ("input", state.input),
            ("output", state.output),
            ("custom status", state.custom_status),
            ("tags", json.dumps(state.tags) if state.tags else None),
        ]
        if state.failure_details is not None:
            fd = state.failure_details
            fields.append(("failure", f"{fd.error_type}: {fd.message}"))
        width = max(len(k) for k, _ in fields)
        for key, value in fields:
            if value not in (None, ""):
                print(f"{key.ljust(width)}  {value}")
    failed = state.status.name in ("FAILED", "TERMINATED", "CANCELED")
    return 1 if failed else 0


async def _status(args: argparse.Namespace, client: Any) -> int:
    state = await client.get_orchestration_state(args.instance_id, execution_id=args.execution)
    if state is None:
        raise await _not_found(client, args.instance_id)
    return _print_state(args, state)


async def _history(args: argparse.Namespace, client: Any) -> int:
    state = await client.get_orchestration_state(args.instance_id, execution_id=args.execution)
    if state is None:
        raise await _not_found(client, args.instance_id)
    events = await client.get_orchestration_history(args.instance_id, execution_id=args.execution)
    if args.json:
        emit_json([{"event_type": type(e).__name__, **_fields(e)} for e in events])
        return 0
    rows = timeline(events)
    print_table(
        ("time", "+offset", "event", "id", "detail", "took"),
        (
            [
                fmt_time(r.timestamp),
                fmt_duration(r.offset_seconds),
                r.event,
                r.event_id,
                r.detail,
                fmt_duration(r.duration_seconds) if r.duration_seconds is not None else "",
            ]
            for r in rows
        ),
    )
    return 0


def _fields(event: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}


async def _list(args: argparse.Namespace, client: Any) -> int:
    states: list[Any] = []
    token = None
    while True:
        page = await client.query_orchestrations(
            status=_status_arg(args.status),
            name=args.name,
            created_from=_time_arg(args.created_from, "--created-from"),
            created_to=_time_arg(args.created_to, "--created-to"),
            instance_id_prefix=args.prefix,
            page_size=min(args.limit - len(states), 100),
            continuation_token=token,
        )
        states.extend(page.states)
        token = page.continuation_token
        if not token or len(states) >= args.limit:
            break
    if args.json:
        emit_json(states)
    else:
        print_table(_STATE_HEADERS, (_state_row(s) for s in states))
    return 0


def _simple(method: str, verb: str) -> Callable[[argparse.Namespace, Any], Awaitable[int]]:
    async def run(args: argparse.Namespace, client: Any) -> int:
        state = await client.get_orchestration_state(args.instance_id)
        if state is None:
            raise await _not_found(client, args.instance_id)
        kwargs: dict[str, Any] = {}
        if getattr(args, "reason", None) is not None:
            kwargs["reason"] = args.reason
        if getattr(args, "recursive", False):
            kwargs["recursive"] = True
        await getattr(client, method)(args.instance_id, **kwargs)
        if args.json:
            emit_json({"instance_id": args.instance_id, "requested": verb})
        else:
            print(f"{verb} requested for {args.instance_id}")
        return 0

    return run


async def _raise(args: argparse.Namespace, client: Any) -> int:
    state = await client.get_orchestration_state(args.instance_id)
    if state is None:
        raise await _not_found(client, args.instance_id)
    await client.raise_orchestration_event(args.instance_id, args.event, data=_json_arg(args.data, "--data"))
    if args.json:
        emit_json({"instance_id": args.instance_id, "event": args.event})
    else:
        print(f"raised {args.event!r} on {args.instance_id}")
    return 0


async def _purge(args: argparse.Namespace, client: Any) -> int:
    from dtf_sb.storage.errors import InstanceNotFinishedError

    if args.instance_id:
        try:
            result = await client.purge_orchestration(args.instance_id)
        except InstanceNotFinishedError as exc:
            raise CliError(str(exc), code=1) from None
        if result.instances == 0:
            raise await _not_found(client, args.instance_id)
    else:
        if not (args.status or args.created_to or args.created_from or args.prefix or args.name):
            raise CliError(
                "purge needs an INSTANCE_ID or at least one filter (--status, --created-to, --created-from, "
                "--prefix, --name)"
            )
        progress = Progress("purged instances")
        result = await client.purge_orchestrations(
            status=_status_arg(args.status),
            name=args.name,
            created_from=_time_arg(args.created_from, "--created-from"),
            created_to=_time_arg(args.created_to, "--created-to"),
            instance_id_prefix=args.prefix,
            on_progress=progress.advance,
        )
        progress.done()
    if args.json:
        emit_json(result)
    else:
        print(
            f"purged {result.instances} instance(s), {result.executions} execution record(s), "
            f"{result.blobs} blob(s)"
        )
        skipped = getattr(result, "skipped", None)
        if skipped:
            print(f"skipped {len(skipped)} instance(s) that are still running: {', '.join(skipped[:10])}")
    return 0


def _with_client(
    handler: Callable[[argparse.Namespace, Any], Awaitable[int]],
) -> Callable[..., Awaitable[int]]:
    async def run(args: argparse.Namespace) -> int:
        async with open_client(args) as client:
            return await handler(args, client)

    return run


def _add(
    sub: Any, name: str, help_text: str, handler: Any, *, instance: bool = True
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text)
    if instance:
        p.add_argument("instance_id", metavar="INSTANCE_ID")
    add_connection_flags(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(async_handler=_with_client(handler))
    return p


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--status", action="append", help="runtime status (repeatable or comma separated)")
    p.add_argument("--name", help="orchestrator name")
    p.add_argument("--created-from", help="created at or after (ISO-8601)")
    p.add_argument("--created-to", help="created before (ISO-8601)")
    p.add_argument("--prefix", help="instance id prefix")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = _add(sub, "start", "schedule a new orchestration instance", _start, instance=False)
    p.add_argument("name", metavar="NAME", help="registered orchestrator name")
    p.add_argument("--input", help="input as JSON")
    p.add_argument("--id", help="instance id (default: a new uuid)")
    p.add_argument("--version")
    p.add_argument("--start-at", help="scheduled start time (ISO-8601)")
    p.add_argument("--tag", action="append", help="KEY=VALUE (repeatable)")
    p.add_argument(
        "--wait", type=float, default=None, metavar="SECONDS", help="wait for completion and print it"
    )

    p = _add(sub, "status", "show an instance's state", _status)
    p.add_argument("--execution", help="a specific execution (continue-as-new generation)")
    p = _add(sub, "history", "show an instance's history as a timeline", _history)
    p.add_argument("--execution", help="a specific execution (continue-as-new generation)")
    p = _add(sub, "list", "list instances matching filters", _list, instance=False)
    _filters(p)
    p.add_argument("--limit", type=int, default=100)
    p = _add(sub, "raise", "raise an external event on an instance", _raise)
    p.add_argument("event", metavar="EVENT_NAME")
    p.add_argument("--data", help="event data as JSON")
    p = _add(
        sub, "terminate", "terminate a running instance", _simple("terminate_orchestration", "terminate")
    )
    p.add_argument("--reason")
    p.add_argument("--recursive", action="store_true", help="also terminate running sub-orchestrations")
    p = _add(sub, "suspend", "suspend a running instance", _simple("suspend_orchestration", "suspend"))
    p.add_argument("--reason")
    p = _add(sub, "resume", "resume a suspended instance", _simple("resume_orchestration", "resume"))
    p.add_argument("--reason")
    p = _add(
        sub, "rewind", "retry a failed instance's failed work", _simple("rewind_orchestration", "rewind")
    )
    p.add_argument("--reason")
    p = sub.add_parser("purge", help="remove finished instances' state, history and blobs")
    p.add_argument("instance_id", nargs="?", metavar="INSTANCE_ID")
    _filters(p)
    add_connection_flags(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(async_handler=_with_client(_purge))
