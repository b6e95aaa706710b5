"""Retries and compensation: book a trip; retry a flaky step; undo what was done when a step fails.

python samples/retries_compensation.py
"""

from __future__ import annotations

import asyncio

from dtf_sb import NonRetriableError, OrchestrationContext, RetryOptions, TaskFailedError

_attempts: dict[str, int] = {}


def book_flight(trip: dict) -> str:
    """Fails twice with a transient error, then succeeds: RetryOptions absorbs it."""
    _attempts[trip["id"]] = _attempts.get(trip["id"], 0) + 1
    if _attempts[trip["id"]] < 3:
        raise ConnectionError("airline API timed out")
    return f"flight for {trip['id']}"


def book_hotel(trip: dict) -> str:
    return f"hotel in {trip['city']}"


def book_car(trip: dict) -> str:
    if trip.get("car_sold_out"):
        raise NonRetriableError(f"no cars left in {trip['city']}")  # retrying would not help
    return f"car in {trip['city']}"


def cancel(booking: str) -> str:
    return f"cancelled {booking}"


async def book_trip(ctx: OrchestrationContext, trip: dict) -> dict:
    retry = RetryOptions(first_interval=0.2, backoff_coefficient=2.0, max_attempts=5)
    done: list[str] = []
    try:
        done.append(await ctx.call_activity(book_flight, trip, retry=retry))
        done.append(await ctx.call_activity(book_hotel, trip, retry=retry))
        done.append(await ctx.call_activity(book_car, trip, retry=retry))
    except TaskFailedError as failure:
        undone = [await ctx.call_activity(cancel, booking) for booking in reversed(done)]
        return {"booked": [], "compensated": undone, "reason": failure.details.message}
    return {"booked": done, "compensated": [], "reason": None}


async def main(*, car_sold_out: bool = True) -> dict:
    from _run import output_of, run_sample

    trip = {"id": "trip-7", "city": "Lisbon", "car_sold_out": car_sold_out}
    state = await run_sample(book_trip, trip, activities=[book_flight, book_hotel, book_car, cancel])
    return output_of(state)


if __name__ == "__main__":
    asyncio.run(main())
