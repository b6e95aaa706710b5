"""Continue-as-new: generations, events carried into the next generation, a version change on the
way, and tags kept across generations (DTF GenerationBasicTest, GenerationSignalOrchestrationTest,
GenerationVersionTest, TagsOrchestrationTest, GenerationSubTest)."""

from __future__ import annotations

from typing import Any

from rtkit import kinds, of_type, output, status_when

from dtf_sb import OrchestrationContext, OrchestrationStatus, SubOrchestrationFailedError
from dtf_sb.core.codec import decode_payload
from dtf_sb.core.history import ContinueAsNewEvent, EventRaisedEvent, ExecutionStartedEvent
from dtf_sb.testing.runtime import named

TIMEOUT = 30
GENERATIONS = 4


async def counter(ctx: OrchestrationContext, n: int) -> dict[str, Any]:
    if n == 0:
        await ctx.wait_for_external_event("go")  # lets the test see the first execution id
    if n < GENERATIONS - 1:
        ctx.continue_as_new(n + 1)
        return {}
    return {"n": n, "tags": ctx.tags, "execution_id": ctx.execution_id}


async def test_generations_keep_instance_id_and_tags(start_worker, client) -> None:
    await start_worker([counter])
    tags = {"tenant": "contoso"}
    iid = await client.schedule_new_orchestration(counter, input=0, tags=tags)
    first_execution = (await status_when(client, iid, OrchestrationStatus.RUNNING)).execution_id
    assert first_execution

    await client.raise_orchestration_event(iid, "go")
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    result = output(state)
    assert result["n"] == GENERATIONS - 1
    assert result["tags"] == tags
    assert state.tags == tags
    assert state.execution_id == result["execution_id"]
    assert state.execution_id != first_execution
    assert state.generation == GENERATIONS - 1
    history = await client.get_orchestration_history(iid)
    started = of_type(history, ExecutionStartedEvent)
    assert len(started) == 1, "the latest execution's history starts fresh"
    assert decode_payload(started[0].input) == GENERATIONS - 1
    assert started[0].generation == GENERATIONS - 1
    assert started[0].tags == tags
    # The first generation's own history ends with ContinueAsNew carrying the next input.
    first = await client.get_orchestration_history(iid, execution_id=first_execution)
    continued = of_type(first, ContinueAsNewEvent)
    assert len(continued) == 1, f"first execution's history: {kinds(first)}"

    assert decode_payload(continued[0].result) == 1
    first_state = await client.get_orchestration_state(iid, execution_id=first_execution)
    assert first_state is not None
    assert first_state.status == OrchestrationStatus.CONTINUED_AS_NEW


# -- events carried over --------------------------------------------------------------------------
async def summing_actor(ctx: OrchestrationContext, total: int) -> int:
    value = await ctx.wait_for_external_event("add")
    total += value
    if total < 6:
        ctx.continue_as_new(total, save_events=True)
    return total


async def test_events_carry_over_into_the_next_generation(start_worker, client) -> None:
    await start_worker([summing_actor])
    iid = await client.schedule_new_orchestration(summing_actor, input=0)
    await status_when(client, iid, OrchestrationStatus.RUNNING)

    # Raised back to back: whatever a generation does not consume must reach the next one.
    for value in (1, 2, 3):
        await client.raise_orchestration_event(iid, "add", data=value)
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == 6
    assert state.generation == 2
    # However the three events were batched, the last generation got exactly the third one.
    history = await client.get_orchestration_history(iid)
    raised = of_type(history, EventRaisedEvent)
    assert [decode_payload(e.input) for e in raised] == [3]


# -- version change -------------------------------------------------------------------------------
def versioned(version: str, next_version: str | None) -> Any:
    async def upgrade(ctx: OrchestrationContext, trail: list[str]) -> list[str]:
        trail = [*trail, f"{ctx.version}"]
        if next_version is not None:
            ctx.continue_as_new(trail, version=next_version)
            return trail
        return trail

    return named(upgrade, name="Upgrade", version=version)


async def test_continue_as_new_moves_to_a_new_version(start_worker, client) -> None:
    await start_worker([versioned("1", "2"), versioned("2", "3"), versioned("3", None)])
    iid = await client.schedule_new_orchestration("Upgrade", input=[], version="1")

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == ["1", "2", "3"]
    assert state.version == "3"
    history = await client.get_orchestration_history(iid)
    assert of_type(history, ExecutionStartedEvent)[0].version == "3"


# -- a child that continues as new ----------------------------------------------------------------
async def generational_child(ctx: OrchestrationContext, n: int) -> int:
    if n < 3:
        ctx.continue_as_new(n + 1)
        return n
    return n * 10


async def generational_parent(ctx: OrchestrationContext, _: Any) -> int:
    return await ctx.call_sub_orchestrator(generational_child, 0)


async def test_parent_gets_the_last_generation_result_of_its_child(start_worker, client) -> None:
    await start_worker([generational_parent, generational_child])
    iid = await client.schedule_new_orchestration(generational_parent)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == 30


async def failing_generational_child(ctx: OrchestrationContext, n: int) -> int:
    if n < 2:
        ctx.continue_as_new(n + 1)
        return n
    raise ValueError(f"generation {n} failed")


async def parent_of_failing_generations(ctx: OrchestrationContext, _: Any) -> str:
    try:
        await ctx.call_sub_orchestrator(failing_generational_child, 0)
    except SubOrchestrationFailedError as error:
        return str(error)
    return "no failure"


async def test_parent_sees_a_failure_in_a_later_generation_of_its_child(start_worker, client) -> None:
    await start_worker([parent_of_failing_generations, failing_generational_child])
    iid = await client.schedule_new_orchestration(parent_of_failing_generations)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert "generation 2 failed" in output(state)
