"""Dead-letter recovery: what the runtime dead-letters can be listed, resubmitted after a fix, purged."""

from __future__ import annotations

import dataclasses
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from opskit import TIMEOUT, new_instance_id, wait_until

from dtf_sb import OrchestrationContext, OrchestrationStatus
from dtf_sb.core.codec import decode_payload
from dtf_sb.servicebus.deadletters import resubmitted_message_id
from dtf_sb.testing.runtime import worker_for


async def greet(ctx: OrchestrationContext, name: str) -> str:
    return f"hello {name}"


async def _dead_letters(client: Any, queue: str, count: int) -> list[Any]:
    async def probe() -> list[Any] | None:
        letters = await client.list_dead_letters(queue=queue)
        return letters if len(letters) >= count else None

    return await wait_until(probe, what=f"{count} dead-lettered message(s) in {queue}")


async def test_undecodable_message_is_listed_with_reason_and_purged(hub, start_worker, client) -> None:
    await start_worker([greet])
    iid = new_instance_id("poison")
    async with ServiceBusClient.from_connection_string(hub.servicebus_connection_string) as sb:
        async with sb.get_queue_sender(hub.options.orchestrator_queue) as sender:
            await sender.send_messages(
                ServiceBusMessage(b"\x00not json at all", session_id=iid, message_id="poison-1")
            )

    [letter] = await _dead_letters(client, "orchestrator", 1)
    assert letter.queue == "orchestrator"
    assert (letter.message_id, letter.session_id, letter.instance_id) == ("poison-1", iid, iid)
    assert letter.reason == "MalformedMessage"
    assert "not a task message" in (letter.description or "")
    assert letter.event_type is None and letter.body_size == len(b"\x00not json at all")
    assert letter.enqueued_time is not None
    # Listing peeks: it neither locks nor consumes, so a second listing sees the same message.
    assert [d.sequence_number for d in await client.list_dead_letters(queue="orchestrator")] == [
        letter.sequence_number
    ]
    assert await client.list_dead_letters(queue="worker") == []

    progress: list[int] = []
    assert await client.purge_dead_letters(queue="orchestrator", on_progress=progress.append) == 1
    assert progress == [1]
    assert await client.list_dead_letters(queue="orchestrator") == []


async def test_resubmit_after_the_fix_is_deployed(hub, client, worker_options) -> None:
    impatient = dataclasses.replace(worker_options, type_missing_backoff=0.05)
    iid = new_instance_id("resubmit")
    other = new_instance_id("stays")
    # A worker without the orchestrator: the start goes back to the queue until Service Bus gives up.
    async with worker_for(hub, [], worker_options=impatient):
        await client.schedule_new_orchestration("greet", input="Tokyo", instance_id=iid)
        await client.schedule_new_orchestration("greet", input="Oslo", instance_id=other)
        letters = await _dead_letters(client, "orchestrator", 2)
    by_instance = {d.instance_id: d for d in letters}
    assert by_instance[iid].reason == "MaxDeliveryCountExceeded"
    assert by_instance[iid].event_type == "ExecutionStartedEvent"
    assert by_instance[iid].delivery_count >= hub.options.max_delivery_count
    assert (await client.get_orchestration_state(iid)).status is OrchestrationStatus.PENDING

    async with worker_for(hub, [greet], worker_options=worker_options):
        resubmitted = await client.resubmit_dead_letters(
            queue="orchestrator", sequence_numbers=[by_instance[iid].sequence_number]
        )
        assert resubmitted == 1
        state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
        assert state.status is OrchestrationStatus.COMPLETED
        assert decode_payload(state.output) == "hello Tokyo"
        # The message not named stays dead-lettered, untouched.
        remaining = await client.list_dead_letters(queue="orchestrator")
        assert [(d.instance_id, d.sequence_number) for d in remaining] == [
            (other, by_instance[other].sequence_number)
        ]
        assert await client.resubmit_dead_letters(queue="orchestrator") == 1
        assert (await client.wait_for_orchestration_completion(other, timeout=TIMEOUT)).status is (
            OrchestrationStatus.COMPLETED
        )
    assert await client.list_dead_letters(queue="orchestrator") == []


async def test_resubmit_cut_short_after_the_send_is_safe_to_repeat(hub, client) -> None:
    """Send the copy, "crash" before completing the dead-lettered original, run resubmit again."""
    iid = new_instance_id("twice")
    name = hub.options.worker_queue
    async with ServiceBusClient.from_connection_string(hub.servicebus_connection_string) as sb:
        async with sb.get_queue_sender(name) as sender:
            await sender.send_messages(ServiceBusMessage(b"{}", message_id="work-1", session_id=None))
        async with sb.get_queue_receiver(name, max_wait_time=5) as receiver:
            [message] = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
            await receiver.dead_letter_message(message, reason="Test", error_description=iid)
        [letter] = await _dead_letters(client, "worker", 1)
        copy_id = resubmitted_message_id("work-1", letter.sequence_number)
        async with sb.get_queue_sender(name) as sender:  # the first attempt's send got through
            await sender.send_messages(ServiceBusMessage(b"{}", message_id=copy_id))

        assert await client.resubmit_dead_letters(queue="worker") == 1

        async with sb.get_queue_receiver(name, max_wait_time=2) as receiver:
            received = await receiver.receive_messages(max_message_count=10, max_wait_time=2)
            # Duplicate detection dropped the second copy: exactly one message is back in the queue.
            assert [m.message_id for m in received] == [copy_id]
            await receiver.complete_message(received[0])
        async with sb.get_queue_receiver(name, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            assert await dlq.peek_messages(max_message_count=10) == []
