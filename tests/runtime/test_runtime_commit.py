"""The episode commit protocol on fakes of the runtime's own seams: order of effects, and crashes between them.

Every test drives real episodes (the core executor and the runtime's decision and commit code) against
``FakeBroker``, which keeps the session state, the queues (with duplicate detection by message id) and
counts completions. A crash is an exception from the fault injector at a named point; the batch is then
delivered again, as Service Bus would after the lock is lost, to a fresh worker (nothing in memory).
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

import pytest
from runtime_fakes import Crash, FakeBroker, MemoryPayloadStore, raise_at

from dtf_sb.core.codec import decode_task_message, encode_payload
from dtf_sb.core.executor import OrchestrationExecutor
from dtf_sb.core.history import (
    ExecutionStartedEvent,
    HistoryEvent,
    TaskCompletedEvent,
)
from dtf_sb.core.messages import OrchestrationInstance, TaskMessage
from dtf_sb.core.registry import Registry
from dtf_sb.core.status import OrchestrationStatus
from dtf_sb.options import TaskHubOptions
from dtf_sb.servicebus._decide import EpisodeDecider, HeldSession
from dtf_sb.servicebus._episode import ConfirmedTracking, commit_episode
from dtf_sb.servicebus.faults import FaultPoints
from dtf_sb.servicebus.session_state import SessionStateCodec
from dtf_sb.servicebus.tracking import decode_tracking_record

OPTIONS = TaskHubOptions(hub_name="hub")
INSTANCE = "inst-1"
EXECUTION = "exec-1"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


async def two_steps(ctx: Any, value: int) -> int:
    first = await ctx.call_activity("double", value)
    return await ctx.call_activity("double", first)


async def generations(ctx: Any, count: int) -> int:
    if count < 2:
        ctx.continue_as_new(count + 1)
        return -1
    return count


def registry() -> Registry:
    reg = Registry()
    reg.add_orchestrator(two_steps)
    reg.add_orchestrator(generations)
    return reg


class Worker:
    """One worker process's view: its decider, its memory of confirmed tracking sends."""

    def __init__(self, broker: FakeBroker, options: TaskHubOptions = OPTIONS, store: Any = None) -> None:
        self.broker = broker
        self.options = options
        self.codec = SessionStateCodec(options, store or MemoryPayloadStore())
        self.confirmed = ConfirmedTracking()
        self.decider = EpisodeDecider(
            options=options,
            codec=self.codec,
            executor=OrchestrationExecutor(registry()),
            middlewares=(),
            confirmed=self.confirmed,
        )

    async def episode(self, batch: list[TaskMessage], *, fault: Any = None) -> Any:
        held = HeldSession(await self.codec.load(self.broker.state))
        plan, _ = await self.decider.decide(INSTANCE, held, list(batch))
        await commit_episode(plan, self.broker.io(), FaultPoints(fault), self.confirmed)
        return plan


def start(name: str = "two_steps", value: int = 3) -> TaskMessage:
    instance = OrchestrationInstance(INSTANCE, EXECUTION)
    event = ExecutionStartedEvent(name=name, orchestration_instance=instance, input=encode_payload(value))
    return TaskMessage(event=event, orchestration_instance=instance)


def result_of(task_id: int, value: int) -> TaskMessage:
    event = TaskCompletedEvent(task_scheduled_id=task_id, result=encode_payload(value))
    return TaskMessage(event=event, orchestration_instance=OrchestrationInstance(INSTANCE, EXECUTION))


def tracked_history(broker: FakeBroker) -> tuple[dict[str, list[HistoryEvent]], dict[str, Any]]:
    """Apply the tracking queue as the tracking dispatcher and the instance store would (by index)."""
    histories: dict[str, list[HistoryEvent]] = {}
    states: dict[str, Any] = {}
    for message in broker.delivered(OPTIONS.tracking_queue):
        record = decode_tracking_record(message.body)
        history = histories.setdefault(record.execution_id, [])
        assert record.first_event_index <= len(history), "a tracking record skipped events"
        history.extend(record.events[len(history) - record.first_event_index :])
        version, _ = states.get(record.execution_id, (-1, None))
        if record.end_index >= version:
            states[record.execution_id] = (record.end_index, record.state)
    return histories, {k: v for k, (_, v) in states.items()}


def activity_messages(broker: FakeBroker) -> list[TaskMessage]:
    return [decode_task_message(m.body) for m in broker.delivered(OPTIONS.worker_queue)]


