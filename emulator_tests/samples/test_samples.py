"""Every sample run end to end exactly as a user runs it: embedded emulator, Azurite, a real worker."""

from __future__ import annotations

import fan_out_fan_in
import hello_sequence
import human_interaction
import large_payloads
import middleware
import monitor
import retries_compensation
import sub_orchestrations


async def test_hello_sequence() -> None:
    assert await hello_sequence.main() == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]


async def test_fan_out_fan_in() -> None:
    assert await fan_out_fan_in.main() == {"lines": 50, "words": 500}


async def test_human_interaction_approved() -> None:
    assert await human_interaction.main(approve=True) == "request PO-1001 approved by ana"


async def test_human_interaction_times_out_and_escalates() -> None:
    assert await human_interaction.main(approve=False) == "escalated PO-1001 to the manager"


async def test_monitor() -> None:
    assert await monitor.main() == {"job": "export-42", "checks": 4, "status": "done"}


async def test_sub_orchestrations() -> None:
    assert await sub_orchestrations.main() == {"orders": 4, "revenue": 100}


async def test_retries_and_compensation() -> None:
    retries_compensation._attempts.clear()
    result = await retries_compensation.main(car_sold_out=True)
    assert result["compensated"] == ["cancelled hotel in Lisbon", "cancelled flight for trip-7"]
    assert result["reason"] == "no cars left in Lisbon"


async def test_large_payloads() -> None:
    result = await large_payloads.main()
    assert result["sizes"] == large_payloads.SIZES
    assert result["digests"][2] == large_payloads.digest(large_payloads.make_report(1_000_000))


async def test_middleware_times_every_dispatch() -> None:
    timings = await middleware.main()
    kinds = {(kind, name) for kind, name, _ in timings}
    assert ("activity", "double") in kinds and ("orchestration", "doubling") in kinds
    assert sum(1 for kind, _, _ in timings if kind == "activity") == 2
