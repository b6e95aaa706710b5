"""Time-driven message states: scheduled delivery, cancellation, and expiry to the dead-letter queue."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusMessageState, ServiceBusSubQueue
from sbkit import Sdk, ids_of, peek_all, receive_n, send

SCHEDULE_AHEAD = 3  # seconds; room for a few round trips on a loaded machine


async def _wait_until(when: datetime) -> None:
    delay = (when - datetime.now(timezone.utc)).total_seconds()
    if delay > 0:
        await asyncio.sleep(delay)


async def test_schedule_and_cancel_scheduled_messages(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-scheduled")
    kept, cancelled = sdk.ids("sched", 2)
    async with sdk.client() as client:
        # Both handlers are open before the due time is chosen, so opening them cannot eat the margin.
        async with client.get_queue_sender(queue) as sender, client.get_queue_receiver(queue) as receiver:
            due = datetime.now(timezone.utc) + timedelta(seconds=SCHEDULE_AHEAD)
            seq_kept = await sender.schedule_messages(ServiceBusMessage("kept", message_id=kept), due)
            seq_cancel = await sender.schedule_messages(ServiceBusMessage("gone", message_id=cancelled), due)
            assert len(seq_kept) == 1 and len(seq_cancel) == 1
            assert seq_kept[0] != seq_cancel[0], "each scheduled message gets its own sequence number"
            await sender.cancel_scheduled_messages(seq_cancel)
            peeked = await peek_all(receiver)
            assert ids_of(peeked) == [kept], "a cancelled scheduled message is gone at once"
            assert peeked[0].state == ServiceBusMessageState.SCHEDULED
            assert peeked[0].sequence_number == seq_kept[0]
            assert peeked[0].scheduled_enqueue_time_utc is not None
            early = await receiver.receive_messages(max_wait_time=0.5)
            assert early == [], "a scheduled message is invisible before it is due"
            await _wait_until(due)
            got = await receive_n(receiver, 1, max_wait_time=5)
            assert ids_of(got) == [kept], "the scheduled message arrives when due"
            assert got[0].sequence_number == seq_kept[0]
            await receiver.complete_message(got[0])
            assert await peek_all(receiver) == [], "the cancelled one never appears"


async def test_scheduled_enqueue_time_on_send(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-scheduled-send")
    mid, now_mid = sdk.ids("sched-send", 2)
    async with sdk.client() as client:
        async with client.get_queue_sender(queue) as sender, client.get_queue_receiver(queue) as receiver:
            due = datetime.now(timezone.utc) + timedelta(seconds=SCHEDULE_AHEAD)
            await sender.send_messages(
                [
                    ServiceBusMessage("later", message_id=mid, scheduled_enqueue_time_utc=due),
                    ServiceBusMessage("now", message_id=now_mid),
                ]
            )
            first = await receive_n(receiver, 1)
            assert ids_of(first) == [now_mid]
            await receiver.complete_message(first[0])
            waiting = await peek_all(receiver)
            assert ids_of(waiting) == [mid], "the scheduled message waits in the queue"
            assert waiting[0].state == ServiceBusMessageState.SCHEDULED
            early = await receiver.receive_messages(max_wait_time=0.5)
            assert early == [], "and is not delivered before it is due"
            await _wait_until(due)
            later = await receive_n(receiver, 1, max_wait_time=5)
            assert ids_of(later) == [mid]
            assert later[0].enqueued_time_utc >= due - timedelta(seconds=1), "enqueued when it fell due"
            await receiver.complete_message(later[0])


async def test_expired_message_goes_to_dead_letter_queue(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-ttl")  # DeadLetteringOnMessageExpiration true
    short, long_lived = sdk.ids("ttl", 2)
    async with sdk.client() as client:
        await send(
            client,
            queue,
            [
                ServiceBusMessage("short", message_id=short, time_to_live=timedelta(seconds=1)),
                ServiceBusMessage("long", message_id=long_lived, time_to_live=timedelta(minutes=5)),
            ],
        )
        await asyncio.sleep(2)
        async with client.get_queue_receiver(queue) as receiver:
            got = await receive_n(receiver, 2, max_wait_time=1)
            assert ids_of(got) == [long_lived], "an expired message is not delivered"
            await receiver.complete_message(got[0])
        async with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            dead = await receive_n(dlq, 1, max_wait_time=5)
            assert ids_of(dead) == [short], "expiry dead-letters when the queue asks for it"
            assert dead[0].dead_letter_reason == "TTLExpiredException"
            await dlq.complete_message(dead[0])
