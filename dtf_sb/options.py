"""Option dataclasses for a task hub and for the worker that serves it.

They are frozen so that one options object can be shared by a client, several workers and the
entity definitions without anyone mutating a setting under the others' feet; ``dataclasses.replace``
makes a variant. Defaults are the Durable Task Framework's (reference sections 4.2, 5.1, 6.5, 8.3) so
a hub behaves like a DTF Service Bus hub unless told otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FaultInjector",
    "JumpStartOptions",
    "TaskHubOptions",
    "WorkerOptions",
]

KiB = 1024
MiB = 1024 * 1024

# A hub name becomes part of queue paths ("{hub}/orchestrator") and of blob container names, so it
# must be a valid Service Bus entity segment; the storage layer applies its own mapping on top.
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,60}[A-Za-z0-9]$|^[A-Za-z0-9]$")

FaultInjector = Callable[[str, dict[str, Any]], None]
"""Called at each named commit step ("orchestration.after_send", ...) with a context dict.

Tests use it to kill or fail a worker between two steps of the commit protocol; raising from it
simulates a crash of the episode (the work is abandoned and redelivered)."""


@dataclass(frozen=True)
class JumpStartOptions:
    """How the worker re-sends orchestration starts that a client recorded but never delivered.

    The client writes a jump-start record before it sends ExecutionStarted; if the process dies
    between the two, only the record exists. DTF scans every 5 s and re-sends records older than
    10 minutes (the ignore window avoids racing a send that is merely slow).
    """

    enabled: bool = True
    interval: float = 5.0
    ignore_window: float = 600.0


@dataclass(frozen=True)
class TaskHubOptions:
    """Everything that defines a hub and must agree between its clients and workers."""

    hub_name: str
    max_delivery_count: int = 10
    """Per queue; after this many failed deliveries Service Bus dead-letters the message."""
    lock_duration: float = 60.0
    """Seconds; the dispatchers renew locks while work runs, so this only bounds crash recovery."""
    duplicate_detection_window: float = 4 * 3600.0
    """Seconds; re-sent messages with the same id inside this window are dropped by the broker."""
    prefetch_count: int = 50
    """Most messages taken from one session in one episode (DTF: 50)."""
    session_overflow_threshold: int = 230 * KiB
    """Encoded session state above this moves the history tail into a blob chunk."""
    session_max_size: int = 10 * MiB
    """Total encoded history above this terminates the instance (DTF: 10 MiB)."""
    message_overflow_threshold: int = 170 * KiB
    """Encoded message bodies at or above this go to blob; the message carries the key."""
    message_max_size: int = 10 * MiB
    """Encoded message bodies above this are refused with an error naming both sizes."""
    compress_threshold: int = 1 * KiB
    """Bodies and history payloads larger than this are gzipped when that makes them smaller."""
    jump_start: JumpStartOptions = field(default_factory=JumpStartOptions)
    track_history: bool = True
    """Project every history event into the instance store (state snapshots are always written)."""
    max_queue_size_mb: int = 1024

    def __post_init__(self) -> None:
        if not isinstance(self.hub_name, str) or not _HUB_NAME.match(self.hub_name):
            raise ValueError(
                f"hub_name {self.hub_name!r} is not usable as a Service Bus entity prefix: use 1-62 letters, "
                "digits, '-', '_' or '.', starting and ending with a letter or digit"
            )
        if self.max_delivery_count < 1:
            raise ValueError("max_delivery_count must be at least 1")
        if self.lock_duration <= 0:
            raise ValueError("lock_duration must be positive")
        if not 1 <= self.prefetch_count <= 100:
            raise ValueError("prefetch_count must be between 1 and 100")
        if self.session_overflow_threshold >= self.session_max_size:
            raise ValueError("session_overflow_threshold must be below session_max_size")
        if self.message_overflow_threshold > self.message_max_size:
            raise ValueError("message_overflow_threshold must not exceed message_max_size")

    @property
    def orchestrator_queue(self) -> str:
        return f"{self.hub_name}/orchestrator"

    @property
    def worker_queue(self) -> str:
        return f"{self.hub_name}/worker"

    @property
    def tracking_queue(self) -> str:
        return f"{self.hub_name}/tracking"


@dataclass(frozen=True)
class WorkerOptions:
    """How much a worker does at once and how it backs off; none of this must agree across workers."""

    max_concurrent_orchestrations: int = 100
    max_concurrent_activities: int = 10
    max_concurrent_tracking_sessions: int = 20
    orchestration_accept_concurrency: int = 2
    """Sessions of the orchestrator queue being accepted at once while idle (each waiting accept holds a
    connection). Opening a session receiver takes the SDK about half a second, so each pending accept
    takes at most about two sessions a second; under backlog the worker adds accepts, up to
    ``max_orchestration_accept_concurrency``."""
    max_orchestration_accept_concurrency: int = 12
    tracking_accept_concurrency: int = 1
    max_tracking_accept_concurrency: int = 6
    receive_timeout: float = 5.0
    receive_poll_interval: float = 0.02
    """How long the SDK's receive loop waits on the socket per poll (its ``socket_timeout``).

    The SDK reads one frame per poll and checks its deadlines only between polls, so a receive that
    is gathering a batch returns up to this long after the message that ends it arrived: every hop of
    an activity or its result pays it. Lower is faster per step and costs more idle CPU: an idle
    worker with the embedded emulator in its process used about 2 % of a core at 0.05 s, 4 % at
    0.02 s and 6.5 % at 0.01 s (``benchmarks/idle_cpu.py``); a sequential step took about 120, 70
    and 55 ms (``benchmarks/throughput.py``)."""
    """Seconds a dispatcher waits for a session or message before polling again (and noticing stop)."""
    transient_backoff: float = 1.0
    """First delay after a transient fetch error (connection loss); doubles up to ``max_backoff``."""
    non_transient_backoff: float = 10.0
    """Delay after an error the dispatcher does not recognise as transient."""
    max_backoff: float = 30.0
    type_missing_backoff: float = 10.0
    """Delay before an unknown orchestrator/activity message is abandoned back to the queue, so a
    worker that has the code can take it (DTF TypeMissing, reference 9.1)."""
    activity_thread_pool_size: int = 10
    """Threads for synchronous activity functions; async activities run on the event loop."""
    session_hold_seconds: float = 2.0
    """After an episode, keep the instance's session this long waiting for its next message (0 = off).

    Accepting a session costs a new connection (about half a second in the Python SDK), so an instance
    whose activity result is near is cheaper to wait for than to accept again. The next episode
    replays as usual, from the history already in memory. A held session occupies a slot of
    ``max_concurrent_orchestrations``; holds end early when every slot is taken."""
    extended_session_idle_seconds: float = 0.0
    """After an episode, keep the session locked this long waiting for more messages (0 = off).

    While held, the orchestrator stays alive in memory and resumes without replaying its history:
    O(1) per step instead of O(history). The trade-off is DTF's own: code changed while an instance is
    held is not re-checked against history until the next replay (a restart or a released session),
    so non-determinism is detected later. Off by default for that reason."""
    stop_timeout: float = 30.0
    """Bound on how long a graceful stop waits for in-flight episodes and activities."""
    fault_injector: FaultInjector | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_concurrent_orchestrations",
            "max_concurrent_activities",
            "max_concurrent_tracking_sessions",
            "orchestration_accept_concurrency",
            "max_orchestration_accept_concurrency",
            "tracking_accept_concurrency",
            "max_tracking_accept_concurrency",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.receive_timeout <= 0:
            raise ValueError("receive_timeout must be positive")
        if not 0 < self.receive_poll_interval <= 1:
            raise ValueError("receive_poll_interval must be above 0 and at most 1 second")
        if self.activity_thread_pool_size < 1:
            raise ValueError("activity_thread_pool_size must be at least 1")
        if self.extended_session_idle_seconds < 0:
            raise ValueError("extended_session_idle_seconds must not be negative")
        if self.session_hold_seconds < 0:
            raise ValueError("session_hold_seconds must not be negative")
