"""The small value types the instance store returns and accepts.

They carry the encoded state or start message as opaque bytes next to the few fields the store indexes,
so the storage layer never needs the core model's classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from dtf_sb.storage.naming import status_key

__all__ = [
    "FINISHED_STATUSES",
    "InstanceRecord",
    "JumpStartRecord",
    "PurgeFilter",
    "PurgeResult",
    "is_finished",
]

#: Statuses after which an execution never changes again (compared via :func:`status_key`).
FINISHED_STATUSES: frozenset[str] = frozenset({"COMPLETED", "FAILED", "TERMINATED", "CANCELED", "CANCELLED"})


def is_finished(status: str) -> bool:
    return status_key(status) in FINISHED_STATUSES


@dataclass(frozen=True)
class InstanceRecord:
    """One execution's stored state snapshot and its indexed fields."""

    instance_id: str
    execution_id: str
    name: str
    status: str
    created_time: datetime
    last_updated_time: datetime
    completed_time: datetime | None
    version: int
    state: bytes = field(repr=False)


@dataclass(frozen=True)
class JumpStartRecord:
    """A start the client recorded before sending it, so a lost send can be repeated."""

    instance_id: str
    execution_id: str
    created_time: datetime
    last_sent_time: datetime | None
    message: bytes = field(repr=False)

    @property
    def due_time(self) -> datetime:
        """When the grace window of the last (re)send started: the jump-start manager compares this."""
        return self.last_sent_time or self.created_time


@dataclass(frozen=True, kw_only=True)
class PurgeFilter:
    """Which instances :meth:`InstanceStore.purge` removes; ``None`` fields do not filter.

    An instance is purged when any of its executions matches, and only if its latest execution is
    finished; ``statuses`` therefore defaults to the finished ones.
    """

    created_from: datetime | None = None
    created_to: datetime | None = None
    statuses: Sequence[str] = ("Completed", "Failed", "Terminated", "Canceled")
    name: str | None = None
    instance_id_prefix: str | None = None


@dataclass(frozen=True)
class PurgeResult:
    """What a purge removed, by kind of blob."""

    instances: int = 0
    executions: int = 0
    history_blobs: int = 0
    payloads: int = 0
    jump_starts: int = 0
    other_blobs: int = 0

    def __add__(self, other: PurgeResult) -> PurgeResult:
        return PurgeResult(
            instances=self.instances + other.instances,
            executions=self.executions + other.executions,
            history_blobs=self.history_blobs + other.history_blobs,
            payloads=self.payloads + other.payloads,
            jump_starts=self.jump_starts + other.jump_starts,
            other_blobs=self.other_blobs + other.other_blobs,
        )
