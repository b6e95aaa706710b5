"""Deciding an episode: drop what was applied, run the orchestrator through middleware, plan the commit.

Kept apart from the dispatcher's Service Bus plumbing so the whole decision (DESIGN section 4 steps
2-3 and the commit plan) runs, and is tested, without a broker.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.dedupe import filter_new_events
from ..core.executor import OrchestrationExecutor, OrchestrationSession, OrchestratorResult
from ..core.history import ExecutionStartedEvent
from ..core.messages import TaskMessage
from ..core.state import OrchestrationRuntimeState
from ..middleware import DispatchContext, DispatchMiddleware, run_pipeline
from ..options import TaskHubOptions
from ._episode import ConfirmedTracking, EpisodePlan, plan_episode
from .session_state import SessionState, SessionStateCodec

__all__ = ["UNLOADED", "EpisodeDecider", "HeldSession"]

_log = logging.getLogger("dtf_sb.servicebus.orchestrations")

UNLOADED: Any = object()
"""Marker: the session state has not been read since the session was accepted."""


class HeldSession:
    """What a worker keeps of a session between episodes while it holds the session lock."""

    def __init__(self, loaded: SessionState | Any | None = UNLOADED) -> None:
        self.loaded: Any = loaded
        self.live: OrchestrationSession | None = None


@dataclass
class EpisodeDecider:
    options: TaskHubOptions
    codec: SessionStateCodec
    executor: OrchestrationExecutor
    middlewares: Sequence[DispatchMiddleware]
    confirmed: ConfirmedTracking
    keep_live: bool = False

    async def decide(
        self,
        session_id: str,
        held: HeldSession,
        task_messages: list[TaskMessage],
        *,
        delivery_count: int = 1,
    ) -> tuple[EpisodePlan, OrchestratorResult | None]:
        loaded: SessionState | None = held.loaded
        runtime = loaded.runtime_state() if loaded is not None else None
        kept, dropped = filter_new_events(runtime or OrchestrationRuntimeState(), task_messages)
        for item, reason in dropped:
            # Duplicates are routine; a message for an instance with no ExecutionStarted is discarded
            # for good, which is only right if the instance never existed or was purged: say so.
            level = (
                logging.WARNING
                if runtime is None or runtime.execution_started_event is None
                else logging.DEBUG
            )
            _log.log(level, "instance %s: dropping %s (%s)", session_id, type(item.event).__name__, reason)
        result: OrchestratorResult | None = None
        if kept:
            instance_id = (runtime.instance_id if runtime else None) or kept[
                0
            ].orchestration_instance.instance_id
            old_events = list(loaded.events) if loaded is not None else []
            new_events = [t.event for t in kept]
            started = next((e for e in new_events if isinstance(e, ExecutionStartedEvent)), None)
            name = (runtime.name if runtime and runtime.name else None) or (started.name if started else "")
            version = (runtime.version if runtime else None) or (started.version if started else None)
            ctx = DispatchContext(
                kind="orchestration",
                instance_id=instance_id,
                execution_id=(runtime.execution_id if runtime else None)
                or (started.orchestration_instance.execution_id if started else None),
                name=name,
                version=version,
                tags=(runtime.tags if runtime else None) or (dict(started.tags) if started else {}),
                old_events=old_events,
                new_events=new_events,
                runtime_state=runtime,
                delivery_count=delivery_count,
            )

            live = held.live
            held.live = None

            async def terminal(c: DispatchContext) -> None:
                # The live orchestrator (extended session) continues without replay, as long as the
                # episode is the one it was kept for; anything else replays from history.
                if live is not None and c.old_events is old_events and c.new_events is new_events:
                    c.result = live.resume(new_events)
                    held.live = live
                else:
                    session = self.executor.start(instance_id, list(c.old_events), list(c.new_events))
                    c.result = session.result
                    held.live = session if self.keep_live else None

            await run_pipeline(self.middlewares, ctx, terminal)
            if not isinstance(ctx.result, OrchestratorResult):
                raise TypeError(
                    f"orchestration middleware left ctx.result as {type(ctx.result).__name__}, "
                    "expected an OrchestratorResult"
                )
            result = ctx.result
        plan = await plan_episode(
            options=self.options, codec=self.codec, loaded=loaded, result=result, confirmed=self.confirmed
        )
        current = runtime.execution_id if runtime is not None else None
        plan.dropped_starts = [
            (item.orchestration_instance.instance_id, item.event.orchestration_instance.execution_id)
            for item, _ in dropped
            if isinstance(item.event, ExecutionStartedEvent)
            and item.event.orchestration_instance.execution_id not in (None, current)
        ]
        return plan, result
