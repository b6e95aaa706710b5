"""Connecting to Blob Storage: API-version pinning for Azurite, and secrets that never leak."""

from __future__ import annotations

import logging
import traceback
from datetime import datetime, timezone

import pytest

from dtf_sb.storage import (
    InstanceStore,
    PayloadStore,
    StorageAuthenticationError,
    StorageError,
    create_blob_service_client,
)
from dtf_sb.testing.azurite import Azurite

# A well-formed key that is not the account's: what a rotated or mistyped key looks like.
WRONG_KEY = "c2VjcmV0LWtleS10aGF0LW11c3QtbmV2ZXItYmUtcHJpbnRlZC1hbnl3aGVyZS0xMjM0NTY3OA=="


def _assert_absent(secret: str, exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    assert secret not in str(exc)
    assert secret not in repr(exc)
    assert secret not in text
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in str(record.args)


async def test_wrong_key_is_an_authentication_error_without_the_key(
    azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Another test may have raised the SDK's logger level (the CLI does); this test must see its records.
    caplog.set_level(logging.DEBUG, logger="azure")
    connection_string = azurite.connection_string.replace(azurite.account_key, WRONG_KEY)
    client = create_blob_service_client(connection_string=connection_string, logging_enable=True)
    async with client:
        store = PayloadStore(client, "secrets")
        with pytest.raises(StorageAuthenticationError) as info:
            await store.upload(b"x", instance_id="i", execution_id="e", kind="message")
    message = str(info.value)
    assert "refused the credentials" in message and "devstoreaccount1" in message
    assert f"127.0.0.1:{azurite.port}" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert caplog.records, "SDK logging was enabled, so the check below must have looked at something"
    _assert_absent(WRONG_KEY, info.value, caplog)
    _assert_absent(azurite.account_key, info.value, caplog)


async def test_wrong_key_on_instance_store_queries(
    azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Another test may have raised the SDK's logger level (the CLI does); this test must see its records.
    caplog.set_level(logging.DEBUG, logger="azure")
    connection_string = azurite.connection_string.replace(azurite.account_key, WRONG_KEY)
    async with create_blob_service_client(connection_string=connection_string) as client:
        with pytest.raises(StorageAuthenticationError) as info:
            await InstanceStore(client, "secrets").query(status=["Running"])
    _assert_absent(WRONG_KEY, info.value, caplog)


async def test_unreachable_endpoint_names_endpoint_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # Another test may have raised the SDK's logger level (the CLI does); this test must see its records.
    caplog.set_level(logging.DEBUG, logger="azure")
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={WRONG_KEY};"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    client = create_blob_service_client(connection_string=connection_string, retry_total=0)
    async with client:
        with pytest.raises(
            StorageError, match=r"cannot reach Blob Storage at http://127\.0\.0\.1:9/"
        ) as info:
            await PayloadStore(client, "secrets").download("a/b/message-c")
    _assert_absent(WRONG_KEY, info.value, caplog)


async def test_development_storage_pins_an_api_version_azurite_accepts() -> None:
    """Azurite started without --skipApiVersionCheck (as in VS Code) rejects the SDK default version;
    the pinned version works."""
    async with Azurite(skip_api_version_check=False) as strict:
        client = create_blob_service_client(connection_string=strict.connection_string)
        async with client:
            store = PayloadStore(client, "pinned")
            key = await store.upload(b"hello", instance_id="i", execution_id="e", kind="message")
            assert await store.download(key) == b"hello"
        unpinned = create_blob_service_client(
            connection_string=strict.connection_string, api_version="2026-10-06"
        )
        async with unpinned:
            with pytest.raises(Exception, match="API version") as info:
                await PayloadStore(unpinned, "pinned").download(key)
            assert not isinstance(info.value, StorageAuthenticationError)


async def test_bad_sas_token_is_an_authentication_error_without_the_token(
    azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Another test may have raised the SDK's logger level (the CLI does); this test must see its records.
    caplog.set_level(logging.DEBUG, logger="azure")
    signature = "c2FzLXNpZ25hdHVyZS10aGF0LW11c3Qtbm90LWxlYWs%3D"
    sas = f"sv=2025-05-05&ss=b&srt=sco&sp=rwdlac&se=2099-01-01T00:00:00Z&spr=http&sig={signature}"
    connection_string = f"BlobEndpoint={azurite.blob_endpoint};SharedAccessSignature={sas}"
    async with create_blob_service_client(connection_string=connection_string) as client:
        with pytest.raises(StorageAuthenticationError) as info:
            await InstanceStore(client, "secrets").upsert_state(
                b"{}",
                instance_id="i",
                execution_id="e",
                name="n",
                status="Running",
                created_time=datetime.now(timezone.utc),
                last_updated_time=datetime.now(timezone.utc),
                version=1,
            )
    _assert_absent(signature, info.value, caplog)
    _assert_absent(signature.replace("%3D", "="), info.value, caplog)
