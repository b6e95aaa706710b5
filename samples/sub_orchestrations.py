"""Sub-orchestrations: a parent runs one child orchestration per order, in parallel.

python samples/sub_orchestrations.py
"""

from __future__ import annotations

import asyncio

from dtf_sb import OrchestrationContext


async def reserve_stock(item: str) -> str:
    return f"reserved {item}"


async def charge(order: dict) -> int:
    return order["quantity"] * order["unit_price"]


async def process_order(ctx: OrchestrationContext, order: dict) -> dict:
    """The child: its own instance, its own history, its result goes back to the parent."""
    await ctx.call_activity(reserve_stock, order["item"])
    total = await ctx.call_activity(charge, order)
    return {"order": order["id"], "total": total}


async def process_batch(ctx: OrchestrationContext, orders: list[dict]) -> dict:
    results = await ctx.when_all(
        [
            ctx.call_sub_orchestrator(process_order, o, instance_id=f"{ctx.instance_id}-{o['id']}")
            for o in orders
        ]
    )
    return {"orders": len(results), "revenue": sum(r["total"] for r in results)}


ORDERS = [{"id": f"o{i}", "item": f"sku-{i}", "quantity": i + 1, "unit_price": 10} for i in range(4)]


async def main() -> dict:
    from _run import output_of, run_sample

    state = await run_sample(
        process_batch, ORDERS, orchestrators=[process_order], activities=[reserve_stock, charge]
    )
    return output_of(state)


if __name__ == "__main__":
    asyncio.run(main())
