"""Large message bodies and session-state history chunks, kept in Blob Storage.

Service Bus caps messages and session state at 256 KB on the Standard tier, so the runtime spills bigger
bodies here and sends (or keeps) only the key. Design choices, and why:

* **Keys group by instance**: ``<instance>/<execution>/<kind>-<id>`` inside the hub's ``-payloads``
  container. Purging an instance is then one prefix listing, where DTF could only drop whole containers
  per day (and lost state blobs of instances idle past the threshold).
* **Immutable uploads**: every upload is conditional on the blob not existing (If-None-Match ``*``). A
  replayed episode that derives the same deterministic id re-uploads the same key harmlessly, and a
  random id can never overwrite anything.
* **Garbage collection by reference, not by date**: each blob records its creation time, instance and
  execution in metadata. :meth:`PayloadStore.find_orphans` lists blobs older than a grace period and asks a
  caller-supplied predicate whether each is still referenced; the instance store supplies one built from
  instance records (see ``InstanceStore.collect_garbage``). The grace period covers blobs whose message
  or tracking record is still in flight.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from dtf_sb.storage.connection import guarded
from dtf_sb.storage.errors import PayloadNotFoundError
from dtf_sb.storage.layout import gather_bounded
from dtf_sb.storage.naming import (
    container_names,
    decode_metadata,
    encode_instance_segment,
    encode_metadata,
    encode_segment,
    format_time,
    parse_time,
)

__all__ = ["PayloadInfo", "PayloadStore"]

_KIND_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


@dataclass(frozen=True)
class PayloadInfo:
    """What a payload blob's metadata says about it (no content)."""

    key: str
    instance_id: str
    execution_id: str
    kind: str
    created_time: datetime
    size: int


def _check_kind(kind: str) -> None:
    if not kind or not set(kind) <= _KIND_CHARS:
        raise ValueError(f"payload kind {kind!r} must be non-empty lowercase letters and digits")


class PayloadStore:
    """Payload blobs of one task hub.

    The container is created by :meth:`ensure`, or on the first upload that finds it missing, so a store
    costs no request until it is used.
    """

    def __init__(self, service_client: BlobServiceClient, hub: str) -> None:
        self._service = service_client
        self._hub = hub
        self._container_name = container_names(hub).payloads
        self._container: ContainerClient = service_client.get_container_client(self._container_name)

    def __repr__(self) -> str:
        return f"PayloadStore(hub={self._hub!r}, container={self._container_name!r})"

    @property
    def service_client(self) -> BlobServiceClient:
        return self._service

    @property
    def container_name(self) -> str:
        return self._container_name

    @staticmethod
    def build_key(instance_id: str, execution_id: str, kind: str, payload_id: str) -> str:
        """The key an upload with these values gets; pure, so callers can derive keys deterministically."""
        _check_kind(kind)
        return (
            f"{encode_instance_segment(instance_id)}/{encode_segment(execution_id)}/"
            f"{kind}-{encode_segment(payload_id)}"
        )

    @staticmethod
    def instance_prefix(instance_id: str) -> str:
        return encode_instance_segment(instance_id) + "/"

    @guarded
    async def ensure(self) -> None:
        """Create the container if it does not exist yet."""
        try:
            await self._container.create_container()
        except ResourceExistsError:
            pass

    @guarded
    async def delete_store(self) -> None:
        """Delete the hub's payload container and everything in it."""
        try:
            await self._container.delete_container()
        except ResourceNotFoundError:
            pass

    @guarded
    async def upload(
        self,
        data: bytes,
        *,
        instance_id: str,
        execution_id: str,
        kind: str,
        payload_id: str | None = None,
    ) -> str:
        """Store ``data`` immutably and return its key.

        With ``payload_id`` the key is deterministic: uploading to a key that already exists is a
        no-op that returns the same key (a replayed episode re-deriving its ids). Without it a random id
        is used.
        """
        key = self.build_key(instance_id, execution_id, kind, payload_id or uuid.uuid4().hex)
        metadata = encode_metadata(
            {
                "instance": instance_id,
                "execution": execution_id,
                "kind": kind,
                "created": format_time(datetime.now(timezone.utc)),
            }
        )
        blob = self._container.get_blob_client(key)
        for attempt in range(2):
            try:
                await blob.upload_blob(
                    data, metadata=metadata, match_condition=MatchConditions.IfMissing, overwrite=True
                )
                return key
            except ResourceExistsError:
                return key
            except ResourceNotFoundError:
                if attempt:
                    raise
                await self.ensure()
        return key

    @guarded
    async def download(self, key: str) -> bytes:
        """The payload stored under ``key``; :class:`PayloadNotFoundError` when there is none."""
        try:
            stream = await self._container.get_blob_client(key).download_blob()
        except ResourceNotFoundError:
            raise PayloadNotFoundError(key, self._container_name) from None
        return await stream.readall()

    @guarded
    async def delete(self, keys: Iterable[str]) -> int:
        """Delete payloads by key; missing keys are skipped. Returns how many existed and were deleted."""

        async def delete_one(key: str) -> int:
            try:
                await self._container.delete_blob(key)
                return 1
            except ResourceNotFoundError:
                return 0

        return sum(await gather_bounded(delete_one, list(keys)))

    @guarded
    async def delete_instance(self, instance_id: str) -> int:
        """Delete every payload of an instance (all executions). Returns the count deleted."""
        keys = [info.key async for info in self.list_payloads(instance_id=instance_id)]
        return await self.delete(keys)

    async def list_payloads(self, *, instance_id: str | None = None) -> AsyncIterator[PayloadInfo]:
        """Every payload, or every payload of one instance, with its metadata."""
        prefix = self.instance_prefix(instance_id) if instance_id is not None else None
        try:
            async for item in self._container.list_blobs(name_starts_with=prefix, include=["metadata"]):
                yield self._info(item.name, item.metadata, item.size)
        except ResourceNotFoundError:
            return

    def _info(self, key: str, raw_metadata: dict[str, str] | None, size: int | None) -> PayloadInfo:
        metadata = decode_metadata(raw_metadata)
        created = metadata.get("created")
        return PayloadInfo(
            key=key,
            instance_id=metadata.get("instance", ""),
            execution_id=metadata.get("execution", ""),
            kind=metadata.get("kind", ""),
            created_time=parse_time(created) if created else datetime.min.replace(tzinfo=timezone.utc),
            size=size or 0,
        )

    @guarded
    async def find_orphans(
        self,
        *,
        older_than: datetime,
        is_referenced: Callable[[PayloadInfo], Awaitable[bool]],
    ) -> list[PayloadInfo]:
        """Payloads created before ``older_than`` that ``is_referenced`` says nothing refers to.

        ``older_than`` is the grace period's edge: a younger payload may belong to a message still in
        flight whose reference is not recorded anywhere yet, so it is never reported.
        """
        cutoff = older_than if older_than.tzinfo else older_than.replace(tzinfo=timezone.utc)
        orphans: list[PayloadInfo] = []
        async for info in self.list_payloads():
            if info.created_time < cutoff and not await is_referenced(info):
                orphans.append(info)
        return orphans

    async def collect_garbage(
        self,
        *,
        older_than: datetime,
        is_referenced: Callable[[PayloadInfo], Awaitable[bool]],
    ) -> int:
        """Delete what :meth:`find_orphans` reports; returns the count deleted."""
        orphans = await self.find_orphans(older_than=older_than, is_referenced=is_referenced)
        return await self.delete(info.key for info in orphans)
