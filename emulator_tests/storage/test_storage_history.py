"""History appends are exactly-once per event under redelivery, crashes at every step, and races.

Crashes are injected into the real SDK calls (the call either never reaches Azurite, or reaches it and
then the process "dies" before seeing the answer); the redelivered batch then runs in a fresh store, as
it would in a restarted worker, or in the same store, whose cached append position is then stale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from azure.storage.blob.aio import BlobClient, BlobServiceClient

from dtf_sb.storage import HistoryConflictError, HistoryGapError, InstanceStore
from dtf_sb.storage.history_log import frame_lines


class SimulatedCrash(Exception):
    """The worker process dies at this point."""


@contextmanager
def crash_at(method: str, *, call: int, after: bool) -> Iterator[None]:
    """Make the ``call``-th invocation of ``BlobClient.<method>`` crash, before or after it reaches Azurite."""
    original = getattr(BlobClient, method)
    count = 0

    async def wrapper(self: BlobClient, *args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        if count == call and not after:
            raise SimulatedCrash(f"before {method} #{call}")
        result = await original(self, *args, **kwargs)
        if count == call and after:
            raise SimulatedCrash(f"after {method} #{call}")
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BlobClient, method, wrapper)
        yield
    assert count >= call, f"{method} was called {count} times; the crash point was never reached"


def _events(start: int, count: int, size: int = 20) -> list[bytes]:
    return [b'{"n":%d,"pad":"%s"}' % (n, b"x" * size) for n in range(start, start + count)]


BATCH_A = _events(0, 3)
BATCH_B = _events(3, 4, size=150)  # 4 events of ~170 bytes: several blocks with a 256-byte block size
BATCH_C = _events(7, 2)


async def _history(store: InstanceStore) -> list[bytes]:
    return await store.read_history("inst", "e1")


CRASH_POINTS = [
    pytest.param("create_append_blob", 1, True, id="after-create"),
    pytest.param("get_blob_properties", 1, False, id="before-size-read"),
    pytest.param("append_block", 1, False, id="before-first-block"),
    pytest.param("append_block", 1, True, id="after-first-block"),
    pytest.param("append_block", 2, True, id="after-second-block"),
    pytest.param("append_block", 3, True, id="after-last-block"),
]


@pytest.mark.parametrize("fresh_store", [True, False], ids=["restarted-worker", "same-worker"])
@pytest.mark.parametrize(("method", "call", "after"), CRASH_POINTS)
async def test_redelivery_after_crash_writes_each_event_once(
    blob_service: BlobServiceClient, hub: str, method: str, call: int, after: bool, fresh_store: bool
) -> None:
    store = InstanceStore(blob_service, hub, history_block_size=256)
    await store.ensure()
    first_batch_is_crashed = method in ("create_append_blob", "get_blob_properties")
    if not first_batch_is_crashed:
        assert await store.append_history("inst", "e1", 0, BATCH_A) == 3
    crashed_first, crashed_lines = (0, BATCH_A) if first_batch_is_crashed else (3, BATCH_B)
    with crash_at(method, call=call, after=after), pytest.raises(SimulatedCrash):
        await store.append_history("inst", "e1", crashed_first, crashed_lines)

    worker = InstanceStore(blob_service, hub, history_block_size=256) if fresh_store else store
    await worker.append_history("inst", "e1", crashed_first, crashed_lines)  # the redelivery
    await worker.append_history("inst", "e1", crashed_first, crashed_lines)  # and one more for luck
    if first_batch_is_crashed:
        await worker.append_history("inst", "e1", 3, BATCH_B)
    await worker.append_history("inst", "e1", 7, BATCH_C)
    assert await _history(worker) == BATCH_A + BATCH_B + BATCH_C


async def test_sdk_retry_of_a_landed_block_is_rejected_not_duplicated(
    blob_service: BlobServiceClient, hub: str
) -> None:
    """A timeout after the service committed a block makes the SDK send it again; the append-position
    condition turns that second copy into a 412 instead of a duplicate event."""
    store = InstanceStore(blob_service, hub)
    await store.append_history("inst", "e1", 0, BATCH_A)
    original = BlobClient.append_block

    async def landed_then_retried(self: BlobClient, *args: Any, **kwargs: Any) -> Any:
        await original(self, *args, **kwargs)
        return await original(self, *args, **kwargs)  # the retry, same append position

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BlobClient, "append_block", landed_then_retried)
        await store.append_history("inst", "e1", 3, BATCH_B)
    assert await _history(store) == BATCH_A + BATCH_B


async def test_stale_cached_position_after_another_writer(blob_service: BlobServiceClient, hub: str) -> None:
    first, second = InstanceStore(blob_service, hub), InstanceStore(blob_service, hub)
    assert await first.append_history("inst", "e1", 0, BATCH_A) == 3
    assert await second.append_history("inst", "e1", 3, BATCH_B) == 4  # another worker took the session
    assert await first.append_history("inst", "e1", 3, BATCH_B) == 0  # redelivered to the first one
    assert await first.append_history("inst", "e1", 7, BATCH_C) == 2
    assert await _history(second) == BATCH_A + BATCH_B + BATCH_C


async def test_concurrent_identical_batches_land_once(blob_service: BlobServiceClient, hub: str) -> None:
    stores = [InstanceStore(blob_service, hub) for _ in range(4)]
    written = await asyncio.gather(*(s.append_history("inst", "e1", 0, BATCH_A) for s in stores))
    assert sorted(written) == [0, 0, 0, 3]
    assert await _history(stores[0]) == BATCH_A


async def test_overlapping_batch_writes_only_the_new_tail(instance_store: InstanceStore) -> None:
    await instance_store.append_history("inst", "e1", 0, BATCH_A)
    assert await instance_store.append_history("inst", "e1", 1, BATCH_A[1:] + BATCH_B) == 4
    assert await _history(instance_store) == BATCH_A + BATCH_B


async def test_gap_is_an_error_naming_the_missing_events(instance_store: InstanceStore) -> None:
    await instance_store.append_history("inst", "e1", 0, BATCH_A)
    with pytest.raises(HistoryGapError, match=r"holds 3 events but the batch starts at event 7"):
        await instance_store.append_history("inst", "e1", 7, BATCH_C)
    with pytest.raises(HistoryGapError):
        await instance_store.append_history("other", "e1", 2, BATCH_C)
    assert await _history(instance_store) == BATCH_A


async def test_partial_event_with_different_bytes_is_a_conflict(
    blob_service: BlobServiceClient, hub: str, instance_store: InstanceStore
) -> None:
    await instance_store.append_history("inst", "e1", 0, BATCH_A)
    container = blob_service.get_container_client(instance_store.container_name)
    blob = container.get_blob_client("inst/executions/e1/history.jsonl")
    partial = frame_lines(3, [b'{"something":"else"}'])[:20]
    await blob.append_block(partial)
    with pytest.raises(HistoryConflictError, match="partial event 3"):
        await instance_store.append_history("inst", "e1", 3, BATCH_B)
    assert await _history(instance_store) == BATCH_A  # the cut-short line is not an event


async def test_lines_with_newlines_are_refused(instance_store: InstanceStore) -> None:
    with pytest.raises(ValueError, match="newline"):
        await instance_store.append_history("inst", "e1", 0, [b'{"a":\n1}'])
    assert await instance_store.append_history("inst", "e1", 0, []) == 0


async def test_large_events_span_blocks(blob_service: BlobServiceClient, hub: str) -> None:
    store = InstanceStore(blob_service, hub, history_block_size=64 * 1024)
    big = [b'{"blob":"%s"}' % (b"y" * 300_000), b'{"small":1}']
    assert await store.append_history("inst", "e1", 0, big) == 2
    assert await _history(store) == big
    assert await InstanceStore(blob_service, hub).append_history("inst", "e1", 2, [b"{}"]) == 1
    assert await _history(store) == [*big, b"{}"]


async def test_executions_have_separate_histories(instance_store: InstanceStore) -> None:
    await instance_store.append_history("inst", "g1", 0, BATCH_A)
    await instance_store.append_history("inst", "g2", 0, BATCH_C)
    assert await instance_store.read_history("inst", "g1") == BATCH_A
    assert await instance_store.read_history("inst", "g2") == BATCH_C
