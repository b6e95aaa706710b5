"""Instruments of the reliability suite: what the broker saw, what the stores hold, what was duplicated.

Everything here reads the ground truth rather than the runtime's own word: session-state writes are
recorded inside the embedded broker (the worker cannot forget to report one), entity counts come
from the broker, histories from the instance store, activity runs from an append-only log the
activities write themselves.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from azure.storage.blob.aio import BlobServiceClient

from dtf_sb.core.codec import decompress, event_from_dict
from dtf_sb.core.history import (
    EventRaisedEvent,
    ExecutionCompletedEvent,
    ExecutionStartedEvent,
    ExecutionTerminatedEvent,
    HistoryEvent,
    SubOrchestrationInstanceCompletedEvent,
    SubOrchestrationInstanceCreatedEvent,
    SubOrchestrationInstanceFailedEvent,
    TaskCompletedEvent,
    TaskFailedEvent,
    TaskScheduledEvent,
    TimerCreatedEvent,
    TimerFiredEvent,
)
from dtf_sb.options import TaskHubOptions
from dtf_sb.storage.naming import container_names
from dtf_sb.testing.emulator import EmulatorThread

__all__ = [
    "SessionStateLog",
    "StateWrite",
    "activity_runs",
    "duplicate_events",
    "leftover_messages",
    "payload_blobs",
    "queue_counts",
    "session_events",
    "wait_for",
]


async def wait_for(
    probe: Callable[[], Awaitable[Any]], *, timeout: float, what: str, interval: float = 0.25
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


# -- duplicates -------------------------------------------------------------------------------------


def _identity(event: HistoryEvent) -> tuple[Any, ...] | None:
    """What makes a history event unique within one execution; None for events that legitimately repeat.

    OrchestratorStarted/Completed frame every episode and repeat by design; everything else records
    one fact (a task scheduled, its result, a timer fired, an event delivered) that must appear once.
    """
    if isinstance(event, (TaskScheduledEvent, TimerCreatedEvent, SubOrchestrationInstanceCreatedEvent)):
        return ("scheduled", event.event_id)
    if isinstance(
        event,
        (
            TaskCompletedEvent,
            TaskFailedEvent,
            SubOrchestrationInstanceCompletedEvent,
            SubOrchestrationInstanceFailedEvent,
        ),
    ):
        return ("result", event.task_scheduled_id)
    if isinstance(event, TimerFiredEvent):
        return ("fired", event.timer_id)
    if isinstance(event, EventRaisedEvent):
        return ("raised", event.message_id or f"{event.name}:{event.input}")
    if isinstance(event, ExecutionStartedEvent):
        return ("started",)
    if isinstance(event, (ExecutionCompletedEvent, ExecutionTerminatedEvent)):
        return ("ended",)
    return None


def duplicate_events(events: Iterable[HistoryEvent]) -> list[str]:
    """Each history fact that appears more than once, described (an empty list is the goal)."""
    counts = Counter(key for key in map(_identity, events) if key is not None)
    return [f"{key} x{count}" for key, count in sorted(counts.items(), key=str) if count > 1]


# -- session state, seen from inside the broker --------------------------------------------------------


@dataclass(frozen=True)
class StateWrite:
    """One successful set-session-state on the watched queue; ``data`` only when bodies are kept."""

    session_id: str
    size: int
    data: bytes | None


@dataclass
class SessionStateLog:
    """Records every session-state write the broker accepts for one queue.

    Installed by wrapping the broker's ``set_session_state`` on the emulator's own loop, so writes of
    worker subprocesses are seen as well as in-process ones; a refused write (too large, lock lost) is
    not recorded because the broker raised before the record.
    """

    emulator: EmulatorThread
    queue: str
    keep_bodies: bool = True
    writes: list[StateWrite] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def install(cls, emulator: EmulatorThread, queue: str, *, keep_bodies: bool = True) -> SessionStateLog:
        log = cls(emulator, queue, keep_bodies)
        watched = queue.lower()

        def install() -> None:
            broker = emulator.emulator.broker
            original = type(broker).set_session_state

            def recording(path: str, session_id: str, owner: Any, state: bytes | None) -> None:
                original(broker, path, session_id, owner, state)
                if path.lower() == watched:
                    size = len(state) if state else 0
                    body = bytes(state) if (state and log.keep_bodies) else None
                    with log._lock:
                        log.writes.append(StateWrite(str(session_id), size, body))

            broker.set_session_state = recording

        emulator.call(install)
        return log

    def uninstall(self) -> None:
        def remove() -> None:
            broker = self.emulator.emulator.broker
            if "set_session_state" in vars(broker):
                del broker.set_session_state

        self.emulator.call(remove)

    def snapshot(self) -> list[StateWrite]:
        with self._lock:
            return list(self.writes)

    def sizes(self, session_id: str) -> list[int]:
        """Bytes of each non-clearing write of one session, in order."""
        return [w.size for w in self.snapshot() if w.session_id.lower() == session_id.lower() and w.size]


@dataclass
class BrokerJournal:
    """What the broker did with a hub's messages, instance by instance, for post-mortems.

    Installed like :class:`SessionStateLog` (wrapping broker operations on the emulator's loop) on the
    given queues. Entries are keyed by session id, or for messages without one (activity work) by the
    instance id that starts their message id. When an instance is lost, :meth:`story` tells who sent,
    received, settled and locked each of its messages, and when, which the queues (empty by then) no
    longer can.
    """

    emulator: EmulatorThread
    queues: tuple[str, ...]
    entries: list[tuple[float, str, str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _replaced: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def install(cls, emulator: EmulatorThread, *queues: str) -> BrokerJournal:
        journal = cls(emulator, tuple(q.lower() for q in queues))
        emulator.call(journal._install)
        return journal

    def _note(self, path: str, msg: Any, session_id: Any, op: str, detail: str) -> None:
        key = (
            session_id
            or getattr(msg, "session_id", None)
            or str(getattr(msg, "message_id", "")).split(":")[0]
        )
        where = path.rsplit("/", 1)[-1]
        with self._lock:
            self.entries.append((time.time(), str(key).lower(), op, f"[{where}] {detail}"))

    def _install(self) -> None:
        broker = self.emulator.emulator.broker

        def mine(path: str) -> bool:
            return path.lower() in self.queues

        def who(owner: Any) -> str:
            return str(getattr(owner, "name", None) or f"owner-{id(owner):x}")[:12]

        def by_token(path: str, token: Any) -> Any:
            store = broker._store(path)
            seq = store.by_token.get(token)
            return store.messages.get(seq) if seq is not None else None

        def sent(op: str) -> Callable[..., Any]:
            original = getattr(broker, op)

            def wrapper(path: str, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
                result = original(path, messages, *args, **kwargs)
                if mine(path):
                    for msg, seq in zip(messages, result, strict=False):
                        self._note(path, msg, None, op, f"{msg.message_id} -> {seq}")
                return result

            return wrapper

        original_receive = broker.receive

        def receive(path: str, **kwargs: Any) -> Any:
            result = original_receive(path, **kwargs)
            if mine(path):
                for msg in result:
                    self._note(path, msg, None, "receive", f"{msg.message_id} by {who(kwargs.get('owner'))}")
            return result

        def settled(op: str) -> Callable[..., Any]:
            original = getattr(broker, op)

            def wrapper(path: str, token: Any, *args: Any, **kwargs: Any) -> Any:
                msg = by_token(path, token) if mine(path) else None
                try:
                    result = original(path, token, *args, **kwargs)
                except Exception as exc:
                    if mine(path):
                        self._note(path, msg, None, op, f"{getattr(msg, 'message_id', token)} refused: {exc}")
                    raise
                if msg is not None:
                    self._note(path, msg, None, op, str(msg.message_id))
                return result

            return wrapper

        def session_op(op: str) -> Callable[..., Any]:
            original = getattr(broker, op)

            def wrapper(path: str, session_id: Any, owner: Any, *args: Any) -> Any:
                try:
                    result = original(path, session_id, owner, *args)
                except Exception as exc:
                    if mine(path):
                        self._note(
                            path, None, session_id, op, f"by {who(owner)} refused: {type(exc).__name__}"
                        )
                    raise
                sid = getattr(result, "session_id", None) or session_id
                if mine(path) and sid is not None and (op != "accept_session" or result is not None):
                    extra = ""
                    if op == "set_session_state":
                        extra = f" ({len(args[0]) if args and args[0] else 0} bytes)"
                    elif op == "get_session_state":
                        extra = f" ({len(result) if result else 0} bytes)"
                    self._note(path, None, sid, op, f"by {who(owner)}{extra}")
                return result

            return wrapper

        original_lose = broker._lose_session

        def lose(store: Any, record: Any, now: float) -> None:
            if mine(store.path):
                self._note(store.path, None, record.session_id, "session lost", f"by {who(record.owner)}")
            original_lose(store, record, now)

        wrappers: dict[str, Callable[..., Any]] = {
            "send": sent("send"),
            "schedule": sent("schedule"),
            "receive": receive,
            "complete": settled("complete"),
            "abandon": settled("abandon"),
            "release": settled("release"),
            "dead_letter": settled("dead_letter"),
            "accept_session": session_op("accept_session"),
            "release_session": session_op("release_session"),
            "get_session_state": session_op("get_session_state"),
            "set_session_state": session_op("set_session_state"),
            "_lose_session": lose,
        }
        for name, wrapper in wrappers.items():
            self._replaced[name] = vars(broker).get(name)
            setattr(broker, name, wrapper)

    def uninstall(self) -> None:
        def remove() -> None:
            broker = self.emulator.emulator.broker
            for name, before in self._replaced.items():
                if before is None:
                    vars(broker).pop(name, None)
                else:
                    setattr(broker, name, before)

        self.emulator.call(remove)

    def story(self, key: str) -> list[str]:
        """The journal of one session or instance, one line per operation, times relative to the first."""
        key = key.lower()
        with self._lock:
            mine = [e for e in self.entries if e[1] == key]
        if not mine:
            return []
        start = mine[0][0]
        return [f"{t - start:8.3f} {op} {detail}" for t, _, op, detail in mine]


def regressed_writes(writes: Iterable[StateWrite]) -> list[str]:
    """Session-state writes that drop history an earlier write of the same session had (empty is the goal).

    History only grows within a session: each write's events must begin with the previous write's. A
    write that does not was made from a stale copy (a worker writing what it read under a lock it had
    lost) and erased the episodes in between. A cleared state, chunked histories and a new execution
    (continue-as-new) start the comparison afresh.
    """
    last: dict[str, list[Any]] = {}
    out: list[str] = []
    for write in writes:
        key = write.session_id.lower()
        if write.data is None:
            last.pop(key, None)
            continue
        doc = orjson.loads(decompress(write.data))
        if doc.get("chunks"):
            last.pop(key, None)
            continue
        events = doc["tail"]
        before = last.get(key)
        if before and events[: len(before)] != before and not _new_execution(before, events):
            kept = next(
                (i for i, (a, b) in enumerate(zip(before, events, strict=False)) if a != b), len(events)
            )
            out.append(
                f"{write.session_id}: {len(events)} events written over {len(before)}, which differ from #{kept}"
            )
        last[key] = events
    return out


def _new_execution(before: list[Any], after: list[Any]) -> bool:
    old, new = _execution(before), _execution(after)
    return old is not None and new is not None and old != new


def _execution(encoded: list[Any]) -> str | None:
    for event in map(event_from_dict, encoded):
        if isinstance(event, ExecutionStartedEvent):
            return event.orchestration_instance.execution_id
    return None


def session_events(data: bytes) -> tuple[list[HistoryEvent], int]:
    """The history tail held in an encoded session state, and how many events sit in blob chunks."""
    doc = orjson.loads(decompress(data))
    chunked = sum(int(c["count"]) for c in doc.get("chunks", []))
    return [event_from_dict(e) for e in doc["tail"]], chunked


# -- broker entities ---------------------------------------------------------------------------------


def queue_counts(emulator: EmulatorThread, options: TaskHubOptions) -> dict[str, Any]:
    """``EntityCounts`` of the hub's three queues, straight from the broker."""
    queues = (options.orchestrator_queue, options.worker_queue, options.tracking_queue)
    return {q: emulator.broker_call("entity_counts", q) for q in queues}


def leftover_messages(emulator: EmulatorThread, options: TaskHubOptions) -> dict[str, Any]:
    """The hub's queues that still hold anything (active, scheduled, deferred, locked or dead-lettered)."""
    return {q: c for q, c in queue_counts(emulator, options).items() if sum(c)}


# -- blob storage ------------------------------------------------------------------------------------


async def payload_blobs(
    storage_connection_string: str, hub: str, *, instance_id: str | None = None
) -> Counter[str]:
    """Blobs in the hub's payload container by kind (``message`` bodies, ``history`` chunks)."""
    from dtf_sb.storage import PayloadStore

    container = container_names(hub).payloads
    prefix = PayloadStore.instance_prefix(instance_id) if instance_id is not None else None
    kinds: Counter[str] = Counter()
    async with BlobServiceClient.from_connection_string(storage_connection_string) as service:
        client = service.get_container_client(container)
        if not await client.exists():
            return kinds
        async for blob in client.list_blobs(name_starts_with=prefix):
            kinds[blob.name.rsplit("/", 1)[-1].split("-", 1)[0]] += 1
    return kinds


# -- activity runs -----------------------------------------------------------------------------------


def activity_runs(log_path: Path) -> Counter[tuple[str, int]]:
    """How often each (instance, task id) activity ran, from the workload's append-only log."""
    runs: Counter[tuple[str, int]] = Counter()
    if not log_path.exists():
        return runs
    for line in log_path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            runs[(parts[0], int(parts[1]))] += 1
    return runs
