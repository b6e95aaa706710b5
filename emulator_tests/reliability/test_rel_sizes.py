"""Large and growing: payloads past the message and session limits, long histories, the size ceiling.

Service Bus caps messages and session state at 256 KB (Standard tier); dtf-sb spills bodies past
``message_overflow_threshold`` to blob and moves history into immutable chunks past
``session_overflow_threshold``, so neither limit is visible to the user. These tests drive real
payloads through both paths (random data, so compression cannot hide the size), measure what each
episode writes to session state from inside the broker, check the ceiling that terminates an
instance, and count the blobs left behind.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import statistics
from dataclasses import replace
from typing import Any

import pytest
from azure.servicebus import ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient
from relkit import SessionStateLog, payload_blobs, wait_for

from dtf_sb.core.codec import decode_payload
from dtf_sb.core.context import OrchestrationContext
from dtf_sb.core.state import OrchestrationStatus
from dtf_sb.options import KiB, MiB, TaskHubOptions, WorkerOptions
from dtf_sb.servicebus.messages import BLOB_KEY_PROPERTY, COMPRESSION_PROPERTY, application_property
from dtf_sb.testing.runtime import HubConnection

# Extended sessions keep a long sequence's history in memory between episodes, as a production
# worker running long orchestrations would be configured (DESIGN section 4).
WORKER_OPTIONS = WorkerOptions(
    receive_timeout=1.0, type_missing_backoff=1.0, stop_timeout=10.0, extended_session_idle_seconds=5.0
)
EVENT = "big"


def random_text(size: int, seed: int = 0) -> str:
    """``size`` characters of base64 noise: gzip cannot shrink it below the thresholds."""
    raw = os.urandom(size * 3 // 4 + 3) if seed == 0 else hashlib.shake_256(str(seed).encode()).digest(size)
    return base64.b64encode(raw).decode("ascii")[:size]


def result_text(i: int, size: int) -> str:
    """A deterministic ``size``-character hex result for step ``i`` (about 2:1 under gzip)."""
    return hashlib.shake_256(f"step-{i}".encode()).hexdigest(size // 2)


def echo(payload: str) -> str:
    return payload


async def echo_big(ctx: OrchestrationContext, payload: str) -> dict[str, Any]:
    echoed = await ctx.call_activity(echo, payload)
    event = await ctx.wait_for_external_event(EVENT)
    return {"echo": echoed, "event": event}


def step_result(args: list[int]) -> str:
    i, size = args
    return result_text(i, size)


async def long_sequence(ctx: OrchestrationContext, args: list[int]) -> dict[str, Any]:
    steps, size = args
    digest = hashlib.sha256()
    for i in range(steps):
        digest.update((await ctx.call_activity(step_result, [i, size])).encode())
    return {"steps": steps, "sha256": digest.hexdigest()}


def expected_sequence(steps: int, size: int) -> dict[str, Any]:
    digest = hashlib.sha256()
    for i in range(steps):
        digest.update(result_text(i, size).encode())
    return {"steps": steps, "sha256": digest.hexdigest()}


def with_options(hub: HubConnection, **changes: Any) -> HubConnection:
    """The same queues and storage with different size settings (they are worker/client settings)."""
    return HubConnection(
        replace(hub.options, **changes),
        servicebus_connection_string=hub.servicebus_connection_string,
        storage_connection_string=hub.storage_connection_string,
    )


# -- round trips --------------------------------------------------------------------------------------

ROUND_TRIP_SIZES = [
    pytest.param(100 * KiB, id="100KB"),
    pytest.param(200 * KiB, id="200KB", marks=pytest.mark.slow),
    pytest.param(300 * KiB, id="300KB", marks=pytest.mark.slow),
    pytest.param(500 * KiB, id="500KB", marks=pytest.mark.slow),
    pytest.param(1 * MiB, id="1MB"),
]


@pytest.mark.parametrize("size", ROUND_TRIP_SIZES)
async def test_large_inputs_outputs_and_events_round_trip_and_leave_no_blob_behind(
    hub: HubConnection, size: int
) -> None:
    payload = random_text(size)
    event = random_text(size)
    async with hub.worker(orchestrators=[echo_big], activities=[echo], worker_options=WORKER_OPTIONS):
        async with hub.client() as client:
            instance_id = await client.schedule_new_orchestration(echo_big, input=payload)
            await client.raise_orchestration_event(instance_id, EVENT, data=event)
            state = await client.wait_for_orchestration_completion(instance_id, timeout=120)
            assert state.status is OrchestrationStatus.COMPLETED, state.failure_details
            result = decode_payload(state.output)
            assert result["echo"] == payload
            assert result["event"] == event

            blobs = await payload_blobs(hub.storage_connection_string, hub.hub_name, instance_id=instance_id)
            if size * 3 // 4 > hub.options.message_overflow_threshold * 1.05:
                # Still past the threshold once gzip took base64 back to its 6 bits a character: the
                # start, the activity's input and result and the event each travelled as a blob.
                assert blobs["message"] >= 4, blobs

            async def chunks_gone() -> bool:
                left = await payload_blobs(
                    hub.storage_connection_string, hub.hub_name, instance_id=instance_id
                )
                return left["history"] == 0

            # A completed instance's history chunks are deleted with its session state.
            await wait_for(chunks_gone, timeout=30, what=f"history chunks of {instance_id} to be deleted")
            await client.purge_orchestration(instance_id)
            left = await payload_blobs(hub.storage_connection_string, hub.hub_name, instance_id=instance_id)
            assert not left, f"blobs of purged instance {instance_id} leaked: {dict(left)}"


# -- long histories -----------------------------------------------------------------------------------


async def _run_long_sequence(
    hub: HubConnection, emulator: Any, *, steps: int, size: int, threshold: int
) -> dict[str, Any]:
    sized = with_options(hub, session_overflow_threshold=threshold)
    states = SessionStateLog.install(emulator, hub.options.orchestrator_queue, keep_bodies=False)
    try:
        async with sized.worker(
            orchestrators=[long_sequence], activities=[step_result], worker_options=WORKER_OPTIONS
        ):
            async with sized.client() as client:
                instance_id = await client.schedule_new_orchestration(long_sequence, input=[steps, size])
                chunk_counts: list[int] = []

                async def done() -> bool:
                    blobs = await payload_blobs(
                        hub.storage_connection_string, hub.hub_name, instance_id=instance_id
                    )
                    chunk_counts.append(blobs["history"])
                    state = await client.get_orchestration_state(instance_id)
                    return state is not None and state.status.is_terminal

                await wait_for(done, timeout=60 + steps * 0.5, what=f"{steps} steps", interval=2.0)
                state = await client.get_orchestration_state(instance_id)
    finally:
        states.uninstall()
    assert state is not None and state.status is OrchestrationStatus.COMPLETED, state
    assert decode_payload(state.output) == expected_sequence(steps, size)
    sizes = states.sizes(instance_id)
    # One write per episode: the start, then one per activity result (a sequence has no batching).
    assert len(sizes) >= steps, len(sizes)
    report = {
        "steps": steps,
        "result_size": size,
        "overflow_threshold": threshold,
        "episodes_written": len(sizes),
        "bytes_at_step_100": sizes[100],
        f"bytes_at_step_{steps}": sizes[steps],
        "max_bytes": max(sizes),
        "mean_bytes_steps_50_150": round(statistics.mean(sizes[50:150])),
        "mean_bytes_last_100": round(statistics.mean(sizes[-100:])),
        "history_chunks_seen": max(chunk_counts),
    }
    print("session state per episode:", report)
    # Bounded: every write stays under the overflow threshold however long the history gets, and
    # late episodes write no more on average than early ones (plus the growing list of chunk keys).
    assert max(sizes) <= threshold, report
    assert statistics.mean(sizes[-100:]) <= statistics.mean(sizes[50:150]) * 1.5 + 8 * KiB, report
    assert max(chunk_counts) >= 2, report
    return report


async def test_a_long_sequence_writes_bounded_session_state_per_episode(
    hub: HubConnection, emulator: Any
) -> None:
    await _run_long_sequence(hub, emulator, steps=200, size=5 * KiB, threshold=32 * KiB)


@pytest.mark.slow
async def test_two_thousand_activities_with_5kb_results_write_bounded_session_state(
    hub: HubConnection, emulator: Any
) -> None:
    await _run_long_sequence(
        hub, emulator, steps=2000, size=5 * KiB, threshold=TaskHubOptions.session_overflow_threshold
    )


# -- the ceiling --------------------------------------------------------------------------------------


async def test_an_instance_past_the_maximum_size_is_terminated_naming_size_and_limit(
    hub: HubConnection,
) -> None:
    limit = 64 * KiB
    sized = with_options(hub, session_overflow_threshold=16 * KiB, session_max_size=limit)
    async with sized.worker(
        orchestrators=[long_sequence], activities=[step_result], worker_options=WORKER_OPTIONS
    ):
        async with sized.client() as client:
            instance_id = await client.schedule_new_orchestration(long_sequence, input=[200, 5 * KiB])
            state = await client.wait_for_orchestration_completion(instance_id, timeout=180)
    assert state.status is OrchestrationStatus.TERMINATED, state
    reason = str(decode_payload(state.output))
    assert f"termination threshold of {limit} bytes" in reason, reason
    assert "Session state size of" in reason, reason


# -- compressed and plain bodies on one hub ------------------------------------------------------------


async def test_plain_compressed_and_blob_bodies_mid_flight_are_all_read(hub: HubConnection) -> None:
    """Writers with different compression settings leave both forms in the queue at once."""
    plain = with_options(hub, compress_threshold=100 * MiB)
    gzip_ = with_options(hub, compress_threshold=0)
    small = ["x" * 3000, "y" * 3000]  # compressible: gzip pays off for the gzip writer
    big = random_text(300 * KiB)  # past the overflow threshold: travels as a blob
    expected: dict[str, Any] = {}
    for writer_name, writer in (("plain", plain), ("gzip", gzip_)):
        async with writer.client() as client:
            for label, payload, event in (("small", small[0], small[1]), ("big", big, big[::-1])):
                instance_id = f"{writer_name}-{label}-{os.urandom(4).hex()}"
                await client.schedule_new_orchestration(echo_big, input=payload, instance_id=instance_id)
                await client.raise_orchestration_event(instance_id, EVENT, data=event)
                expected[instance_id] = {"echo": payload, "event": event}

    forms: set[tuple[str | None, bool]] = set()
    async with ServiceBusClient.from_connection_string(hub.servicebus_connection_string) as sb:
        for instance_id in expected:
            async with sb.get_queue_receiver(
                hub.options.orchestrator_queue,
                session_id=instance_id,
                receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
            ) as receiver:
                for message in await receiver.peek_messages(max_message_count=10):
                    forms.add(
                        (
                            application_property(message, COMPRESSION_PROPERTY),
                            application_property(message, BLOB_KEY_PROPERTY) is not None,
                        )
                    )
    assert {("none", False), ("gzip", False), ("none", True)} <= forms, forms

    async with hub.worker(orchestrators=[echo_big], activities=[echo], worker_options=WORKER_OPTIONS):
        async with hub.client() as client:
            states = await asyncio.gather(
                *(client.wait_for_orchestration_completion(i, timeout=120) for i in expected)
            )
    for instance_id, state in zip(expected, states, strict=True):
        assert state.status is OrchestrationStatus.COMPLETED, (instance_id, state.failure_details)
        assert decode_payload(state.output) == expected[instance_id], instance_id