async def test_an_episode_sends_then_writes_state_then_tracks_then_completes() -> None:
    broker = FakeBroker()
    await Worker(broker).episode([start()])
    assert broker.calls == ["send:task", "set_state", "send:tracking", "complete"]
    [work] = broker.delivered(OPTIONS.worker_queue)
    assert work.message_id == f"{INSTANCE}:{EXECUTION}:0:task"
    assert work.session_id is None
    assert SessionStateCodec.peek_header(broker.state)["event_count"] == 4


async def test_a_finished_instance_is_tracked_before_its_state_is_cleared() -> None:
    broker = FakeBroker()
    worker = Worker(broker)
    await worker.episode([start()])
    await worker.episode([result_of(0, 6)])
    broker.calls.clear()
    await worker.episode([result_of(1, 12)])
    assert broker.calls == ["set_state", "send:tracking", "clear_state", "complete"]
    assert broker.state is None
    _, states = tracked_history(broker)
    assert states[EXECUTION].status is OrchestrationStatus.COMPLETED
    assert states[EXECUTION].output == "12"


async def test_duplicates_and_stale_messages_only_complete_the_batch() -> None:
    broker = FakeBroker()
    worker = Worker(broker)
    await worker.episode([start()])
    await worker.episode([result_of(0, 6)])
    state_before = broker.state
    broker.calls.clear()
    await worker.episode([result_of(0, 6), start()])
    assert broker.calls == ["complete"]
    assert broker.state == state_before


SCENARIO = [[start()], [result_of(0, 6)], [result_of(1, 12)]]
POINTS = ["orchestration.after_send", "orchestration.after_state", "orchestration.after_complete"]


async def run_scenario(crash_episode: int | None, point: str | None) -> FakeBroker:
    broker = FakeBroker()
    for index, batch in enumerate(SCENARIO):
        fault = raise_at(point) if index == crash_episode and point else None
        try:
            await Worker(broker).episode(batch, fault=fault)
        except Crash:
            if point != "orchestration.after_complete":
                # The batch was not completed: Service Bus redelivers it to a (fresh) worker.
                await Worker(broker).episode(batch)
    return broker


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("crash_episode", [0, 1, 2])
async def test_a_crash_between_any_two_steps_loses_nothing_and_duplicates_nothing(
    crash_episode: int, point: str
) -> None:
    clean = await run_scenario(None, None)
    broker = await run_scenario(crash_episode, point)

    histories, states = tracked_history(broker)
    clean_histories, _ = tracked_history(clean)
    kinds = [type(e).__name__ for e in histories[EXECUTION]]
    assert kinds == [type(e).__name__ for e in clean_histories[EXECUTION]]
    assert kinds.count("TaskScheduledEvent") == 2
    assert kinds.count("TaskCompletedEvent") == 2
    assert kinds.count("ExecutionCompletedEvent") == 1
    assert states[EXECUTION].status is OrchestrationStatus.COMPLETED
    assert states[EXECUTION].output == "12"
    # Activities: exactly one message per scheduled task survives duplicate detection.
    assert sorted(m.event.event_id for m in activity_messages(broker)) == [0, 1]
    assert broker.state is None


async def test_a_crash_after_the_state_write_resends_tracking_with_the_same_id() -> None:
    broker = FakeBroker()
    with pytest.raises(Crash):
        await Worker(broker).episode([start()], fault=raise_at("orchestration.after_state"))
    assert broker.delivered(OPTIONS.tracking_queue) == []
    await Worker(broker).episode([start()])
    [record] = broker.delivered(OPTIONS.tracking_queue)
    assert decode_tracking_record(record.body).first_event_index == 0
    # The next episode of a worker that did not confirm the send re-sends it; the broker drops it.
    sent_before = broker.sent_total
    await Worker(broker).episode([result_of(0, 6)])
    assert broker.sent_total > sent_before
    assert [
        decode_tracking_record(m.body).first_event_index for m in broker.delivered(OPTIONS.tracking_queue)
    ] == [
        0,
        4,
    ]


async def test_continue_as_new_tracks_every_generation() -> None:
    broker = FakeBroker()
    await Worker(broker).episode([start("generations", 0)])
    histories, states = tracked_history(broker)
    assert len(states) == 3
    statuses = sorted(s.status for s in states.values())
    assert statuses == sorted(
        [
            OrchestrationStatus.CONTINUED_AS_NEW,
            OrchestrationStatus.CONTINUED_AS_NEW,
            OrchestrationStatus.COMPLETED,
        ]
    )
    final = next(s for s in states.values() if s.status is OrchestrationStatus.COMPLETED)
    assert final.output == "2" and final.generation == 2
    assert all(h and type(h[1]).__name__ == "ExecutionStartedEvent" for h in histories.values())
    assert broker.state is None


