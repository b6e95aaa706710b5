"""Edges DTF's suite does not cover or covers only on Azure (reference 10.10): large payloads through
blob overflow, instance ids that differ only in case, terminate while suspended, and how long session
state lives."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.servicebus.aio import ServiceBusClient
from rtkit import kinds, new_instance_id, of_type, output, status_when

from dtf_sb import OrchestrationContext, OrchestrationStatus
from dtf_sb.core.codec import decode_payload
from dtf_sb.core.history import EventRaisedEvent, ExecutionStartedEvent, TaskCompletedEvent

TIMEOUT = 60


def incompressible(kib: int) -> str:
    """Hex of random UUIDs: gzip gains little on it, so the payload really is this large on the wire."""
    chunks = (kib * 1024) // 32 + 1
    return "".join(uuid.uuid4().hex for _ in range(chunks))[: kib * 1024]


async def reverse(text: str) -> str:
    return text[::-1]


async def large_round_trip(ctx: OrchestrationContext, text: str) -> dict[str, Any]:
    reversed_text = await ctx.call_activity(reverse, text)
    return {"length": len(reversed_text), "text": reversed_text}


@pytest.mark.slow
async def test_large_input_result_and_output_overflow_to_blob(start_worker, client) -> None:
    # 600 KiB: past the message overflow threshold (170 KiB), the emulator's and Service Bus's
    # standard message size (256 KiB) and the session-state overflow threshold (230 KiB).
    text = incompressible(600)
    await start_worker([large_round_trip], [reverse])
    iid = await client.schedule_new_orchestration(large_round_trip, input=text)

    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    result = output(state)
    assert result["length"] == len(text)
    assert result["text"] == text[::-1]
    assert decode_payload(state.input) == text
    history = await client.get_orchestration_history(iid)
    assert decode_payload(of_type(history, ExecutionStartedEvent)[0].input) == text
    assert decode_payload(of_type(history, TaskCompletedEvent)[0].result) == text[::-1]


# -- instance ids that differ only in case --------------------------------------------------------
async def wait_for_name(ctx: OrchestrationContext, _: Any) -> str:
    name = await ctx.wait_for_external_event("Name")
    return f"got {name}"


async def test_event_for_a_differently_cased_instance_id_reaches_the_instance(start_worker, client) -> None:
    # Service Bus compares session ids case-insensitively (the Azure SDKs rely on it, e.g.
    # azure-sdk-for-java PR #48759), so both spellings are one session, and the runtime must treat
    # them as one instance (DTF PR #1334). An endpoint that keeps them apart strands the event in a
    # session of its own, and the instance never completes.
    await start_worker([wait_for_name])
    iid = new_instance_id("Case-Sensitive-ID")
    await client.schedule_new_orchestration(wait_for_name, instance_id=iid)
    await status_when(client, iid, OrchestrationStatus.RUNNING)

    await client.raise_orchestration_event(iid.lower(), "Name", data="lower")
    state = await client.wait_for_orchestration_completion(iid, timeout=20)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == "got lower"
    assert state.instance_id == iid
    history = await client.get_orchestration_history(iid)
    assert [e.name for e in of_type(history, EventRaisedEvent)] == ["Name"]


# -- terminate while suspended ---------------------------------------------------------------------
async def test_terminate_works_while_suspended(start_worker, client) -> None:
    await start_worker([wait_for_name])
    iid = await client.schedule_new_orchestration(wait_for_name)
    await status_when(client, iid, OrchestrationStatus.RUNNING)
    await client.suspend_orchestration(iid, reason="hold")
    await status_when(client, iid, OrchestrationStatus.SUSPENDED)

    await client.terminate_orchestration(iid, reason="give up")
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.TERMINATED
    assert "give up" in (state.output or "")
    order = kinds(await client.get_orchestration_history(iid))
    assert order.index("EXECUTION_SUSPENDED") < order.index("EXECUTION_TERMINATED")
    assert "EXECUTION_RESUMED" not in order


# -- session state lifetime ------------------------------------------------------------------------
async def session_state(hub: Any, instance_id: str) -> bytes | None:
    """The orchestrator session's state, read with the plain SDK (locks the session briefly)."""
    async with ServiceBusClient.from_connection_string(hub.servicebus_connection_string) as sb:
        receiver = sb.get_queue_receiver(
            hub.options.orchestrator_queue, session_id=instance_id, max_wait_time=5
        )
        async with receiver:
            return await receiver.session.get_state()


async def test_session_state_is_kept_while_suspended_and_cleared_when_done(start_worker, client, hub) -> None:
    # DTF deletes session state for any status but Running, so a suspended instance lost its history
    # (reference 7.12); DESIGN 5 keeps it while suspended and clears it once the instance completes.
    await start_worker([wait_for_name])
    iid = await client.schedule_new_orchestration(wait_for_name)
    await status_when(client, iid, OrchestrationStatus.RUNNING)
    await client.suspend_orchestration(iid)
    await status_when(client, iid, OrchestrationStatus.SUSPENDED)

    assert await session_state(hub, iid), "a suspended instance must keep its session state"

    await client.resume_orchestration(iid)
    await client.raise_orchestration_event(iid, "Name", data="back")
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)
    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == "got back"
    assert not await session_state(hub, iid), "a completed instance must leave no session state behind"
