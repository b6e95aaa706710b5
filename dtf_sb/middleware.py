"""Dispatch middleware: code that wraps every orchestration episode or activity execution.

Same contract as DTF's dispatcher middleware (reference 8.5): ``async def mw(ctx, next)``; the first
registered runs outermost; the built-in execution is the innermost step. Middleware sees the work
item through ``DispatchContext`` and may replace the execution entirely by setting ``ctx.result``
without calling ``next`` (e.g. to run the orchestration elsewhere).

Failures of user code never reach middleware as exceptions: the dispatcher turns them into
TaskFailed / a Failed orchestration first. An exception raised *by middleware* is an infrastructure
failure: the work is abandoned and Service Bus redelivers it (dead-lettering it after the maximum
delivery count), exactly as DTF does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DispatchContext",
    "DispatchMiddleware",
    "run_pipeline",
]


@dataclass
class DispatchContext:
    """One unit of dispatch as middleware sees it.

    Orchestration episodes fill ``old_events`` (history replayed), ``new_events`` (what this episode
    applies) and ``runtime_state``; activities fill ``task_scheduled`` and ``input``. After ``next``
    returns, ``result`` holds the executor's result (an orchestration ``OrchestratorResult`` or the
    activity's response event). ``properties`` is a free bag for middleware to pass data inward.
    """

    kind: Literal["orchestration", "activity"]
    instance_id: str
    execution_id: str | None
    name: str
    version: str | None = None
    tags: dict[str, str] | None = None
    old_events: Sequence[Any] = ()
    new_events: Sequence[Any] = ()
    runtime_state: Any = None
    task_scheduled: Any = None
    input: str | None = None
    delivery_count: int = 1
    result: Any = None
    properties: dict[str, Any] = field(default_factory=dict)

    def get_property(self, key: str | type, default: Any = None) -> Any:
        return self.properties.get(_key(key), default)

    def set_property(self, key: str | type, value: Any) -> None:
        self.properties[_key(key)] = value


DispatchMiddleware = Callable[[DispatchContext, Callable[[], Awaitable[None]]], Awaitable[None]]


def _key(key: str | type) -> str:
    return key if isinstance(key, str) else f"{key.__module__}.{key.__qualname__}"


async def run_pipeline(
    middlewares: Sequence[DispatchMiddleware],
    ctx: DispatchContext,
    terminal: Callable[[DispatchContext], Awaitable[None]],
) -> None:
    """Run ``middlewares`` around ``terminal``; ``terminal`` is skipped when ``ctx.result`` is already set."""

    async def step(index: int) -> None:
        if index < len(middlewares):
            called = False

            async def next_() -> None:
                nonlocal called
                if called:
                    raise RuntimeError("dispatch middleware called next() more than once")
                called = True
                await step(index + 1)

            await middlewares[index](ctx, next_)
            return
        if ctx.result is None:
            await terminal(ctx)

    await step(0)
