"""Extended sessions give exactly what replay gives: random programs, random delivery orders.

The driver runs every batch twice, once replaying the whole history from scratch and once through a
single live session, and compares actions, new history events, status, custom status and dropped events.
"""

from __future__ import annotations

from core_builders import (
    Driver,
    completed,
    failed,
    fired,
    raised,
    resumed,
    started,
    sub_completed,
    sub_failed,
    suspended,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtf_sb.core import (
    CreateSubOrchestrationAction,
    CreateTimerAction,
    EventTimeoutError,
    RetryOptions,
    ScheduleTaskAction,
    TaskFailedError,
)


async def program(ctx, ops):
    results = []
    for index, op in enumerate(ops):
        kind = op[0]
        try:
            if kind == "activity":
                results.append(await ctx.call_activity(op[1], index))
            elif kind == "retry":
                results.append(
                    await ctx.call_activity(
                        op[1], index, retry=RetryOptions(first_interval=2, max_attempts=3)
                    )
                )
            elif kind == "timer":
                results.append(await ctx.create_timer(op[1]))
            elif kind == "event":
                results.append(await ctx.wait_for_external_event(op[1]))
            elif kind == "event_or_timeout":
                results.append(await ctx.wait_for_external_event(op[1], timeout=5))
            elif kind == "all":
                results.append(await ctx.when_all([ctx.call_activity("fan", i) for i in range(op[1])]))
            elif kind == "any":
                tasks = [ctx.call_activity("race", i) for i in range(op[1])] + [ctx.create_timer(30)]
                winner = await ctx.when_any(tasks)
                results.append(tasks.index(winner))
            elif kind == "sub":
                results.append(await ctx.call_sub_orchestrator("child", index))
            elif kind == "status":
                ctx.set_custom_status({"at": index, "uuid": ctx.new_uuid()})
            elif kind == "send":
                ctx.send_event("peer", "note", index)
            elif kind == "can":
                ctx.continue_as_new(ops[index + 1 :], save_events=op[1])
                return None
        except (TaskFailedError, EventTimeoutError) as exc:
            results.append(type(exc).__name__)
    return results


event_names = st.sampled_from(["alpha", "beta"])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("activity"), st.sampled_from(["a", "b"])),
        st.tuples(st.just("retry"), st.just("r")),
        st.tuples(st.just("timer"), st.integers(1, 100)),
        st.tuples(st.just("event"), event_names),
        st.tuples(st.just("event_or_timeout"), event_names),
        st.tuples(st.just("all"), st.integers(0, 3)),
        st.tuples(st.just("any"), st.integers(1, 3)),
        st.tuples(st.just("sub"), st.just("child")),
        st.tuples(st.just("status"), st.just(0)),
        st.tuples(st.just("send"), st.just(0)),
        st.tuples(st.just("can"), st.booleans()),
    ).map(list),
    max_size=8,
)


def _answers_for(result, data) -> list:
    answers = []
    for generation in result.generations:
        for action in generation.actions:
            if isinstance(action, ScheduleTaskAction):
                if data.draw(st.booleans(), label=f"task {action.id} succeeds"):
                    answers.append(completed(action.id, f"{action.name}-{action.id}"))
                else:
                    answers.append(failed(action.id, f"{action.name} failed"))
            elif isinstance(action, CreateTimerAction):
                answers.append(fired(action.id, action.fire_at))
            elif isinstance(action, CreateSubOrchestrationAction):
                ok = data.draw(st.booleans(), label=f"child {action.id} succeeds")
                answers.append(sub_completed(action.id, "child") if ok else sub_failed(action.id))
    return answers


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.data())
def test_live_session_matches_replay_from_scratch(program_ops, data):
    driver = Driver(program)
    pool = [
        raised(op[1], f"{op[1]}-{i}", f"msg-{i}")
        for i, op in enumerate(program_ops)
        if op[0].startswith("event")
    ]
    pool += [raised("alpha", "spare", "msg-spare")]
    result = driver.step(started("program", program_ops))
    pool += _answers_for(result, data)
    delivered = []
    for _ in range(60):
        if not pool or result.is_complete:
            break
        size = data.draw(st.integers(1, min(3, len(pool))), label="batch size")
        batch = [pool.pop(data.draw(st.integers(0, len(pool) - 1), label="pick")) for _ in range(size)]
        if delivered and data.draw(st.integers(0, 9), label="redeliver") == 0:
            batch.append(data.draw(st.sampled_from(delivered), label="duplicate"))
        if data.draw(st.integers(0, 9), label="suspend") == 0:
            batch = [suspended(), *batch]
            pool.append(resumed())
        delivered.extend(batch)
        result = driver.step(*batch)
        pool += _answers_for(result, data)
    # the final history replays to the same state with no new decisions
    replayed = driver.executor.start(driver.instance_id, driver.history, [])
    assert replayed.result.actions == []
    assert replayed.runtime_state.status is result.status