async def test_history_past_the_maximum_terminates_the_instance_with_the_reason() -> None:
    options = TaskHubOptions(
        hub_name="hub", session_overflow_threshold=2000, session_max_size=4000, compress_threshold=10**9
    )
    broker = FakeBroker()
    worker = Worker(broker, options)
    await worker.episode([start(value=1)])
    state_before = broker.state
    big = random.Random(3).randbytes(6000).hex()  # gzip cannot bring it under the limit
    event = TaskCompletedEvent(task_scheduled_id=0, result=encode_payload(big))
    plan = await worker.episode(
        [TaskMessage(event=event, orchestration_instance=OrchestrationInstance(INSTANCE))]
    )
    assert plan.terminated_for_size and "4000 bytes" in plan.terminated_for_size
    assert broker.state == state_before, "the oversized history must not be written"
    [terminate] = broker.delivered(options.orchestrator_queue, "terminate")
    reason = decode_task_message(terminate.body).event.input
    assert "exceeded the termination threshold of 4000 bytes" in reason
    # The terminate then ends the instance: status Terminated, reason as output, state cleared.
    await worker.episode([decode_task_message(terminate.body)])
    _, states = tracked_history(broker)
    assert states[EXECUTION].status is OrchestrationStatus.TERMINATED
    assert "exceeded" in states[EXECUTION].output
    assert broker.state is None


async def test_a_result_that_overtakes_the_uncommitted_start_is_applied_with_it() -> None:
    broker = FakeBroker()
    with pytest.raises(Crash):
        await Worker(broker).episode([start()], fault=raise_at("orchestration.after_send"))
    # The activity ran meanwhile; its result sits behind the redelivered start in the session.
    await Worker(broker).episode([start(), result_of(0, 6)])
    works = activity_messages(broker)
    assert sorted(m.event.event_id for m in works) == [0, 1]
    assert decode_task_message(broker.delivered(OPTIONS.worker_queue)[1].body).event.input == "6"
    histories, _ = tracked_history(broker)
    kinds = [type(e).__name__ for e in histories[EXECUTION]]
    assert kinds.count("ExecutionStartedEvent") == 1 and kinds.count("TaskScheduledEvent") == 2


async def test_a_result_that_overtakes_the_decision_it_answers_is_kept_until_the_decision() -> None:
    broker = FakeBroker()
    await Worker(broker).episode([start()])
    with pytest.raises(Crash):
        await Worker(broker).episode([result_of(0, 6)], fault=raise_at("orchestration.after_send"))
    # The crashed episode scheduled activity 1, which ran; its result is received before the first
    # activity's redelivered result (a separate batch), so no state records activity 1 yet.
    await Worker(broker).episode([result_of(1, 12)])
    await Worker(broker).episode([result_of(0, 6)])
    assert broker.state is None, "the instance did not finish"
    _, states = tracked_history(broker)
    assert states[EXECUTION].output == "12"
    # the replay's own message for activity 1 was a duplicate: activity 1 was sent once
    assert sorted(m.event.event_id for m in activity_messages(broker)) == [0, 1]


async def test_an_extended_session_resumes_the_live_orchestrator_without_replay() -> None:
    starts: list[bool] = []

    async def counted(ctx: Any, value: int) -> int:
        starts.append(ctx.is_replaying)
        first = await ctx.call_activity("double", value)
        return await ctx.call_activity("double", first)

    def make(keep_live: bool) -> tuple[FakeBroker, EpisodeDecider, HeldSession, SessionStateCodec]:
        reg = Registry()
        reg.add_orchestrator(counted, name="two_steps")
        broker = FakeBroker()
        codec = SessionStateCodec(OPTIONS, MemoryPayloadStore())
        decider = EpisodeDecider(
            options=OPTIONS,
            codec=codec,
            executor=OrchestrationExecutor(reg),
            middlewares=(),
            confirmed=ConfirmedTracking(),
            keep_live=keep_live,
        )
        return broker, decider, HeldSession(None), codec

    outcomes = []
    for keep_live in (True, False):
        starts.clear()
        broker, decider, held, _codec = make(keep_live)
        for batch in SCENARIO:
            plan, result = await decider.decide(INSTANCE, held, list(batch))
            await commit_episode(plan, broker.io(), FaultPoints(None), decider.confirmed)
            held.loaded = plan.next_session
            if result is not None and result.is_complete:
                held.live = None
        histories, states = tracked_history(broker)
        outcomes.append(
            ([type(e).__name__ for e in histories[EXECUTION]], states[EXECUTION].output, list(starts))
        )
    live, replayed = outcomes
    assert live[0] == replayed[0] and live[1] == replayed[1] == "12"
    assert live[2] == [False], "the live orchestrator must start once and never replay"
    assert replayed[2] == [False, True, True]
