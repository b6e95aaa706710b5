"""Sending and receiving: single messages, batches, every message field, receive modes, prefetch."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode
from sbkit import Sdk, body_of, ids_of, peek_all, receive_n, send, text_of


async def test_send_single_list_and_batch(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-send")
    single, *rest = sdk.ids("send", 9)
    listed, batched = rest[:3], rest[3:]
    async with sdk.client() as client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages(ServiceBusMessage(b"one", message_id=single))
            await sender.send_messages([ServiceBusMessage(m, message_id=m) for m in listed])
            batch = await sender.create_message_batch()
            for mid in batched:
                batch.add_message(ServiceBusMessage(mid, message_id=mid))
            assert len(batch) == 5
            await sender.send_messages(batch)
        async with client.get_queue_receiver(queue) as receiver:
            got = await receive_n(receiver, 9)
            assert ids_of(got) == [single, *listed, *batched], (
                "a single message, a list and a ServiceBusMessageBatch are enqueued as separate messages in order"
            )
            assert body_of(got[0]) == b"one"
            assert [text_of(m) for m in got[1:]] == [*listed, *batched]
            seqs = [m.sequence_number for m in got]
            assert seqs == sorted(seqs) and len(set(seqs)) == 9, "each message gets its own sequence number"
            for m in got:
                await receiver.complete_message(m)
            assert await peek_all(receiver) == []


def _decoded(props: dict[Any, Any] | None) -> dict[str, Any]:
    """Received application property keys and string values come back as bytes (documented SDK behaviour)."""
    out: dict[str, Any] = {}
    for k, v in (props or {}).items():
        key = k.decode() if isinstance(k, bytes) else k
        out[key] = v.decode() if isinstance(v, bytes) else v
    return out


async def test_all_message_fields_round_trip(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-fields")
    mid, sid = sdk.ids("fields", 2)
    app_props = {
        "text": "value",
        "small": 7,
        "int32": 2_000_000_000,
        "negative": -12,
        "ratio": 1.5,
        "flag": True,
    }
    sent = ServiceBusMessage(
        b"\x00\x01binary\xff",
        message_id=mid,
        session_id=sid,
        correlation_id="corr-1",
        subject="the-subject",
        content_type="application/octet-stream",
        to="somewhere",
        reply_to="reply-queue",
        reply_to_session_id="reply-session",
        application_properties=app_props,
        time_to_live=timedelta(minutes=5),
        partition_key=sid,
    )
    text = ServiceBusMessage("unicode text: zürich ✓", message_id=mid + "-str")
    before = datetime.now(timezone.utc)
    async with sdk.client() as client:
        await send(client, queue, [sent, text])
        async with client.get_queue_receiver(queue) as receiver:
            got = await receive_n(receiver, 2)
            assert ids_of(got) == [mid, mid + "-str"]
            m, t = got
            assert body_of(m) == b"\x00\x01binary\xff"
            assert m.session_id == sid
            assert m.correlation_id == "corr-1"
            assert m.subject == "the-subject"
            assert m.content_type == "application/octet-stream"
            assert m.to == "somewhere"
            assert m.reply_to == "reply-queue"
            assert m.reply_to_session_id == "reply-session"
            assert m.partition_key == sid
            assert _decoded(m.application_properties) == app_props
            assert m.time_to_live == timedelta(minutes=5)
            assert body_of(t).decode("utf-8") == "unicode text: zürich ✓"

            assert isinstance(m.sequence_number, int) and m.sequence_number > 0
            assert t.sequence_number > m.sequence_number
            assert m.delivery_count == 0, "delivery_count is 0 on the first delivery"
            assert m.enqueued_time_utc is not None
            assert abs(m.enqueued_time_utc - before) < timedelta(minutes=5), (
                "enqueued time is the broker's now"
            )
            assert m.locked_until_utc is not None and m.locked_until_utc > m.enqueued_time_utc
            assert m.lock_token is not None
            for x in got:
                await receiver.complete_message(x)


async def test_peek_lock_complete_removes_message(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-complete")
    mids = sdk.ids("complete", 2)
    async with sdk.client() as client:
        await send(client, queue, [ServiceBusMessage("x", message_id=m) for m in mids])
        async with client.get_queue_receiver(queue) as receiver:
            got = await receive_n(receiver, 2)
            assert ids_of(got) == mids
            assert ids_of(await peek_all(receiver)) == mids, "locked messages stay in the queue until settled"
            await receiver.complete_message(got[0])
            assert ids_of(await peek_all(receiver)) == mids[1:]
            await receiver.complete_message(got[1])
            assert await peek_all(receiver) == [], "completed messages are gone"


async def test_receive_and_delete(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-receive-delete")
    mids = sdk.ids("rad", 3)
    async with sdk.client() as client:
        await send(client, queue, [ServiceBusMessage("x", message_id=m) for m in mids])
        async with client.get_queue_receiver(
            queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
        ) as rx:
            got = await receive_n(rx, 3)
            assert ids_of(got) == mids
            assert all(m.sequence_number and m.enqueued_time_utc for m in got)
            assert await peek_all(rx) == [], "receive-and-delete removed them"


async def test_receiver_with_prefetch(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-prefetch")
    mids = sdk.ids("prefetch", 20)
    async with sdk.client() as client:
        await send(client, queue, [ServiceBusMessage(m, message_id=m) for m in mids])
        async with client.get_queue_receiver(queue, prefetch_count=10) as receiver:
            got = []
            for _ in range(20):
                batch = await receiver.receive_messages(max_message_count=3, max_wait_time=2)
                assert len(batch) <= 3, "max_message_count bounds a receive even with a larger prefetch"
                if not batch:
                    break
                for m in batch:
                    await receiver.complete_message(m)
                got.extend(batch)
                if len(got) >= 20:
                    break
            assert sorted(ids_of(got)) == sorted(mids), "every prefetched message is delivered exactly once"
            assert ids_of(got) == mids, "prefetch keeps queue order"
            assert await peek_all(receiver) == []


async def test_peek_messages_from_sequence_number(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-peek")
    mids = sdk.ids("peek", 5)
    async with sdk.client() as client:
        await send(client, queue, [ServiceBusMessage(m, message_id=m) for m in mids])
        async with client.get_queue_receiver(queue) as receiver:
            peeked = await receiver.peek_messages(max_message_count=10)
            assert ids_of(peeked) == mids, "peek shows every active message in order"
            seqs = [m.sequence_number for m in peeked]
            assert seqs == sorted(seqs)
            assert all(m.delivery_count == 0 for m in peeked)
            tail = await receiver.peek_messages(max_message_count=10, sequence_number=seqs[2])
            assert ids_of(tail) == mids[2:], "peek from a sequence number starts at that message"
            again = await receiver.peek_messages(max_message_count=2, sequence_number=seqs[0])
            assert ids_of(again) == mids[:2], "peek does not lock or consume"
            got = await receive_n(receiver, 5)
            assert ids_of(got) == mids
            assert all(m.delivery_count == 0 for m in got), "peeking is not a delivery"
            for m in got:
                await receiver.complete_message(m)
            assert await peek_all(receiver) == []


async def test_duplicate_detection_drops_second_copy(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-dedupe")
    dup, other = sdk.ids("dedupe", 2)
    async with sdk.client() as client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages(ServiceBusMessage("first", message_id=dup))
            await sender.send_messages(ServiceBusMessage("second", message_id=dup))
            await sender.send_messages(ServiceBusMessage("other", message_id=other))
        async with client.get_queue_receiver(queue) as receiver:
            got = await receive_n(receiver, 2)
            assert ids_of(got) == [dup, other], "a repeated message id within the window is dropped"
            assert text_of(got[0]) == "first", "the first copy is the one kept"
            for m in got:
                await receiver.complete_message(m)
            assert await peek_all(receiver) == [], "no second copy is waiting"
