"""Large payloads: inputs, results and history bigger than a Service Bus message or session state.

Bodies past the message overflow threshold (170 KiB) travel through Blob Storage and the message
carries the key; a history past the session overflow threshold (230 KiB) moves into immutable blob
chunks. The orchestration code does not change.

    python samples/large_payloads.py
"""

from __future__ import annotations

import asyncio
import hashlib

from dtf_sb import OrchestrationContext


def make_report(size: int) -> str:
    block = "0123456789abcdef" * 64
    return (block * (size // len(block) + 1))[:size]


def digest(report: str) -> str:
    return hashlib.sha256(report.encode()).hexdigest()


async def build_reports(ctx: OrchestrationContext, sizes: list[int]) -> dict:
    reports = [await ctx.call_activity(make_report, size) for size in sizes]
    digests = [await ctx.call_activity(digest, report) for report in reports]
    return {"sizes": [len(r) for r in reports], "digests": digests}


SIZES = [100_000, 300_000, 1_000_000]


async def main() -> dict:
    from _run import output_of, run_sample

    state = await run_sample(build_reports, SIZES, activities=[make_report, digest])
    return output_of(state)


if __name__ == "__main__":
    asyncio.run(main())
