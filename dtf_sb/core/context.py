"""The orchestration context: the only door orchestrator code has to the outside world.

Every method records a decision (an action with the next action id) and returns a durable task; nothing
runs here. Replay works because the same code, fed the same history, makes the same calls in the same
order, so the ids line up with the events in history. Values that would differ between runs (time,
uuids) come from history instead of the machine.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from dtf_sb.core.actions import (
    CreateSubOrchestrationAction,
    CreateTimerAction,
    OrchestratorAction,
    ScheduleTaskAction,
    SendEventAction,
)
from dtf_sb.core.codec import encode_payload
from dtf_sb.core.errors import EventTimeoutError, TaskFailedError
from dtf_sb.core.messages import ParentInstance
from dtf_sb.core.retry import RetryOptions
from dtf_sb.core.tasks import CompletableTask, Task, WhenAllTask, WhenAnyTask
from dtf_sb.core.typed import return_hint

if TYPE_CHECKING:
    from dtf_sb.core.registry import Registry

T = TypeVar("T")

_UUID_NAMESPACE = uuid.UUID("9e952958-5e33-4daf-827f-2fa12937b875")
"""Durable Functions' namespace for ``NewGuid``; reusing it keeps ids comparable across implementations."""

_EXECUTION_NAMESPACE = uuid.UUID("5c3cbb52-0f41-4c1f-9c34-7e0d3f2f6c1e")

__all__ = ["ActionTask", "OrchestrationContext", "derive_execution_id"]


def derive_execution_id(*parts: object) -> str:
    """A deterministic execution id (32 hex digits, like DTF's) so a replayed episode re-derives it."""
    return uuid.uuid5(_EXECUTION_NAMESPACE, ":".join(str(p) for p in parts)).hex


class ActionTask(CompletableTask[T]):
    """A task resolved by the history event answering action ``action_id``."""

    __slots__ = ("action_id", "name", "result_hint")

    def __init__(self, action_id: int, name: str = "", result_hint: Any = None) -> None:
        super().__init__()
        self.action_id = action_id
        self.name = name
        self.result_hint = result_hint


class _Session(Protocol):
    """What the context needs from the executor's session (kept narrow on purpose)."""

    registry: Registry
    is_replaying: bool
    current_utc_datetime: datetime

    def next_action_id(self) -> int: ...
    def emit(self, action: OrchestratorAction, task: ActionTask[Any] | None) -> None: ...
    def wait_for_event(self, name: str) -> CompletableTask[Any]: ...
    def forget_waiter(self, name: str, task: CompletableTask[Any]) -> None: ...
    def request_continue_as_new(
        self, encoded_input: str | None, save_events: bool, version: str | None
    ) -> None: ...


