"""Retry policy for activities and sub-orchestrations.

Retries are not a loop in the orchestrator process: each wait is a durable timer and each attempt a new
action in history, exactly as DTF's ``RetryInterceptor`` does, so a retry survives worker restarts and
replays to the same decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dtf_sb.core.errors import TaskFailedError


def _as_timedelta(value: timedelta | float | int, what: str) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a timedelta or a number of seconds, not {type(value).__name__}")
    return timedelta(seconds=value)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryOptions:
    """How often and how patiently to retry.

    ``max_attempts`` counts the first call (4 means up to 3 retries). The delay before retry *n*
    (n from 1) is ``first_interval * backoff_coefficient ** (n - 1)`` capped at ``max_interval``. No retry
    starts once ``retry_timeout`` has passed since the first attempt. ``handle`` sees the
    ``TaskFailedError`` and returns False to stop retrying. A failure marked non-retriable (the activity
    raised ``NonRetriableError``) is never retried. Intervals accept ``timedelta`` or seconds.
    """

    first_interval: timedelta
    max_attempts: int
    backoff_coefficient: float = 1.0
    max_interval: timedelta | None = None
    retry_timeout: timedelta | None = None
    handle: Callable[[TaskFailedError], bool] | None = None

    def __post_init__(self) -> None:
        first = _as_timedelta(self.first_interval, "first_interval")
        if first <= timedelta(0):
            raise ValueError("Invalid interval: first_interval must be greater than zero.")
        object.__setattr__(self, "first_interval", first)
        if self.max_interval is not None:
            object.__setattr__(self, "max_interval", _as_timedelta(self.max_interval, "max_interval"))
        if self.retry_timeout is not None:
            object.__setattr__(self, "retry_timeout", _as_timedelta(self.retry_timeout, "retry_timeout"))
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (it counts the first attempt).")
        if self.backoff_coefficient < 1.0:
            raise ValueError("backoff_coefficient must be at least 1.0.")

    def next_delay(
        self, *, attempt: int, first_attempt_at: datetime, now: datetime, error: TaskFailedError
    ) -> timedelta | None:
        """The wait before the next attempt after ``attempt`` attempts have failed, or None to give up.

        Pure function of its arguments so that replay re-derives the same timers.
        """
        if error.details.is_non_retriable or attempt >= self.max_attempts:
            return None
        if self.handle is not None and not self.handle(error):
            return None
        if self.retry_timeout is not None and now >= first_attempt_at + self.retry_timeout:
            return None
        try:
            seconds = self.first_interval.total_seconds() * (self.backoff_coefficient ** (attempt - 1))
        except OverflowError:
            seconds = _MAX_DELAY_SECONDS
        if self.max_interval is not None:
            seconds = min(seconds, self.max_interval.total_seconds())
        if seconds <= 0:
            return None
        return timedelta(seconds=min(seconds, _MAX_DELAY_SECONDS))


_MAX_DELAY_SECONDS = float(timedelta(days=365 * 100).total_seconds())
"""Backoff beyond a century is clamped so the timer's fire time stays a valid datetime."""
