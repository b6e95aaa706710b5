"""Planning and committing one orchestration episode without transactions.

DTF commits an episode (new session state, outbound messages, tracking, completion of the batch) in
one Service Bus transaction; the Python SDK has none. The same guarantees come from ordering,
deterministic message ids and idempotent receivers (DESIGN section 4):

1. send every outbound message (activities, timers, children, events, parent results) with a
   deterministic id; also re-send tracking records the instance store may not have yet (see 3);
2. write the new session state (a new history chunk blob, if any, was uploaded before this);
3. send this episode's tracking records, built from the history just committed;
4. if the instance finished, clear the session state;
5. complete the batch.

A crash before 2 replays the episode from the old state: the same decisions get the same message
ids and the broker drops the repeats. A crash after 2 redelivers a batch whose events are all in
history already; the de-duplication filter drops them and the episode has nothing new to do except
re-sending the tracking records of 3 (same committed content, same ids). Tracking records are sent
after the state write, not before, precisely so that their content is always committed history: a
record sent before the write could describe an attempt that was then lost and replayed differently.

Executions closed by continue-as-new in this episode are no longer in the session history once it is
written, so their records ride along in the session state's tracking outbox until a later episode
has sent them after a successful commit.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ..core.executor import OrchestratorResult
from ..core.history import HistoryEvent
from ..core.state import OrchestrationRuntimeState
from ..options import TaskHubOptions
from ._outbound import Outbound, build_action_messages, terminate_self_message, tracking_message
from .faults import FaultPoints
from .session_state import SessionState, SessionStateCodec, SessionTooLargeError, TrackingRecord
from .tracking import encode_tracking_record, tracking_message_id

__all__ = [
    "ConfirmedTracking",
    "EpisodeIO",
    "EpisodePlan",
    "commit_episode",
    "plan_episode",
]

_log = logging.getLogger("dtf_sb.servicebus.orchestrations")


class EpisodeIO(Protocol):
    """The three effects of a commit, in the terms of the session being processed."""

    async def send(self, messages: Sequence[Outbound]) -> None: ...

    async def set_state(self, data: bytes | None) -> None: ...

    async def complete(self) -> None: ...


class ConfirmedTracking:
    """Tracking message ids this worker sent after their history was committed (bounded LRU).

    Lets the next episode of an instance skip re-sending a record it knows is already on its way;
    after a restart the set is empty and records are re-sent, which duplicate detection absorbs.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def add(self, message_id: str) -> None:
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


@dataclass
class EpisodePlan:
    """What ``commit_episode`` does, decided before any effect happens."""

    instance_id: str
    pre_sends: list[Outbound] = field(default_factory=list)
    write_state: bool = False
    state: bytes | None = None
    post_sends: list[Outbound] = field(default_factory=list)
    clear_after: bool = False
    next_session: SessionState | None = None
    """The session state as it will be after the commit (kept in memory for extended sessions)."""
    obsolete_chunks: list[str] = field(default_factory=list)
    """History chunk blobs no longer referenced after the commit (deleted best-effort)."""
    terminated_for_size: str | None = None
    dropped_starts: list[tuple[str, str]] = field(default_factory=list)
    """(instance, execution) of starts of other executions that were dropped (the instance was
    running): they will never be recorded, so their jump-start records can go."""


def _record(
    runtime: OrchestrationRuntimeState, first: int, *, track_history: bool, now: datetime | None
) -> TrackingRecord:
    events: list[HistoryEvent] = list(runtime)
    end = len(events)
    if not track_history:
        first = end
    return TrackingRecord(
        instance_id=runtime.instance_id or "",
        execution_id=runtime.execution_id or "",
        first_event_index=first,
        events=events[first:end],
        state=runtime.to_orchestration_state(now=now),
    )


def _tracking_outbound(options: TaskHubOptions, record: TrackingRecord) -> Outbound:
    return tracking_message(options, record, encode_tracking_record(record), tracking_message_id(record))


def _catch_up(
    options: TaskHubOptions, loaded: SessionState | None, confirmed: ConfirmedTracking
) -> list[Outbound]:
    """Records committed earlier whose send this worker cannot vouch for."""
    if loaded is None:
        return []
    out: list[Outbound] = []
    for record in loaded.outbox:
        message = _tracking_outbound(options, record)
        if message.message_id not in confirmed:
            out.append(message)
    runtime = loaded.runtime_state()
    if runtime.execution_started_event is not None and loaded.tracked_through < len(loaded.events):
        record = _record(
            runtime,
            loaded.tracked_through,
            track_history=options.track_history,
            now=runtime.last_event_timestamp,
        )
        message = _tracking_outbound(options, record)
        if message.message_id not in confirmed:
            out.append(message)
    return out


