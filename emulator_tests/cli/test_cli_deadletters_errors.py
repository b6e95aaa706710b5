"""``dtf-sb deadletters`` end to end, and the errors a user meets first, with their exit codes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from dtf_sb import OrchestrationContext


async def hello(ctx: OrchestrationContext, name: str) -> str:
    return f"hello {name}"


async def _list(cli: Any, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        result = await cli("deadletters", "list", "--queue", "orchestrator", "--json")
        assert result.code == 0, result.stderr
        if len(result.json()) >= count:
            return result.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} dead-lettered message(s): {result.stdout}")
        await asyncio.sleep(0.3)


async def test_list_show_resubmit_and_purge_dead_letters(hub, start_worker, cli) -> None:
    # A valid start that an operator dead-lettered, and a body no worker can read.
    assert (await cli("start", "hello", "--input", '"dlq"', "--id", "cli-dlq")).code == 0
    async with ServiceBusClient.from_connection_string(hub.servicebus_connection_string) as sb:
        async with sb.get_queue_receiver(hub.options.orchestrator_queue, session_id="cli-dlq") as receiver:
            [start] = await receiver.receive_messages(max_message_count=1, max_wait_time=10)
            await receiver.dead_letter_message(start, reason="ManualHold", error_description="held by ops")
        async with sb.get_queue_sender(hub.options.orchestrator_queue) as sender:
            await sender.send_messages(
                ServiceBusMessage(b"garbage", session_id="cli-poison", message_id="bad-1")
            )
    await start_worker([hello])

    letters = {d["instance_id"]: d for d in await _list(cli, 2)}
    assert letters["cli-dlq"]["reason"] == "ManualHold"
    assert letters["cli-dlq"]["event_type"] == "ExecutionStartedEvent"
    assert letters["cli-poison"]["reason"] == "MalformedMessage"

    table = await cli("deadletters", "list")
    header = table.stdout.splitlines()[0].split()
    assert header[:4] == ["QUEUE", "SEQ", "INSTANCE", "ID"]
    assert "ManualHold" in table.stdout and "MalformedMessage" in table.stdout

    seq = str(letters["cli-dlq"]["sequence_number"])
    shown = await cli("deadletters", "show", seq, "--queue", "orchestrator")
    assert shown.code == 0 and shown.json()["description"] == "held by ops"
    missing = await cli("deadletters", "show", "999999", "--queue", "orchestrator")
    assert missing.code == 3 and "no dead-lettered message with sequence number 999999" in missing.stderr
    nothing_named = await cli("deadletters", "resubmit", "--queue", "orchestrator")
    assert nothing_named.code == 2 and "--all" in nothing_named.stderr

    resubmitted = await cli("deadletters", "resubmit", seq, "--queue", "orchestrator", "--json")
    assert resubmitted.json() == {"action": "resubmit", "count": 1}
    deadline = time.monotonic() + 30
    while (state := await cli("status", "cli-dlq", "--json")).json()["status"] != "COMPLETED":
        assert time.monotonic() < deadline, state.stdout
        await asyncio.sleep(0.2)
    assert state.json()["output"] == '"hello dlq"'

    purged = await cli("deadletters", "purge", "--all")
    assert purged.code == 0 and purged.stdout.strip() == "purged 1 dead-lettered message(s)"
    assert (await cli("deadletters", "list", "--json")).json() == []


async def test_errors_say_what_to_do(hub, cli) -> None:
    no_hub = await cli("status", "x", extra_env={"DTF_SB_HUB": ""})
    assert no_hub.code == 2 and "no task hub given: pass --hub NAME or set DTF_SB_HUB" in no_hub.stderr

    no_sb = await cli("list", extra_env={"DTF_SB_SERVICEBUS_CONNECTION_STRING": ""})
    assert no_sb.code == 2 and "no Service Bus connection" in no_sb.stderr
    assert "DTF_SB_SERVICEBUS_CONNECTION_STRING" in no_sb.stderr and "dtf-sb dev" in no_sb.stderr

    no_storage = await cli("list", extra_env={"DTF_SB_STORAGE_CONNECTION_STRING": ""})
    assert no_storage.code == 2 and "no Blob Storage connection" in no_storage.stderr

    unknown = await cli("status", "cli-does-not-exist")
    assert unknown.code == 3 and "no instance 'cli-does-not-exist'" in unknown.stderr
    assert (await cli("raise", "cli-does-not-exist", "go")).code == 3
    assert (await cli("terminate", "cli-does-not-exist")).code == 3

    bad_input = await cli("start", "hello", "--input", "Tokyo")
    assert bad_input.code == 2 and "--input must be JSON" in bad_input.stderr
    bad_status = await cli("list", "--status", "sleeping")
    assert bad_status.code == 2 and "unknown status 'sleeping'" in bad_status.stderr

    # A flag overrides the environment: a hub this namespace does not have.
    missing_hub = await cli("start", "hello", "--hub", "no-such-hub")
    assert missing_hub.code == 2, missing_hub.stderr
    assert "task hub 'no-such-hub' does not exist" in missing_hub.stderr
    assert "dtf-sb hub create --hub no-such-hub" in missing_hub.stderr
    assert "SharedAccessKey" not in missing_hub.stderr + no_sb.stderr
