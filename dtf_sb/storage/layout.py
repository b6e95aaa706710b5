"""Where an instance's blobs live in the hub's ``-instances`` container, and shared blob chores.

Layout (``<i>`` and ``<e>`` are encoded ids, see ``naming``)::

    <i>/latest.json                     pointer to the newest execution (for get_state without an id)
    <i>/executions/<e>/state.json       the caller's encoded state; metadata + index tags describe it
    <i>/executions/<e>/history.jsonl    append blob, one event per line (see ``history_log``)
    <i>/jumpstart/<e>.start             a start the client recorded before sending it

Every blob of an instance shares the prefix ``<i>/``, so existence checks, executions and purge are
prefix listings of one instance, never scans of the hub.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobProperties
from azure.storage.blob.aio import ContainerClient

from dtf_sb.storage.naming import encode_instance_segment, encode_segment, status_key

__all__ = ["BlobContainer", "InstanceLayout", "gather_bounded", "newer_execution"]

STATE = "state.json"
HISTORY = "history.jsonl"
POINTER = "latest.json"
JUMP_START_SUFFIX = ".start"
CONTINUED = "CONTINUEDASNEW"
CONCURRENCY = 16

_T = TypeVar("_T")
_R = TypeVar("_R")


class InstanceLayout:
    """Blob names of one instance's records."""

    @staticmethod
    def prefix(instance_id: str) -> str:
        return encode_instance_segment(instance_id) + "/"

    @classmethod
    def executions_prefix(cls, instance_id: str) -> str:
        return cls.prefix(instance_id) + "executions/"

    @classmethod
    def state(cls, instance_id: str, execution_id: str) -> str:
        return f"{cls.executions_prefix(instance_id)}{encode_segment(execution_id)}/{STATE}"

    @classmethod
    def history(cls, instance_id: str, execution_id: str) -> str:
        return f"{cls.executions_prefix(instance_id)}{encode_segment(execution_id)}/{HISTORY}"

    @classmethod
    def pointer(cls, instance_id: str) -> str:
        return cls.prefix(instance_id) + POINTER

    @classmethod
    def jump_starts_prefix(cls, instance_id: str) -> str:
        return cls.prefix(instance_id) + "jumpstart/"

    @classmethod
    def jump_start(cls, instance_id: str, execution_id: str) -> str:
        return f"{cls.jump_starts_prefix(instance_id)}{encode_segment(execution_id)}{JUMP_START_SUFFIX}"

    @staticmethod
    def is_state(name: str) -> bool:
        return name.endswith("/" + STATE)

    @staticmethod
    def is_history(name: str) -> bool:
        return name.endswith("/" + HISTORY)

    @staticmethod
    def is_jump_start(name: str) -> bool:
        return "/jumpstart/" in name and name.endswith(JUMP_START_SUFFIX)


def newer_execution(created: str, status: str, than_created: str, than_status: str) -> bool:
    """Order of executions: created time, and on a tie the one that did not continue-as-new."""
    if created != than_created:
        return created > than_created
    return status_key(than_status) == CONTINUED and status_key(status) != CONTINUED


async def gather_bounded(function: Callable[[_T], Awaitable[_R]], items: Iterable[_T]) -> list[_R]:
    """``function`` over ``items`` with at most :data:`CONCURRENCY` requests in flight."""
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(item: _T) -> _R:
        async with semaphore:
            return await function(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


class BlobContainer:
    """A container that is created on the first write that finds it missing.

    Creating lazily costs nothing on the hot path (no create call per write) and makes a fresh hub
    work without an explicit setup step.
    """

    def __init__(self, client: ContainerClient) -> None:
        self.client = client

    async def create(self) -> None:
        try:
            await self.client.create_container()
        except ResourceExistsError:
            pass

    async def upload(self, name: str, data: bytes, **kwargs: Any) -> dict[str, Any]:
        blob = self.client.get_blob_client(name)
        try:
            return await blob.upload_blob(data, overwrite=True, **kwargs)
        except ResourceNotFoundError as exc:
            if exc.error_code != "ContainerNotFound":
                raise
        await self.create()
        return await blob.upload_blob(data, overwrite=True, **kwargs)

    async def list(self, prefix: str) -> list[BlobProperties]:
        """Blobs under ``prefix`` with metadata; none when the container does not exist yet."""
        try:
            return [
                blob async for blob in self.client.list_blobs(name_starts_with=prefix, include=["metadata"])
            ]
        except ResourceNotFoundError:
            return []

    async def delete(self, names: Sequence[str]) -> int:
        """Delete blobs, skipping missing ones; returns how many were deleted."""

        async def delete_one(name: str) -> int:
            try:
                await self.client.delete_blob(name)
                return 1
            except ResourceNotFoundError:
                return 0

        return sum(await gather_bounded(delete_one, names))