async def plan_episode(
    *,
    options: TaskHubOptions,
    codec: SessionStateCodec,
    loaded: SessionState | None,
    result: OrchestratorResult | None,
    confirmed: ConfirmedTracking,
) -> EpisodePlan:
    """Decide the effects of an episode; uploads a history chunk if the state overflows.

    ``result`` is None when the batch held nothing new (all duplicates or stale): then only tracking
    records that may be missing are re-sent, and a finished instance's state is cleared.
    """
    catch_up = _catch_up(options, loaded, confirmed)
    loaded_runtime = loaded.runtime_state() if loaded is not None else None
    instance_id = (loaded_runtime.instance_id if loaded_runtime else None) or (
        result.instance_id if result else ""
    )
    if result is None or (not result.new_history_events and not result.previous_generations):
        plan = EpisodePlan(instance_id=instance_id or "", pre_sends=catch_up, next_session=loaded)
        if loaded is not None and loaded_runtime is not None and loaded_runtime.status.is_terminal:
            plan.write_state, plan.state, plan.next_session = True, None, None
            plan.obsolete_chunks = [c.key for c in loaded.chunks]
        elif (
            loaded is not None
            and loaded_runtime is not None
            and loaded_runtime.execution_started_event is None
        ):
            # A session state without a start can never become valid (DTF drops such ghosts).
            plan.write_state, plan.state, plan.next_session = True, None, None
        return plan

    generations = result.generations
    final = generations[-1]
    runtime = final.runtime_state
    runtime.custom_status = final.custom_status
    same_execution = (
        loaded_runtime is not None
        and loaded_runtime.execution_id is not None
        and loaded_runtime.execution_id == runtime.execution_id
    )
    action_messages: list[Outbound] = []
    for generation in generations:
        action_messages.extend(build_action_messages(options, generation.runtime_state, generation.actions))

    closed_records: list[TrackingRecord] = []
    for generation in generations[:-1]:
        gen_runtime = generation.runtime_state
        first = len(gen_runtime) - len(generation.new_history_events)
        closed_records.append(_record(gen_runtime, first, track_history=options.track_history, now=None))
    final_first = len(runtime) - len(final.new_history_events)
    tracked_through = final_first if same_execution else 0
    previous_chunks = loaded.chunks if (loaded is not None and same_execution) else []

    plan = EpisodePlan(instance_id=runtime.instance_id or instance_id or "")
    if loaded is not None and not same_execution:
        plan.obsolete_chunks = [c.key for c in loaded.chunks]
    terminal = runtime.status.is_terminal
    try:
        data, chunks = await codec.encode_for_save(
            runtime, previous_chunks=previous_chunks, tracked_through=tracked_through, outbox=closed_records
        )
    except SessionTooLargeError as exc:
        reason = str(exc)
        _log.critical("instance %s: %s; terminating it", plan.instance_id, reason)
        plan.terminated_for_size = reason
        if terminal:
            # The instance is finishing anyway: skip the oversized history, keep every effect.
            current = _record(runtime, final_first, track_history=options.track_history, now=None)
            plan.pre_sends = [
                *catch_up,
                *action_messages,
                *(_tracking_outbound(options, r) for r in closed_records),
                _tracking_outbound(options, current),
            ]
            plan.write_state, plan.state = True, None
            plan.obsolete_chunks = [c.key for c in (loaded.chunks if loaded else [])]
            return plan
        from ..core.codec import encode_payload

        plan.pre_sends = [
            *catch_up,
            terminate_self_message(
                options,
                plan.instance_id,
                loaded_runtime.execution_id if loaded_runtime else runtime.execution_id,
                encode_payload(reason) or reason,
                len(loaded.events) if loaded else 0,
            ),
        ]
        plan.next_session = loaded
        plan.obsolete_chunks = []
        return plan

    current = _record(runtime, final_first, track_history=options.track_history, now=None)
    plan.pre_sends = [*catch_up, *action_messages]
    plan.write_state, plan.state = True, data
    plan.post_sends = [
        *(_tracking_outbound(options, r) for r in closed_records),
        _tracking_outbound(options, current),
    ]
    plan.next_session = SessionState(
        events=list(runtime),
        custom_status=runtime.custom_status,
        chunks=chunks,
        tracked_through=len(runtime),
        outbox=[],
        encoded_size=len(data),
    )
    if terminal:
        plan.clear_after = True
        plan.next_session = None
        plan.obsolete_chunks = sorted({*plan.obsolete_chunks, *(c.key for c in chunks)})
    return plan


async def commit_episode(
    plan: EpisodePlan, io: EpisodeIO, faults: FaultPoints, confirmed: ConfirmedTracking
) -> None:
    """Carry out ``plan`` in the protocol's order, with a fault point after each step."""
    if plan.pre_sends:
        await io.send(plan.pre_sends)
    for message in plan.pre_sends:
        if message.kind == "tracking":
            confirmed.add(message.message_id)
    faults("orchestration.after_send", instance_id=plan.instance_id)
    if plan.write_state:
        await io.set_state(plan.state)
    faults("orchestration.after_state", instance_id=plan.instance_id)
    if plan.post_sends:
        await io.send(plan.post_sends)
        for message in plan.post_sends:
            confirmed.add(message.message_id)
    if plan.clear_after:
        await io.set_state(None)
    await io.complete()
    faults("orchestration.after_complete", instance_id=plan.instance_id)
