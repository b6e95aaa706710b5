"""Peek-lock settlement and lock lifetimes: abandon, defer, dead-letter, lock expiry and renewal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import MessageLockLostError
from sbkit import SDK_VERSION, Sdk, ids_of, peek_all, receive_n, send, text_of


async def test_abandon_redelivers_with_incremented_delivery_count(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-abandon")
    [mid] = sdk.ids("abandon", 1)
    async with sdk.client() as client:
        await send(client, queue, ServiceBusMessage("again", message_id=mid))
        async with client.get_queue_receiver(queue) as receiver:
            [first] = await receive_n(receiver, 1)
            assert first.delivery_count == 0
            await receiver.abandon_message(first)
            [second] = await receive_n(receiver, 1)
            assert second.message_id == mid, "an abandoned message comes back"
            assert second.delivery_count == 1, "abandon counts as a delivery attempt"
            assert second.sequence_number == first.sequence_number
            assert text_of(second) == "again"
            await receiver.complete_message(second)
            assert await peek_all(receiver) == []


async def test_defer_then_receive_deferred(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-defer")
    mid, later = sdk.ids("defer", 2)
    async with sdk.client() as client:
        await send(
            client,
            queue,
            [ServiceBusMessage("deferred", message_id=mid), ServiceBusMessage("x", message_id=later)],
        )
        async with client.get_queue_receiver(queue) as receiver:
            [msg] = await receive_n(receiver, 1)
            assert msg.message_id == mid
            seq = msg.sequence_number
            await receiver.defer_message(msg)
            rest = await receive_n(receiver, 1)
            assert ids_of(rest) == [later], "receiving skips the deferred message"
            await receiver.complete_message(rest[0])
            peeked = await receiver.peek_messages(max_message_count=5, sequence_number=seq)
            assert ids_of(peeked) == [mid], "the deferred message is still in the queue"
            assert peeked[0].state == ServiceBusMessageState.DEFERRED
            if SDK_VERSION >= (7, 15):
                [deferred] = await receiver.receive_deferred_messages([seq])
                assert deferred.message_id == mid and text_of(deferred) == "deferred"
                assert deferred.lock_token is not None, "7.15 reads the lock token of a deferred message"
                await receiver.complete_message(deferred)
                assert await peek_all(receiver) == [], "settled deferred message is gone"
        if SDK_VERSION < (7, 15):
            # azure-servicebus 7.14 returns deferred messages with lock_token None (fixed in 7.15), so a
            # peek-locked deferred message cannot be settled there; receive-and-delete takes it instead.
            async with client.get_queue_receiver(
                queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
            ) as rx:
                [deferred] = await rx.receive_deferred_messages([seq])
                assert deferred.message_id == mid and text_of(deferred) == "deferred"
        async with client.get_queue_receiver(queue) as receiver:
            assert await peek_all(receiver) == [], "settled deferred message is gone"


async def test_dead_letter_with_reason_reaches_dlq(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-dead-letter")
    [mid] = sdk.ids("dlq", 1)
    async with sdk.client() as client:
        await send(
            client, queue, ServiceBusMessage("poison", message_id=mid, application_properties={"k": "v"})
        )
        async with client.get_queue_receiver(queue) as receiver:
            [msg] = await receive_n(receiver, 1)
            await receiver.dead_letter_message(msg, reason="BadInput", error_description="field x is missing")
            assert await peek_all(receiver) == [], "dead-lettered message left the queue"
        async with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            [dead] = await receive_n(dlq, 1)
            assert dead.message_id == mid and text_of(dead) == "poison"
            assert dead.dead_letter_reason == "BadInput"
            assert dead.dead_letter_error_description == "field x is missing"
            # Service Bus sets DeadLetterSource only on messages forwarded on from a dead-letter queue;
            # a message dead-lettered in place names no other source.
            assert dead.dead_letter_source in (None, queue)
            assert (dead.application_properties or {}).get(b"k") == b"v", (
                "user properties survive dead-lettering"
            )
            await dlq.complete_message(dead)
            assert await peek_all(dlq) == []


async def test_lock_expiry_redelivers(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-lock-expiry")  # LockDuration PT5S
    [mid] = sdk.ids("expiry", 1)
    async with sdk.client() as client:
        await send(client, queue, ServiceBusMessage("slow", message_id=mid))
        async with client.get_queue_receiver(queue) as receiver:
            [first] = await receive_n(receiver, 1)
            assert first.delivery_count == 0
            redelivered = await receive_n(receiver, 1, max_wait_time=15, max_rounds=1)
            assert ids_of(redelivered) == [mid], "the message comes back once its 5 s lock expires"
            second = redelivered[0]
            assert second.delivery_count == 1, "an expired lock counts as a delivery attempt"
            assert second.lock_token != first.lock_token, "a redelivery carries a new lock"
            with pytest.raises(MessageLockLostError):
                await receiver.complete_message(first)
            await receiver.complete_message(second)


async def test_renew_message_lock_extends_locked_until(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-renew-lock")
    [mid] = sdk.ids("renew", 1)
    async with sdk.client() as client:
        await send(client, queue, ServiceBusMessage("x", message_id=mid))
        async with client.get_queue_receiver(queue) as receiver:
            [msg] = await receive_n(receiver, 1)
            before = msg.locked_until_utc
            await asyncio.sleep(1)
            renewed = await receiver.renew_message_lock(msg)
            assert renewed > before, "renewing restarts the lock from the broker's now"
            assert msg.locked_until_utc == renewed
            await receiver.complete_message(msg)


async def test_max_delivery_count_dead_letters(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-max-delivery")  # MaxDeliveryCount 2
    [mid] = sdk.ids("maxdel", 1)
    async with sdk.client() as client:
        await send(client, queue, ServiceBusMessage("x", message_id=mid))
        async with client.get_queue_receiver(queue) as receiver:
            for attempt in range(2):
                got = await receive_n(receiver, 1)
                assert ids_of(got) == [mid], f"delivery attempt {attempt + 1} of 2"
                assert got[0].delivery_count == attempt
                await receiver.abandon_message(got[0])
            assert await peek_all(receiver) == [], "not delivered a third time"
        async with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            [dead] = await receive_n(dlq, 1)
            assert dead.message_id == mid
            assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
            await dlq.complete_message(dead)


async def test_auto_lock_renewer_keeps_lock_past_lock_duration(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-auto-renew")  # LockDuration PT5S
    [mid] = sdk.ids("autorenew", 1)
    async with sdk.client() as client:
        await send(client, queue, ServiceBusMessage("long work", message_id=mid))
        renewer = sdk.auto_lock_renewer(max_lock_renewal_duration=60)
        try:
            async with client.get_queue_receiver(queue) as receiver:
                [msg] = await receive_n(receiver, 1)
                first_lock = msg.locked_until_utc
                renewer.register(receiver, msg)
                await asyncio.sleep(6)  # longer than the 5 s lock: only renewal keeps it
                assert msg.locked_until_utc > first_lock, "the renewer extended the lock"
                assert msg.auto_renew_error is None
                assert await receiver.receive_messages(max_wait_time=1) == [], (
                    "the renewed lock was never lost"
                )
                await receiver.complete_message(msg)
                assert await peek_all(receiver) == []
        finally:
            await renewer.close()
