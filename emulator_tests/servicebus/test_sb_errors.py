"""Failures the SDK must see exactly as Service Bus reports them, and message size limits."""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
)
from sbkit import Sdk, body_of, ids_of, peek_all, receive_n, send


def _with_key(conn_str: str, key: str) -> str:
    return re.sub(r"SharedAccessKey=[^;]*", f"SharedAccessKey={key}", conn_str)


def _host_port(conn_str: str) -> tuple[str, int]:
    match = re.search(r"Endpoint=sb://([^/;:]+)(?::(\d+))?", conn_str)
    assert match, f"no sb:// endpoint in the connection string: {conn_str.split(';')[0]}"
    return match.group(1), int(match.group(2) or 5672)


async def test_wrong_sas_key_is_refused(sdk: Sdk, conn_str: str, entity: Any) -> None:
    queue = entity("q-send")
    bad = _with_key(conn_str, "d3Jvbmcta2V5LWZvci10aGlzLW5hbWVzcGFjZQ==")
    async with sdk.client(bad, retry_total=0) as client:
        with pytest.raises(ServiceBusAuthenticationError):
            await send(client, queue, ServiceBusMessage("never delivered"))
    async with sdk.client() as client, client.get_queue_receiver(queue) as receiver:
        assert await peek_all(receiver) == [], "nothing got through with a wrong key"


async def test_missing_entity_on_send_and_receive(sdk: Sdk) -> None:
    async with sdk.client(retry_total=0) as client:
        with pytest.raises(MessagingEntityNotFoundError) as sent:
            await send(client, "no-such-queue", ServiceBusMessage("x"))
        assert type(sent.value) is MessagingEntityNotFoundError
        with pytest.raises(MessagingEntityNotFoundError) as received:
            async with client.get_queue_receiver("no-such-queue") as receiver:
                await receiver.receive_messages(max_wait_time=1)
        assert type(received.value) is MessagingEntityNotFoundError


async def test_oversized_message_is_refused(sdk: Sdk, entity: Any) -> None:
    queue = entity("q-oversize")  # default 256 KB maximum message size
    [mid] = sdk.ids("small", 1)
    too_big = ServiceBusMessage(os.urandom(300 * 1024))
    async with sdk.client(retry_total=0) as client:
        async with client.get_queue_sender(queue) as sender:
            with pytest.raises(MessageSizeExceededError):
                await sender.send_messages(too_big)
            batch = await sender.create_message_batch()
            with pytest.raises(MessageSizeExceededError):
                batch.add_message(too_big)
            await sender.send_messages(ServiceBusMessage("fits", message_id=mid))
        async with client.get_queue_receiver(queue) as receiver:
            got = await receive_n(receiver, 1)
            assert ids_of(got) == [mid], "the sender still works after a refusal"
            await receiver.complete_message(got[0])
            assert await peek_all(receiver) == [], "the refused message was not enqueued"


async def test_one_megabyte_message_on_large_entity(sdk: Sdk, entity: Any, backend_name: str) -> None:
    if backend_name == "container":
        pytest.skip("Microsoft's emulator fixes the maximum message size at 256 KB")
    if backend_name == "azure" and not os.environ.get("DTF_SB_PREMIUM"):
        pytest.skip("messages over 256 KB need a premium namespace; set DTF_SB_PREMIUM=1 if it is one")
    queue = entity("q-large")  # MaxMessageSizeInKilobytes 2048
    [mid] = sdk.ids("large", 1)
    payload = os.urandom(1_000_000)
    async with sdk.client() as client:
        await send(client, queue, ServiceBusMessage(payload, message_id=mid))
        async with client.get_queue_receiver(queue) as receiver:
            got = await receive_n(receiver, 1, max_wait_time=5)
            assert ids_of(got) == [mid]
            assert body_of(got[0]) == payload, "a 1 MB body survives multi-frame transfer both ways"
            await receiver.complete_message(got[0])


async def _expect_close(reader: asyncio.StreamReader, what: str) -> None:
    try:
        await asyncio.wait_for(reader.read(-1), timeout=10)
    except asyncio.TimeoutError:
        pytest.fail(f"the server kept the connection open after {what}")
    except ConnectionError:
        pass  # a reset is a close too


async def test_malformed_bytes_close_only_that_connection(
    sdk: Sdk, entity: Any, conn_str: str, backend_name: str
) -> None:
    if backend_name == "azure":
        pytest.skip("Azure Service Bus accepts AMQP only over TLS; this test speaks raw plaintext AMQP")
    queue = entity("q-socket")
    before, after = sdk.ids("socket", 2)
    host, port = _host_port(conn_str)
    async with sdk.client() as client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages(ServiceBusMessage("before", message_id=before))

            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            await _expect_close(reader, "a non-AMQP protocol header")
            writer.close()

            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"AMQP\x03\x01\x00\x00")
            await writer.drain()
            header = await asyncio.wait_for(reader.readexactly(8), timeout=10)
            assert header == b"AMQP\x03\x01\x00\x00", (
                f"the server answers the SASL header in kind, got {header!r}"
            )
            writer.write(b"\x00\x00\x00\x02\x02\x01\x00\x00garbage")  # frame size 2 is below the minimum of 8
            await writer.drain()
            await _expect_close(reader, "a frame with an impossible size")
            writer.close()

            await sender.send_messages(ServiceBusMessage("after", message_id=after))
        async with client.get_queue_receiver(queue) as receiver:
            got = await receive_n(receiver, 2)
            assert ids_of(got) == [before, after], "the SDK's own connection was not disturbed"
            for m in got:
                await receiver.complete_message(m)
