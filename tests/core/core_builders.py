"""Builders for synthetic histories and a step driver that checks live sessions against replay."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from dtf_sb.core import (
    EventRaisedEvent,
    ExecutionResumedEvent,
    ExecutionStartedEvent,
    ExecutionSuspendedEvent,
    ExecutionTerminatedEvent,
    FailureDetails,
    HistoryEvent,
    OrchestrationExecutor,
    OrchestrationInstance,
    OrchestrationRuntimeState,
    OrchestrationSession,
    OrchestratorResult,
    Registry,
    SubOrchestrationInstanceCompletedEvent,
    SubOrchestrationInstanceFailedEvent,
    TaskCompletedEvent,
    TaskFailedEvent,
    TimerFiredEvent,
)
from dtf_sb.core.codec import decode_events, encode_events, encode_payload, event_to_dict

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
INSTANCE = "instance-1"
EXECUTION = "execution-1"


def started(name: str, value: Any = None, **kwargs: Any) -> ExecutionStartedEvent:
    return ExecutionStartedEvent(
        timestamp=T0,
        name=name,
        input=encode_payload(value),
        orchestration_instance=OrchestrationInstance(kwargs.pop("instance_id", INSTANCE), EXECUTION),
        **kwargs,
    )


def completed(task_id: int, value: Any = None) -> TaskCompletedEvent:
    return TaskCompletedEvent(timestamp=T0, task_scheduled_id=task_id, result=encode_payload(value))


def failed(
    task_id: int, message: str = "boom", *, error_type: str = "ValueError", non_retriable: bool = False
):
    details = FailureDetails(error_type=error_type, message=message, is_non_retriable=non_retriable)
    return TaskFailedEvent(timestamp=T0, task_scheduled_id=task_id, reason=message, failure_details=details)


def sub_completed(task_id: int, value: Any = None) -> SubOrchestrationInstanceCompletedEvent:
    return SubOrchestrationInstanceCompletedEvent(
        timestamp=T0, task_scheduled_id=task_id, result=encode_payload(value)
    )


def sub_failed(task_id: int, message: str = "child failed") -> SubOrchestrationInstanceFailedEvent:
    details = FailureDetails(error_type="ValueError", message=message)
    return SubOrchestrationInstanceFailedEvent(
        timestamp=T0, task_scheduled_id=task_id, reason=message, failure_details=details
    )


def fired(timer_id: int, fire_at: datetime = T0) -> TimerFiredEvent:
    return TimerFiredEvent(timestamp=fire_at, timer_id=timer_id, fire_at=fire_at)


def raised(name: str, value: Any = None, message_id: str | None = None) -> EventRaisedEvent:
    return EventRaisedEvent(timestamp=T0, name=name, input=encode_payload(value), message_id=message_id)


def suspended() -> ExecutionSuspendedEvent:
    return ExecutionSuspendedEvent(timestamp=T0, reason="pause")


def resumed() -> ExecutionResumedEvent:
    return ExecutionResumedEvent(timestamp=T0, reason="go on")


def terminated(reason: str = "stop") -> ExecutionTerminatedEvent:
    return ExecutionTerminatedEvent(timestamp=T0, input=encode_payload(reason))


def copy_events(events: Sequence[HistoryEvent]) -> list[HistoryEvent]:
    """Independent copies through the codec, as if loaded from storage."""
    return decode_events(encode_events(events))


def names(events: Sequence[HistoryEvent]) -> list[str]:
    return [type(e).__name__.removesuffix("Event") for e in events]


def _fingerprint(result: OrchestratorResult) -> Any:
    return [
        (
            g.status,
            g.execution_id,
            g.actions,
            [event_to_dict(e) for e in g.new_history_events],
            g.custom_status,
            g.completion,
            [(event_to_dict(e), reason) for e, reason in g.dropped_events],
        )
        for g in result.generations
    ]


class Driver:
    """Feeds batches to the executor twice, replaying from scratch and through one live session, and
    asserts both give the same result at every step."""

    def __init__(
        self,
        *orchestrators: Callable[..., Any] | tuple[str, Callable[..., Any]],
        instance_id: str = INSTANCE,
        check_live: bool = True,
        registry: Registry | None = None,
    ) -> None:
        self.registry = registry or Registry()
        for item in orchestrators:
            if isinstance(item, tuple):
                self.registry.add_orchestrator(item[1], name=item[0])
            else:
                self.registry.add_orchestrator(item)
        self.executor = OrchestrationExecutor(self.registry)
        self.instance_id = instance_id
        self.check_live = check_live
        self.history: list[HistoryEvent] = []
        self.generations: list[list[HistoryEvent]] = []
        self.live: OrchestrationSession | None = None
        self.clock = T0
        self.results: list[OrchestratorResult] = []
        self.custom_status: str | None = None

    def step(self, *events: HistoryEvent, advance: timedelta = timedelta(seconds=1)) -> OrchestratorResult:
        now = self.clock
        # as the transport does: the stored state carries the custom status along with the events
        loaded = OrchestrationRuntimeState(copy_events(self.history), custom_status=self.custom_status)
        result = self.executor.execute(self.instance_id, loaded, copy_events(events), now=now)
        if self.check_live:
            if self.live is None:
                self.live = self.executor.start(self.instance_id, [], copy_events(events), now=now)
                live_result = self.live.result
            else:
                live_result = self.live.resume(copy_events(events), now=now)
            assert _fingerprint(live_result) == _fingerprint(result)
        for generation in result.generations:
            self.history = [*self.history, *generation.new_history_events]
            if generation is not result:
                self.generations.append(self.history)
                self.history = []
        self.custom_status = result.custom_status
        self.clock = now + advance
        self.results.append(result)
        return result
