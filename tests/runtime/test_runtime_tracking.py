"""The tracking dispatcher's apply step: records of one session, in index order, one snapshot write."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from runtime_fakes import FakeBroker
from test_runtime_commit import OPTIONS, Worker, result_of, start

from dtf_sb.core.codec import decode_event
from dtf_sb.core.status import OrchestrationStatus
from dtf_sb.options import WorkerOptions
from dtf_sb.servicebus.connection import ServiceBusConnection
from dtf_sb.servicebus.faults import FaultPoints
from dtf_sb.servicebus.tracking import TrackingDispatcher, decode_tracking_record
from dtf_sb.storage.errors import HistoryGapError

CONNECTION = (
    "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=Root;SharedAccessKey=a2V5;UseDevelopmentEmulator=true;"
)


@dataclass
class Store:
    """The instance store as tracking sees it: history by index (gaps refused), versioned snapshots."""

    history: list[bytes] = field(default_factory=list)
    snapshots: list[tuple[int, Any]] = field(default_factory=list)
    forgotten_starts: list[tuple[str, str]] = field(default_factory=list)

    async def append_history(
        self, instance_id: str, execution_id: str, first: int, lines: list[bytes]
    ) -> None:
        if first > len(self.history):
            raise HistoryGapError(instance_id, execution_id, len(self.history), first)
        self.history.extend(lines[len(self.history) - first :])

    async def write_state(self, state: Any, *, version: int) -> None:
        self.snapshots.append((version, state))

    async def delete_jump_start(self, instance_id: str, execution_id: str) -> None:
        assert self.snapshots, "a jump-start record may go only once the execution is on record"
        self.forgotten_starts.append((instance_id, execution_id))


@dataclass
class Session:
    session_id: str = "inst-1"


@dataclass
class Receiver:
    session: Session = field(default_factory=Session)
    completed: list[Any] = field(default_factory=list)

    async def complete_message(self, message: Any) -> None:
        self.completed.append(message)


@dataclass
class Message:
    message_id: str


async def tracking_records() -> list[Any]:
    """The three tracking records of a real two-activity orchestration, in the order they were sent."""
    broker = FakeBroker()
    worker = Worker(broker)
    await worker.episode([start()])
    await worker.episode([result_of(0, 6)])
    await worker.episode([result_of(1, 12)])
    return [decode_tracking_record(m.body) for m in broker.delivered(OPTIONS.tracking_queue)]


def dispatcher(store: Store) -> TrackingDispatcher:
    return TrackingDispatcher(
        options=OPTIONS,
        worker_options=WorkerOptions(),
        connection=ServiceBusConnection(connection_string=CONNECTION),
        envelope=None,  # type: ignore[arg-type]
        store=store,
        faults=FaultPoints(None),
    )


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
async def test_a_batch_appends_every_record_and_writes_only_the_newest_snapshot(
    order: tuple[int, ...],
) -> None:
    records = await tracking_records()
    store, receiver = Store(), Receiver()
    batch = [(Message(f"m{i}"), records[i]) for i in order]

    progressed, waiting = await dispatcher(store)._apply(receiver, batch)

    assert progressed and waiting == []
    assert [decode_event(line) for line in store.history] == [e for r in records for e in r.events]
    [(version, state)] = store.snapshots
    assert version == records[-1].end_index
    assert state.status is OrchestrationStatus.COMPLETED
    assert sorted(m.message_id for m in receiver.completed) == ["m0", "m1", "m2"]
    assert store.forgotten_starts == [("inst-1", "exec-1")]


async def test_a_record_whose_predecessor_is_missing_waits_uncompleted() -> None:
    records = await tracking_records()
    store, receiver = Store(), Receiver()
    early = (Message("m2"), records[2])

    progressed, waiting = await dispatcher(store)._apply(receiver, [(Message("m0"), records[0]), early])

    assert progressed and waiting == [early]
    assert [version for version, _ in store.snapshots] == [records[0].end_index]
    assert [m.message_id for m in receiver.completed] == ["m0"]
