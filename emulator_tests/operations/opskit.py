"""Helpers of the hub-operations suite: bounded polling and counting a hub's blobs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from azure.storage.blob.aio import BlobServiceClient

from dtf_sb.core.status import OrchestrationStatus
from dtf_sb.storage.naming import container_names
from dtf_sb.testing.runtime import HubConnection

TIMEOUT = 30.0


def new_instance_id(prefix: str = "op") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def wait_until(probe: Callable[[], Awaitable[Any]], *, timeout: float = TIMEOUT, what: str) -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` (a bound, not a goal)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


async def status_when(client: Any, instance_id: str, status: OrchestrationStatus, **kw: Any) -> Any:
    async def probe() -> Any:
        state = await client.get_orchestration_state(instance_id)
        return state if state is not None and state.status is status else None

    return await wait_until(probe, what=f"{instance_id} to be {status.name}", **kw)


async def hub_blobs(hub: HubConnection, instance_id: str | None = None) -> dict[str, list[str]]:
    """Blob names of the hub's instance and payload containers (optionally of one instance only)."""
    names = container_names(hub.hub_name)
    out: dict[str, list[str]] = {}
    async with BlobServiceClient.from_connection_string(hub.storage_connection_string) as service:
        for label, container in (("instances", names.instances), ("payloads", names.payloads)):
            found: list[str] = []
            try:
                async for blob in service.get_container_client(container).list_blobs():
                    found.append(blob.name)
            except Exception as exc:  # a container not created yet holds no blobs
                if "ContainerNotFound" not in str(exc):
                    raise
            out[label] = found
    if instance_id is not None:
        from dtf_sb.storage.naming import encode_instance_segment
        from dtf_sb.storage.payloads import PayloadStore

        instance_prefix = encode_instance_segment(instance_id) + "/"
        payload_prefix = PayloadStore.instance_prefix(instance_id)
        out["instances"] = [n for n in out["instances"] if n.startswith(instance_prefix)]
        out["payloads"] = [n for n in out["payloads"] if n.startswith(payload_prefix)]
    return out
