"""Time source for the broker.

The broker never reads the wall clock itself: every lock, schedule, TTL and duplicate-detection window is
computed from an injected clock, so tests can move time deterministically and the server can ask exactly
when the next time-driven change is due.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything that can tell the current time as seconds since the Unix epoch (UTC)."""

    def now(self) -> float: ...


class SystemClock:
    """The wall clock, used by the running emulator."""

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to, so tests never sleep and never race."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward; going backwards would break every deadline the broker has computed."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance({seconds}))")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        """Jump to an absolute time that is not earlier than the current one."""
        if when < self._now:
            raise ValueError(f"a clock cannot go backwards ({when} < {self._now})")
        self._now = float(when)
