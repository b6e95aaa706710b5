"""In-memory stand-ins for the runtime's own seams (payload store, episode I/O), for tests without a network."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dtf_sb.servicebus._outbound import Outbound


class MemoryPayloadStore:
    """``PayloadStoreLike`` over a dict; deterministic ids make uploads idempotent, as the blob store does."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.uploads = 0

    async def upload(
        self, data: bytes, *, instance_id: str, execution_id: str, kind: str, payload_id: str | None = None
    ) -> str:
        key = f"{instance_id}/{execution_id}/{kind}-{payload_id or uuid.uuid4().hex}"
        self.uploads += 1
        self.blobs.setdefault(key, data)
        return key

    async def download(self, key: str) -> bytes:
        return self.blobs[key]

    async def delete(self, keys: Sequence[str]) -> int:
        return sum(1 for k in keys if self.blobs.pop(k, None) is not None)


class Crash(Exception):
    """Raised by a fault injector to stop an episode between two commit steps."""


@dataclass
class FakeBroker:
    """What the commit protocol touches: queues with duplicate detection, one session's state, the batch."""

    queues: dict[str, list[Outbound]] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)
    state: bytes | None = None
    completed: int = 0
    calls: list[str] = field(default_factory=list)
    sent_total: int = 0

    def io(self) -> FakeSessionIO:
        return FakeSessionIO(self)

    def delivered(self, queue: str, kind: str | None = None) -> list[Outbound]:
        return [m for m in self.queues.get(queue, []) if kind is None or m.kind == kind]


class FakeSessionIO:
    """``EpisodeIO`` on ``FakeBroker``; sends are dropped by message id as Service Bus duplicate detection does."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker

    async def send(self, messages: Sequence[Outbound]) -> None:
        self.broker.calls.append("send:" + ",".join(sorted({m.kind for m in messages})))
        for message in messages:
            self.broker.sent_total += 1
            if message.message_id in self.broker.seen_ids:
                continue
            self.broker.seen_ids.add(message.message_id)
            self.broker.queues.setdefault(message.queue, []).append(message)

    async def set_state(self, data: bytes | None) -> None:
        self.broker.calls.append("set_state" if data is not None else "clear_state")
        self.broker.state = data

    async def complete(self) -> None:
        self.broker.calls.append("complete")
        self.broker.completed += 1


def raise_at(point: str) -> Any:
    def inject(name: str, context: dict[str, Any]) -> None:
        if name == point:
            raise Crash(name)

    return inject
