"""Many messages through one queue with competing receivers: every message exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from azure.servicebus import ServiceBusMessage
from sbkit import Sdk

TOTAL = 2000
RECEIVERS = 4


async def test_competing_receivers_get_every_message_exactly_once(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-many")  # LockDuration PT1M so no lock expires during the run
    run = sdk.ids("many", 1)[0]
    expected = [f"{run}-{i}" for i in range(TOTAL)]
    completed: Counter[str] = Counter()
    async with sdk.client() as client:
        async with client.get_queue_sender(queue) as sender:
            for start in range(0, TOTAL, 100):
                await sender.send_messages(
                    [ServiceBusMessage(m, message_id=m) for m in expected[start : start + 100]]
                )

        async def consume() -> None:
            async with client.get_queue_receiver(queue) as receiver:
                idle = 0
                while sum(completed.values()) < TOTAL and idle < 3:
                    batch = await receiver.receive_messages(max_message_count=50, max_wait_time=2)
                    idle = 0 if batch else idle + 1
                    for m in batch:
                        await receiver.complete_message(m)
                        completed[m.message_id] += 1

        await asyncio.gather(*(consume() for _ in range(RECEIVERS)))
    missing = set(expected) - set(completed)
    twice = {m: n for m, n in completed.items() if n > 1}
    assert not missing, f"{len(missing)} of {TOTAL} messages never arrived, e.g. {sorted(missing)[:3]}"
    assert not twice, f"{len(twice)} messages were delivered more than once, e.g. {list(twice.items())[:3]}"
    assert sum(completed.values()) == TOTAL
