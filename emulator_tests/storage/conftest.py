"""Fixtures for the Blob Storage tests: one Azurite per test session, a fresh hub per test.

A unique hub per test gives each test its own containers, so tests never see each other's blobs and
need no cleanup order; the containers are deleted afterwards to keep Azurite's data small.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from azure.storage.blob.aio import BlobServiceClient

from dtf_sb.storage import InstanceStore, PayloadStore, container_names, create_blob_service_client
from dtf_sb.testing.azurite import Azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as server:
        yield server


@pytest.fixture
def hub() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def blob_service(azurite: Azurite, hub: str) -> AsyncIterator[BlobServiceClient]:
    client = create_blob_service_client(connection_string=azurite.connection_string)
    async with client:
        yield client
        names = container_names(hub)
        for name in (names.payloads, names.instances):
            container = client.get_container_client(name)
            if await container.exists():
                await container.delete_container()


@pytest.fixture
async def payload_store(blob_service: BlobServiceClient, hub: str) -> PayloadStore:
    return PayloadStore(blob_service, hub)


@pytest.fixture
async def instance_store(
    blob_service: BlobServiceClient, hub: str, payload_store: PayloadStore
) -> InstanceStore:
    return InstanceStore(blob_service, hub, payloads=payload_store)
