"""The instance store: state snapshots, histories, queries, purge and jump-start records, all in blobs.

Layout in the hub's ``-instances`` container (``<i>`` and ``<e>`` are encoded ids, see ``naming``)::

    <i>/latest.json                     pointer to the newest execution (for get_state without an id)
    <i>/executions/<e>/state.json       the caller's encoded state; metadata + index tags describe it
    <i>/executions/<e>/history.jsonl    append blob, one event per line (see ``history_log``)
    <i>/jumpstart/<e>.start             a start the client recorded before sending it

Why this shape:

* Every blob of an instance shares the prefix ``<i>/``, so existence checks, executions and purge are
  prefix listings of one instance, never scans of the hub.
* State blobs carry index tags (kind, status, name, created time, instance id), so queries run on
  Find Blobs by Tags instead of listing and downloading everything.
* Every continue-as-new generation keeps its own ``state.json``; ``latest.json`` only points, and is
  advanced monotonically by created time, so a late write of an older generation cannot move it back.
  If a crash leaves it stale or missing, the next state write of that instance repairs it, and readers
  fall back to listing the executions.
* State writes carry a monotonic ``version`` (the history length); the write is conditional on the etag
  read, so a stale snapshot (a redelivered, older tracking batch) never replaces a newer one, even when
  two tracking workers race.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobProperties
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from dtf_sb.storage.connection import guarded
from dtf_sb.storage.errors import InstanceNotFinishedError, StorageError
from dtf_sb.storage.history_log import DEFAULT_BLOCK_SIZE, HistoryLog
from dtf_sb.storage.naming import (
    container_names,
    decode_metadata,
    encode_instance_segment,
    encode_metadata,
    encode_segment,
    format_time,
    instance_tag,
    name_tag,
    parse_time,
    status_key,
)
from dtf_sb.storage.payloads import PayloadInfo, PayloadStore
from dtf_sb.storage.records import InstanceRecord, JumpStartRecord, PurgeFilter, PurgeResult, is_finished
from dtf_sb.storage.tag_query import JUMP_START_KIND, STATE_KIND, InstanceQuery, decode_token, encode_token

__all__ = ["InstanceStore"]

_STATE = "state.json"
_HISTORY = "history.jsonl"
_POINTER = "latest.json"
_JUMP_START_SUFFIX = ".start"
_CONTINUED = "CONTINUEDASNEW"
_CONCURRENCY = 16
_MAX_WRITE_ATTEMPTS = 8


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _newer(created: str, status: str, than_created: str, than_status: str) -> bool:
    """Order of executions: created time, and on a tie the one that did not continue-as-new."""
    if created != than_created:
        return created > than_created
    return status_key(than_status) == _CONTINUED and status_key(status) != _CONTINUED


class InstanceStore:
    """Instance records of one task hub, projected by the tracking dispatcher and read by the client."""

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
        self._container: ContainerClient = service_client.get_container_client(self._container_name)
        self._payloads = payloads if payloads is not None else PayloadStore(service_client, hub)
        self._history = HistoryLog(
            self._container, ensure_container=self._create_container, block_size=history_block_size
        )

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

    # -- blob names ----------------------------------------------------------------------------

    @staticmethod
    def _prefix(instance_id: str) -> str:
        return encode_instance_segment(instance_id) + "/"

    def _execution_prefix(self, instance_id: str, execution_id: str) -> str:
        return f"{self._prefix(instance_id)}executions/{encode_segment(execution_id)}/"

    def _state_name(self, instance_id: str, execution_id: str) -> str:
        return self._execution_prefix(instance_id, execution_id) + _STATE

    def _history_name(self, instance_id: str, execution_id: str) -> str:
        return self._execution_prefix(instance_id, execution_id) + _HISTORY

    def _pointer_name(self, instance_id: str) -> str:
        return self._prefix(instance_id) + _POINTER

    def _jump_start_name(self, instance_id: str, execution_id: str) -> str:
        return f"{self._prefix(instance_id)}jumpstart/{encode_segment(execution_id)}{_JUMP_START_SUFFIX}"

    # -- lifecycle -----------------------------------------------------------------------------

    async def _create_container(self) -> None:
        try:
            await self._container.create_container()
        except ResourceExistsError:
            pass

    @guarded
    async def ensure(self) -> None:
        """Create the instance and payload containers if they do not exist yet."""
        await self._create_container()
        await self._payloads.ensure()

    @guarded
    async def delete_store(self) -> None:
        """Delete every instance record and payload of the hub (both containers)."""
        try:
            await self._container.delete_container()
        except ResourceNotFoundError:
            pass
        await self._payloads.delete_store()

    async def _upload(self, name: str, data: bytes, **kwargs: Any) -> dict[str, Any]:
        """Upload, creating the container on first use rather than paying a request on every write."""
        blob = self._container.get_blob_client(name)
        try:
            return await blob.upload_blob(data, overwrite=True, **kwargs)
        except ResourceNotFoundError as exc:
            if exc.error_code != "ContainerNotFound":
                raise
        await self._create_container()
        return await blob.upload_blob(data, overwrite=True, **kwargs)

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
        metadata = encode_metadata(fields)
        blob = self._container.get_blob_client(self._state_name(instance_id, execution_id))
        for _ in range(_MAX_WRITE_ATTEMPTS):
            try:
                properties: BlobProperties | None = await blob.get_blob_properties()
            except ResourceNotFoundError:
                properties = None
            condition: dict[str, Any]
            if properties is None:
                condition = {"match_condition": MatchConditions.IfMissing}
            else:
                stored = int(decode_metadata(properties.metadata).get("version", "-1"))
                if version < stored:
                    return False  # the newer write already advanced the pointer (or will, on redelivery)
                condition = {"etag": properties.etag, "match_condition": MatchConditions.IfNotModified}
            try:
                await self._upload(blob.blob_name, state, metadata=metadata, tags=tags, **condition)
                break
            except (ResourceExistsError, ResourceModifiedError):
                continue  # another writer got in between; re-read and compare versions again
        else:
            raise StorageError(
                f"state of instance {instance_id!r} execution {execution_id!r}: gave up after "
                f"{_MAX_WRITE_ATTEMPTS} attempts because other writers kept replacing it"
            )
        await self._advance_pointer(instance_id, execution_id, fields["created"], status)
        return True

    async def _advance_pointer(self, instance_id: str, execution_id: str, created: str, status: str) -> None:
        blob = self._container.get_blob_client(self._pointer_name(instance_id))
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
                        return
                elif not _newer(created, status, current["created"], current["status"]):
                    return
                condition: dict[str, Any] = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
            else:
                condition = {"match_condition": MatchConditions.IfMissing}
            try:
                await self._upload(blob.blob_name, document, **condition)
                return
            except (ResourceExistsError, ResourceModifiedError):
                continue
        raise StorageError(f"latest-execution pointer of instance {instance_id!r} kept changing under us")

    async def _latest_execution(self, instance_id: str) -> str | None:
        try:
            stream = await self._container.get_blob_client(self._pointer_name(instance_id)).download_blob()
            return str(json.loads(await stream.readall())["execution"])
        except ResourceNotFoundError:
            pass
        latest: tuple[str, str, str] | None = None
        for properties in await self._list(self._prefix(instance_id) + "executions/"):
            if not properties.name.endswith("/" + _STATE):
                continue
            fields = decode_metadata(properties.metadata)
            candidate = (fields.get("created", ""), fields.get("status", ""), fields.get("execution", ""))
            if latest is None or _newer(candidate[0], candidate[1], latest[0], latest[1]):
                latest = candidate
        return latest[2] if latest is not None else None

    async def _list(self, prefix: str) -> list[BlobProperties]:
        try:
            return [
                b async for b in self._container.list_blobs(name_starts_with=prefix, include=["metadata"])
            ]
        except ResourceNotFoundError:
            return []

    async def _read_state(self, blob_name: str) -> InstanceRecord | None:
        try:
            stream = await self._container.get_blob_client(blob_name).download_blob()
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
        semaphore = asyncio.Semaphore(_CONCURRENCY)

        async def read(name: str) -> InstanceRecord | None:
            async with semaphore:
                return await self._read_state(name)

        records = await asyncio.gather(*(read(name) for name in blob_names))
        return [record for record in records if record is not None]

    @guarded
    async def get_state(self, instance_id: str, execution_id: str | None = None) -> InstanceRecord | None:
        """One execution's record; without ``execution_id`` the newest execution's."""
        if execution_id is None:
            execution_id = await self._latest_execution(instance_id)
            if execution_id is None:
                return None
        return await self._read_state(self._state_name(instance_id, execution_id))

    @guarded
    async def get_executions(self, instance_id: str) -> list[InstanceRecord]:
        """Every execution (continue-as-new generation) of an instance, oldest first."""
        names = [
            p.name
            for p in await self._list(self._prefix(instance_id) + "executions/")
            if p.name.endswith(_STATE)
        ]
        records = await self._read_states(names)
        return sorted(
            records, key=lambda r: (format_time(r.created_time), status_key(r.status) != _CONTINUED)
        )

    @guarded
    async def instance_exists(self, instance_id: str) -> bool:
        """Whether anything is recorded for the id: a state, a history or only a jump-start record."""
        try:
            pages = self._container.list_blobs(name_starts_with=self._prefix(instance_id), results_per_page=1)
            async for _ in pages:
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
            self._history_name(instance_id, execution_id),
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
        return await self._history.read(self._history_name(instance_id, execution_id)) or []

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
            pager = self._container.find_blobs_by_tags(expressions[index]).by_page(continuation_token=marker)
            try:
                items = [item.name async for item in await pager.__anext__()]
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
        blobs = await self._list(self._prefix(instance_id))
        states = [b for b in blobs if b.name.endswith("/" + _STATE)]
        jump_starts = [b for b in blobs if b.name.endswith(_JUMP_START_SUFFIX)]
        latest: tuple[str, str] | None = None
        started: set[str] = set()
        for properties in states:
            fields = decode_metadata(properties.metadata)
            started.add(fields.get("execution", ""))
            candidate = (fields.get("created", ""), fields.get("status", ""))
            if latest is None or _newer(candidate[0], candidate[1], latest[0], latest[1]):
                latest = candidate
        for properties in jump_starts:
            if decode_metadata(properties.metadata).get("execution") not in started:
                raise InstanceNotFinishedError(instance_id, "Pending")
        if latest is not None and not is_finished(latest[1]):
            raise InstanceNotFinishedError(instance_id, latest[1])
        payloads = await self._payloads.delete_instance(instance_id)
        pointer = self._pointer_name(instance_id)
        state_names = [b.name for b in states]
        jump_start_names = [b.name for b in jump_starts]
        history = [b.name for b in blobs if b.name.endswith("/" + _HISTORY)]
        known = {*state_names, *jump_start_names, *history, pointer}
        others = [b.name for b in blobs if b.name not in known]
        await self._delete([*history, *jump_start_names, *others])
        await self._delete(state_names)
        await self._delete([b.name for b in blobs if b.name == pointer])
        self._history_forget(history)
        return PurgeResult(
            instances=1 if states or jump_starts or history else 0,
            executions=len(states),
            history_blobs=len(history),
            payloads=payloads,
            jump_starts=len(jump_starts),
            other_blobs=len(others),
        )

    def _history_forget(self, names: Sequence[str]) -> None:
        for name in names:
            self._history.forget(name)

    async def _delete(self, names: Sequence[str]) -> None:
        semaphore = asyncio.Semaphore(_CONCURRENCY)

        async def delete(name: str) -> None:
            async with semaphore:
                try:
                    await self._container.delete_blob(name)
                except ResourceNotFoundError:
                    pass

        await asyncio.gather(*(delete(name) for name in names))

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
        """Record a start before the client sends it. Returns False if this execution's record exists."""
        created = format_time(created_time)
        try:
            await self._upload(
                self._jump_start_name(instance_id, execution_id),
                encoded_start_message,
                metadata=encode_metadata(
                    {"instance": instance_id, "execution": execution_id, "created": created}
                ),
                tags={"kind": JUMP_START_KIND, "due": created, "iid": instance_tag(instance_id)},
                match_condition=MatchConditions.IfMissing,
            )
        except ResourceExistsError:
            return False
        return True

    async def _read_jump_start(self, blob_name: str) -> JumpStartRecord | None:
        try:
            stream = await self._container.get_blob_client(blob_name).download_blob()
        except ResourceNotFoundError:
            return None
        data = await stream.readall()
        fields = decode_metadata(stream.properties.metadata)
        sent = fields.get("sent")
        return JumpStartRecord(
            instance_id=fields["instance"],
            execution_id=fields["execution"],
            created_time=parse_time(fields["created"]),
            last_sent_time=parse_time(sent) if sent else None,
            message=data,
        )

    @guarded
    async def get_jump_start(self, instance_id: str, execution_id: str) -> JumpStartRecord | None:
        return await self._read_jump_start(self._jump_start_name(instance_id, execution_id))

    @guarded
    async def list_jump_starts(self, *, older_than: datetime, limit: int = 1000) -> list[JumpStartRecord]:
        """Jump-start records whose grace window (from creation or the last re-send) began before
        ``older_than``: the starts the jump-start manager should check and maybe re-send."""
        expression = f"\"kind\" = '{JUMP_START_KIND}' AND \"due\" < '{format_time(older_than)}'"
        names: list[str] = []
        try:
            async for item in self._container.find_blobs_by_tags(
                expression, results_per_page=min(limit, 5000)
            ):
                names.append(item.name)
                if len(names) >= limit:
                    break
        except ResourceNotFoundError:
            return []
        semaphore = asyncio.Semaphore(_CONCURRENCY)

        async def read(name: str) -> JumpStartRecord | None:
            async with semaphore:
                return await self._read_jump_start(name)

        records = [r for r in await asyncio.gather(*(read(n) for n in names)) if r is not None]
        cutoff = format_time(older_than)
        return [r for r in records if format_time(r.due_time) < cutoff]

    @guarded
    async def mark_jump_start_sent(self, instance_id: str, execution_id: str, *, sent_time: datetime) -> bool:
        """Restart the grace window after a re-send. Returns False if the record is gone meanwhile."""
        blob = self._container.get_blob_client(self._jump_start_name(instance_id, execution_id))
        sent = format_time(sent_time)
        try:
            properties = await blob.get_blob_properties()
            fields = decode_metadata(properties.metadata)
            fields["sent"] = sent
            await blob.set_blob_metadata(encode_metadata(fields))
            await blob.set_blob_tags({"kind": JUMP_START_KIND, "due": sent, "iid": instance_tag(instance_id)})
        except ResourceNotFoundError:
            return False
        return True

    @guarded
    async def delete_jump_start(self, instance_id: str, execution_id: str) -> bool:
        """Drop a jump-start record once its execution shows up in the store; False if already gone."""
        try:
            await self._container.delete_blob(self._jump_start_name(instance_id, execution_id))
        except ResourceNotFoundError:
            return False
        return True

    # -- payload garbage collection ------------------------------------------------------------

    @guarded
    async def collect_garbage(self, *, older_than: datetime) -> int:
        """Delete payloads created before ``older_than`` that no live execution can still read.

        A payload is kept while its execution's record says it can still run (not finished and not
        continued-as-new), or while its instance has no record at all but a jump-start record. Payloads
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
        try:
            properties = await self._container.get_blob_client(
                self._state_name(instance_id, execution_id)
            ).get_blob_properties()
        except ResourceNotFoundError:
            jump_starts = await self._list(self._prefix(instance_id) + "jumpstart/")
            return bool(jump_starts)
        status = decode_metadata(properties.metadata).get("status", "")
        return not is_finished(status) and status_key(status) != _CONTINUED
