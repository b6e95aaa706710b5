"""Fan-out/fan-in: run many activities in parallel, then combine their results.

python samples/fan_out_fan_in.py
"""

from __future__ import annotations

import asyncio

from dtf_sb import OrchestrationContext


def count_words(line: str) -> int:
    """A synchronous activity: the worker runs it in its thread pool."""
    return len(line.split())


async def word_count(ctx: OrchestrationContext, lines: list[str]) -> dict[str, int]:
    counts = await ctx.when_all([ctx.call_activity(count_words, line) for line in lines])
    return {"lines": len(lines), "words": sum(counts)}


TEXT = [f"line {i} of the sample text has a few words" for i in range(50)]


async def main() -> dict[str, int]:
    from _run import output_of, run_sample

    state = await run_sample(word_count, TEXT, activities=[count_words])
    return output_of(state)


if __name__ == "__main__":
    asyncio.run(main())
