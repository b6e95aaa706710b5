"""Failure model shared by activities, orchestrations and the executor.

Failures cross process boundaries as data (``FailureDetails``) rather than as pickled exceptions, so a
worker that cannot import the original exception type still sees what went wrong, and an orchestrator
replaying a failure months later gets the same value it got the first time.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureDetails:
    """What is kept of an exception once it has left the code that raised it.

    ``error_type`` is the qualified exception type name; ``is_non_retriable`` stops retry policies
    (set when the activity raised ``NonRetriableError``).
    """

    error_type: str
    message: str
    stack_trace: str | None = None
    inner: FailureDetails | None = None
    is_non_retriable: bool = False

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"

    def is_caused_by(self, exc_type: type[BaseException]) -> bool:
        """True when the failure (or a failure it wraps) was an ``exc_type`` or a subclass of it.

        The original exception object no longer exists, so the recorded type name is resolved to a class
        when it can be imported here (then subclasses match); otherwise only the exact name matches.
        """
        wanted = {_type_name(exc_type), exc_type.__qualname__}
        details: FailureDetails | None = self
        while details is not None:
            if details.error_type in wanted:
                return True
            resolved = _resolve_type(details.error_type)
            if resolved is not None and issubclass(resolved, exc_type):
                return True
            details = details.inner
        return False

    @classmethod
    def from_exception(cls, exc: BaseException, *, include_stack: bool = True) -> FailureDetails:
        """Capture an exception, following ``__cause__``/``__context__`` into ``inner``."""
        return _details_from_exception(exc, include_stack=include_stack, depth=0)


def _resolve_type(name: str) -> type[BaseException] | None:
    """The exception class a recorded type name refers to, if it is already imported."""
    module_name, _, qualname = name.rpartition(".")
    module = sys.modules.get(module_name or "builtins")
    target: object = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    if isinstance(target, type) and issubclass(target, BaseException):
        return target
    return None


def _type_name(t: type) -> str:
    module = t.__module__
    if module in ("builtins", "__main__"):
        return t.__qualname__
    return f"{module}.{t.__qualname__}"


def _details_from_exception(exc: BaseException, *, include_stack: bool, depth: int) -> FailureDetails:
    # An orchestration-level error that already wraps details (e.g. TaskFailedError re-raised by an
    # orchestrator) keeps the original failure as its inner cause so callers can still match on it.
    inner_exc = exc.__cause__
    if inner_exc is None and not exc.__suppress_context__:
        inner_exc = exc.__context__
    inner: FailureDetails | None = None
    if isinstance(exc, TaskFailedError):
        inner = exc.details
    elif inner_exc is not None and depth < 8:
        inner = _details_from_exception(inner_exc, include_stack=include_stack, depth=depth + 1)
    stack = None
    if include_stack and exc.__traceback__ is not None:
        stack = "".join(traceback.format_tb(exc.__traceback__))
    return FailureDetails(
        error_type=_type_name(type(exc)),
        message=str(exc),
        stack_trace=stack,
        inner=inner,
        is_non_retriable=isinstance(exc, NonRetriableError),
    )


def failure_details_from_exception(exc: BaseException) -> FailureDetails:
    """Turn an activity's exception into the failure that travels back to the orchestration."""
    return FailureDetails.from_exception(exc)


class DurableTaskError(Exception):
    """Base of every error the framework raises on purpose."""


class TaskFailedError(DurableTaskError):
    """An activity (or, for the subclass, a sub-orchestration) failed; ``details`` says how."""

    def __init__(self, message: str, details: FailureDetails, *, task_id: int = -1, name: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.task_id = task_id
        self.name = name

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_task_failed, (type(self), self.message, self.details, self.task_id, self.name))


def _rebuild_task_failed(
    cls: type[TaskFailedError], message: str, details: FailureDetails, task_id: int, name: str
) -> TaskFailedError:
    return cls(message, details, task_id=task_id, name=name)


class SubOrchestrationFailedError(TaskFailedError):
    """A sub-orchestration failed or was terminated."""


class NonRetriableError(DurableTaskError):
    """Raised by an activity to say that retrying cannot help; retry policies stop at once."""


class NonDeterminismError(DurableTaskError):
    """The orchestrator code no longer makes the decisions recorded in the instance's history."""

    def __init__(self, message: str, *, event_id: int = -1, expected: str = "", actual: str = "") -> None:
        super().__init__(message)
        self.event_id = event_id
        self.expected = expected
        self.actual = actual


class OrchestratorNotRegisteredError(DurableTaskError):
    """No orchestrator is registered under a name; the transport should abandon and retry later."""


class ActivityNotRegisteredError(DurableTaskError):
    """No activity is registered under a name."""


class InvalidHistoryError(DurableTaskError):
    """A history cannot belong to any orchestration (e.g. two ExecutionStarted events)."""


class PayloadEncodingError(DurableTaskError, TypeError):
    """A user payload cannot be encoded as JSON; the message names the offending type and path."""


class PayloadDecodingError(DurableTaskError, ValueError):
    """Stored bytes are not a payload this version of the codec understands."""


class EventTimeoutError(DurableTaskError, TimeoutError):
    """``wait_for_external_event(..., timeout=...)`` elapsed before the event arrived."""
