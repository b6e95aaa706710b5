"""Durable tasks: what orchestrator code awaits (or yields).

A task is a plain future resolved by the executor while it feeds history events; nothing here touches an
event loop. ``await task`` suspends the orchestrator coroutine by yielding the task to the executor,
which resumes it with ``send``/``throw`` once the task completes. Composite tasks (``when_all``,
``when_any``, retries) complete through child callbacks, never by resuming user code themselves, so
there is no re-entrancy: the executor resumes the orchestrator only between events.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any, Generic, TypeVar

from dtf_sb.core.errors import TaskFailedError

T = TypeVar("T")

__all__ = ["CompletableTask", "CompositeTask", "Task", "WhenAllTask", "WhenAnyTask", "when_all", "when_any"]


class Task(Generic[T]):
    """A durable operation's eventual outcome."""

    __slots__ = ("_callbacks", "_exception", "_is_complete", "_result")

    def __init__(self) -> None:
        self._is_complete = False
        self._result: Any = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[Task[Any]], None]] | None = None

    @property
    def is_complete(self) -> bool:
        return self._is_complete

    @property
    def is_failed(self) -> bool:
        return self._exception is not None

    def get_result(self) -> T:
        """The result; raises the failure if the task failed, ``RuntimeError`` if it is not done."""
        if not self._is_complete:
            raise RuntimeError("the task has not completed yet")
        if self._exception is not None:
            raise self._exception
        return self._result

    def get_exception(self) -> BaseException | None:
        return self._exception

    def add_done_callback(self, callback: Callable[[Task[Any]], None]) -> None:
        if self._is_complete:
            callback(self)
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def _finish(self) -> None:
        self._is_complete = True
        callbacks, self._callbacks = self._callbacks, None
        if callbacks:
            for callback in callbacks:
                callback(self)

    def __await__(self) -> Generator[Task[T], Any, T]:
        if not self._is_complete:
            yield self
        return self.get_result()


class CompletableTask(Task[T]):
    """A task completed directly by the executor (activity, timer, sub-orchestration, external event)."""

    __slots__ = ()

    def complete(self, result: T) -> None:
        if self._is_complete:
            return
        self._result = result
        self._finish()

    def fail(self, exception: BaseException) -> None:
        if self._is_complete:
            return
        self._exception = exception
        self._finish()


class CompositeTask(Task[T]):
    """A task derived from child tasks."""

    __slots__ = ("_tasks",)

    def __init__(self, tasks: Sequence[Task[Any]]) -> None:
        super().__init__()
        self._tasks = list(tasks)


class WhenAllTask(CompositeTask[list[Any]]):
    """Completes with every child's result in order; fails as soon as any child fails."""

    __slots__ = ("_remaining",)

    def __init__(self, tasks: Sequence[Task[Any]]) -> None:
        super().__init__(tasks)
        self._remaining = len(self._tasks)
        if self._remaining == 0:
            self._result = []
            self._is_complete = True
            return
        for task in self._tasks:
            task.add_done_callback(self._on_child_done)

    def _on_child_done(self, task: Task[Any]) -> None:
        if self._is_complete:
            return
        exc = task.get_exception()
        if exc is not None:
            self._exception = exc
            self._finish()
            return
        self._remaining -= 1
        if self._remaining == 0:
            self._result = [t._result for t in self._tasks]
            self._finish()


class WhenAnyTask(CompositeTask[Task[Any]]):
    """Completes with the first child task to complete (successfully or not)."""

    __slots__ = ()

    def __init__(self, tasks: Sequence[Task[Any]]) -> None:
        super().__init__(tasks)
        if not self._tasks:
            raise ValueError("when_any needs at least one task")
        for task in self._tasks:
            task.add_done_callback(self._on_child_done)
            if self._is_complete:
                break

    def _on_child_done(self, task: Task[Any]) -> None:
        if not self._is_complete:
            self._result = task
            self._finish()


def when_all(tasks: Sequence[Task[Any]]) -> WhenAllTask:
    """A task whose result is the list of the children's results."""
    return WhenAllTask(tasks)


def when_any(tasks: Sequence[Task[Any]]) -> WhenAnyTask:
    """A task whose result is the first child task to complete."""
    return WhenAnyTask(tasks)


def is_task_failure(exc: BaseException | None) -> bool:
    return isinstance(exc, TaskFailedError)
