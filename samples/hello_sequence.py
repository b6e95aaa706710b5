"""Hello sequence: three activities, one after another (DTF's Greetings sample).

python samples/hello_sequence.py
"""

from __future__ import annotations

import asyncio

from dtf_sb import OrchestrationContext


async def say_hello(name: str) -> str:
    """An activity: ordinary code, run at least once on some worker."""
    return f"Hello {name}!"


async def hello_sequence(ctx: OrchestrationContext, cities: list[str]) -> list[str]:
    """The orchestrator: replayed from history, so it only schedules work and combines results."""
    greetings = []
    for city in cities:
        greetings.append(await ctx.call_activity(say_hello, city))
    ctx.logger.info("greeted %d cities", len(greetings))  # logged once, not on every replay
    return greetings


async def main() -> list[str]:
    from _run import output_of, run_sample

    state = await run_sample(hello_sequence, ["Tokyo", "Seattle", "London"], activities=[say_hello])
    return output_of(state)


if __name__ == "__main__":
    asyncio.run(main())
