"""The message envelope: compression, overflow to blob, DTF's properties, readers that accept every form."""

from __future__ import annotations

import gzip
import random
from types import SimpleNamespace

import pytest
from runtime_fakes import MemoryPayloadStore

from dtf_sb.core.codec import decode_task_message, encode_task_message
from dtf_sb.core.history import TaskScheduledEvent
from dtf_sb.core.messages import OrchestrationInstance, TaskMessage
from dtf_sb.options import TaskHubOptions
from dtf_sb.servicebus._outbound import start_message_id
from dtf_sb.servicebus.messages import (
    BLOB_KEY_PROPERTY,
    COMPRESSION_PROPERTY,
    MalformedMessageError,
    MessageEnvelope,
    MessageTooLargeError,
    application_property,
    deterministic_message_id,
)

NOISE = random.Random(7).randbytes(10 * 1024)  # gzip cannot shrink it
OPTIONS = TaskHubOptions(hub_name="hub", compress_threshold=64, message_overflow_threshold=4096)


def body(size: int) -> bytes:
    event = TaskScheduledEvent(event_id=3, name="act", input='"' + "x" * size + '"')
    message = TaskMessage(event=event, orchestration_instance=OrchestrationInstance("i1", "e1"))
    return encode_task_message(message, compress=False)


def received(message: object) -> SimpleNamespace:
    """What the SDK hands a receiver: body as data sections, properties with bytes keys and values."""
    props = {
        (k.encode() if isinstance(k, str) else k): (v.encode() if isinstance(v, str) else v)
        for k, v in (message.application_properties or {}).items()
    }
    data = bytes(message.body) if isinstance(message.body, (bytes, bytearray)) else b"".join(message.body)
    return SimpleNamespace(
        body=iter([data[: len(data) // 2], data[len(data) // 2 :]]), application_properties=props
    )


async def build(envelope: MessageEnvelope, data: bytes, **kw: object):
    return await envelope.build(
        data, message_id="m-1", session_id="i1", instance_id="i1", execution_id="e1", **kw
    )


async def test_small_body_is_sent_plain_and_reads_back() -> None:
    envelope = MessageEnvelope(OPTIONS)
    data = body(0)[:60]
    message = await build(envelope, data)
    assert application_property(message, COMPRESSION_PROPERTY) == "none"
    assert application_property(message, BLOB_KEY_PROPERTY) is None
    assert message.message_id == "m-1" and message.session_id == "i1"
    assert await envelope.read(received(message)) == data


async def test_compressible_body_is_gzipped_and_reads_back() -> None:
    envelope = MessageEnvelope(OPTIONS)
    data = body(2000)
    message = await build(envelope, data)
    assert application_property(message, COMPRESSION_PROPERTY) == "gzip"
    assert len(b"".join(received(message).body)) < len(data)
    assert decode_task_message(await envelope.read(received(message))).event.input == '"' + "x" * 2000 + '"'


async def test_incompressible_body_stays_plain() -> None:
    envelope = MessageEnvelope(OPTIONS)
    message = await build(envelope, NOISE[:500])
    assert application_property(message, COMPRESSION_PROPERTY) == "none"


async def test_large_body_spills_to_blob_with_a_key_derived_from_the_message_id() -> None:
    store = MemoryPayloadStore()
    envelope = MessageEnvelope(OPTIONS, store)
    data = NOISE
    first = await build(envelope, data)
    key = application_property(first, BLOB_KEY_PROPERTY)
    assert key is not None and key in store.blobs
    assert b"".join(received(first).body) == b""
    assert await envelope.read(received(first)) == data
    again = await build(envelope, data)
    assert application_property(again, BLOB_KEY_PROPERTY) == key, "a re-sent message must reuse its blob"
    assert len(store.blobs) == 1


async def test_body_past_the_maximum_is_refused_with_both_sizes() -> None:
    options = TaskHubOptions(
        hub_name="hub", compress_threshold=10**9, message_overflow_threshold=100, message_max_size=1000
    )
    with pytest.raises(MessageTooLargeError, match=r"2000 bytes.*1000 bytes"):
        await build(MessageEnvelope(options, MemoryPayloadStore()), b"y" * 2000)


async def test_spill_without_a_payload_store_is_a_clear_error() -> None:
    with pytest.raises(MessageTooLargeError, match="no payload store"):
        await build(MessageEnvelope(OPTIONS), NOISE)


async def test_reader_accepts_bodies_without_the_compression_property() -> None:
    envelope = MessageEnvelope(OPTIONS)
    data = body(10)
    plain = SimpleNamespace(body=[data], application_properties=None)
    packed = SimpleNamespace(body=[gzip.compress(data)], application_properties={})
    assert await envelope.read(plain) == data
    assert await envelope.read(packed) == data


@pytest.mark.parametrize(
    ("props", "content", "message"),
    [
        ({b"CompressionType": b"gzip"}, b"{}", "not gzip data"),
        ({b"CompressionType": b"brotli"}, b"{}", "invalid CompressionType"),
        ({b"CompressionType": b"gzip"}, b"\x1f\x8bnot really", "corrupt"),
        ({b"MessageBlobKey": b"k"}, b"", "no payload store"),
    ],
)
async def test_unreadable_messages_raise_malformed(props: dict, content: bytes, message: str) -> None:
    with pytest.raises(MalformedMessageError, match=message):
        await MessageEnvelope(OPTIONS).read(SimpleNamespace(body=[content], application_properties=props))


def test_message_ids_are_deterministic_and_bounded() -> None:
    one = deterministic_message_id("inst", "exec", 7, "task")
    assert one == deterministic_message_id("inst", "exec", 7, "task") == "inst:exec:7:task"
    assert one != deterministic_message_id("inst", "exec", 7, "timer")
    assert one != deterministic_message_id("inst", "exec2", 7, "task")
    long_id = deterministic_message_id("i" * 200, "exec", 7, "task")
    assert len(long_id) <= 128
    assert long_id == deterministic_message_id("i" * 200, "exec", 7, "task")
    assert long_id != deterministic_message_id("i" * 199 + "j", "exec", 7, "task")


def test_start_message_id_is_dtfs() -> None:
    assert start_message_id("order-1", "abc") == "order-1_abc"
    assert len(start_message_id("o" * 200, "abc")) <= 128
