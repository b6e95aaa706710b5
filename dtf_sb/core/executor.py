"""Replay: history + new events -> decisions.

The executor API the runtime builds on::

    registry = Registry()
    registry.add_orchestrator(my_orchestrator)           # name defaults to fn.__name__
    executor = OrchestrationExecutor(registry)

    # one episode, replaying from scratch (DTF's model):
    result = executor.execute(instance_id, old_events, new_events, now=None)

    # extended sessions: keep the orchestrator coroutine alive between episodes
    live = executor.start(instance_id, old_events, new_events)   # live.result is this episode's result
    result = live.resume(more_new_events)                          # no replay of history

``old_events`` is the loaded history (a list of events or an ``OrchestrationRuntimeState``);
``new_events`` the batch received for this episode. Both paths produce identical results: ``start`` is
a replay followed by one episode, ``execute`` is ``start(...).result``.

``OrchestratorResult`` carries:

* ``actions``: decisions to carry out, each with the event id it was given (for deterministic message
  ids), including the ``CompleteOrchestrationAction`` when the execution ended;
* ``new_history_events``: what this episode appended (``OrchestratorStarted``, the accepted inputs,
  ``TaskScheduled``/``TimerCreated``/... for each decision, ``ExecutionCompleted``,
  ``OrchestratorCompleted``), in order; past + these = the new history;
* ``runtime_state``, ``status``, ``custom_status``, ``completion``;
* ``dropped_events``: inputs ignored as duplicates or as addressed to a finished execution;
* ``previous_generations``: when the orchestrator continued as new, the executor starts the next
  generation in the same episode (as DTF does since PR #251); the closed generations' results are listed
  here, oldest first, and ``self`` describes the newest.

Inside an episode every event is applied in order and the orchestrator runs inline until it waits again;
a decision is recorded in history as soon as it is made, so a history lists a decision after the
input that caused it. Replay matches the decisions the code makes against those records by id and raises
``NonDeterminismError`` (failing the instance) when the code now decides something else. Replay costs
O(history): every lookup is a dict by id.

An outcome (a task or sub-orchestration result, a timer firing) can still arrive before the decision it
answers: an episode that crashed after sending its messages but before writing its state made the
decision first, and its replay makes it again later (the replay's messages are dropped as duplicates,
so the first outcome is the only one). Such an early outcome is recorded where it arrived and kept until
the orchestrator schedules its id, which it then completes at once, in replay as live.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from dtf_sb.core._decisions import MATCHING_ACTION, describe_action, describe_event, history_event_for
from dtf_sb.core.actions import (
    CompleteOrchestrationAction,
    CreateSubOrchestrationAction,
    CreateTimerAction,
    OrchestratorAction,
    ScheduleTaskAction,
)
from dtf_sb.core.codec import decode_payload, encode_payload
from dtf_sb.core.context import ActionTask, OrchestrationContext, derive_execution_id
from dtf_sb.core.dedupe import filter_new_events
from dtf_sb.core.errors import (
    FailureDetails,
    NonDeterminismError,
    PayloadDecodingError,
    SubOrchestrationFailedError,
    TaskFailedError,
)
from dtf_sb.core.history import (
    ContinueAsNewEvent,
    EventRaisedEvent,
    EventSentEvent,
    ExecutionCompletedEvent,
    ExecutionResumedEvent,
    ExecutionStartedEvent,
    ExecutionSuspendedEvent,
    ExecutionTerminatedEvent,
    GenericEvent,
    HistoryEvent,
    HistoryStateEvent,
    OrchestratorCompletedEvent,
    OrchestratorStartedEvent,
    SubOrchestrationInstanceCompletedEvent,
    SubOrchestrationInstanceCreatedEvent,
    SubOrchestrationInstanceFailedEvent,
    TaskCompletedEvent,
    TaskFailedEvent,
    TaskScheduledEvent,
    TimerCreatedEvent,
    TimerFiredEvent,
    utcnow,
)
from dtf_sb.core.messages import OrchestrationInstance
from dtf_sb.core.registry import Registry
from dtf_sb.core.result import OrchestratorResult
from dtf_sb.core.state import OrchestrationRuntimeState
from dtf_sb.core.status import OrchestrationStatus
from dtf_sb.core.tasks import CompletableTask, Task
from dtf_sb.core.typed import convert, input_hint

__all__ = ["OrchestrationExecutor", "OrchestrationSession", "OrchestratorResult"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_RUNNING = object()
MAX_GENERATIONS_PER_EPISODE = 1000
"""Continue-as-new runs the next generation in the same episode (as DTF does); an orchestrator that
continues as new without ever awaiting would loop forever, so past this many the instance fails."""
_CHANGED = "Was a change made to the orchestrator code after this instance had already started running?"


_PASS_WHILE_SUSPENDED = (
    ExecutionResumedEvent,
    ExecutionTerminatedEvent,
    OrchestratorStartedEvent,
    OrchestratorCompletedEvent,
    TaskScheduledEvent,
    TimerCreatedEvent,
    SubOrchestrationInstanceCreatedEvent,
    EventSentEvent,
    ExecutionCompletedEvent,
)


# Which decision each kind of outcome answers.
_ANSWERED_BY: dict[type, type] = {
    TaskCompletedEvent: ScheduleTaskAction,
    TaskFailedEvent: ScheduleTaskAction,
    SubOrchestrationInstanceCompletedEvent: CreateSubOrchestrationAction,
    SubOrchestrationInstanceFailedEvent: CreateSubOrchestrationAction,
    TimerFiredEvent: CreateTimerAction,
}


class OrchestrationExecutor:
    """Turns history + new events into decisions using orchestrators from ``registry``."""

    def __init__(
        self,
        registry: Registry,
        *,
        clock: Callable[[], datetime] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.registry = registry
        self.clock = clock or utcnow
        self.logger = logger or logging.getLogger("dtf_sb.orchestration")
        self._arity: dict[int, int] = {}

    def execute(
        self,
        instance_id: str,
        old_events: Iterable[HistoryEvent] | OrchestrationRuntimeState,
        new_events: Iterable[HistoryEvent],
        *,
        now: datetime | None = None,
    ) -> OrchestratorResult:
        """Replay ``old_events`` and run one episode on ``new_events``."""
        session = self.start(instance_id, old_events, new_events, now=now)
        session.close()
        return session.result

    def start(
        self,
        instance_id: str,
        old_events: Iterable[HistoryEvent] | OrchestrationRuntimeState,
        new_events: Iterable[HistoryEvent],
        *,
        now: datetime | None = None,
    ) -> OrchestrationSession:
        """Replay ``old_events``, run one episode, and keep the orchestrator alive for ``resume``."""
        session = OrchestrationSession(self, instance_id)
        session._load(old_events)
        session.resume(new_events, now=now)
        return session

    def _call_orchestrator(self, fn: Callable[..., Any], ctx: OrchestrationContext, value: Any) -> Any:
        arity = self._arity.get(id(fn))
        if arity is None:
            try:
                params = [
                    p
                    for p in inspect.signature(fn).parameters.values()
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                ]
                arity = 2 if len(params) >= 2 else len(params)
            except (TypeError, ValueError):
                arity = 2
            self._arity[id(fn)] = arity
        if arity >= 2:
            return fn(ctx, value)
        return fn(ctx)


class OrchestrationSession:
    """One execution's orchestrator, alive between episodes (an extended session).

    Holds the running coroutine, the open tasks and the runtime state. ``resume`` applies the next batch
    without replaying history. Throw the session away on lock loss or eviction; ``executor.start``
    rebuilds the same state by replay.
    """

    def __init__(self, executor: OrchestrationExecutor, instance_id: str) -> None:
        self._executor = executor
        self.registry = executor.registry
        self.instance_id = instance_id
        self._result: OrchestratorResult | None = None
        self._closed = False
        self._handlers: dict[type, Callable[[Any], None]] = {
            OrchestratorStartedEvent: self._on_orchestrator_started,
            OrchestratorCompletedEvent: self._ignore,
            ExecutionStartedEvent: self._on_execution_started,
            TaskScheduledEvent: self._on_decision_event,
            TimerCreatedEvent: self._on_decision_event,
            SubOrchestrationInstanceCreatedEvent: self._on_decision_event,
            EventSentEvent: self._on_decision_event,
            TaskCompletedEvent: self._on_task_completed,
            TaskFailedEvent: self._on_task_failed,
            SubOrchestrationInstanceCompletedEvent: self._on_task_completed,
            SubOrchestrationInstanceFailedEvent: self._on_task_failed,
            TimerFiredEvent: self._on_timer_fired,
            EventRaisedEvent: self._on_event_raised,
            ExecutionSuspendedEvent: self._on_suspended,
            ExecutionResumedEvent: self._on_resumed,
            ExecutionTerminatedEvent: self._on_terminated,
            ExecutionCompletedEvent: self._ignore,
            ContinueAsNewEvent: self._ignore,
            GenericEvent: self._ignore,
            HistoryStateEvent: self._ignore,
        }
        self._reset(OrchestrationRuntimeState())

    # -- public ---------------------------------------------------------------------------------------
    @property
    def result(self) -> OrchestratorResult:
        """The latest episode's result."""
        assert self._result is not None
        return self._result

    @property
    def runtime_state(self) -> OrchestrationRuntimeState:
        return self.state

    @property
    def is_completed(self) -> bool:
        return self.state.is_completed

    def close(self) -> None:
        """Discard the in-memory orchestrator (after a non-extended episode, on eviction or lock loss).

        Python runs an abandoned coroutine's ``finally`` blocks whenever it is garbage-collected; closing
        here makes that happen at a known point, with ``is_replaying`` True (so the replay-safe logger
        stays quiet) and with every context call ignored. A closed session cannot be resumed.
        """
        self._closed = True
        self.is_replaying = True
        coro, self._coro = self._coro, None
        self._awaiting = None
        if coro is not None:
            try:
                coro.close()
            except Exception:  # user cleanup code must not break the worker
                self._executor.logger.exception("orchestrator %s raised while being closed", self.instance_id)

    def resume(
        self, new_events: Iterable[HistoryEvent], *, now: datetime | None = None
    ) -> OrchestratorResult:
        """Apply one more batch (one episode) to the live orchestrator."""
        if self._closed:
            raise RuntimeError("this orchestration session was closed; start a new one from history")
        self._result = self._episode(list(new_events), now or self._executor.clock())
        return self._result

    # -- used by OrchestrationContext -----------------------------------------------------------------
    def next_action_id(self) -> int:
        action_id = self._next_id
        self._next_id += 1
        return action_id

    def emit(self, action: OrchestratorAction, task: ActionTask[Any] | None) -> None:
        if self._closed or (
            self._completion is not None and not isinstance(action, CompleteOrchestrationAction)
        ):
            return  # code running after the execution ended (e.g. a finally block on terminate)
        if task is not None:
            self._open[action.id] = task
            early = self._early.pop(action.id, None)
            if early is not None:
                self._deliver_early(action, early)
        if self.is_replaying:
            self._pending[action.id] = action
        else:
            self._commit_action(action)

    def wait_for_event(self, name: str) -> CompletableTask[Any]:
        key = name.casefold()
        task: CompletableTask[Any] = CompletableTask()
        buffered = self._buffered.get(key)
        if buffered:
            self._deliver(task, buffered.popleft())
            return task
        self._waiters.setdefault(key, deque()).append(task)
        return task

    def forget_waiter(self, name: str, task: CompletableTask[Any]) -> None:
        waiters = self._waiters.get(name.casefold())
        if waiters and task in waiters:
            waiters.remove(task)

    def request_continue_as_new(
        self, encoded_input: str | None, save_events: bool, version: str | None
    ) -> None:
        self._continue_as_new = (encoded_input, save_events, version)

    # -- generations and episodes -------------------------------------------------------------------
    def _reset(self, state: OrchestrationRuntimeState) -> None:
        self.state = state
        self.is_replaying = True
        self.current_utc_datetime = _EPOCH
        self._ctx: OrchestrationContext | None = None
        self._coro: Any = None
        self._awaiting: Task[Any] | None = None
        self._open: dict[int, ActionTask[Any]] = {}
        self._pending: dict[int, OrchestratorAction] = {}
        self._next_id = 0
        self._waiters: dict[str, deque[CompletableTask[Any]]] = {}
        self._buffered: dict[str, deque[EventRaisedEvent]] = {}
        self._early: dict[int, HistoryEvent] = {}
        self._suspended = False
        self._suspended_queue: list[HistoryEvent] = []
        self._completion: CompleteOrchestrationAction | None = None
        self._continue_as_new: tuple[str | None, bool, str | None] | None = None
        self._actions: list[OrchestratorAction] = []
        self._refuse_start: str | None = None

    def _load(self, old_events: Iterable[HistoryEvent] | OrchestrationRuntimeState) -> None:
        if isinstance(old_events, OrchestrationRuntimeState):
            old_events.commit_new_events()
            state = old_events
        else:
            state = OrchestrationRuntimeState(old_events)
        self._reset(state)
        if state.is_completed:
            return  # nothing can happen to a finished execution; every new event will be dropped
        self.is_replaying = True
        process = self._process
        for event in state.past_events:
            process(event)
        self.is_replaying = False

    def _episode(self, new_events: list[HistoryEvent], now: datetime) -> OrchestratorResult:
        self.state.commit_new_events()
        kept, dropped = filter_new_events(self.state, new_events)
        if not kept:
            return self._make_result(dropped)
        previous: list[OrchestratorResult] = []
        while True:
            self._actions = []
            self.is_replaying = False
            self.current_utc_datetime = now
            self.state.add_event(OrchestratorStartedEvent(timestamp=now, is_played=True))
            self._flush_pending()
            index = 0
            while index < len(kept) and self._completion is None:
                event = kept[index]
                index += 1
                self.state.add_event(event)
                self._process(event)
            leftovers = kept[index:]
            completion = self._completion
            carry: list[EventRaisedEvent] = []
            if completion is not None and completion.status is OrchestrationStatus.CONTINUED_AS_NEW:
                save_events = self._continue_as_new[1] if self._continue_as_new else True
                if save_events:
                    carry = self._unconsumed_events()
                for event in leftovers:
                    if save_events and isinstance(event, EventRaisedEvent):
                        carry.append(event)
                    else:
                        dropped.append((event, "arrived after the execution continued as new"))
                completion = replace(completion, carryover_events=tuple(carry))
                self._actions[self._actions.index(self._completion)] = completion
            else:
                dropped.extend((event, "arrived after the execution completed") for event in leftovers)
            self.state.add_event(OrchestratorCompletedEvent(timestamp=now, is_played=True))
            if self._ctx is not None and self._ctx.custom_status is not None:
                self.state.custom_status = self._ctx.custom_status
            result = self._make_result(dropped)
            result.completion = completion
            if completion is None or completion.status is not OrchestrationStatus.CONTINUED_AS_NEW:
                result.previous_generations = previous
                return result
            previous.append(result)
            dropped = []
            kept = self._next_generation(completion, carry, now)
            if len(previous) >= MAX_GENERATIONS_PER_EPISODE:
                self._refuse_start = (
                    f"the orchestration continued as new {len(previous)} times in one episode without "
                    "waiting for anything; stopping what looks like an endless loop"
                )

    def _next_generation(
        self, completion: CompleteOrchestrationAction, carry: list[EventRaisedEvent], now: datetime
    ) -> list[HistoryEvent]:
        old = self.state
        started = old.execution_started_event
        assert started is not None
        execution_id = derive_execution_id(
            self.instance_id, started.orchestration_instance.execution_id, "next"
        )
        new_started = ExecutionStartedEvent(
            timestamp=now,
            name=started.name,
            orchestration_instance=OrchestrationInstance(
                started.orchestration_instance.instance_id, execution_id
            ),
            version=completion.new_version or started.version,
            input=completion.result,
            parent_instance=started.parent_instance,
            tags=dict(started.tags),
            generation=started.generation + 1,
        )
        self._reset(OrchestrationRuntimeState(custom_status=old.custom_status))
        return [new_started, *carry]

    def _make_result(self, dropped: list[tuple[HistoryEvent, str]]) -> OrchestratorResult:
        state = self.state
        return OrchestratorResult(
            instance_id=state.instance_id or self.instance_id,
            execution_id=state.execution_id,
            status=state.status,
            actions=list(self._actions) if state.new_events else [],
            new_history_events=list(state.new_events),
            runtime_state=state,
            custom_status=state.custom_status,
            completion=None,
            dropped_events=dropped,
        )

    def _unconsumed_events(self) -> list[EventRaisedEvent]:
        events = [event for queue in self._buffered.values() for event in queue]
        events.extend(e for e in self._suspended_queue if isinstance(e, EventRaisedEvent))
        events.sort(key=lambda e: e.timestamp)
        return events

    # -- decisions ----------------------------------------------------------------------------------
    def _commit_action(self, action: OrchestratorAction) -> None:
        self.state.add_event(history_event_for(action, self.current_utc_datetime))
        self.state.new_events[-1].is_played = True
        self._actions.append(action)

    def _flush_pending(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, {}
            for action_id in sorted(pending):
                self._commit_action(pending[action_id])

    def _complete(self, action: CompleteOrchestrationAction) -> None:
        self._completion = action
        self._awaiting = None
        coro, self._coro = self._coro, None
        if coro is not None:
            try:
                coro.close()
            except Exception:  # user cleanup code must not break completion
                self._executor.logger.exception("orchestrator %s raised while being closed", self.instance_id)
        self.emit(action, None)

    def _complete_ok(self, value: Any) -> None:
        if self._continue_as_new is not None:
            encoded_input, _, version = self._continue_as_new
            self._complete(
                CompleteOrchestrationAction(
                    id=self.next_action_id(),
                    status=OrchestrationStatus.CONTINUED_AS_NEW,
                    result=encoded_input,
                    new_version=version,
                )
            )
            return
        try:
            encoded = encode_payload(value)
        except Exception as exc:  # an unencodable result fails the instance
            self._fail(exc)
            return
        self._complete(
            CompleteOrchestrationAction(
                id=self.next_action_id(), status=OrchestrationStatus.COMPLETED, result=encoded
            )
        )

    def _fail(self, exc: BaseException) -> None:
        details = FailureDetails.from_exception(exc)
        self._complete(
            CompleteOrchestrationAction(
                id=self.next_action_id(), status=OrchestrationStatus.FAILED, failure_details=details
            )
        )

    def _nondeterminism(self, error: NonDeterminismError) -> None:
        if self._completion is not None:
            if self._completion.status is OrchestrationStatus.FAILED:
                return
            if self._pending.pop(self._completion.id, None) is None:
                return  # already committed; nothing to change
            self._completion = None
        self._pending = {}
        self._fail(error)

    # -- running the orchestrator --------------------------------------------------------------------
    def _step(self, value: Any, exc: BaseException | None) -> None:
        coro = self._coro
        while True:
            try:
                yielded = coro.send(value) if exc is None else coro.throw(exc)
            except StopIteration as stop:
                returned = stop.value
            except Exception as error:  # user code failure fails the instance
                self._coro = None
                self._fail(error)
                return
            else:
                returned = _RUNNING
            if returned is not _RUNNING:
                self._coro = None
                self._complete_ok(returned)
                return
            if not isinstance(yielded, Task):
                self._fail(
                    TypeError(
                        "orchestrators can only await durable tasks (ctx.call_activity, ctx.create_timer, "
                        f"ctx.wait_for_external_event, ...), not {type(yielded).__name__}; asyncio "
                        "primitives do not work in orchestrator code"
                    )
                )
                return
            if yielded._is_complete:
                value, exc = yielded._result, yielded._exception
                continue
            self._awaiting = yielded
            return

    def _process(self, event: HistoryEvent) -> None:
        event.is_played = True
        if self._suspended and not isinstance(event, _PASS_WHILE_SUSPENDED):
            self._suspended_queue.append(event)
            return
        self._handlers[type(event)](event)
        awaiting = self._awaiting
        if awaiting is not None and awaiting._is_complete and self._completion is None:
            self._awaiting = None
            self._step(awaiting._result, awaiting._exception)

    def _ignore(self, event: HistoryEvent) -> None:
        return

    def _on_orchestrator_started(self, event: HistoryEvent) -> None:
        self.current_utc_datetime = event.timestamp

    def _on_execution_started(self, event: ExecutionStartedEvent) -> None:
        instance = event.orchestration_instance
        self.instance_id = instance.instance_id
        ctx = OrchestrationContext(
            self,
            instance_id=instance.instance_id,
            execution_id=instance.execution_id,
            name=event.name,
            version=event.version,
            tags=event.tags,
            parent=event.parent_instance,
        )
        self._ctx = ctx
        if self._refuse_start is not None:
            self._fail(RuntimeError(self._refuse_start))
            return
        fn = self.registry.get_orchestrator(event.name, event.version)
        try:
            value = convert(decode_payload(event.input), input_hint(fn))
            outcome = self._executor._call_orchestrator(fn, ctx, value)
        except Exception as exc:  # user code failure fails the instance
            self._fail(exc)
            return
        if inspect.iscoroutine(outcome) or inspect.isgenerator(outcome):
            self._coro = outcome
            self._step(None, None)
        else:
            self._complete_ok(outcome)

    def _on_decision_event(self, event: HistoryEvent) -> None:
        action = self._pending.pop(event.event_id, None)
        if action is not None and isinstance(action, MATCHING_ACTION[type(event)]):
            recorded = getattr(event, "name", None)
            made = getattr(action, "name", None)
            if recorded is None or made is None or recorded == made or recorded.casefold() == made.casefold():
                return
        expected = describe_event(event)
        if action is None:
            problem = (
                f"history has {expected} with id {event.event_id}, but the orchestrator code hasn't (yet?) "
                "scheduled this task."
            )
        else:
            problem = (
                f"history has {expected} with id {event.event_id}, but the orchestrator code scheduled "
                f"{describe_action(action)} there."
            )
        self._nondeterminism(
            NonDeterminismError(
                f"Non-deterministic orchestration detected: {problem} {_CHANGED}",
                event_id=event.event_id,
                expected=expected,
                actual=describe_action(action),
            )
        )

    def _is_early(self, action_id: int, event: HistoryEvent) -> bool:
        """Keep an outcome for an id the orchestrator has not scheduled yet (ids are handed out in
        order, so every id below ``_next_id`` has been); ``emit`` delivers it when the id is scheduled."""
        if action_id < self._next_id:
            return False
        self._early.setdefault(action_id, event)
        return True

    def _deliver_early(self, action: OrchestratorAction, event: HistoryEvent) -> None:
        if isinstance(action, _ANSWERED_BY[type(event)]):
            self._handlers[type(event)](event)
            return
        # Only an episode that decided differently before it crashed can have sent this: the id now
        # belongs to another kind of work, whose own outcome is awaited instead. Said once, not at
        # every replay.
        if self.is_replaying:
            return
        self._executor.logger.warning(
            "orchestration %s: ignoring %s for id %d, which the orchestrator used for %s",
            self.instance_id,
            type(event).__name__,
            action.id,
            describe_action(action),
        )

    def _on_task_completed(self, event: TaskCompletedEvent | SubOrchestrationInstanceCompletedEvent) -> None:
        if self._is_early(event.task_scheduled_id, event):
            return
        task = self._open.pop(event.task_scheduled_id, None)
        if task is None:
            return  # a result nobody waits for (DTF logs these as duplicates)
        try:
            value = decode_payload(event.result)
        except PayloadDecodingError as exc:
            task.fail(exc)
            return
        task.complete(convert(value, task.result_hint) if task.result_hint is not None else value)

    def _on_task_failed(self, event: TaskFailedEvent | SubOrchestrationInstanceFailedEvent) -> None:
        if self._is_early(event.task_scheduled_id, event):
            return
        task = self._open.pop(event.task_scheduled_id, None)
        if task is None:
            return
        details = event.failure_details or FailureDetails(
            error_type="TaskFailedError", message=event.reason or "", stack_trace=event.details
        )
        message = event.reason or details.message
        if isinstance(event, SubOrchestrationInstanceFailedEvent):
            error: TaskFailedError = SubOrchestrationFailedError(
                message, details, task_id=event.task_scheduled_id, name=task.name
            )
        else:
            error = TaskFailedError(message, details, task_id=event.task_scheduled_id, name=task.name)
        task.fail(error)

    def _on_timer_fired(self, event: TimerFiredEvent) -> None:
        if self._is_early(event.timer_id, event):
            return
        task = self._open.pop(event.timer_id, None)
        if task is not None:
            task.complete(None)

    def _on_event_raised(self, event: EventRaisedEvent) -> None:
        key = event.name.casefold()
        waiters = self._waiters.get(key)
        if waiters:
            self._deliver(waiters.popleft(), event)
        else:
            self._buffered.setdefault(key, deque()).append(event)

    def _deliver(self, task: CompletableTask[Any], event: EventRaisedEvent) -> None:
        try:
            task.complete(decode_payload(event.input))
        except PayloadDecodingError as exc:
            task.fail(exc)

    def _on_suspended(self, event: ExecutionSuspendedEvent) -> None:
        self._suspended = True

    def _on_resumed(self, event: ExecutionResumedEvent) -> None:
        if not self._suspended:
            return
        self._suspended = False
        queued, self._suspended_queue = self._suspended_queue, []
        for index, queued_event in enumerate(queued):
            if self._completion is not None or self._suspended:
                self._suspended_queue.extend(queued[index:])
                return
            self._process(queued_event)

    def _on_terminated(self, event: ExecutionTerminatedEvent) -> None:
        self._suspended = False
        self._complete(
            CompleteOrchestrationAction(
                id=self.next_action_id(), status=OrchestrationStatus.TERMINATED, result=event.input
            )
        )
