"""Messages the runtime cannot read: they are dead-lettered with the reason, and the worker keeps
serving the hub (reference 9.1; the suite's other tests require empty dead-letter queues)."""

from __future__ import annotations

from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from rtkit import dead_letters, output, wait_until

from dtf_sb import OrchestrationContext, OrchestrationStatus

TIMEOUT = 30


async def hello(name: str) -> str:
    return f"Hello {name}"


async def hello_orchestration(ctx: OrchestrationContext, name: str) -> str:
    return await ctx.call_activity(hello, name)


async def test_undecodable_messages_are_dead_lettered_and_work_goes_on(dtf_sb_worker, client, hub) -> None:
    # Uses the plugin's worker fixture directly: this test dead-letters on purpose.
    await dtf_sb_worker([hello_orchestration], [hello])
    async with ServiceBusClient.from_connection_string(hub.servicebus_connection_string) as sb:
        async with sb.get_queue_sender(hub.options.worker_queue) as sender:
            await sender.send_messages(ServiceBusMessage(b"not an envelope", message_id="garbage-worker"))
        async with sb.get_queue_sender(hub.options.orchestrator_queue) as sender:
            await sender.send_messages(
                ServiceBusMessage(
                    b"\x1f\x8bnot gzip", message_id="garbage-orch", session_id="garbage-session"
                )
            )

    iid = await client.schedule_new_orchestration(hello_orchestration, input="still here")
    state = await client.wait_for_orchestration_completion(iid, timeout=TIMEOUT)

    assert state.status == OrchestrationStatus.COMPLETED
    assert output(state) == "Hello still here"

    async def both_dead_lettered() -> list[str] | None:
        letters = await dead_letters(hub)
        return letters if len(letters) >= 2 else None

    letters: Any = await wait_until(both_dead_lettered, timeout=TIMEOUT, what="both messages dead-lettered")
    assert len(letters) == 2
    by_id = {next(p for p in line.split() if p.startswith("id=")): line for line in letters}
    assert set(by_id) == {"id=garbage-worker", "id=garbage-orch"}
    for line in letters:
        assert "reason='MalformedMessage'" in line
    assert hub.options.worker_queue in by_id["id=garbage-worker"]
    assert hub.options.orchestrator_queue in by_id["id=garbage-orch"]
