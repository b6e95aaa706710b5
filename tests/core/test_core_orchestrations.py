"""Orchestration behaviours driven through synthetic histories (every step also checked live)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from core_builders import (
    T0,
    Driver,
    completed,
    failed,
    fired,
    names,
    raised,
    resumed,
    started,
    sub_completed,
    sub_failed,
    suspended,
    terminated,
)

from dtf_sb.core import (
    CompleteOrchestrationAction,
    CreateSubOrchestrationAction,
    CreateTimerAction,
    EventTimeoutError,
    OrchestrationStatus,
    OrchestratorNotRegisteredError,
    ScheduleTaskAction,
    SendEventAction,
    SubOrchestrationFailedError,
    TaskFailedError,
)
from dtf_sb.core.codec import decode_payload


# -- when_any / when_all --------------------------------------------------------------------------
async def activity_or_timeout(ctx, _):
    work = ctx.call_activity("slow")
    timeout = ctx.create_timer(timedelta(seconds=10))
    winner = await ctx.when_any([work, timeout])
    return "TimedOut" if winner is timeout else winner.get_result()


def test_when_any_activity_wins():
    driver = Driver(activity_or_timeout)
    first = driver.step(started("activity_or_timeout"))
    assert [type(a) for a in first.actions] == [ScheduleTaskAction, CreateTimerAction]
    assert first.actions[1].fire_at == T0 + timedelta(seconds=10)
    result = driver.step(completed(0, "greeting"))
    assert decode_payload(result.output) == "greeting"
    late = driver.step(fired(1))
    assert late.new_history_events == []
    assert [reason for _, reason in late.dropped_events] == ["instance already completed"]


def test_when_any_timer_wins():
    driver = Driver(activity_or_timeout)
    driver.step(started("activity_or_timeout"))
    assert decode_payload(driver.step(fired(1)).output) == "TimedOut"


def test_when_any_both_in_one_batch_first_in_batch_wins():
    driver = Driver(activity_or_timeout)
    driver.step(started("activity_or_timeout"))
    result = driver.step(fired(1), completed(0, "late"))
    assert decode_payload(result.output) == "TimedOut"
    assert [reason for _, reason in result.dropped_events] == ["arrived after the execution completed"]


def test_when_all_fan_out_fan_in_in_order():
    async def fan(ctx, n):
        return sum(await ctx.when_all([ctx.call_activity("square", i) for i in range(n)]))

    driver = Driver(fan)
    assert len(driver.step(started("fan", 4)).actions) == 4
    driver.step(completed(3, 9), completed(1, 1))
    result = driver.step(completed(0, 0), completed(2, 4))
    assert decode_payload(result.output) == 14


def test_when_all_fails_on_first_failure():
    async def fan(ctx, _):
        try:
            await ctx.when_all([ctx.call_activity("a"), ctx.call_activity("b")])
        except TaskFailedError as exc:
            return exc.message

    driver = Driver(fan)
    driver.step(started("fan"))
    assert decode_payload(driver.step(failed(1, "b broke")).output) == "b broke"


# -- external events ------------------------------------------------------------------------------
async def approval(ctx, _):
    try:
        return await ctx.wait_for_external_event("Approval", timeout=timedelta(hours=1))
    except EventTimeoutError:
        return "timeout"


def test_external_event_before_timeout():
    driver = Driver(approval)
    (timer,) = driver.step(started("approval")).actions
    assert isinstance(timer, CreateTimerAction)
    assert decode_payload(driver.step(raised("approval", {"ok": True})).output) == {"ok": True}


def test_external_event_timeout():
    driver = Driver(approval)
    driver.step(started("approval"))
    assert decode_payload(driver.step(fired(0)).output) == "timeout"


def test_event_after_timeout_goes_to_the_next_waiter():
    async def twice(ctx, _):
        try:
            await ctx.wait_for_external_event("x", timeout=5)
        except EventTimeoutError:
            pass
        return await ctx.wait_for_external_event("x")

    driver = Driver(twice)
    driver.step(started("twice"))
    driver.step(fired(0))
    assert decode_payload(driver.step(raised("x", 7)).output) == 7


def test_events_are_buffered_until_awaited_and_served_in_order():
    async def collector(ctx, _):
        await ctx.call_activity("first")
        a = ctx.wait_for_external_event("item")
        b = ctx.wait_for_external_event("ITEM")
        c = ctx.wait_for_external_event("item")
        return await ctx.when_all([a, b, c])

    driver = Driver(collector)
    driver.step(started("collector"))
    driver.step(raised("item", 1), raised("Item", 2))  # nobody waits yet: buffered
    assert driver.results[-1].status is OrchestrationStatus.RUNNING
    driver.step(completed(0))
    assert decode_payload(driver.step(raised("item", 3)).output) == [1, 2, 3]


# -- continue-as-new ------------------------------------------------------------------------------
async def counter(ctx, total):
    value = await ctx.wait_for_external_event("add")
    total += value
    ctx.set_custom_status({"total": total})
    if total >= 6:
        return total
    ctx.continue_as_new(total)


def test_continue_as_new_carries_unconsumed_events_into_the_next_generation():
    driver = Driver(counter)
    driver.step(started("counter", 0))
    result = driver.step(raised("add", 1, "m1"), raised("add", 2, "m2"), raised("add", 3, "m3"))
    assert result.status is OrchestrationStatus.COMPLETED
    assert decode_payload(result.output) == 6
    gens = result.generations
    assert [g.status for g in gens] == [
        OrchestrationStatus.CONTINUED_AS_NEW,
        OrchestrationStatus.CONTINUED_AS_NEW,
        OrchestrationStatus.COMPLETED,
    ]
    assert len({g.execution_id for g in gens}) == 3
    assert [g.runtime_state.generation for g in gens] == [0, 1, 2]
    assert [g.runtime_state.input for g in gens] == ["0", "1", "3"]
    assert [len(g.completion.carryover_events) for g in gens[:2]] == [2, 1]
    assert names(gens[1].new_history_events) == [
        "OrchestratorStarted",
        "ExecutionStarted",
        "EventRaised",  # the second carried event is handed on, unprocessed, to generation 2
        "ContinueAsNew",
        "OrchestratorCompleted",
    ]
    assert gens[0].runtime_state.output == "1"  # ContinueAsNew result is the next input
    assert decode_payload(result.custom_status) == {"total": 6}


def test_continue_as_new_over_several_episodes():
    driver = Driver(counter)
    first = driver.step(started("counter", 0))
    execution_ids = {first.execution_id}
    for value in (1, 2):
        result = driver.step(raised("add", value))
        assert result.status is OrchestrationStatus.RUNNING
        assert [g.status for g in result.previous_generations] == [OrchestrationStatus.CONTINUED_AS_NEW]
        execution_ids.add(result.execution_id)
        assert names(driver.history)[:2] == ["OrchestratorStarted", "ExecutionStarted"]
    result = driver.step(raised("add", 3))
    assert decode_payload(result.output) == 6
    assert len(execution_ids) == 3
    assert len(driver.generations) == 2


@pytest.mark.parametrize("save_events", [True, False])
def test_continue_as_new_save_events(save_events):
    async def looping(ctx, generation):
        if generation == 1:
            return await ctx.wait_for_external_event("ping")
        await ctx.call_activity("step")
        ctx.continue_as_new(1, save_events=save_events)

    driver = Driver(looping)
    driver.step(started("looping", 0))
    driver.step(raised("ping", "early"))  # buffered in generation 0
    result = driver.step(completed(0))
    if save_events:
        assert decode_payload(result.output) == "early"
    else:
        assert result.status is OrchestrationStatus.RUNNING


def test_continue_as_new_with_new_version():
    async def v1(ctx, _):
        ctx.continue_as_new("from v1", version="2")

    async def v2(ctx, value):
        return f"{ctx.version}: {value}"

    driver = Driver(check_live=True)
    driver.registry.add_orchestrator(v1, name="versioned", version="1")
    driver.registry.add_orchestrator(v2, name="versioned", version="2")
    result = driver.step(started("versioned", version="1"))
    assert decode_payload(result.output) == "2: from v1"
    assert result.previous_generations[0].completion.new_version == "2"


# -- suspend / resume / terminate -----------------------------------------------------------------
async def two_steps(ctx, _):
    first = await ctx.call_activity("one")
    second = await ctx.call_activity("two")
    return [first, second]


def test_suspended_instance_buffers_events_until_resumed():
    driver = Driver(two_steps)
    driver.step(started("two_steps"))
    assert driver.step(suspended()).status is OrchestrationStatus.SUSPENDED
    held = driver.step(completed(0, 1))
    assert held.status is OrchestrationStatus.SUSPENDED
    assert held.actions == []
    back = driver.step(resumed())
    assert back.status is OrchestrationStatus.RUNNING
    assert [(type(a), a.name) for a in back.actions] == [(ScheduleTaskAction, "two")]
    assert decode_payload(driver.step(completed(1, 2)).output) == [1, 2]


def test_suspend_and_resume_in_one_batch():
    driver = Driver(two_steps)
    driver.step(started("two_steps"))
    result = driver.step(suspended(), completed(0, 1), resumed())
    assert [a.name for a in result.actions] == ["two"]


def test_terminate_mid_flight_ignores_everything_after():
    cleanup: list[str] = []

    async def guarded(ctx, _):
        try:
            return await ctx.call_activity("long")
        finally:
            cleanup.append(ctx.is_replaying)
            ctx.call_activity("should-not-be-scheduled")

    driver = Driver(guarded, check_live=False)
    driver.step(started("guarded"))
    result = driver.step(terminated("operator said so"))
    assert result.status is OrchestrationStatus.TERMINATED
    assert decode_payload(result.output) == "operator said so"
    assert [a.kind for a in result.actions] == ["complete"]
    assert names(result.new_history_events) == [
        "OrchestratorStarted",
        "ExecutionTerminated",
        "ExecutionCompleted",
        "OrchestratorCompleted",
    ]
    # episode 1's orchestrator is discarded quietly (replaying); episode 2's is closed by the terminate
    assert cleanup == [True, False]
    late = driver.step(completed(0, "too late"), raised("x"))
    assert late.new_history_events == []
    assert {reason for _, reason in late.dropped_events} == {"instance already terminated"}


def test_terminate_while_suspended():
    driver = Driver(two_steps)
    driver.step(started("two_steps"))
    driver.step(suspended())
    assert driver.step(terminated()).status is OrchestrationStatus.TERMINATED


# -- sub-orchestrations ---------------------------------------------------------------------------
def test_sub_orchestration_actions_and_results():
    async def parent(ctx, _):
        a = ctx.call_sub_orchestrator("child", 1)
        b = ctx.call_sub_orchestrator("child", 2, instance_id="explicit", tags={"k": "child"})
        try:
            await b
        except SubOrchestrationFailedError as exc:
            return [await a, exc.message, exc.details.error_type]

    driver = Driver(parent)
    first = driver.step(started("parent", tags={"k": "parent", "p": "1"}))
    a, b = first.actions
    assert isinstance(a, CreateSubOrchestrationAction)
    assert a.instance_id == "execution-1:0"
    assert b.instance_id == "explicit"
    assert a.tags == {"k": "parent", "p": "1"}
    assert b.tags == {"k": "child", "p": "1"}
    assert a.execution_id != b.execution_id
    driver.step(sub_completed(0, "one"))
    result = driver.step(sub_failed(1, "child broke"))
    assert decode_payload(result.output) == ["one", "child broke", "ValueError"]


# -- the context API ------------------------------------------------------------------------------
def test_time_uuid_custom_status_and_send_event_are_deterministic():
    seen: list[tuple] = []

    async def orchestration(ctx, _):
        first = (ctx.current_utc_datetime, ctx.new_uuid(), ctx.new_uuid())
        await ctx.create_timer(ctx.current_utc_datetime + timedelta(minutes=5))
        seen.append((first, ctx.current_utc_datetime, ctx.is_replaying))
        ctx.set_custom_status({"stage": "after timer"})
        ctx.send_event("other-instance", "Ping", {"from": ctx.instance_id})
        return [str(first[1]), str(first[2])]

    driver = Driver(orchestration, check_live=False)
    driver.step(started("orchestration"), advance=timedelta(minutes=5))
    result = driver.step(fired(0, T0 + timedelta(minutes=5)))
    (first, later, replaying) = seen[0]
    assert first[0] == T0
    assert later == T0 + timedelta(minutes=5)
    assert replaying is False
    assert uuid.UUID(first[1]).version == 5
    assert first[1] != first[2]
    assert decode_payload(result.output) == [first[1], first[2]]
    send = next(a for a in result.actions if isinstance(a, SendEventAction))
    assert (send.instance_id, send.name, decode_payload(send.data)) == (
        "other-instance",
        "Ping",
        {"from": "instance-1"},
    )
    assert "EventSent" in names(result.new_history_events)
    assert decode_payload(result.custom_status) == {"stage": "after timer"}
    # a full replay re-derives the same uuids
    again = driver.executor.execute(
        "instance-1", driver.history[: len(driver.history) - 5], [fired(0)], now=later
    )
    assert again.output == result.output


def test_generator_orchestrator():
    def generator(ctx, value):
        first = yield ctx.call_activity("double", value)
        try:
            yield ctx.call_activity("explode")
        except TaskFailedError as exc:
            caught = exc.message
        results = yield ctx.when_all([ctx.call_activity("double", first), ctx.create_timer(1)])
        return [first, caught, results]

    driver = Driver(generator)
    driver.step(started("generator", 2))
    driver.step(completed(0, 4))
    driver.step(failed(1, "kaboom"))
    result = driver.step(completed(2, 8), fired(3))
    assert decode_payload(result.output) == [4, "kaboom", [8, None]]


def test_plain_function_and_single_argument_orchestrators():
    def immediate(ctx, value):
        return value + 1

    async def no_input(ctx):
        return ctx.name

    assert decode_payload(Driver(immediate).step(started("immediate", 1)).output) == 2
    assert decode_payload(Driver(no_input).step(started("no_input")).output) == "no_input"


class _ForeignAwaitable:
    """Stands for an event-loop future: it yields something that is not a durable task."""

    def __await__(self):
        yield "a loop future"


def test_awaiting_non_durable_awaitables_fails_clearly():
    async def wrong(ctx, _):
        await _ForeignAwaitable()

    result = Driver(wrong).step(started("wrong"))
    assert result.status is OrchestrationStatus.FAILED
    assert "asyncio primitives do not work" in result.completion.failure_details.message


def test_unencodable_result_fails_the_instance():
    async def returns_object(ctx, _):
        return {"value": object()}

    result = Driver(returns_object).step(started("returns_object"))
    assert result.status is OrchestrationStatus.FAILED
    assert "$.value" in result.completion.failure_details.message


def test_unregistered_orchestrator_raises_for_the_transport_to_abandon():
    driver = Driver()
    with pytest.raises(OrchestratorNotRegisteredError, match="nope"):
        driver.executor.execute("x", [], [started("nope")])


def test_completion_action_ids_follow_decisions():
    async def one(ctx, _):
        await ctx.call_activity("a")
        return "ok"

    driver = Driver(one)
    driver.step(started("one"))
    result = driver.step(completed(0))
    (complete,) = result.actions
    assert isinstance(complete, CompleteOrchestrationAction)
    assert complete.id == 1
    assert result.new_history_events[-2].event_id == 1


def test_endless_continue_as_new_fails_instead_of_hanging():
    async def forever(ctx, n):
        ctx.continue_as_new(n + 1)

    result = Driver(forever, check_live=False).step(started("forever", 0))
    assert result.status is OrchestrationStatus.FAILED
    assert "endless loop" in result.completion.failure_details.message
    assert len(result.previous_generations) == 1000
