"""What users get wrong: results that are not JSON, orchestrators a worker does not have, events and
terminations for instances that do not exist. None of it may wedge a worker or poison a queue."""

from __future__ import annotations

from typing import Any

from rtkit import new_instance_id, of_type, output, unchanged_for

from dtf_sb import OrchestrationContext, OrchestrationStatus, TaskFailedError
from dtf_sb.core.history import TaskFailedEvent

TIMEOUT = 30


class Unserializable:
    """Not JSON: an activity returning this cannot report its result as it is."""


async def returns_object(_: Any) -> Any:
    return {"value": Unserializable()}


async def calls_bad_activity(ctx: OrchestrationContext, _: Any) -> dict[str, Any]:
    try:
        await ctx.call_activity(returns_object)
    except TaskFailedError as error:
        return {"caught": error.details.error_type, "message": str(error)}
    return {"caught": None}


async def test_unencodable_activity_result_fails_the_task(start_worker, client) -> None:
    await start_worker([calls_bad_activity], [returns_object])
    iid = await client.schedule_new_orchestration(calls_bad_activity)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    result = output(state)
    assert result["caught"] is not None, "the orchestration should see the activity fail"
    assert "Unserializable" in result["message"]
    history = await client.get_orchestration_history(iid)
    assert len(of_type(history, TaskFailedEvent)) == 1


async def returns_unencodable(ctx: OrchestrationContext, _: Any) -> Any:
    return Unserializable()


async def test_unencodable_orchestration_output_fails_the_instance(start_worker, client) -> None:
    await start_worker([returns_unencodable])
    iid = await client.schedule_new_orchestration(returns_unencodable)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.FAILED
    assert state.failure_details is not None
    assert "Unserializable" in state.failure_details.message


# -- an orchestrator no running worker has --------------------------------------------------------
async def rare_orchestration(ctx: OrchestrationContext, value: int) -> int:
    return value + 1


async def known_orchestration(ctx: OrchestrationContext, _: Any) -> str:
    return "known"


async def test_missing_orchestrator_waits_for_a_worker_that_has_it(start_worker, client) -> None:
    await start_worker([known_orchestration])
    iid = await client.schedule_new_orchestration("rare_orchestration", input=41)
    # The worker keeps serving what it knows meanwhile.
    other = await client.schedule_new_orchestration(known_orchestration)
    assert output(await client.wait_for_orchestration_completion(other, timeout=TIMEOUT)) == "known"

    async def status() -> Any:
        state = await client.get_orchestration_state(iid)
        return state.status if state is not None else None

    pending = await unchanged_for(status, seconds=2.0, what="the unknown orchestration")
    assert pending == OrchestrationStatus.PENDING

    await start_worker([rare_orchestration])
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == 42


# -- messages for instances that do not exist -----------------------------------------------------
async def test_events_and_terminations_for_unknown_instances_are_dropped(start_worker, client) -> None:
    await start_worker([known_orchestration])
    ghost = new_instance_id("ghost")
    await client.raise_orchestration_event(ghost, "Anything", data=1)
    await client.terminate_orchestration(ghost, reason="nothing to stop")
    await client.suspend_orchestration(ghost)
    await client.resume_orchestration(ghost)

    iid = await client.schedule_new_orchestration(known_orchestration)
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    # Nothing was created for the ghost; the dead-letter check at teardown shows nothing was poisoned.
    assert (
        await unchanged_for(
            lambda: client.get_orchestration_state(ghost), seconds=1.0, what="the unknown instance"
        )
        is None
    )
