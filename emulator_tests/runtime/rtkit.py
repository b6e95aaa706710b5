"""Helpers shared by the orchestration scenarios: waiting, reading histories, recording dispatches,
and sending raw messages to a hub the way the runtime itself would.

Waits poll with short intervals and a bound, never sleep a fixed time, so the suite is as fast as
the runtime and still ends when something hangs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from azure.servicebus import ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from dtf_sb.core.codec import decode_payload, encode_task_message
from dtf_sb.core.history import EventType, HistoryEvent
from dtf_sb.core.messages import OrchestrationInstance, TaskMessage
from dtf_sb.middleware import DispatchContext
from dtf_sb.servicebus.messages import MessageEnvelope
from dtf_sb.testing.runtime import HubConnection

E = TypeVar("E", bound=HistoryEvent)

POLL_INTERVAL = 0.1
COMPLETION_TIMEOUT = 30.0


def kinds(history: Iterable[HistoryEvent]) -> list[str]:
    """Event type names in history order, e.g. ``["ORCHESTRATOR_STARTED", "EXECUTION_STARTED", ...]``."""
    return [EventType(e.event_type).name for e in history]


def of_type(history: Iterable[HistoryEvent], cls: type[E]) -> list[E]:
    """Events of exactly ``cls`` (a ContinueAsNew event is not an ExecutionCompleted here)."""
    return [e for e in history if type(e) is cls]


def output(state: Any) -> Any:
    """The decoded output of an orchestration state."""
    return decode_payload(state.output)


async def wait_until(
    probe: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, what: str = "condition"
) -> Any:
    """Poll ``probe`` until it returns something truthy and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL)


async def history_when(
    client: Any,
    instance_id: str,
    predicate: Callable[[list[HistoryEvent]], bool],
    *,
    timeout: float = 20.0,
    what: str = "history",
) -> list[HistoryEvent]:
    """The instance's history once ``predicate`` holds for it."""

    async def probe() -> list[HistoryEvent] | None:
        history = list(await client.get_orchestration_history(instance_id))
        return history if predicate(history) else None

    return await wait_until(probe, timeout=timeout, what=f"{what} of {instance_id}")


async def status_when(client: Any, instance_id: str, status: Any, *, timeout: float = 20.0) -> Any:
    """The instance's state once it has ``status``."""

    async def probe() -> Any:
        state = await client.get_orchestration_state(instance_id)
        return state if state is not None and state.status == status else None

    return await wait_until(probe, timeout=timeout, what=f"{instance_id} to be {status.name}")


async def unchanged_for(probe: Callable[[], Awaitable[Any]], *, seconds: float, what: str) -> Any:
    """Assert that ``probe`` keeps returning the same value for ``seconds``; returns that value.

    Only for proving that something does NOT happen (a dropped message, work nobody may run), where
    no positive signal exists; the window bounds the check, it is not a speed goal.
    """
    first = await probe()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = await probe()
        assert now == first, f"{what} changed: {first!r} -> {now!r}"
    return first


def new_instance_id(prefix: str = "rt") -> str:
    """A unique instance id, so tests sharing a hub (container backend) never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class DispatchRecord:
    """What one middleware saw of one dispatch, before and after the inner steps ran."""

    kind: str
    instance_id: str
    execution_id: str | None
    name: str
    input: str | None
    new_event_kinds: list[str]
    old_event_count: int
    properties_seen: dict[str, Any]
    result_present: bool = False


@dataclass
class Recorder:
    """Middleware factory that records dispatches and the order middleware steps ran in."""

    steps: list[str] = field(default_factory=list)
    records: dict[str, list[DispatchRecord]] = field(default_factory=dict)

    def middleware(self, label: str, *, set_property: tuple[str, Any] | None = None) -> Any:
        async def mw(ctx: DispatchContext, next_: Callable[[], Awaitable[None]]) -> None:
            record = DispatchRecord(
                kind=ctx.kind,
                instance_id=ctx.instance_id,
                execution_id=ctx.execution_id,
                name=ctx.name,
                input=ctx.input,
                new_event_kinds=kinds(ctx.new_events),
                old_event_count=len(ctx.old_events),
                properties_seen=dict(ctx.properties),
            )
            self.records.setdefault(label, []).append(record)
            if set_property is not None:
                ctx.set_property(*set_property)
            self.steps.append(f"{label}:before:{ctx.kind}")
            await next_()
            record.result_present = ctx.result is not None
            self.steps.append(f"{label}:after:{ctx.kind}")

        return mw

    def episodes(self, label: str, instance_id: str) -> list[DispatchRecord]:
        return [
            r
            for r in self.records.get(label, [])
            if r.kind == "orchestration" and r.instance_id.lower() == instance_id.lower()
        ]


async def send_raw_events(
    hub: HubConnection,
    instance_id: str,
    execution_id: str | None,
    events: Sequence[HistoryEvent],
    *,
    message_ids: Sequence[str] | None = None,
) -> list[str]:
    """Send ``events`` to the instance's orchestrator session with the plain azure-servicebus SDK.

    Bodies come from the runtime's own encoder and envelope, so only the transport message ids
    differ from what the runtime would send: by default fresh ones, which duplicate detection cannot
    recognise. Returns the ids used.
    """
    ids = list(message_ids) if message_ids is not None else [f"raw-{uuid.uuid4().hex}" for _ in events]
    envelope = MessageEnvelope(hub.options)
    target = OrchestrationInstance(instance_id, execution_id)
    built = []
    for event, message_id in zip(events, ids, strict=True):
        body = encode_task_message(TaskMessage(event=event, orchestration_instance=target), compress=False)
        built.append(
            await envelope.build(
                body,
                message_id=message_id,
                session_id=instance_id,
                instance_id=instance_id,
                execution_id=execution_id,
                kind="raw",
            )
        )
    async with ServiceBusClient.from_connection_string(hub.servicebus_connection_string) as sb:
        async with sb.get_queue_sender(hub.options.orchestrator_queue) as sender:
            for message in built:
                await sender.send_messages(message)
    return ids


async def dead_letters(hub: HubConnection) -> list[str]:
    """Every message dead-lettered on the hub's queues, described for an assertion message.

    A scenario that passes while the runtime dead-letters something (a message it could not read, a
    poison episode) only looks healthy; the suite checks this after each test.
    """
    found: list[str] = []
    queues = (hub.options.orchestrator_queue, hub.options.worker_queue, hub.options.tracking_queue)
    async with ServiceBusClient.from_connection_string(hub.servicebus_connection_string) as sb:
        for queue in queues:
            async with sb.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
                for message in await dlq.peek_messages(max_message_count=50):
                    found.append(
                        f"{queue}: id={message.message_id} session={message.session_id} "
                        f"reason={message.dead_letter_reason!r} description={message.dead_letter_error_description!r}"
                    )
    return found
