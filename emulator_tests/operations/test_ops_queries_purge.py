"""Instance queries by every filter with paging, and purge with the blobs it removes."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from opskit import TIMEOUT, hub_blobs, new_instance_id, status_when

from dtf_sb import OrchestrationContext, OrchestrationStatus
from dtf_sb.storage.errors import InstanceNotFinishedError

# Incompressible and past the message overflow threshold: the activity input goes to a payload blob.
BIG = base64.b64encode(os.urandom(300_000)).decode("ascii")


async def echo(value: Any) -> Any:
    return value


async def ok(ctx: OrchestrationContext, value: Any) -> Any:
    return await ctx.call_activity(echo, value)


async def boom(ctx: OrchestrationContext, _: Any) -> Any:
    raise RuntimeError("boom")


async def generations(ctx: OrchestrationContext, n: int) -> int:
    if n < 2:
        ctx.continue_as_new(n + 1)
        return n
    return n


async def waits(ctx: OrchestrationContext, _: Any) -> Any:
    return await ctx.wait_for_external_event("go")


async def _all_pages(client: Any, **filters: Any) -> list[Any]:
    states: list[Any] = []
    token = None
    while True:
        page = await client.query_orchestrations(continuation_token=token, **filters)
        states.extend(page.states)
        token = page.continuation_token
        if token is None:
            return states


def _keys(states: list[Any]) -> list[tuple[str, str]]:
    return sorted((s.instance_id, s.status.name) for s in states)


async def test_queries_by_every_filter_and_page_by_page(start_worker, client) -> None:
    await start_worker([ok, boom, generations, waits], [echo])
    run = new_instance_id("q")
    done = [
        await client.schedule_new_orchestration(ok, input=i, instance_id=f"{run}-ok-{i}") for i in range(3)
    ]
    failed = await client.schedule_new_orchestration(boom, instance_id=f"{run}-boom")
    chain = await client.schedule_new_orchestration(generations, input=0, instance_id=f"{run}-gen")
    running = await client.schedule_new_orchestration(waits, instance_id=f"{run}-waits")
    for iid in [*done, failed, chain]:
        await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    await status_when(client, running, OrchestrationStatus.RUNNING)
    later = datetime.now(timezone.utc) + timedelta(seconds=1)
    await asyncio.sleep(1.5)
    late = await client.schedule_new_orchestration(ok, input="late", instance_id=f"{run}-late")
    await client.wait_for_orchestration_completion(late, timeout=TIMEOUT)

    everything = await _all_pages(client, instance_id_prefix=run)
    # Each continue-as-new generation is its own record: three for the chain.
    assert _keys(everything) == sorted(
        [
            *[(iid, "COMPLETED") for iid in done],
            (failed, "FAILED"),
            (chain, "CONTINUED_AS_NEW"),
            (chain, "CONTINUED_AS_NEW"),
            (chain, "COMPLETED"),
            (running, "RUNNING"),
            (late, "COMPLETED"),
        ]
    )
    paged = await _all_pages(client, instance_id_prefix=run, page_size=2)
    assert sorted((s.instance_id, s.execution_id) for s in paged) == sorted(
        (s.instance_id, s.execution_id) for s in everything
    )
    first = await client.query_orchestrations(instance_id_prefix=run, page_size=2)
    assert len(first.states) <= 2 and first.continuation_token is not None

    by_status = await _all_pages(client, instance_id_prefix=run, status=[OrchestrationStatus.FAILED])
    assert _keys(by_status) == [(failed, "FAILED")]
    several = await _all_pages(
        client, instance_id_prefix=run, status=[OrchestrationStatus.RUNNING, OrchestrationStatus.FAILED]
    )
    assert _keys(several) == sorted([(failed, "FAILED"), (running, "RUNNING")])
    by_name = await _all_pages(client, instance_id_prefix=run, name="ok")
    assert sorted(s.instance_id for s in by_name) == sorted([*done, late])
    before = await _all_pages(client, instance_id_prefix=run, created_to=later)
    assert late not in {s.instance_id for s in before} and set(done) <= {s.instance_id for s in before}
    after = await _all_pages(client, instance_id_prefix=run, created_from=later)
    assert [s.instance_id for s in after] == [late]
    assert await _all_pages(client, instance_id_prefix=f"{run}-nothing") == []


async def test_purge_removes_state_history_and_payload_blobs(hub, start_worker, client) -> None:
    await start_worker([ok, waits], [echo])
    iid = await client.schedule_new_orchestration(ok, input=BIG, instance_id=new_instance_id("purge"))
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state.status is OrchestrationStatus.COMPLETED
    before = await hub_blobs(hub, iid)
    assert before["payloads"], "the large input should have gone to a payload blob"
    assert any(n.endswith("history.jsonl") for n in before["instances"])

    result = await client.purge_orchestration(iid)

    assert (result.instances, result.executions) == (1, 1)
    after = await hub_blobs(hub, iid)
    assert after == {"instances": [], "payloads": []}
    removed = len(before["instances"]) + len(before["payloads"])
    pointer = 1  # the latest-execution pointer is removed too but not counted as an execution blob
    assert result.blobs == removed - pointer
    assert await client.get_orchestration_state(iid) is None
    assert await client.get_orchestration_history(iid) == []
    # Purging again finds nothing, and is not an error.
    assert (await client.purge_orchestration(iid)).instances == 0

    running = await client.schedule_new_orchestration(waits, instance_id=new_instance_id("busy"))
    await status_when(client, running, OrchestrationStatus.RUNNING)
    with pytest.raises(InstanceNotFinishedError, match=r"is (RUNNING|Running); only a finished instance"):
        await client.purge_orchestration(running)
    assert await client.get_orchestration_state(running) is not None


async def test_purge_by_filter_takes_only_finished_instances_and_collects_orphans(
    hub, start_worker, client
) -> None:
    await start_worker([ok, boom, waits], [echo])
    run = new_instance_id("pf")
    finished = [
        await client.schedule_new_orchestration(ok, input=1, instance_id=f"{run}-ok"),
        await client.schedule_new_orchestration(boom, instance_id=f"{run}-boom"),
    ]
    running = await client.schedule_new_orchestration(waits, instance_id=f"{run}-waits")
    for iid in finished:
        await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    await status_when(client, running, OrchestrationStatus.RUNNING)
    # A payload left behind by an episode that crashed before it was committed: nothing refers to it.
    orphan = await client._store.payloads.upload(
        b"left behind", instance_id=f"{run}-crashed", execution_id="e1", kind="message"
    )
    progress: list[int] = []

    everything = await client.purge_orchestrations(
        instance_id_prefix=run,
        status=[OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED, OrchestrationStatus.RUNNING],
        on_progress=progress.append,
        orphan_grace=timedelta(0),
    )

    assert everything.instances == 2 and sum(progress) == 2
    assert everything.skipped == [running]
    assert everything.orphaned_payloads >= 1
    for iid in finished:
        assert await client.get_orchestration_state(iid) is None
    assert (await client.get_orchestration_state(running)).status is OrchestrationStatus.RUNNING
    assert orphan not in (await hub_blobs(hub))["payloads"]