class _ReplaySafeLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Drops records while the orchestrator is replaying, so each line is logged once per instance."""

    def __init__(self, logger: logging.Logger, ctx: OrchestrationContext) -> None:
        super().__init__(logger, {})
        self._ctx = ctx

    def isEnabledFor(self, level: int) -> bool:
        return not self._ctx.is_replaying and self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self._ctx.is_replaying:
            super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("instance_id", self._ctx.instance_id)
        kwargs["extra"] = extra
        return msg, kwargs


class _RetryingTask(CompletableTask[T]):
    """Runs attempts with durable timers between them (DTF's ``RetryInterceptor``)."""

    __slots__ = ("_attempt", "_ctx", "_first_attempt_at", "_make_attempt", "_options")

    def __init__(
        self, ctx: OrchestrationContext, options: RetryOptions, make_attempt: Callable[[], Task[T]]
    ) -> None:
        super().__init__()
        self._ctx = ctx
        self._options = options
        self._make_attempt = make_attempt
        self._attempt = 1
        self._first_attempt_at = ctx.current_utc_datetime
        self._start()

    def _start(self) -> None:
        self._make_attempt().add_done_callback(self._on_attempt_done)

    def _on_attempt_done(self, task: Task[Any]) -> None:
        exc = task.get_exception()
        if exc is None:
            self.complete(task._result)
            return
        if not isinstance(exc, TaskFailedError):
            self.fail(exc)
            return
        try:
            delay = self._options.next_delay(
                attempt=self._attempt,
                first_attempt_at=self._first_attempt_at,
                now=self._ctx.current_utc_datetime,
                error=exc,
            )
        except Exception as handler_error:  # a failing ``handle`` predicate fails the task, not the worker
            self.fail(handler_error)
            return
        if delay is None:
            self.fail(exc)
            return
        self._ctx.create_timer(delay).add_done_callback(self._on_timer_fired)

    def _on_timer_fired(self, _timer: Task[Any]) -> None:
        self._attempt += 1
        self._start()


class _EventWithTimeoutTask(CompletableTask[T]):
    """An external event or ``EventTimeoutError``; the waiter is withdrawn on timeout so a later event
    with the same name stays buffered for the next waiter instead of vanishing."""

    __slots__ = ("_ctx", "_event", "_name")

    def __init__(self, ctx: OrchestrationContext, name: str, event: CompletableTask[T], timer: Task[Any]):
        super().__init__()
        self._ctx = ctx
        self._name = name
        self._event = event
        event.add_done_callback(self._on_event)
        if not self._is_complete:
            timer.add_done_callback(self._on_timeout)

    def _on_event(self, task: Task[Any]) -> None:
        self.complete(task._result)

    def _on_timeout(self, _timer: Task[Any]) -> None:
        if self._is_complete:
            return
        self._ctx._session.forget_waiter(self._name, self._event)
        self.fail(EventTimeoutError(f"timed out waiting for external event {self._name!r}"))


class OrchestrationContext:
    """Passed to every orchestrator as its first argument."""

    def __init__(
        self,
        session: _Session,
        *,
        instance_id: str,
        execution_id: str | None,
        name: str,
        version: str | None,
        tags: dict[str, str],
        parent: ParentInstance | None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._session = session
        self._instance_id = instance_id
        self._execution_id = execution_id
        self._name = name
        self._version = version
        self._tags = dict(tags)
        self._parent = parent
        self._uuid_counter = 0
        self._logger = _ReplaySafeLogger(logger or logging.getLogger("dtf_sb.orchestration"), self)
        self._custom_status: str | None = None

    # -- identity and environment -----------------------------------------------------------------
    @property
    def instance_id(self) -> str:
        return self._instance_id

    @property
    def execution_id(self) -> str | None:
        return self._execution_id

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str | None:
        return self._version

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._tags)

    @property
    def parent_instance(self) -> ParentInstance | None:
        return self._parent

    @property
    def current_utc_datetime(self) -> datetime:
        """The start time of the episode being replayed or run (from history, so deterministic)."""
        return self._session.current_utc_datetime

    @property
    def is_replaying(self) -> bool:
        """True while the orchestrator re-runs decisions already recorded in history."""
        return self._session.is_replaying

    @property
    def logger(self) -> logging.LoggerAdapter:  # type: ignore[type-arg]
        """A logger that stays silent during replay."""
        return self._logger

    def new_uuid(self) -> str:
        """A deterministic UUID (uuid5 over instance id, current time and a counter, as Durable Functions)."""
        stamp = self.current_utc_datetime.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        value = uuid.uuid5(_UUID_NAMESPACE, f"{self._instance_id}_{stamp}_{self._uuid_counter}")
        self._uuid_counter += 1
        return str(value)

    def set_custom_status(self, status: Any) -> None:
        """Any JSON-serializable value; visible to clients after the episode completes."""
        self._custom_status = encode_payload(status)

    @property
    def custom_status(self) -> str | None:
        return self._custom_status

    # -- decisions --------------------------------------------------------------------------------
    def call_activity(
        self,
        activity: Callable[..., Any] | str,
        input: Any = None,
        *,
        retry: RetryOptions | None = None,
        tags: dict[str, str] | None = None,
        version: str | None = None,
    ) -> Task[Any]:
        """Schedule an activity by function or registered name."""
        name = self._session.registry.name_of(activity)
        encoded = encode_payload(input)
        task_tags = dict(tags or {})
        hint = None if isinstance(activity, str) else return_hint(activity)

        def attempt() -> Task[Any]:
            action_id = self._session.next_action_id()
            task: ActionTask[Any] = ActionTask(action_id, name, hint)
            action = ScheduleTaskAction(
                id=action_id, name=name, version=version, input=encoded, tags=task_tags
            )
            self._session.emit(action, task)
            return task

        return attempt() if retry is None else _RetryingTask(self, retry, attempt)

    def call_sub_orchestrator(
        self,
        orchestrator: Callable[..., Any] | str,
        input: Any = None,
        *,
        instance_id: str | None = None,
        retry: RetryOptions | None = None,
        version: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> Task[Any]:
        """Start a child orchestration and wait for its result.

        Without ``instance_id`` the child is ``{execution_id}:{action_id}`` (DTF), new for each retry.
        Tags are this instance's tags overlaid with ``tags``.
        """
        name = self._session.registry.name_of(orchestrator)
        encoded = encode_payload(input)
        merged_tags = {**self._tags, **(tags or {})}
        hint = None if isinstance(orchestrator, str) else return_hint(orchestrator)

        def attempt() -> Task[Any]:
            action_id = self._session.next_action_id()
            child_id = instance_id or f"{self._execution_id or self._instance_id}:{action_id}"
            task: ActionTask[Any] = ActionTask(action_id, name, hint)
            action = CreateSubOrchestrationAction(
                id=action_id,
                name=name,
                instance_id=child_id,
                execution_id=derive_execution_id(self._instance_id, self._execution_id, action_id),
                version=version,
                input=encoded,
                tags=merged_tags,
            )
            self._session.emit(action, task)
            return task

        return attempt() if retry is None else _RetryingTask(self, retry, attempt)

    def create_timer(self, fire_at: datetime | timedelta | float | int) -> Task[None]:
        """A durable timer: an absolute aware datetime, a ``timedelta`` or seconds from now."""
        if isinstance(fire_at, datetime):
            if fire_at.tzinfo is None:
                raise ValueError("create_timer needs a timezone-aware datetime (use UTC)")
            when = fire_at
        elif isinstance(fire_at, timedelta):
            when = self.current_utc_datetime + fire_at
        elif isinstance(fire_at, (int, float)) and not isinstance(fire_at, bool):
            when = self.current_utc_datetime + timedelta(seconds=fire_at)
        else:
            raise TypeError(
                f"create_timer takes a datetime, timedelta or seconds, not {type(fire_at).__name__}"
            )
        action_id = self._session.next_action_id()
        task: ActionTask[None] = ActionTask(action_id, "timer")
        self._session.emit(CreateTimerAction(id=action_id, fire_at=when), task)
        return task

    def wait_for_external_event(
        self, name: str, *, timeout: datetime | timedelta | float | None = None
    ) -> Task[Any]:
        """The data of the next event raised with ``name`` (case-insensitive).

        Events that arrive before anyone waits are buffered; several waiters on one name are served in
        the order they started waiting. With ``timeout`` the task fails with ``EventTimeoutError``.
        """
        event_task = self._session.wait_for_event(name)
        if timeout is None or event_task.is_complete:
            return event_task
        return _EventWithTimeoutTask(self, name, event_task, self.create_timer(timeout))

    def send_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Raise an event on another instance (fire and forget)."""
        action_id = self._session.next_action_id()
        self._session.emit(
            SendEventAction(id=action_id, instance_id=instance_id, name=name, data=encode_payload(data)), None
        )

    def continue_as_new(
        self, new_input: Any = None, *, save_events: bool = True, version: str | None = None
    ) -> None:
        """Restart this instance with a fresh history once the orchestrator returns.

        ``save_events`` carries buffered (not yet awaited) external events into the next generation.
        """
        self._session.request_continue_as_new(encode_payload(new_input), save_events, version)

    @staticmethod
    def when_all(tasks: Sequence[Task[Any]]) -> Task[list[Any]]:
        return WhenAllTask(tasks)

    @staticmethod
    def when_any(tasks: Sequence[Task[Any]]) -> Task[Task[Any]]:
        return WhenAnyTask(tasks)
