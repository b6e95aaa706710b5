"""Edges DTF's suite does not cover or covers only on Azure (reference 10.10): large payloads through
blob overflow, instance ids that differ only in case, and terminate while suspended."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
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
