"""The instance store: state snapshots, histories, queries, purge and jump-start records, all in blobs.

The tracking dispatcher projects every episode into it; the client reads states, histories and queries
from it. The blob layout is in ``layout``; the design choices that make it safe without transactions:

* State blobs carry index tags (kind, status, name, created time, instance id), so queries run on
  Find Blobs by Tags instead of listing and downloading everything.
* State writes carry a monotonic ``version`` (the history length) and are conditional on the etag
  read, so a stale snapshot (a redelivered, older tracking batch) never replaces a newer one, even when
  two tracking workers race.
* Every continue-as-new generation keeps its own ``state.json``; ``latest.json`` only points, and is
  advanced monotonically by created time, so a late write of an older generation cannot move it back.
  If a crash leaves it stale or missing, the redelivered state write repairs it, and readers fall back
  to listing the executions.
* Histories are append blobs whose lines carry their event index (``history_log``), so appends are
  idempotent without bookkeeping outside the blob.
* Etags and pointers this store wrote are cached as hints, which makes the common episode one state
  upload and one append. A stale hint only costs a rejected conditional write and the slow path.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobProperties
from azure.storage.blob.aio import BlobServiceClient

from dtf_sb.storage.connection import guarded
from dtf_sb.storage.errors import InstanceNotFinishedError, StorageError
from dtf_sb.storage.history_log import DEFAULT_BLOCK_SIZE, HistoryLog
from dtf_sb.storage.jump_starts import JumpStarts
from dtf_sb.storage.layout import (
    CONTINUED,
    BlobContainer,
    InstanceLayout,
    gather_bounded,
    newer_execution,
)
from dtf_sb.storage.naming import (
    container_names,
    decode_metadata,
    encode_metadata,
    format_time,
    instance_tag,
    name_tag,
    parse_time,
    status_key,
)
from dtf_sb.storage.payloads import PayloadInfo, PayloadStore
from dtf_sb.storage.records import InstanceRecord, JumpStartRecord, PurgeFilter, PurgeResult, is_finished
from dtf_sb.storage.tag_query import STATE_KIND, InstanceQuery, decode_token, encode_token

__all__ = ["InstanceStore"]

_MAX_WRITE_ATTEMPTS = 8
_CACHE_ENTRIES = 4096


class _Hints:
    """A bounded LRU map of values this process wrote; never the only basis for skipping a write."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, Any] = OrderedDict()

    def pop(self, key: str) -> Any:
        return self._entries.pop(key, None)

    def get(self, key: str) -> Any:
        return self._entries.get(key)

    def put(self, key: str, value: Any) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > _CACHE_ENTRIES:
            self._entries.popitem(last=False)


