"""Annotated dataclass and datetime parameters get their types back after the JSON round trip."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from dtf_sb.core import OrchestrationStatus
from dtf_sb.core.typed import convert, input_hint, return_hint
from dtf_sb.testing.harness import run_orchestration

PLACED = datetime(2024, 3, 1, 9, 30, tzinfo=timezone.utc)


@dataclass
class Line:
    sku: str
    qty: int


@dataclass
class Order:
    id: int
    placed: datetime
    lines: list[Line]
    note: str | None = None


@dataclass
class Receipt:
    order_id: int
    items: int
    placed: datetime


def price(order: Order) -> Receipt:
    assert isinstance(order, Order)
    assert isinstance(order.lines[0], Line)
    assert order.placed == PLACED
    return Receipt(order.id, sum(line.qty for line in order.lines), order.placed)


async def checkout(ctx, order: Order) -> list:
    assert isinstance(order, Order)
    receipt = await ctx.call_activity(price, order)
    by_name = await ctx.call_activity("price", order)
    return [type(receipt).__name__, receipt.items, type(by_name).__name__, receipt.placed == PLACED]


def test_dataclasses_round_trip_through_orchestrator_and_activity():
    order = Order(7, PLACED, [Line("a", 2), Line("b", 3)])
    result = run_orchestration(checkout, order, activities=[price])
    assert result.status is OrchestrationStatus.COMPLETED
    # typed when called by function (return annotation known), a plain dict when called by name
    assert result.output == ["Receipt", 5, "dict", True]


def test_convert_follows_containers_and_optionals():
    raw = {"id": 1, "placed": "2024-03-01T09:30:00Z", "lines": [{"sku": "x", "qty": 1}], "note": None}
    assert convert(raw, Order) == Order(1, PLACED, [Line("x", 1)])
    assert convert([raw], list[Order]) == [Order(1, PLACED, [Line("x", 1)])]
    assert convert({"k": raw}, dict[str, Order])["k"].placed == PLACED
    assert convert(raw, Order | None) == Order(1, PLACED, [Line("x", 1)])
    assert convert("2024-03-01T09:30:00", datetime) == PLACED  # naive is read as UTC


def test_convert_leaves_what_it_cannot_describe():
    assert convert({"id": 1}, Order) == {"id": 1}  # missing fields: keep the dict
    assert convert("not a date", datetime) == "not a date"
    assert convert([1, 2], list[int]) == [1, 2]
    assert convert({"a": 1}, None) == {"a": 1}


def test_hints_read_from_signatures():
    def two(ctx, value: Order) -> Receipt: ...

    def unresolvable(value: NoSuchType) -> None: ...  # noqa: F821

    assert input_hint(two) is Order
    assert return_hint(two) is Receipt
    assert input_hint(unresolvable) is None
