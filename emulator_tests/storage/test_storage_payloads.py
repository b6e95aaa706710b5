"""PayloadStore against a real Azurite: sizes, keys, immutability, deletion and orphan collection."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from dtf_sb.storage import PayloadInfo, PayloadNotFoundError, PayloadStore


def _data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("size", [100 * 1024, 1024 * 1024, 5 * 1024 * 1024])
async def test_upload_download_round_trip(payload_store: PayloadStore, size: int) -> None:
    data = _data(size, seed=size)
    key = await payload_store.upload(data, instance_id="order-1", execution_id="e1", kind="message")
    assert await payload_store.download(key) == data


async def test_key_groups_by_instance_and_execution(payload_store: PayloadStore) -> None:
    key = await payload_store.upload(b"x", instance_id="Order/7", execution_id="e1", kind="chunk")
    instance, execution, leaf = key.split("/")
    assert instance == "order%2F7"  # lowercased like session ids, '/' cannot split the prefix
    assert execution == "e1"
    assert leaf.startswith("chunk-")


async def test_missing_key_error_names_key_and_meaning(payload_store: PayloadStore) -> None:
    await payload_store.ensure()
    key = PayloadStore.build_key("gone", "e1", "message", "abc")
    with pytest.raises(PayloadNotFoundError) as info:
        await payload_store.download(key)
    text = str(info.value)
    assert key in text
    assert "purged" in text and "never written" in text
    assert info.value.key == key


async def test_missing_container_reads_as_missing_payload(payload_store: PayloadStore) -> None:
    with pytest.raises(PayloadNotFoundError):
        await payload_store.download("nothing/here/message-1")


async def test_deterministic_key_is_immutable_and_idempotent(payload_store: PayloadStore) -> None:
    first = await payload_store.upload(
        b"first", instance_id="i", execution_id="e", kind="message", payload_id="evt-5"
    )
    again = await payload_store.upload(
        b"first", instance_id="i", execution_id="e", kind="message", payload_id="evt-5"
    )
    other = await payload_store.upload(
        b"different", instance_id="i", execution_id="e", kind="message", payload_id="evt-5"
    )
    assert first == again == other == PayloadStore.build_key("i", "e", "message", "evt-5")
    assert await payload_store.download(first) == b"first"


async def test_random_keys_never_collide(payload_store: PayloadStore) -> None:
    keys = {
        await payload_store.upload(b"x", instance_id="i", execution_id="e", kind="message") for _ in range(5)
    }
    assert len(keys) == 5


async def test_delete_instance_counts_and_spares_other_instances(payload_store: PayloadStore) -> None:
    for execution in ("e1", "e1", "e2"):
        await payload_store.upload(b"a", instance_id="a", execution_id=execution, kind="message")
    kept = [
        await payload_store.upload(b"b", instance_id="a/b", execution_id="e1", kind="message"),
        await payload_store.upload(b"c", instance_id="ab", execution_id="e1", kind="chunk"),
    ]
    assert await payload_store.delete_instance("a") == 3
    assert await payload_store.delete_instance("a") == 0
    for key in kept:
        assert await payload_store.download(key) in (b"b", b"c")
    remaining = [info.key async for info in payload_store.list_payloads()]
    assert sorted(remaining) == sorted(kept)


async def test_delete_counts_only_existing_keys(payload_store: PayloadStore) -> None:
    key = await payload_store.upload(b"x", instance_id="i", execution_id="e", kind="message")
    assert await payload_store.delete([key, "i/e/message-missing"]) == 1
    with pytest.raises(PayloadNotFoundError):
        await payload_store.download(key)


async def test_list_payloads_reports_metadata(payload_store: PayloadStore) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    data = _data(1000)
    key = await payload_store.upload(data, instance_id="Ünïcode id", execution_id="e9", kind="chunk")
    [info] = [info async for info in payload_store.list_payloads(instance_id="ünïcode ID")]
    assert info.key == key
    assert (info.instance_id, info.execution_id, info.kind, info.size) == ("Ünïcode id", "e9", "chunk", 1000)
    assert info.created_time >= before


async def test_find_orphans_respects_grace_period_and_references(payload_store: PayloadStore) -> None:
    live = await payload_store.upload(b"1", instance_id="live", execution_id="e", kind="message")
    dead = await payload_store.upload(b"2", instance_id="dead", execution_id="e", kind="message")
    asked: list[str] = []

    async def is_referenced(info: PayloadInfo) -> bool:
        asked.append(info.key)
        return info.instance_id == "live"

    past = datetime.now(timezone.utc) - timedelta(hours=1)
    assert await payload_store.find_orphans(older_than=past, is_referenced=is_referenced) == []
    assert asked == []  # too young to be judged at all

    future = datetime.now(timezone.utc) + timedelta(minutes=1)
    orphans = await payload_store.find_orphans(older_than=future, is_referenced=is_referenced)
    assert [info.key for info in orphans] == [dead]
    assert await payload_store.collect_garbage(older_than=future, is_referenced=is_referenced) == 1
    assert await payload_store.download(live) == b"1"
    with pytest.raises(PayloadNotFoundError):
        await payload_store.download(dead)


def test_kind_must_be_simple() -> None:
    with pytest.raises(ValueError, match="kind"):
        PayloadStore.build_key("i", "e", "Bad-Kind", "x")
