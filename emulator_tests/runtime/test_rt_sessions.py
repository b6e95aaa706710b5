"""How the worker uses sessions: held after an episode, given up under pressure, accepted in surges,
and never taken back silently by the SDK once lost.

Opening a session receiver costs the Python SDK a new connection and about half a second of its own
polling, so the dispatchers avoid accepts where they can (a held session takes the instance's next
message) and add pending accepts while sessions are waiting (a surge that ends with the backlog).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import SessionLockLostError
from rtkit import output, status_when, wait_until

from dtf_sb import OrchestrationContext, OrchestrationStatus
from dtf_sb.servicebus._loop import pin_session

TIMEOUT = 30


async def increment(x: int) -> int:
    return x + 1


async def three_steps(ctx: OrchestrationContext, start: int) -> int:
    value = start
    for _ in range(3):
        value = await ctx.call_activity(increment, value)
    return value


async def wait_for_go(ctx: OrchestrationContext, _: None) -> str:
    return await ctx.wait_for_external_event("go")


async def answer(ctx: OrchestrationContext, value: int) -> int:
    return value


async def test_a_held_session_takes_the_instance_next_messages_without_a_new_accept(
    start_worker, client, worker_options
) -> None:
    worker = await start_worker(
        [three_steps], [increment], worker_options=replace(worker_options, session_hold_seconds=20.0)
    )
    iid = await client.schedule_new_orchestration(three_steps, input=10)
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert output(state) == 13

    stats = worker.stats()
    # start + three activity results: four episodes on the one session accepted for the start
    assert stats.orchestration_episodes == 4
    assert stats.orchestration_sessions_accepted == 1
    assert stats.activities_executed == 3
    # the tracking session is held the same way, taking every episode's record
    assert stats.tracking_sessions_accepted == 1


async def test_held_sessions_give_way_when_every_slot_is_taken(start_worker, client, worker_options) -> None:
    # One slot, and a hold far longer than the test: the waiting instance keeps its session only
    # until another instance needs the slot.
    options = replace(worker_options, max_concurrent_orchestrations=1, session_hold_seconds=300.0)
    await start_worker([wait_for_go, answer], [], worker_options=options)

    waiting = await client.schedule_new_orchestration(wait_for_go)
    await status_when(client, waiting, OrchestrationStatus.RUNNING, timeout=TIMEOUT)
    other = await client.schedule_new_orchestration(answer, input=7)
    state = await client.wait_for_orchestration_completion(other, timeout=TIMEOUT)
    assert output(state) == 7

    await client.raise_orchestration_event(waiting, "go", data="went")
    state = await client.wait_for_orchestration_completion(waiting, timeout=TIMEOUT)
    assert output(state) == "went"


async def test_a_backlog_of_sessions_surges_the_pending_accepts_which_then_fall_back(
    start_worker, client, worker_options
) -> None:
    ids = await asyncio.gather(*(client.schedule_new_orchestration(answer, input=i) for i in range(30)))
    options = replace(
        worker_options,
        orchestration_accept_concurrency=1,
        max_orchestration_accept_concurrency=4,
        session_hold_seconds=0.0,
    )
    worker = await start_worker([answer], [], worker_options=options)
    for i, iid in enumerate(ids):
        state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
        assert output(state) == i

    stats = worker.stats()
    assert stats.orchestration_sessions_accepted >= 30
    assert stats.orchestration_peak_accepts > 1, "the backlog never added an accept"
    assert stats.orchestration_peak_accepts <= 4

    async def settled() -> bool:
        return worker.stats().orchestration_pending_accepts == 1

    await wait_until(settled, timeout=TIMEOUT, what="the surge of accepts to end")


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "sdk-default"])
async def test_a_session_receiver_whose_link_closed_does_not_take_its_session_back(hub, pinned: bool) -> None:
    # After a retryable error the SDK closes the receiver's link (which gives the session up) and opens a
    # new one to the same session on the next call. If another worker moved the instance on in between,
    # a write of what the first receiver held would erase that work. Accepted sessions are pinned: the
    # call fails instead. The unpinned case shows the SDK behaviour the pin exists for.
    queue, session_id = hub.options.orchestrator_queue, "pinned-session"
    async with ServiceBusClient.from_connection_string(hub.servicebus_connection_string) as sb:
        first = sb.get_queue_receiver(queue, session_id=session_id)
        await first.__aenter__()
        try:
            if pinned:
                pin_session(first)
            await first.session.set_state(b"episode 1")
            await first._close_handler()  # what the SDK does on a retryable error

            async with sb.get_queue_receiver(queue, session_id=session_id) as other:
                assert await other.session.get_state() == b"episode 1"
                await other.session.set_state(b"episodes 1-2")

            if pinned:
                with pytest.raises(SessionLockLostError):
                    await first.session.set_state(b"stale")
            else:
                await first.session.set_state(b"stale")
        finally:
            await first.close()

        async with sb.get_queue_receiver(queue, session_id=session_id) as after:
            assert await after.session.get_state() == (b"episodes 1-2" if pinned else b"stale")
            await after.session.set_state(None)
