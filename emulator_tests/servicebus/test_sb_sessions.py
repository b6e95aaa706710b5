"""Message sessions: routing, FIFO order, exclusive locks, session state and session browsing."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage
from azure.servicebus.exceptions import OperationTimeoutError, SessionCannotBeLockedError
from sbkit import SDK_VERSION, Sdk, ids_of, peek_all, receive_n, send, send_each, text_of


async def test_messages_route_to_their_session(sdk: Sdk, entity: Any) -> None:
    queue = entity("s-multi", sessions=True)
    sessions = sdk.ids("route", 3)
    messages = [
        ServiceBusMessage(f"{sid}:{i}", session_id=sid, message_id=f"{sid}-m{i}")
        for i in range(3)
        for sid in sessions
    ]
    async with sdk.client() as client:
        await send_each(client, queue, messages)
        for sid in reversed(sessions):
            async with client.get_queue_receiver(queue, session_id=sid) as receiver:
                assert receiver.session.session_id == sid
                got = await receive_n(receiver, 3)
                assert [text_of(m) for m in got] == [f"{sid}:{i}" for i in range(3)], (
                    "a session receiver sees only its own session's messages, in order"
                )
                assert {m.session_id for m in got} == {sid}
                for m in got:
                    await receiver.complete_message(m)
                assert await peek_all(receiver) == []


async def test_next_available_session(sdk: Sdk, entity: Any) -> None:
    queue = entity(f"s-next-{sdk.flavor}", sessions=True)
    a, b = sdk.ids("next", 2)
    async with sdk.client() as client:
        await send_each(
            client, queue, [ServiceBusMessage("a", session_id=a), ServiceBusMessage("b", session_id=b)]
        )
        seen: list[str] = []
        for _ in range(2):
            async with client.get_queue_receiver(
                queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=5
            ) as rx:
                sid = rx.session.session_id
                assert sid in (a, b), f"the broker names the session it locked, got {sid!r}"
                got = await receive_n(rx, 1)
                assert [m.session_id for m in got] == [sid]
                await rx.complete_message(got[0])
                seen.append(sid)
        assert sorted(seen) == sorted([a, b]), "each next-available receiver locks a different session"


async def test_session_is_strictly_fifo(sdk: Sdk, entity: Any) -> None:
    queue = entity("s-fifo", sessions=True)
    [sid] = sdk.ids("fifo", 1)
    async with sdk.client() as client:
        async with client.get_queue_sender(queue) as sender:
            for start in range(0, 50, 10):
                await sender.send_messages(
                    [ServiceBusMessage(str(i), session_id=sid) for i in range(start, start + 10)]
                )
        async with client.get_queue_receiver(queue, session_id=sid) as receiver:
            got = []
            for _ in range(50):
                batch = await receiver.receive_messages(max_message_count=7, max_wait_time=2)
                if not batch:
                    break
                for m in batch:
                    await receiver.complete_message(m)
                got.extend(batch)
                if len(got) >= 50:
                    break
            assert [int(text_of(m)) for m in got] == list(range(50)), "session order is send order"
            seqs = [m.sequence_number for m in got]
            assert seqs == sorted(seqs)


async def test_locked_session_cannot_be_taken_by_second_receiver(
    sdk: Sdk, entity: Any, backend_name: str
) -> None:
    queue = entity("s-locked", sessions=True)
    [sid] = sdk.ids("locked", 1)
    async with sdk.client() as client:
        await send(client, queue, ServiceBusMessage("mine", session_id=sid))
        # retry_total=0: the SDK retries this error; one attempt is enough to see the mapping.
        async with sdk.client(retry_total=0) as other:
            async with client.get_queue_receiver(queue, session_id=sid) as owner:
                with pytest.raises((SessionCannotBeLockedError, OperationTimeoutError)) as err:
                    async with other.get_queue_receiver(queue, session_id=sid, max_wait_time=2) as intruder:
                        await intruder.receive_messages(max_wait_time=2)
                if backend_name == "embedded":
                    assert type(err.value) is SessionCannotBeLockedError, (
                        "Service Bus answers a locked session at once with session-cannot-be-locked"
                    )
                [msg] = await receive_n(owner, 1)
                assert text_of(msg) == "mine", "the owner keeps its session"
                await owner.complete_message(msg)


async def test_next_available_with_no_sessions_times_out(sdk: Sdk, entity: Any) -> None:
    queue = entity("s-empty", sessions=True)
    # retry_total=0 so one 2 s attempt shows the mapping instead of the SDK's four.
    async with sdk.client(retry_total=0) as client:
        with pytest.raises(OperationTimeoutError):
            async with client.get_queue_receiver(
                queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=2
            ) as receiver:
                await receiver.receive_messages(max_wait_time=2)


async def test_session_state_set_get_clear(sdk: Sdk, entity: Any) -> None:
    queue = entity("s-state", sessions=True)
    [sid] = sdk.ids("state", 1)
    big = os.urandom(200 * 1024)
    async with sdk.client() as client:
        await send(client, queue, ServiceBusMessage("x", session_id=sid))
        async with client.get_queue_receiver(queue, session_id=sid) as receiver:
            assert await receiver.session.get_state() is None, "a new session has no state"
            await receiver.session.set_state(b"small")
            assert await receiver.session.get_state() == b"small"
            await receiver.session.set_state(big)
            assert await receiver.session.get_state() == big, "200 KB of session state round-trips"
        async with client.get_queue_receiver(queue, session_id=sid) as receiver:
            assert await receiver.session.get_state() == big, "state outlives the receiver that set it"
            await receiver.session.set_state(None)
            assert await receiver.session.get_state() is None, "setting None clears the state"
            [msg] = await receive_n(receiver, 1)
            await receiver.complete_message(msg)


async def test_renew_session_lock(sdk: Sdk, entity: Any) -> None:
    queue = entity("s-renew", sessions=True)
    [sid] = sdk.ids("srenew", 1)
    async with sdk.client() as client:
        await send(client, queue, ServiceBusMessage("x", session_id=sid))
        async with client.get_queue_receiver(queue, session_id=sid) as receiver:
            before = receiver.session.locked_until_utc
            assert before is not None, "the attach reports when the session lock ends"
            await asyncio.sleep(1)
            renewed = await receiver.session.renew_lock()
            assert renewed > before
            assert receiver.session.locked_until_utc == renewed
            [msg] = await receive_n(receiver, 1)
            await receiver.complete_message(msg)


async def test_auto_lock_renewer_keeps_session_lock(sdk: Sdk, entity: Any) -> None:
    queue = entity("s-auto-renew", sessions=True)  # LockDuration PT5S
    [sid] = sdk.ids("sautorenew", 1)
    async with sdk.client() as client:
        await send(
            client, queue, [ServiceBusMessage("1", session_id=sid), ServiceBusMessage("2", session_id=sid)]
        )
        renewer = sdk.auto_lock_renewer(max_lock_renewal_duration=60)
        try:
            async with client.get_queue_receiver(queue, session_id=sid) as receiver:
                first_lock = receiver.session.locked_until_utc
                renewer.register(receiver, receiver.session)
                [one] = await receive_n(receiver, 1)
                await receiver.complete_message(one)
                await asyncio.sleep(6)  # longer than the 5 s session lock: only renewal keeps it
                assert receiver.session.locked_until_utc > first_lock, "the renewer extended the session lock"
                assert receiver.session.auto_renew_error is None
                [two] = await receive_n(receiver, 1)
                assert text_of(two) == "2", "the session is still ours after its first lock would have ended"
                await receiver.complete_message(two)
        finally:
            await renewer.close()


@pytest.mark.skipif(SDK_VERSION < (7, 15), reason="list_queue_sessions was added in azure-servicebus 7.15")
async def test_list_queue_sessions(sdk: Sdk, entity: Any) -> None:
    queue = entity("s-list", sessions=True)
    with_msgs, with_state = sdk.ids("list", 2)
    async with sdk.client() as client:
        await send_each(
            client,
            queue,
            [ServiceBusMessage("a", session_id=with_msgs), ServiceBusMessage("b", session_id=with_state)],
        )
        async with client.get_queue_receiver(queue, session_id=with_state) as receiver:
            [msg] = await receive_n(receiver, 1)
            await receiver.complete_message(msg)
            await receiver.session.set_state(b"keep")
        listed = [s async for s in client.list_queue_sessions(queue)]
        assert with_msgs in listed, "a session with active messages is listed"
        assert with_state in listed, "a session with state but no messages is listed"
        async with client.get_queue_receiver(queue, session_id=with_msgs) as receiver:
            [msg] = await receive_n(receiver, 1)
            await receiver.complete_message(msg)
        async with client.get_queue_receiver(queue, session_id=with_state) as receiver:
            await receiver.session.set_state(None)
        listed = [s async for s in client.list_queue_sessions(queue)]
        assert with_msgs not in listed and with_state not in listed, "drained, stateless sessions drop out"


async def test_peek_on_session_from_sequence_number(sdk: Sdk, entity: Any) -> None:
    queue = entity("s-peek", sessions=True)
    mine, other = sdk.ids("speek", 2)
    async with sdk.client() as client:
        await send_each(
            client,
            queue,
            [ServiceBusMessage(f"{i}", session_id=mine, message_id=f"{mine}-{i}") for i in range(4)]
            + [ServiceBusMessage("o", session_id=other, message_id=f"{other}-0")],
        )
        async with client.get_queue_receiver(queue, session_id=mine) as receiver:
            peeked = await receiver.peek_messages(max_message_count=10)
            assert ids_of(peeked) == [f"{mine}-{i}" for i in range(4)], "peek stays within the session"
            tail = await receiver.peek_messages(
                max_message_count=10, sequence_number=peeked[2].sequence_number
            )
            assert ids_of(tail) == [f"{mine}-2", f"{mine}-3"]
            got = await receive_n(receiver, 4)
            for m in got:
                await receiver.complete_message(m)
        async with client.get_queue_receiver(queue, session_id=other) as receiver:
            [m] = await receive_n(receiver, 1)
            await receiver.complete_message(m)