class InstanceStore:
    """Instance records of one task hub, projected by the tracking dispatcher and read by the client.

    Projecting one tracked episode: :meth:`append_history` with the episode's new events first, then
    :meth:`upsert_state` with ``version`` = the history length, then :meth:`delete_jump_start` for a
    start that is now recorded. In that order a crash anywhere leaves a state that never claims more
    history than is stored, and the redelivered batch completes the rest.
    """

    def __init__(
        self,
        service_client: BlobServiceClient,
        hub: str,
        *,
        payloads: PayloadStore | None = None,
        history_block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        self._service = service_client
        self._hub = hub
        self._container_name = container_names(hub).instances
        self._blobs = BlobContainer(service_client.get_container_client(self._container_name))
        self._payloads = payloads if payloads is not None else PayloadStore(service_client, hub)
        self._history = HistoryLog(
            self._blobs.client, ensure_container=self._blobs.create, block_size=history_block_size
        )
        self._jump_starts = JumpStarts(self._blobs)
        self._state_hints = _Hints()  # state blob name -> (etag, version)
        self._pointer_hints = _Hints()  # pointer blob name -> (execution id, created, status)

    def __repr__(self) -> str:
        return f"InstanceStore(hub={self._hub!r}, container={self._container_name!r})"

    @property
    def service_client(self) -> BlobServiceClient:
        return self._service

    @property
    def container_name(self) -> str:
        return self._container_name

    @property
    def payloads(self) -> PayloadStore:
        return self._payloads

    # -- lifecycle -----------------------------------------------------------------------------

    @guarded
    async def ensure(self) -> None:
        """Create the instance and payload containers if they do not exist yet."""
        await self._blobs.create()
        await self._payloads.ensure()

    @guarded
    async def delete_store(self) -> None:
        """Delete every instance record and payload of the hub (both containers)."""
        try:
            await self._blobs.client.delete_container()
        except ResourceNotFoundError:
            pass
        await self._payloads.delete_store()
        self._history.forget_all()
        self._state_hints = _Hints()
        self._pointer_hints = _Hints()

    # -- state ---------------------------------------------------------------------------------

    @guarded
    async def upsert_state(
        self,
        state: bytes,
        *,
        instance_id: str,
        execution_id: str,
        name: str,
        status: str,
        created_time: datetime,
        last_updated_time: datetime,
        completed_time: datetime | None = None,
        version: int,
    ) -> bool:
        """Write an execution's state snapshot unless a newer ``version`` is stored already.

        Returns whether this snapshot was written. An equal version is written again (a redelivered
        batch carries the same snapshot), which also repairs the latest-execution pointer when a crash
        came between the state write and the pointer write.
        """
        fields = {
            "instance": instance_id,
            "execution": execution_id,
            "name": name,
            "status": status,
            "created": format_time(created_time),
            "updated": format_time(last_updated_time),
            "version": str(version),
        }
        tags = {
            "kind": STATE_KIND,
            "status": status_key(status),
            "name": name_tag(name),
            "created": fields["created"],
            "iid": instance_tag(instance_id),
        }
        if completed_time is not None:
            fields["completed"] = tags["completed"] = format_time(completed_time)
        upload = {"metadata": encode_metadata(fields), "tags": tags}
        blob_name = InstanceLayout.state(instance_id, execution_id)
        hint = self._state_hints.pop(blob_name)
        written = False
        if hint is not None and version >= hint[1]:
            try:
                result = await self._blobs.upload(
                    blob_name, state, etag=hint[0], match_condition=MatchConditions.IfNotModified, **upload
                )
                written = True
            except (ResourceModifiedError, ResourceNotFoundError):
                pass  # someone else wrote (or purged) it: decide from what is stored
        for _ in range(0 if written else _MAX_WRITE_ATTEMPTS):
            try:
                properties: BlobProperties | None = await self._blobs.client.get_blob_client(
                    blob_name
                ).get_blob_properties()
            except ResourceNotFoundError:
                properties = None
            condition: dict[str, Any]
            if properties is None:
                condition = {"match_condition": MatchConditions.IfMissing}
            else:
                stored = int(decode_metadata(properties.metadata).get("version", "-1"))
                if version < stored:
                    self._state_hints.put(blob_name, (properties.etag, stored))
                    return False  # the newer write advanced the pointer (or will, when redelivered)
                condition = {"etag": properties.etag, "match_condition": MatchConditions.IfNotModified}
            try:
                result = await self._blobs.upload(blob_name, state, **condition, **upload)
                written = True
                break
            except (ResourceExistsError, ResourceModifiedError):
                continue  # another writer got in between; re-read and compare versions again
        if not written:
            raise StorageError(
                f"state of instance {instance_id!r} execution {execution_id!r}: gave up after "
                f"{_MAX_WRITE_ATTEMPTS} attempts because other writers kept replacing it"
            )
        self._state_hints.put(blob_name, (result["etag"], version))
        await self._advance_pointer(instance_id, execution_id, fields["created"], status)
        return True

    async def _advance_pointer(self, instance_id: str, execution_id: str, created: str, status: str) -> None:
        name = InstanceLayout.pointer(instance_id)
        if self._pointer_hints.get(name) == (execution_id, created, status):
            return
        blob = self._blobs.client.get_blob_client(name)
        document = json.dumps({"execution": execution_id, "created": created, "status": status}).encode()
        for _ in range(_MAX_WRITE_ATTEMPTS):
            try:
                stream = await blob.download_blob()
                current = json.loads(await stream.readall())
                etag = stream.properties.etag
            except ResourceNotFoundError:
                current, etag = None, None
            if current is not None:
                if current["execution"] == execution_id:
                    if current["status"] == status:
                        self._pointer_hints.put(name, (execution_id, created, status))
                        return
                elif not newer_execution(created, status, current["created"], current["status"]):
                    return
                condition: dict[str, Any] = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
            else:
                condition = {"match_condition": MatchConditions.IfMissing}
            try:
                await self._blobs.upload(name, document, **condition)
                self._pointer_hints.put(name, (execution_id, created, status))
                return
            except (ResourceExistsError, ResourceModifiedError):
                continue
        raise StorageError(f"latest-execution pointer of instance {instance_id!r} kept changing under us")

    async def _latest_execution(self, instance_id: str) -> str | None:
        try:
            blob = self._blobs.client.get_blob_client(InstanceLayout.pointer(instance_id))
            return str(json.loads(await (await blob.download_blob()).readall())["execution"])
        except ResourceNotFoundError:
            pass
        latest = _latest_of(await self._blobs.list(InstanceLayout.executions_prefix(instance_id)))
        return latest[2] if latest is not None else None

    async def _read_state(self, blob_name: str) -> InstanceRecord | None:
        try:
            stream = await self._blobs.client.get_blob_client(blob_name).download_blob()
        except ResourceNotFoundError:
            return None
        data = await stream.readall()
        fields = decode_metadata(stream.properties.metadata)
        completed = fields.get("completed")
        return InstanceRecord(
            instance_id=fields["instance"],
            execution_id=fields["execution"],
            name=fields["name"],
            status=fields["status"],
            created_time=parse_time(fields["created"]),
            last_updated_time=parse_time(fields["updated"]),
            completed_time=parse_time(completed) if completed else None,
            version=int(fields["version"]),
            state=data,
        )

    async def _read_states(self, blob_names: Sequence[str]) -> list[InstanceRecord]:
        return [r for r in await gather_bounded(self._read_state, blob_names) if r is not None]

    @guarded
    async def get_state(self, instance_id: str, execution_id: str | None = None) -> InstanceRecord | None:
        """One execution's record; without ``execution_id`` the newest execution's.

        ``None`` also for an instance that so far exists only as a jump-start record (scheduled, not yet
        tracked); :meth:`get_jump_starts` shows those.
        """
        if execution_id is None:
            execution_id = await self._latest_execution(instance_id)
            if execution_id is None:
                return None
        return await self._read_state(InstanceLayout.state(instance_id, execution_id))

    @guarded
    async def get_executions(self, instance_id: str) -> list[InstanceRecord]:
        """Every execution (continue-as-new generation) of an instance, oldest first."""
        blobs = await self._blobs.list(InstanceLayout.executions_prefix(instance_id))
        records = await self._read_states([b.name for b in blobs if InstanceLayout.is_state(b.name)])
        return sorted(records, key=lambda r: (format_time(r.created_time), status_key(r.status) != CONTINUED))

    @guarded
    async def instance_exists(self, instance_id: str) -> bool:
        """Whether anything is recorded for the id: a state, a history or only a jump-start record."""
        try:
            blobs = self._blobs.client.list_blobs(
                name_starts_with=InstanceLayout.prefix(instance_id), results_per_page=1
            )
            async for _ in blobs:
                return True
        except ResourceNotFoundError:
            pass
        return False

    # -- history -------------------------------------------------------------------------------

    @guarded
    async def append_history(
        self, instance_id: str, execution_id: str, first_event_index: int, lines: Sequence[bytes]
    ) -> int:
        """Append encoded events (one per line) unless already stored; returns how many were new.

        Idempotent for redelivered batches, including after a crash at any point of an earlier
        attempt; see ``history_log`` for the reasoning.
        """
        return await self._history.append(
            InstanceLayout.history(instance_id, execution_id),
            instance_id=instance_id,
            execution_id=execution_id,
            first_event_index=first_event_index,
            lines=lines,
        )

    @guarded
    async def read_history(self, instance_id: str, execution_id: str | None = None) -> list[bytes]:
        """The stored events of one execution (default: the newest), in order; empty when unknown."""
        if execution_id is None:
            execution_id = await self._latest_execution(instance_id)
            if execution_id is None:
                return []
        return await self._history.read(InstanceLayout.history(instance_id, execution_id)) or []

    # -- queries -------------------------------------------------------------------------------

    @guarded
    async def query(
        self,
        *,
        status: Sequence[str] | None = None,
        name: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        instance_id_prefix: str | None = None,
        page_size: int = 100,
        continuation_token: str | None = None,
    ) -> tuple[list[InstanceRecord], str | None]:
        """One page of execution records matching every given filter, and the token of the next page.

        Each continue-as-new generation is its own record (filter out ``ContinuedAsNew`` by status to
        see only current ones). ``created_to`` is exclusive. A page can hold fewer than ``page_size``
        records even when more follow; the token is ``None`` only at the end.
        """
        if page_size <= 0:
            raise ValueError("page_size must be positive")
        spec = InstanceQuery(
            statuses=status,
            name=name,
            created_from=created_from,
            created_to=created_to,
            instance_id_prefix=instance_id_prefix,
        )
        expressions = spec.expressions()
        index, marker, after = decode_token(continuation_token) if continuation_token else (0, None, None)
        names: list[str] = []
        while index < len(expressions) and len(names) < page_size:
            # Service pages keep the service's default size and we slice them ourselves: Azurite
            # (3.37) drops the continuation marker when a size-limited page filters out any blob, which
            # silently truncates results. Resuming after the last returned name stays correct when
            # blobs are deleted between calls (e.g. a purge walking the pages).
            pager = self._blobs.client.find_blobs_by_tags(expressions[index]).by_page(
                continuation_token=marker
            )
            try:
                # sorted here, so resuming after a name never depends on the service's order
                items = sorted([item.name async for item in await pager.__anext__()])
            except StopAsyncIteration:
                items = []
            except ResourceNotFoundError:
                return [], None
            fresh = [name for name in items if after is None or name > after]
            taken = fresh[: page_size - len(names)]
            names.extend(taken)
            if len(taken) < len(fresh):
                after = taken[-1]
                break
            after = None
            marker = pager.continuation_token or None
            if marker is None:
                index += 1
        records = [record for record in await self._read_states(names) if spec.matches(record)]
        token = encode_token(index, marker, after) if index < len(expressions) else None
        return records, token

    # -- purge ---------------------------------------------------------------------------------

    @guarded
    async def purge_instance(self, instance_id: str) -> PurgeResult:
        """Remove everything of a finished instance: states, histories, jump-starts and payloads.

        Refuses (:class:`InstanceNotFinishedError`) while the newest execution can still change or a
        recorded start has not shown up yet. Deletes payloads first and the latest-execution pointer
        last, so a purge cut short can simply be run again.
        """
        blobs = await self._blobs.list(InstanceLayout.prefix(instance_id))
        states = [b for b in blobs if InstanceLayout.is_state(b.name)]
        jump_starts = [b for b in blobs if InstanceLayout.is_jump_start(b.name)]
        started = {decode_metadata(b.metadata).get("execution") for b in states}
        if any(decode_metadata(b.metadata).get("execution") not in started for b in jump_starts):
            raise InstanceNotFinishedError(instance_id, "Pending")
        latest = _latest_of(states)
        if latest is not None and not is_finished(latest[1]):
            raise InstanceNotFinishedError(instance_id, latest[1])
        payloads = await self._payloads.delete_instance(instance_id)
        pointer = InstanceLayout.pointer(instance_id)
        state_names = [b.name for b in states]
        jump_start_names = [b.name for b in jump_starts]
        history = [b.name for b in blobs if InstanceLayout.is_history(b.name)]
        known = {*state_names, *jump_start_names, *history, pointer}
        others = [b.name for b in blobs if b.name not in known]
        await self._blobs.delete([*history, *jump_start_names, *others])
        await self._blobs.delete(state_names)
        await self._blobs.delete([b.name for b in blobs if b.name == pointer])
        for name in [*history, *state_names, pointer]:
            self._history.forget(name)
            self._state_hints.pop(name)
            self._pointer_hints.pop(name)
        return PurgeResult(
            instances=1 if states or jump_starts or history else 0,
            executions=len(states),
            history_blobs=len(history),
            payloads=payloads,
            jump_starts=len(jump_starts),
            other_blobs=len(others),
        )

    @guarded
    async def purge(self, purge_filter: PurgeFilter) -> PurgeResult:
        """Purge every finished instance with an execution matching the filter; returns the totals.

        Instances whose newest execution is not finished are skipped, not an error: a time-range purge
        must not fail because one old instance was restarted.
        """
        instance_ids: dict[str, str] = {}
        token: str | None = None
        while True:
            records, token = await self.query(
                status=purge_filter.statuses,
                name=purge_filter.name,
                created_from=purge_filter.created_from,
                created_to=purge_filter.created_to,
                instance_id_prefix=purge_filter.instance_id_prefix,
                page_size=500,
                continuation_token=token,
            )
            for record in records:
                instance_ids.setdefault(record.instance_id.lower(), record.instance_id)
            if token is None:
                break
        total = PurgeResult()
        for instance_id in instance_ids.values():
            try:
                total = total + await self.purge_instance(instance_id)
            except InstanceNotFinishedError:
                continue
        return total

    # -- jump-start ----------------------------------------------------------------------------

    @guarded
    async def put_jump_start(
        self, instance_id: str, execution_id: str, encoded_start_message: bytes, created_time: datetime
    ) -> bool:
        """Record a start before the client sends it. False if this execution's record exists already
        (a client retrying the same start), in which case the stored message is kept."""
        return await self._jump_starts.put(instance_id, execution_id, encoded_start_message, created_time)

    @guarded
    async def get_jump_start(self, instance_id: str, execution_id: str) -> JumpStartRecord | None:
        return await self._jump_starts.read(InstanceLayout.jump_start(instance_id, execution_id))

    @guarded
    async def get_jump_starts(self, instance_id: str) -> list[JumpStartRecord]:
        """Every jump-start record of an instance (a scheduled start not yet confirmed by tracking)."""
        return await self._jump_starts.of_instance(instance_id)

    @guarded
    async def list_jump_starts(self, *, older_than: datetime, limit: int = 1000) -> list[JumpStartRecord]:
        """Records whose grace window (from creation or the last re-send) began before ``older_than``:
        the starts the jump-start manager should check and maybe re-send."""
        return await self._jump_starts.due(older_than, limit)

    @guarded
    async def mark_jump_start_sent(self, instance_id: str, execution_id: str, *, sent_time: datetime) -> bool:
        """Restart the grace window after a re-send. False if the record was deleted meanwhile."""
        return await self._jump_starts.mark_sent(instance_id, execution_id, sent_time)

    @guarded
    async def delete_jump_start(self, instance_id: str, execution_id: str) -> bool:
        """Drop a record once its execution shows up in the store. False if it was already gone."""
        return await self._jump_starts.delete(instance_id, execution_id)

    # -- payload garbage collection ------------------------------------------------------------

    @guarded
    async def collect_garbage(self, *, older_than: datetime) -> int:
        """Delete payloads created before ``older_than`` that no live execution can still read.

        A payload is kept while its execution's record says it can still run (not finished and not
        continued-as-new), or while its instance has no record for it but a jump-start record. Payloads
        of purged, finished or superseded executions, and of executions never recorded, are deleted.
        This relies on the tracking dispatcher recording every execution: choose ``older_than`` well
        beyond the tracking lag and the longest message time-to-live.
        """
        verdicts: dict[tuple[str, str], bool] = {}

        async def is_referenced(info: PayloadInfo) -> bool:
            key = (info.instance_id.lower(), info.execution_id)
            if key not in verdicts:
                verdicts[key] = await self._execution_is_live(info.instance_id, info.execution_id)
            return verdicts[key]

        return await self._payloads.collect_garbage(older_than=older_than, is_referenced=is_referenced)

    async def _execution_is_live(self, instance_id: str, execution_id: str) -> bool:
        blob = self._blobs.client.get_blob_client(InstanceLayout.state(instance_id, execution_id))
        try:
            properties = await blob.get_blob_properties()
        except ResourceNotFoundError:
            return bool(await self._blobs.list(InstanceLayout.jump_starts_prefix(instance_id)))
        status = decode_metadata(properties.metadata).get("status", "")
        return not is_finished(status) and status_key(status) != CONTINUED


def _latest_of(blobs: Sequence[BlobProperties]) -> tuple[str, str, str] | None:
    """(created, status, execution id) of the newest execution among listed state blobs."""
    latest: tuple[str, str, str] | None = None
    for blob in blobs:
        if not InstanceLayout.is_state(blob.name):
            continue
        fields = decode_metadata(blob.metadata)
        candidate = (fields.get("created", ""), fields.get("status", ""), fields.get("execution", ""))
        if latest is None or newer_execution(candidate[0], candidate[1], latest[0], latest[1]):
            latest = candidate
    return latest
