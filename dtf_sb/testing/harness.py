"""Run orchestrations in-process, without a broker, to unit-test them.

``run_orchestration`` drives the real executor the way the worker does, one batch per episode, on a fake
clock: activities run in-process right away (sync or ``async def``), timers fire as soon as nothing else
is ready (the clock jumps to their fire time), sub-orchestrations and events sent between instances are
routed in memory. External events are injected after a given episode or at a given time::

    result = run_orchestration(
        approval, {"amount": 10},
        activities=[charge, notify],
        events=[(1, "approved", True)],          # after the root's first episode
    )
    assert result.status is OrchestrationStatus.COMPLETED
    assert result.output == "charged"
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from dtf_sb.core.actions import (
    CompleteOrchestrationAction,
    CreateSubOrchestrationAction,
    CreateTimerAction,
    ScheduleTaskAction,
    SendEventAction,
)
from dtf_sb.core.activity import ActivityContext, invoke_activity, task_completed_event, task_failed_event
from dtf_sb.core.codec import decode_payload, encode_payload
from dtf_sb.core.errors import FailureDetails
from dtf_sb.core.executor import OrchestrationExecutor, OrchestrationSession, OrchestratorResult
from dtf_sb.core.history import (
    EventRaisedEvent,
    ExecutionStartedEvent,
    HistoryEvent,
    SubOrchestrationInstanceCompletedEvent,
    SubOrchestrationInstanceFailedEvent,
    TimerFiredEvent,
)
from dtf_sb.core.messages import OrchestrationInstance, ParentInstance
from dtf_sb.core.registry import Registry, function_name
from dtf_sb.core.state import OrchestrationRuntimeState, OrchestrationState
from dtf_sb.core.status import OrchestrationStatus

__all__ = ["DEFAULT_START_TIME", "HarnessResult", "run_orchestration", "run_orchestration_async"]

DEFAULT_START_TIME = datetime(2024, 1, 1, tzinfo=timezone.utc)
"""The fake clock starts here unless told otherwise, so histories are reproducible."""

EventSpec = tuple[Any, ...]
"""``(when, name, data)`` raises an event; ``(when, HistoryEvent)`` delivers that event (e.g.
``ExecutionSuspendedEvent()``). ``when`` is an episode count of the root instance (``0`` = with the
start), a ``timedelta`` from the start time, or an aware ``datetime``."""

Named = Callable[..., Any] | tuple[str, Callable[..., Any]]


@dataclass(slots=True, kw_only=True)
class HarnessResult:
    """What a harness run produced for the root instance (and, in ``instances``, every instance)."""

    state: OrchestrationState
    history: list[HistoryEvent]
    generations: list[list[HistoryEvent]]
    episodes: int
    activity_calls: list[tuple[str, Any]] = field(default_factory=list)
    sent_events: list[tuple[str, str, Any]] = field(default_factory=list)
    instances: dict[str, list[HistoryEvent]] = field(default_factory=dict)
    clock: datetime = DEFAULT_START_TIME

    @property
    def status(self) -> OrchestrationStatus:
        return self.state.status

    @property
    def output(self) -> Any:
        """The decoded result (for failures, the failure text)."""
        if self.state.failure_details is not None:
            return self.state.output
        return decode_payload(self.state.output)

    @property
    def failure_details(self) -> FailureDetails | None:
        return self.state.failure_details

    @property
    def custom_status(self) -> Any:
        return decode_payload(self.state.custom_status)


@dataclass(slots=True)
class _Instance:
    instance_id: str
    history: list[HistoryEvent] = field(default_factory=list)
    generations: list[list[HistoryEvent]] = field(default_factory=list)
    session: OrchestrationSession | None = None
    state: OrchestrationRuntimeState | None = None
    episodes: int = 0


class _Hub:
    def __init__(self, registry: Registry, *, start: datetime, extended: bool, batch_size: int) -> None:
        self.registry = registry
        self.executor = OrchestrationExecutor(registry, clock=lambda: self.clock)
        self.clock = start
        self.extended = extended
        self.batch_size = batch_size
        self.queue: list[tuple[datetime, int, str, HistoryEvent]] = []
        self.seq = itertools.count()
        self.instances: dict[str, _Instance] = {}
        self.activity_calls: list[tuple[str, Any]] = []
        self.sent_events: list[tuple[str, str, Any]] = []

    def send(self, instance_id: str, event: HistoryEvent, at: datetime | None = None) -> None:
        heapq.heappush(self.queue, (at or self.clock, next(self.seq), instance_id, event))

    def next_batch(self) -> tuple[str, list[HistoryEvent]] | None:
        if not self.queue:
            return None
        at, _, instance_id, event = heapq.heappop(self.queue)
        self.clock = max(self.clock, at)
        batch = [event]
        if self.batch_size > 1:
            rest: list[tuple[datetime, int, str, HistoryEvent]] = []
            while self.queue and len(batch) < self.batch_size and self.queue[0][0] <= self.clock:
                item = heapq.heappop(self.queue)
                (batch.append(item[3]) if item[2] == instance_id else rest.append(item))
            for item in rest:
                heapq.heappush(self.queue, item)
        return instance_id, batch

    async def run_episode(self, instance_id: str, batch: list[HistoryEvent]) -> OrchestratorResult:
        inst = self.instances.setdefault(instance_id, _Instance(instance_id))
        if inst.state is not None and inst.state.is_completed and isinstance(batch[0], ExecutionStartedEvent):
            # Re-creating a finished instance (e.g. a retried sub-orchestration with an explicit id).
            inst.generations.append(inst.history)
            inst.history, inst.session, inst.state = [], None, None
        if self.extended and inst.session is not None:
            result = inst.session.resume(batch, now=self.clock)
        elif self.extended:
            inst.session = self.executor.start(instance_id, list(inst.history), batch, now=self.clock)
            result = inst.session.result
        else:
            result = self.executor.execute(instance_id, list(inst.history), batch, now=self.clock)
        inst.episodes += 1
        for generation in result.generations:
            if generation is not result:
                inst.generations.append([*inst.history, *generation.new_history_events])
                inst.history = []
            else:
                inst.history = [*inst.history, *generation.new_history_events]
            await self.carry_out(generation)
        inst.state = result.runtime_state
        return result

    async def carry_out(self, result: OrchestratorResult) -> None:
        state = result.runtime_state
        instance_id = result.instance_id
        for action in result.actions:
            if isinstance(action, ScheduleTaskAction):
                await self.run_activity(instance_id, result.execution_id, action)
            elif isinstance(action, CreateTimerAction):
                self.send(
                    instance_id, TimerFiredEvent(timer_id=action.id, fire_at=action.fire_at), action.fire_at
                )
            elif isinstance(action, CreateSubOrchestrationAction):
                started = state.execution_started_event
                assert started is not None
                parent = ParentInstance(
                    name=started.name,
                    version=started.version,
                    task_schedule_id=action.id,
                    orchestration_instance=started.orchestration_instance,
                )
                self.send(
                    action.instance_id,
                    ExecutionStartedEvent(
                        timestamp=self.clock,
                        name=action.name,
                        version=action.version,
                        input=action.input,
                        orchestration_instance=OrchestrationInstance(action.instance_id, action.execution_id),
                        parent_instance=parent,
                        tags=dict(action.tags),
                    ),
                )
            elif isinstance(action, SendEventAction):
                self.sent_events.append((action.instance_id, action.name, decode_payload(action.data)))
                message_id = f"{instance_id}:{result.execution_id}:{action.id}"
                self.send(
                    action.instance_id,
                    EventRaisedEvent(
                        timestamp=self.clock, name=action.name, input=action.data, message_id=message_id
                    ),
                )
            elif isinstance(action, CompleteOrchestrationAction):
                self.notify_parent(state, action)

    def notify_parent(self, state: OrchestrationRuntimeState, action: CompleteOrchestrationAction) -> None:
        parent = state.parent_instance
        if parent is None or action.status is OrchestrationStatus.CONTINUED_AS_NEW:
            return
        target = parent.orchestration_instance.instance_id
        if action.status is OrchestrationStatus.COMPLETED:
            event: HistoryEvent = SubOrchestrationInstanceCompletedEvent(
                timestamp=self.clock, task_scheduled_id=parent.task_schedule_id, result=action.result
            )
        else:
            details = action.failure_details or FailureDetails(
                error_type="OrchestrationTerminated", message=str(decode_payload(action.result))
            )
            event = SubOrchestrationInstanceFailedEvent(
                timestamp=self.clock,
                task_scheduled_id=parent.task_schedule_id,
                reason=details.message,
                failure_details=details,
            )
        self.send(target, event)

    async def run_activity(
        self, instance_id: str, execution_id: str | None, action: ScheduleTaskAction
    ) -> None:
        ctx = ActivityContext(instance_id, action.id, name=action.name, execution_id=execution_id)
        self.activity_calls.append((action.name, decode_payload(action.input)))
        try:
            fn = self.registry.get_activity(action.name)
            value = invoke_activity(fn, ctx, action.input)
            if inspect.isawaitable(value):
                value = await value
            event: HistoryEvent = task_completed_event(action.id, value, timestamp=self.clock)
        except Exception as exc:
            event = task_failed_event(action.id, exc, timestamp=self.clock)
        self.send(instance_id, event)


def _register(registry: Registry, items: Iterable[Named], add: Callable[..., str]) -> None:
    for item in items:
        if isinstance(item, tuple):
            name, fn = item
            add(fn, name=name)
        else:
            add(item)


def _event_for(spec: EventSpec, index: int) -> HistoryEvent:
    if len(spec) == 2 and isinstance(spec[1], HistoryEvent):
        return spec[1]
    if len(spec) == 3:
        return EventRaisedEvent(
            name=spec[1], input=encode_payload(spec[2]), message_id=f"harness-event-{index}"
        )
    raise ValueError(f"event spec must be (when, name, data) or (when, HistoryEvent), got {spec!r}")


async def run_orchestration_async(
    orchestrator: Callable[..., Any],
    input: Any = None,
    *,
    activities: Sequence[Named] = (),
    sub_orchestrators: Sequence[Named] = (),
    events: Sequence[EventSpec] = (),
    instance_id: str | None = None,
    name: str | None = None,
    version: str | None = None,
    tags: dict[str, str] | None = None,
    extended_sessions: bool = False,
    batch_size: int = 1,
    start_time: datetime = DEFAULT_START_TIME,
    max_episodes: int = 100_000,
) -> HarnessResult:
    """Async variant of ``run_orchestration`` (use it from async tests)."""
    registry = Registry()
    root_name = registry.add_orchestrator(orchestrator, name=name or function_name(orchestrator))
    _register(registry, activities, registry.add_activity)
    _register(registry, sub_orchestrators, registry.add_orchestrator)
    hub = _Hub(registry, start=start_time, extended=extended_sessions, batch_size=batch_size)
    root = instance_id or "harness-instance"
    hub.send(
        root,
        ExecutionStartedEvent(
            timestamp=start_time,
            name=root_name,
            version=version,
            input=encode_payload(input),
            orchestration_instance=OrchestrationInstance(root, "harness-execution"),
            tags=dict(tags or {}),
        ),
    )
    by_episode: dict[int, list[HistoryEvent]] = {}
    for index, spec in enumerate(events):
        when = spec[0]
        event = _event_for(spec, index)
        if isinstance(when, bool) or not isinstance(when, (int, timedelta, datetime)):
            raise TypeError(f"event time must be an episode number, timedelta or datetime, not {when!r}")
        if isinstance(when, int):
            by_episode.setdefault(when, []).append(event)
        else:
            at = when if isinstance(when, datetime) else start_time + when
            event.timestamp = at
            hub.send(root, event, at)
    for event in by_episode.pop(0, []):
        hub.send(root, event, start_time)

    episodes = 0
    while episodes < max_episodes:
        batch = hub.next_batch()
        if batch is None:
            break
        target, new_events = batch
        await hub.run_episode(target, new_events)
        episodes += 1
        if target == root:
            root_inst = hub.instances[root]
            for event in by_episode.pop(root_inst.episodes, []):
                event.timestamp = hub.clock
                hub.send(root, event)
            if root_inst.state is not None and root_inst.state.is_completed and not hub.queue:
                break
    else:
        raise RuntimeError(f"orchestration did not settle within {max_episodes} episodes")

    inst = hub.instances[root]
    assert inst.state is not None
    return HarnessResult(
        state=inst.state.to_orchestration_state(now=hub.clock),
        history=list(inst.history),
        generations=[*inst.generations, inst.history],
        episodes=inst.episodes,
        activity_calls=hub.activity_calls,
        sent_events=hub.sent_events,
        instances={key: value.history for key, value in hub.instances.items()},
        clock=hub.clock,
    )


def run_orchestration(
    orchestrator: Callable[..., Any],
    input: Any = None,
    *,
    activities: Sequence[Named] = (),
    sub_orchestrators: Sequence[Named] = (),
    events: Sequence[EventSpec] = (),
    instance_id: str | None = None,
    name: str | None = None,
    version: str | None = None,
    tags: dict[str, str] | None = None,
    extended_sessions: bool = False,
    batch_size: int = 1,
    start_time: datetime = DEFAULT_START_TIME,
    max_episodes: int = 100_000,
) -> HarnessResult:
    """Run ``orchestrator`` until it completes (or nothing is left to deliver) and return the outcome.

    ``activities`` and ``sub_orchestrators`` are functions or ``(name, fn)`` pairs; ``events`` are
    ``(when, name, data)`` or ``(when, HistoryEvent)`` (see ``EventSpec``). ``extended_sessions`` keeps
    each orchestrator alive between episodes instead of replaying it; ``batch_size`` delivers up to that
    many ready messages per episode. Safe to call from inside a running event loop (it then runs on a
    helper thread).
    """

    def coro_factory() -> Any:
        return run_orchestration_async(
            orchestrator,
            input,
            activities=activities,
            sub_orchestrators=sub_orchestrators,
            events=events,
            instance_id=instance_id,
            name=name,
            version=version,
            tags=tags,
            extended_sessions=extended_sessions,
            batch_size=batch_size,
            start_time=start_time,
            max_episodes=max_episodes,
        )

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(asyncio.run(coro_factory()))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, name="dtf-sb-harness")
    thread.start()
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]
