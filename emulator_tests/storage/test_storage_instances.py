"""InstanceStore against a real Azurite: state ordering, executions, queries, purge and jump-starts."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from azure.storage.blob.aio import BlobClient, BlobServiceClient

from dtf_sb.storage import (
    InstanceNotFinishedError,
    InstanceStore,
    PayloadNotFoundError,
    PurgeFilter,
    PurgeResult,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


class SimulatedCrash(Exception):
    """The worker process dies at this point."""


async def _put(
    store: InstanceStore,
    instance_id: str,
    execution_id: str = "e1",
    *,
    status: str = "Running",
    name: str = "greetings",
    created: datetime = T0,
    version: int = 1,
    completed: datetime | None = None,
) -> bool:
    return await store.upsert_state(
        f"{instance_id}:{execution_id}:{status}:v{version}".encode(),
        instance_id=instance_id,
        execution_id=execution_id,
        name=name,
        status=status,
        created_time=created,
        last_updated_time=created + timedelta(seconds=version),
        completed_time=completed,
        version=version,
    )


async def _blob_names(service: BlobServiceClient, container: str) -> list[str]:
    client = service.get_container_client(container)
    if not await client.exists():
        return []
    return [b.name async for b in client.list_blobs()]


# -- state ---------------------------------------------------------------------------------------


async def test_get_state_unknown_instance_is_none(instance_store: InstanceStore) -> None:
    assert await instance_store.get_state("nobody") is None
    assert await instance_store.read_history("nobody") == []
    assert not await instance_store.instance_exists("nobody")


async def test_upsert_then_get_round_trips_fields(instance_store: InstanceStore) -> None:
    done = T0 + timedelta(minutes=3)
    assert await _put(instance_store, "Order-1", status="Completed", version=7, completed=done)
    record = await instance_store.get_state("Order-1")
    assert record is not None
    assert (record.instance_id, record.execution_id, record.name, record.status) == (
        "Order-1",
        "e1",
        "greetings",
        "Completed",
    )
    assert record.created_time == T0
    assert record.last_updated_time == T0 + timedelta(seconds=7)
    assert record.completed_time == done
    assert record.version == 7
    assert record.state == b"Order-1:e1:Completed:v7"
    assert await instance_store.get_state("order-1") == record  # ids compare like session ids


async def test_stale_version_never_overwrites_newer(instance_store: InstanceStore) -> None:
    assert await _put(instance_store, "i", status="Running", version=3)
    assert await _put(instance_store, "i", status="Completed", version=9)
    assert not await _put(instance_store, "i", status="Running", version=5)
    record = await instance_store.get_state("i")
    assert record is not None and (record.status, record.version) == ("Completed", 9)
    [completed] = (await instance_store.query(status=["Running"]))[0] or [None]
    assert completed is None  # the tags of the stale snapshot were not written either


async def test_stale_snapshot_from_another_worker_is_rejected(
    blob_service: BlobServiceClient, hub: str
) -> None:
    first, second = InstanceStore(blob_service, hub), InstanceStore(blob_service, hub)
    assert await _put(first, "i", status="Running", version=3)  # first caches the etag of v3
    assert await _put(second, "i", status="Completed", version=5)
    assert not await _put(first, "i", status="Running", version=4)  # its cached etag is stale now
    assert await _put(first, "i", status="Completed", version=6)
    record = await second.get_state("i")
    assert record is not None and (record.status, record.version) == ("Completed", 6)


async def test_racing_snapshots_leave_the_newest(blob_service: BlobServiceClient, hub: str) -> None:
    stores = [InstanceStore(blob_service, hub) for _ in range(5)]
    results = await asyncio.gather(
        *(
            _put(store, "race", status=f"S{v}", version=v)
            for v, store in zip([4, 9, 1, 7, 3], stores, strict=True)
        )
    )
    assert results[1]  # the newest can never be refused
    record = await stores[0].get_state("race")
    assert record is not None and (record.version, record.status) == (9, "S9")


async def test_equal_version_is_rewritten(instance_store: InstanceStore) -> None:
    assert await _put(instance_store, "i", version=4)
    assert await _put(instance_store, "i", version=4)
    record = await instance_store.get_state("i")
    assert record is not None and record.version == 4


async def test_continue_as_new_generations_each_keep_a_record(instance_store: InstanceStore) -> None:
    await _put(instance_store, "loop", "g1", status="ContinuedAsNew", created=T0, version=5)
    await _put(instance_store, "loop", "g2", status="Running", created=T0 + timedelta(seconds=1), version=2)
    # a late, redelivered write of the old generation must not move "latest" back
    await _put(instance_store, "loop", "g1", status="ContinuedAsNew", created=T0, version=5)
    latest = await instance_store.get_state("loop")
    assert latest is not None and latest.execution_id == "g2"
    first = await instance_store.get_state("loop", "g1")
    assert first is not None and first.status == "ContinuedAsNew"
    executions = await instance_store.get_executions("loop")
    assert [r.execution_id for r in executions] == ["g1", "g2"]


async def test_crash_before_pointer_write_is_repaired_by_redelivery(
    instance_store: InstanceStore, blob_service: BlobServiceClient, hub: str
) -> None:
    await _put(instance_store, "p", "old", status="ContinuedAsNew", created=T0)
    original = BlobClient.upload_blob

    async def crash_on_pointer(self: BlobClient, *args: Any, **kwargs: Any) -> Any:
        if self.blob_name.endswith("latest.json"):
            raise SimulatedCrash("before the pointer write")
        return await original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BlobClient, "upload_blob", crash_on_pointer)
        with pytest.raises(SimulatedCrash):
            await _put(instance_store, "p", "new", status="Running", created=T0 + timedelta(minutes=1))
    restarted = InstanceStore(blob_service, hub)
    latest = await restarted.get_state("p")  # the pointer still names "old": readers see the old one...
    assert latest is not None and latest.execution_id == "old"
    await _put(restarted, "p", "new", status="Running", created=T0 + timedelta(minutes=1))  # redelivery
    latest = await restarted.get_state("p")
    assert latest is not None and latest.execution_id == "new"


async def test_latest_falls_back_to_listing_without_pointer(
    instance_store: InstanceStore, blob_service: BlobServiceClient
) -> None:
    await _put(instance_store, "p", "old", status="ContinuedAsNew", created=T0)
    await _put(instance_store, "p", "new", status="Running", created=T0 + timedelta(minutes=1))
    container = blob_service.get_container_client(instance_store.container_name)
    await container.delete_blob("p/latest.json")
    latest = await instance_store.get_state("p")
    assert latest is not None and latest.execution_id == "new"
    assert await instance_store.read_history("p") == []


async def test_instance_ids_with_slashes_do_not_overlap(instance_store: InstanceStore) -> None:
    await _put(instance_store, "a/b", status="Completed", version=1)
    assert not await instance_store.instance_exists("a")
    assert await instance_store.get_state("a") is None
    await _put(instance_store, "a", status="Completed", version=1)
    assert (await instance_store.purge_instance("a")).executions == 1
    assert await instance_store.instance_exists("a/b")


# -- queries -------------------------------------------------------------------------------------


async def _seed_for_queries(store: InstanceStore) -> None:
    for n in range(12):
        status = ["Running", "Completed", "Failed"][n % 3]
        name = "alpha" if n < 6 else "beta"
        await _put(store, f"job-{n:02d}", status=status, name=name, created=T0 + timedelta(hours=n))
    await _put(store, "other-1", status="Running", name="beta", created=T0 + timedelta(hours=20))


async def _all_pages(store: InstanceStore, page_size: int, **filters: object) -> tuple[list[str], int]:
    ids: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        records, token = await store.query(page_size=page_size, continuation_token=token, **filters)  # type: ignore[arg-type]
        assert len(records) <= page_size
        ids.extend(r.instance_id for r in records)
        pages += 1
        if token is None:
            return ids, pages


async def test_query_by_status_name_time_and_prefix(instance_store: InstanceStore) -> None:
    await _seed_for_queries(instance_store)
    ids, _ = await _all_pages(instance_store, 100, status=["Running"])
    assert sorted(ids) == ["job-00", "job-03", "job-06", "job-09", "other-1"]
    ids, _ = await _all_pages(instance_store, 100, status=["Completed", "FAILED"], name="alpha")
    assert sorted(ids) == ["job-01", "job-02", "job-04", "job-05"]
    ids, _ = await _all_pages(
        instance_store, 100, created_from=T0 + timedelta(hours=2), created_to=T0 + timedelta(hours=5)
    )
    assert sorted(ids) == ["job-02", "job-03", "job-04"]  # from inclusive, to exclusive
    ids, _ = await _all_pages(instance_store, 100, instance_id_prefix="JOB-1")
    assert sorted(ids) == ["job-10", "job-11"]
    ids, _ = await _all_pages(instance_store, 100, instance_id_prefix="job-1", status=["Completed"])
    assert ids == ["job-10"]
    ids, _ = await _all_pages(instance_store, 100, name="gamma")
    assert ids == []


async def test_query_pages_cover_everything_once(instance_store: InstanceStore) -> None:
    await _seed_for_queries(instance_store)
    ids, pages = await _all_pages(instance_store, 5)
    assert sorted(ids) == sorted([f"job-{n:02d}" for n in range(12)] + ["other-1"])
    assert pages >= 3
    ids, pages = await _all_pages(instance_store, 2, status=["Running", "Completed"])
    assert len(ids) == len(set(ids)) == 9
    assert pages >= 5


async def test_query_records_each_execution(instance_store: InstanceStore) -> None:
    await _put(instance_store, "loop", "g1", status="ContinuedAsNew", created=T0)
    await _put(instance_store, "loop", "g2", status="Running", created=T0 + timedelta(seconds=1))
    records, token = await instance_store.query(instance_id_prefix="loop")
    assert token is None
    assert sorted(r.execution_id for r in records) == ["g1", "g2"]
    records, _ = await instance_store.query(instance_id_prefix="loop", status=["Running"])
    assert [r.execution_id for r in records] == ["g2"]


async def test_query_rejects_foreign_token(instance_store: InstanceStore) -> None:
    with pytest.raises(ValueError, match="continuation_token"):
        await instance_store.query(continuation_token="not-a-token")


# -- purge ---------------------------------------------------------------------------------------


async def _full_instance(store: InstanceStore, instance_id: str, status: str) -> None:
    await _put(store, instance_id, "g1", status="ContinuedAsNew", created=T0, version=4)
    await store.append_history(instance_id, "g1", 0, [b'{"n":0}', b'{"n":1}'])
    await _put(store, instance_id, "g2", status=status, created=T0 + timedelta(seconds=1), version=3)
    await store.append_history(instance_id, "g2", 0, [b'{"n":0}'])
    await store.put_jump_start(instance_id, "g1", b"start", T0)
    for execution, kind in (("g1", "message"), ("g1", "chunk"), ("g2", "chunk")):
        await store.payloads.upload(
            b"p" * 300_000, instance_id=instance_id, execution_id=execution, kind=kind
        )


async def test_purge_refuses_running_instance(instance_store: InstanceStore) -> None:
    await _full_instance(instance_store, "busy", "Running")
    with pytest.raises(InstanceNotFinishedError, match="'busy' is Running"):
        await instance_store.purge_instance("busy")
    assert await instance_store.get_state("busy") is not None


async def test_purge_refuses_instance_with_pending_start(instance_store: InstanceStore) -> None:
    await _put(instance_store, "again", "g1", status="Completed")
    await instance_store.put_jump_start("again", "g2", b"restart", T0 + timedelta(hours=1))
    with pytest.raises(InstanceNotFinishedError, match="Pending"):
        await instance_store.purge_instance("again")
    await instance_store.put_jump_start("only-started", "g1", b"start", T0)
    with pytest.raises(InstanceNotFinishedError, match="Pending"):
        await instance_store.purge_instance("only-started")


async def test_purge_removes_everything_and_leaks_nothing(
    instance_store: InstanceStore, blob_service: BlobServiceClient
) -> None:
    await _full_instance(instance_store, "keep", "Running")
    keep_instances = await _blob_names(blob_service, instance_store.container_name)
    keep_payloads = await _blob_names(blob_service, instance_store.payloads.container_name)
    await _full_instance(instance_store, "done", "Completed")
    result = await instance_store.purge_instance("done")
    assert result == PurgeResult(instances=1, executions=2, history_blobs=2, payloads=3, jump_starts=1)
    assert await _blob_names(blob_service, instance_store.container_name) == keep_instances
    assert await _blob_names(blob_service, instance_store.payloads.container_name) == keep_payloads
    assert not await instance_store.instance_exists("done")
    assert await instance_store.read_history("done", "g1") == []
    assert await instance_store.purge_instance("done") == PurgeResult()


async def test_purged_payload_key_reports_purge(instance_store: InstanceStore) -> None:
    await _put(instance_store, "gone", status="Failed")
    key = await instance_store.payloads.upload(b"x", instance_id="gone", execution_id="e1", kind="message")
    await instance_store.purge_instance("gone")
    with pytest.raises(PayloadNotFoundError, match="purged"):
        await instance_store.payloads.download(key)


async def test_purge_by_filter_counts_and_skips_unfinished(instance_store: InstanceStore) -> None:
    await _seed_for_queries(instance_store)
    result = await instance_store.purge(PurgeFilter(created_to=T0 + timedelta(hours=6)))
    assert result.instances == 4  # job-01, 02, 04, 05: finished and created before hour 6
    remaining, _ = await _all_pages(instance_store, 100)
    assert sorted(remaining) == sorted(
        ["job-00", "job-03", *[f"job-{n:02d}" for n in range(6, 12)], "other-1"]
    )
    result = await instance_store.purge(PurgeFilter(statuses=["Running", "Completed"], name="beta"))
    assert result.instances == 2  # job-07, job-10; running ones are skipped, not an error
    assert await instance_store.instance_exists("job-06")


# -- jump-start ----------------------------------------------------------------------------------


async def test_jump_start_lifecycle(instance_store: InstanceStore) -> None:
    now = datetime.now(timezone.utc)
    assert await instance_store.put_jump_start("js", "e1", b"start-message", now - timedelta(minutes=15))
    assert not await instance_store.put_jump_start("js", "e1", b"other", now)  # idempotent client retry
    assert await instance_store.put_jump_start("fresh", "e1", b"m2", now)
    assert await instance_store.instance_exists("js")
    assert await instance_store.get_state("js") is None
    [pending] = await instance_store.get_jump_starts("JS")
    assert (pending.execution_id, pending.message, pending.last_sent_time) == ("e1", b"start-message", None)

    due = await instance_store.list_jump_starts(older_than=now - timedelta(minutes=10))
    assert [(r.instance_id, r.execution_id, r.message) for r in due] == [("js", "e1", b"start-message")]
    assert due[0].last_sent_time is None

    assert await instance_store.mark_jump_start_sent("js", "e1", sent_time=now)
    assert await instance_store.list_jump_starts(older_than=now - timedelta(minutes=10)) == []
    record = await instance_store.get_jump_start("js", "e1")
    assert record is not None and record.due_time == record.last_sent_time
    later = await instance_store.list_jump_starts(older_than=now + timedelta(minutes=11))
    assert sorted(r.instance_id for r in later) == ["fresh", "js"]

    assert await instance_store.delete_jump_start("js", "e1")
    assert not await instance_store.delete_jump_start("js", "e1")
    assert not await instance_store.mark_jump_start_sent("js", "e1", sent_time=now)
    assert not await instance_store.instance_exists("js")


# -- payload garbage collection ------------------------------------------------------------------


async def test_collect_garbage_keeps_payloads_of_live_executions(instance_store: InstanceStore) -> None:
    payloads = instance_store.payloads
    await _put(instance_store, "live", "g2", status="Running")
    await _put(instance_store, "live", "g1", status="ContinuedAsNew")
    await _put(instance_store, "finished", "e1", status="Completed")
    await instance_store.put_jump_start("starting", "e1", b"start", T0)
    keys = {
        name: await payloads.upload(b"x", instance_id=instance_id, execution_id=execution, kind="message")
        for name, instance_id, execution in [
            ("live", "live", "g2"),
            ("superseded", "live", "g1"),
            ("finished", "finished", "e1"),
            ("starting", "starting", "e1"),
            ("unknown", "never-tracked", "e1"),
        ]
    }
    assert (
        await instance_store.collect_garbage(older_than=datetime.now(timezone.utc) - timedelta(hours=1)) == 0
    )
    deleted = await instance_store.collect_garbage(
        older_than=datetime.now(timezone.utc) + timedelta(minutes=1)
    )
    assert deleted == 3
    assert await payloads.download(keys["live"]) == b"x"
    assert await payloads.download(keys["starting"]) == b"x"
    for gone in ("superseded", "finished", "unknown"):
        with pytest.raises(PayloadNotFoundError):
            await payloads.download(keys[gone])


# -- hub lifecycle -------------------------------------------------------------------------------


async def test_ensure_and_delete_store_manage_both_containers(
    blob_service: BlobServiceClient, instance_store: InstanceStore
) -> None:
    names = (instance_store.container_name, instance_store.payloads.container_name)
    await instance_store.ensure()
    await instance_store.ensure()  # idempotent
    for name in names:
        assert await blob_service.get_container_client(name).exists()
    await _put(instance_store, "i", status="Completed")
    await instance_store.delete_store()
    for name in names:
        assert not await blob_service.get_container_client(name).exists()
    assert await instance_store.get_state("i") is None  # reads of a deleted hub are empty, not errors
    await instance_store.delete_store()


async def test_hub_names_map_to_valid_containers(blob_service: BlobServiceClient) -> None:
    store = InstanceStore(blob_service, "Orders_Hub.EU")
    try:
        assert await _put(store, "i", status="Running")
        assert store.container_name == "orders-hub-eu-instances"
    finally:
        await store.delete_store()
