"""Poison and bad input: what cannot be read ends in the dead-letter queue saying why; the rest flows.

Each test puts one bad message on a live hub beside good work, then checks three things: the bad
message is in the dead-letter queue with a reason and a description that name the problem, nothing
else was dead-lettered, and the good instance completed meanwhile. Work for code a worker does not
have is the opposite case: it is not poison (another worker may have the code), so it must be
retried with back-off and stay out of the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

import orjson
import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from relkit import wait_for
from workload import child_sum, square

from dtf_sb.core.codec import decode_payload
from dtf_sb.core.state import OrchestrationStatus
from dtf_sb.options import WorkerOptions
from dtf_sb.servicebus.messages import BLOB_KEY_PROPERTY, COMPRESSION_PROPERTY
from dtf_sb.testing.runtime import HubConnection

WORKER_OPTIONS = WorkerOptions(receive_timeout=1.0, type_missing_backoff=1.0, stop_timeout=10.0)


async def _send(hub: HubConnection, queue: str, message: ServiceBusMessage) -> None:
    async with ServiceBusClient.from_connection_string(hub.servicebus_connection_string) as sb:
        async with sb.get_queue_sender(queue) as sender:
            await sender.send_messages(message)


async def _dead_letters(hub: HubConnection) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    queues = (hub.options.orchestrator_queue, hub.options.worker_queue, hub.options.tracking_queue)
    async with ServiceBusClient.from_connection_string(hub.servicebus_connection_string) as sb:
        for queue in queues:
            async with sb.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
                found += [(queue, m) for m in await dlq.peek_messages(max_message_count=50)]
    return found


def _good_instance() -> tuple[list[int], int]:
    return [2, 3], 13


async def _run_beside_good_work(hub: HubConnection, queue: str, bad: ServiceBusMessage) -> Any:
    """Send ``bad`` to ``queue`` and a good instance to a worker; returns the one dead letter."""
    await _send(hub, queue, bad)
    values, expected = _good_instance()
    async with hub.worker(orchestrators=[child_sum], activities=[square], worker_options=WORKER_OPTIONS):
        async with hub.client() as client:
            good = await client.schedule_new_orchestration(child_sum, input=values)
            state = await client.wait_for_orchestration_completion(good, timeout=60)
            assert state.status is OrchestrationStatus.COMPLETED
            assert decode_payload(state.output) == expected

            async def dead() -> list[tuple[str, Any]]:
                return await _dead_letters(hub)

            letters = await wait_for(dead, timeout=60, what="the bad message to be dead-lettered")
    assert [q for q, _ in letters] == [queue], [
        (q, m.dead_letter_reason, m.dead_letter_error_description) for q, m in letters
    ]
    return letters[0][1]


def _session_id(hub: HubConnection, queue: str) -> str | None:
    return f"bad-{uuid.uuid4().hex[:8]}" if queue != hub.options.worker_queue else None


@pytest.mark.parametrize("which", ["orchestrator", "worker", "tracking"])
async def test_an_undecodable_body_is_dead_lettered_at_once_saying_why(
    hub: HubConnection, which: str
) -> None:
    queue = getattr(hub.options, f"{which}_queue")
    bad = ServiceBusMessage(
        b"\x00\x01 this is not a dtf-sb envelope",
        message_id=f"bad-{uuid.uuid4().hex}",
        session_id=_session_id(hub, queue),
        application_properties={COMPRESSION_PROPERTY: "none"},
    )
    letter = await _run_beside_good_work(hub, queue, bad)
    assert letter.dead_letter_reason == "MalformedMessage"
    assert "JSON" in (letter.dead_letter_error_description or ""), letter.dead_letter_error_description
    # Decoding fails the same way every time: no retries are spent on it.
    assert (letter.delivery_count or 0) <= 1


async def test_an_unknown_event_type_is_dead_lettered_naming_the_type(hub: HubConnection) -> None:
    instance_id = f"bad-{uuid.uuid4().hex[:8]}"
    body = orjson.dumps(
        {
            "v": 1,
            "kind": "message",
            "event": {"t": 987, "event_id": -1},
            "orchestration_instance": {"instance_id": instance_id, "execution_id": None},
            "sequence_number": 0,
            "tags": {},
        }
    )
    bad = ServiceBusMessage(
        body,
        message_id=f"bad-{uuid.uuid4().hex}",
        session_id=instance_id,
        application_properties={COMPRESSION_PROPERTY: "none"},
    )
    letter = await _run_beside_good_work(hub, hub.options.orchestrator_queue, bad)
    assert letter.dead_letter_reason == "MalformedMessage"
    description = letter.dead_letter_error_description or ""
    assert "unknown history event type" in description and "987" in description, description


@pytest.mark.parametrize("which", ["orchestrator", "worker"])
async def test_a_message_whose_body_blob_is_missing_is_dead_lettered_naming_the_blob(
    hub: HubConnection, which: str
) -> None:
    queue = getattr(hub.options, f"{which}_queue")
    key = f"gone-{uuid.uuid4().hex[:8]}/none/message-{uuid.uuid4().hex}"
    bad = ServiceBusMessage(
        b"",
        message_id=f"bad-{uuid.uuid4().hex}",
        session_id=_session_id(hub, queue),
        application_properties={COMPRESSION_PROPERTY: "none", BLOB_KEY_PROPERTY: key},
    )
    letter = await _run_beside_good_work(hub, queue, bad)
    description = letter.dead_letter_error_description or ""
    assert letter.dead_letter_reason, "a dead letter without a reason"
    assert key in description, (letter.dead_letter_reason, description)


# DTF backs off 10 s after TypeMissing; 3 s keeps the test short while leaving the tenth delivery
# beyond the window in which the lacking worker runs alone.
LACKING_BACKOFF = 3.0
ALONE_FOR = 8.0


def _deliveries(emulator: Any, queue: str) -> int:
    """Highest delivery count among the queue's messages (the broker's own, 0 on first delivery)."""
    messages = emulator.broker_call("peek", queue, 1, 100)
    return max((m.delivery_count for m in messages), default=-1)


@pytest.mark.parametrize("lacking", ["orchestrator", "activity"])
async def test_work_for_code_this_worker_lacks_is_retried_with_backoff_not_dead_lettered(
    hub: HubConnection, emulator: Any, lacking: str, caplog: pytest.LogCaptureFixture
) -> None:
    values, expected = _good_instance()
    options = replace(WORKER_OPTIONS, type_missing_backoff=LACKING_BACKOFF)
    queue = hub.options.orchestrator_queue if lacking == "orchestrator" else hub.options.worker_queue
    partial = (
        {"orchestrators": [], "activities": [square]}
        if lacking == "orchestrator"
        else {"orchestrators": [child_sum], "activities": []}
    )
    async with hub.client() as client:
        instance_id = await client.schedule_new_orchestration(child_sum, input=values)
        async with hub.worker(**partial, worker_options=options):

            async def given_back_twice() -> bool:
                return await asyncio.to_thread(_deliveries, emulator, queue) >= 2

            # Retried: the lacking worker took the message and gave it back more than once...
            await wait_for(given_back_twice, timeout=60, what=f"the {lacking} work to be retried")
            await asyncio.sleep(ALONE_FOR)
            deliveries = await asyncio.to_thread(_deliveries, emulator, queue)
            # ...with back-off: a tight retry loop would have spent all ten deliveries by now.
            assert 2 <= deliveries < hub.options.max_delivery_count - 1, deliveries
            # each round of back-off costs one delivery, so every one of the ten is a real retry
            rounds = sum(
                "accepting no sessions" in r.getMessage() or "receiving nothing" in r.getMessage()
                for r in caplog.records
            )
            assert deliveries <= rounds, (deliveries, rounds)
            assert not await _dead_letters(hub)
            state = await client.get_orchestration_state(instance_id)
            assert state is None or not state.status.is_terminal
        async with hub.worker(orchestrators=[child_sum], activities=[square], worker_options=WORKER_OPTIONS):
            state = await client.wait_for_orchestration_completion(instance_id, timeout=60)
    assert state.status is OrchestrationStatus.COMPLETED
    assert decode_payload(state.output) == expected
    assert not await _dead_letters(hub)
