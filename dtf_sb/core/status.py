"""DTF's orchestration status values; the numbers are part of the stored format."""

from __future__ import annotations

from enum import IntEnum


class OrchestrationStatus(IntEnum):
    """Lifecycle of an orchestration execution (same names and numbers as DTF)."""

    RUNNING = 0
    COMPLETED = 1
    CONTINUED_AS_NEW = 2
    FAILED = 3
    CANCELED = 4
    TERMINATED = 5
    PENDING = 6
    SUSPENDED = 7

    @property
    def is_terminal(self) -> bool:
        """Whether no further event can change this execution."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        OrchestrationStatus.COMPLETED,
        OrchestrationStatus.CONTINUED_AS_NEW,
        OrchestrationStatus.FAILED,
        OrchestrationStatus.CANCELED,
        OrchestrationStatus.TERMINATED,
    }
)
