"""Lock renewal loops end with their block even when a cancellation is lost on the way.

Python 3.11's ``asyncio.wait_for`` returns the inner result and drops the cancellation when both
arrive together; the SDK wraps its renewal requests in it, so the cancel that ends a renewal loop
can vanish inside a request that then returns normally. A loop that relied on the cancel alone kept
renewing for ever, and the block that started it waited for it for ever, holding the session (and
the instance's next messages) on a worker that was done with it.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from dtf_sb.servicebus._loop import renew_message_lock_while, renew_session_lock_while


class _CancelDroppingRenewal:
    """A renewal request that, like the race, swallows a cancellation and returns as if it succeeded."""

    def __init__(self) -> None:
        self.calls = 0
        self.in_flight = asyncio.Event()

    async def __call__(self, *args: Any) -> None:
        self.calls += 1
        self.in_flight.set()
        try:
            await asyncio.Event().wait()  # a request whose answer has not come yet
        except asyncio.CancelledError:
            pass  # dropped, as wait_for does when the inner result is already there


async def _ends(block: Any) -> None:
    """Run ``block`` as a task; it must finish (not wrapped in wait_for, whose cancel it could swallow)."""
    task = asyncio.ensure_future(block)
    await asyncio.wait({task}, timeout=60)
    assert task.done(), "the block never ended: it is still waiting for its renewal loop"
    task.result()


def _renewal_tasks(prefix: str) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(prefix) and not t.done()]


async def test_a_session_renewal_whose_cancel_is_lost_stops_when_the_block_ends() -> None:
    renew = _CancelDroppingRenewal()
    receiver = SimpleNamespace(session=SimpleNamespace(renew_lock=renew))

    async def hold() -> None:
        async with renew_session_lock_while(receiver, 1.0, what="instance i"):
            await renew.in_flight.wait()

    await _ends(hold())
    assert _renewal_tasks("renew-session:instance i") == []
    assert renew.calls == 1


async def test_a_message_renewal_whose_cancel_is_lost_stops_when_the_block_ends() -> None:
    renew = _CancelDroppingRenewal()
    receiver = SimpleNamespace(renew_message_lock=renew)

    async def hold() -> None:
        # A 1 s lock is renewed from the first check on, so the request is soon in flight.
        async with renew_message_lock_while(receiver, object(), 1.0, what="activity a"):
            await renew.in_flight.wait()

    await _ends(hold())
    assert _renewal_tasks("renew-message:activity a") == []
    assert renew.calls == 1
