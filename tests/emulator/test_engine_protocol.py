"""The emulator's AMQP engine on the wire, driven frame by frame by a minimal client.

These tests pin the protocol behaviour the SDKs rely on but cannot show directly: the spec's credit
formula and drain, session-window and frame-size splitting, settlement echoes, refusals with the
right conditions, malformed input, SASL and CBS checks, and restart. Everything runs on loopback.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dtf_sb.emulator import Emulator, FakeClock, QueueProperties, generate_sas_token
from dtf_sb.emulator.amqp import (
    AMQP_HEADER,
    BATCH_MESSAGE_FORMAT,
    SASL_HEADER,
    Accepted,
    AmqpValue,
    ApplicationProperties,
    Array,
    Attach,
    Begin,
    Close,
    Described,
    Detach,
    Disposition,
    End,
    Flow,
    FrameDecoder,
    Message,
    Modified,
    Open,
    Properties,
    ProtocolHeader,
    Rejected,
    Released,
    Role,
    SaslCode,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Source,
    Symbol,
    Target,
    Transfer,
    UInt,
    ULong,
    decode_message,
    encode_frame,
    encode_message,
)
from dtf_sb.emulator.amqp.performatives import Error
from dtf_sb.emulator.broker import IncomingMessage

KEY_NAME = "RootManageSharedAccessKey"
KEY = "SAS_KEY_VALUE"
START = 1_800_000_000.0


class RawClient:
    """Just enough of an AMQP client to speak to the emulator one frame at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder(1 << 24)
        self.pending: list[Any] = []

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def send(self, performative: Any, payload: bytes = b"", *, channel: int = 1) -> None:
        self.writer.write(encode_frame(channel, performative, payload))

    async def next(self, timeout: float = 10.0) -> Any:
        """The next header or frame (heartbeats included); None at end of stream."""
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(1 << 20), timeout)
            if not data:
                return None
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    async def expect(self, kind: type, timeout: float = 10.0) -> Any:
        """The next frame, which must carry a ``kind`` performative (heartbeats skipped)."""
        while True:
            item = await self.next(timeout)
            if item is None:
                raise AssertionError(f"connection closed while waiting for {kind.__name__}")
            if isinstance(item, ProtocolHeader) or item.performative is None:
                continue
            assert isinstance(item.performative, kind), f"expected {kind.__name__}, got {item.performative!r}"
            return item

    async def closed(self, timeout: float = 10.0) -> bool:
        while True:
            item = await self.next(timeout)
            if item is None:
                return True

    async def handshake(
        self, *, mechanism: str = "ANONYMOUS", max_frame_size: int = 1 << 20, **open_kw: Any
    ) -> None:
        self.send_raw(SASL_HEADER)
        assert isinstance(await self.next(), ProtocolHeader)
        mechanisms = (await self.expect(SaslMechanisms)).performative
        assert Symbol("ANONYMOUS") in mechanisms.sasl_server_mechanisms
        response = f"\0{KEY_NAME}\0{KEY}".encode() if mechanism == "PLAIN" else b""
        self.send(SaslInit(mechanism=mechanism, initial_response=response), channel=0)
        outcome = (await self.expect(SaslOutcome)).performative
        assert outcome.code == SaslCode.OK
        self.send_raw(AMQP_HEADER)
        self.send(Open(container_id="raw", max_frame_size=max_frame_size, **open_kw), channel=0)
        assert isinstance(await self.next(), ProtocolHeader)
        await self.expect(Open)
        self.send(Begin(next_outgoing_id=0, incoming_window=100000, outgoing_window=100000))
        begin = (await self.expect(Begin)).performative
        assert begin.remote_channel == 1

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    clock = FakeClock(START)
    entities = [
        QueueProperties("q1", lock_duration=30),
        QueueProperties("s1", requires_session=True, lock_duration=30),
        QueueProperties("small", max_message_size=1024),
        QueueProperties("big", max_message_size=1024 * 1024),
    ]
    async with Emulator(entities, port=0, clock=clock, health_port=0) as emu:
        yield emu


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[RawClient]:
    c = await RawClient.connect(emulator.port)
    await c.handshake(mechanism="PLAIN")
    yield c
    await c.close()


def _message(body: bytes, *, message_id: str | None = None, session: str | None = None) -> bytes:
    return encode_message(
        Message(properties=Properties(message_id=message_id, group_id=session), body=[body])
    )


def _enqueue(emulator: Emulator, path: str, *bodies: bytes, session: str | None = None) -> None:
    bare = [decode_message(_message(b, session=session)).bare or b"" for b in bodies]
    emulator.broker.send(path, [IncomingMessage(b, session_id=session) for b in bare])


async def _attach_receiver(
    client: RawClient, address: str, *, handle: int = 0, settled: bool = False, **source_kw: Any
) -> Attach:
    client.send(
        Attach(
            name=f"recv-{handle}",
            handle=handle,
            role=Role.RECEIVER,
            snd_settle_mode=1 if settled else 0,
            rcv_settle_mode=1,
            source=Source(address=address, **source_kw),
            target=Target(address="local"),
        )
    )
    return (await client.expect(Attach)).performative


async def _attach_sender(client: RawClient, address: str, *, handle: int = 0) -> Attach:
    client.send(
        Attach(
            name=f"send-{handle}",
            handle=handle,
            role=Role.SENDER,
            snd_settle_mode=0,
            rcv_settle_mode=1,
            source=Source(address="local"),
            target=Target(address=address),
            initial_delivery_count=0,
        )
    )
    attach = (await client.expect(Attach)).performative
    return attach


def _flow(handle: int, delivery_count: int, credit: int, **kw: Any) -> Flow:
    return Flow(
        next_incoming_id=0,
        incoming_window=100000,
        next_outgoing_id=0,
        outgoing_window=100000,
        handle=handle,
        delivery_count=delivery_count,
        link_credit=credit,
        **kw,
    )


async def _sync_point(client: RawClient, handle: int) -> list[Any]:
    """Ask for an echo and return every frame that arrived before it: what the broker sent so far."""
    client.send(
        Flow(
            next_incoming_id=0, incoming_window=100000, next_outgoing_id=0, outgoing_window=100000, echo=True
        )
    )
    seen: list[Any] = []
    while True:
        item = await client.next()
        assert item is not None
        if item.performative is None:
            continue
        if isinstance(item.performative, Flow) and item.performative.handle is None:
            return seen
        seen.append(item)


# ------------------------------------------------------------------------------ connection level


async def test_malformed_frame_closes_only_that_connection(emulator: Emulator, client: RawClient) -> None:
    other = await RawClient.connect(emulator.port)
    await other.handshake(mechanism="PLAIN")
    # A well-framed body that is not AMQP: constructor 0xff does not exist.
    client.send_raw(b"\x00\x00\x00\x0c\x02\x00\x00\x01\x00\x53\x10\xff")
    close = (await client.expect(Close)).performative
    assert close.error is not None and close.error.condition == "amqp:decode-error"
    assert await client.closed()
    attach = await _attach_sender(other, "q1")
    assert attach.target is not None, "the other connection is still served"
    await other.close()


async def test_wrong_protocol_header_is_answered_and_closed(emulator: Emulator) -> None:
    c = await RawClient.connect(emulator.port)
    c.send_raw(b"AMQP\x02\x01\x00\x00")  # TLS, which the emulator does not speak
    header = await c.next()
    assert isinstance(header, ProtocolHeader) and header.is_sasl
    assert await c.closed()


async def test_sasl_plain_refuses_a_wrong_key(emulator: Emulator) -> None:
    c = await RawClient.connect(emulator.port)
    c.send_raw(SASL_HEADER)
    await c.next()
    await c.expect(SaslMechanisms)
    c.send(SaslInit(mechanism="PLAIN", initial_response=f"\0{KEY_NAME}\0wrong".encode()), channel=0)
    assert (await c.expect(SaslOutcome)).performative.code == SaslCode.AUTH
    assert await c.closed()


async def test_heartbeats_are_sent_when_the_peer_asks_for_them(emulator: Emulator) -> None:
    c = await RawClient.connect(emulator.port)
    await c.handshake(idle_time_out=200)
    item = await c.next(timeout=10)
    assert item is not None and item.performative is None, "an empty frame keeps the connection alive"
    await c.close()


async def test_restart_drops_connections_and_keeps_state(emulator: Emulator, client: RawClient) -> None:
    _enqueue(emulator, "q1", b"kept")
    port = emulator.port
    await emulator.stop()
    assert await client.closed()
    with pytest.raises(OSError):
        await RawClient.connect(port)
    await emulator.restart()
    assert emulator.port == port
    again = await RawClient.connect(port)
    await again.handshake(mechanism="PLAIN")
    assert emulator.broker.entity_counts("q1").active == 1
    await again.close()


async def test_health_endpoint_reports_serving_state(emulator: Emulator) -> None:
    async def get() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", emulator.health_port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await reader.read()
        writer.close()
        return data

    assert (await get()).startswith(b"HTTP/1.1 200")
    await emulator.stop()
    assert (await get()).startswith(b"HTTP/1.1 503")


# ----------------------------------------------------------------------------- attach refusals


async def test_unknown_entity_is_refused_with_not_found(client: RawClient) -> None:
    attach = await _attach_sender(client, "amqps://127.0.0.1/nope")
    assert attach.target is None
    detach = (await client.expect(Detach)).performative
    assert detach.closed and detach.error.condition == "amqp:not-found"


async def test_anonymous_connection_needs_a_cbs_token(emulator: Emulator) -> None:
    c = await RawClient.connect(emulator.port)
    await c.handshake()
    attach = await _attach_sender(c, "q1")
    assert attach.target is None
    detach = (await c.expect(Detach)).performative
    assert detach.error.condition == "amqp:unauthorized-access"
    await c.close()


async def _put_token(c: RawClient, token: str, audience: str) -> Message:
    c.send(
        Attach(
            name="cbs-r",
            handle=10,
            role=Role.RECEIVER,
            source=Source(address="$cbs"),
            target=Target(address="$cbs"),
        )
    )
    await c.expect(Attach)
    c.send(
        Attach(
            name="cbs-s",
            handle=11,
            role=Role.SENDER,
            source=Source(address="$cbs"),
            target=Target(address="$cbs"),
            initial_delivery_count=0,
        )
    )
    await c.expect(Attach)
    await c.expect(Flow)  # credit for our sender
    c.send(_flow(10, 0, 10))
    request_id = uuid.uuid4()
    request = Message(
        properties=Properties(message_id=request_id),
        application_properties=ApplicationProperties(
            {"operation": "put-token", "type": "jwt", "name": audience}
        ),
        body=AmqpValue(token),
    )
    c.send(
        Transfer(handle=11, delivery_id=0, delivery_tag=b"\x01", message_format=0, settled=False),
        encode_message(request),
    )
    frames = [await c.next(), await c.next()]
    transfer = next(f for f in frames if isinstance(f.performative, Transfer))
    disposition = next(f for f in frames if isinstance(f.performative, Disposition))
    assert disposition.performative.settled and isinstance(disposition.performative.state, Accepted)
    response = decode_message(transfer.payload)
    assert response.properties.correlation_id == request_id, "correlation-id keeps the uuid type"
    return response


@pytest.mark.parametrize(
    ("key", "expiry_offset", "status", "attach_ok"),
    [(KEY, 3600, 202, True), ("wrong-key", 3600, 401, False), (KEY, -10, 401, False)],
    ids=["valid", "wrong-key", "expired"],
)
async def test_cbs_token_decides_access(
    emulator: Emulator, key: str, expiry_offset: int, status: int, attach_ok: bool
) -> None:
    c = await RawClient.connect(emulator.port)
    await c.handshake()
    audience = f"sb://127.0.0.1:{emulator.port}/q1"
    token = generate_sas_token(audience, KEY_NAME, key, expiry=int(START) + expiry_offset)
    response = await _put_token(c, token, audience)
    assert response.application_properties["status-code"] == status
    attach = await _attach_sender(c, "q1")
    assert (attach.target is not None) is attach_ok
    if attach_ok:
        await c.expect(Flow)
    else:
        assert (await c.expect(Detach)).performative.error.condition == "amqp:unauthorized-access"
    # A token for q1 does not open other entities.
    other = await _attach_sender(c, "small", handle=1)
    assert other.target is None
    await c.close()


# -------------------------------------------------------------------------------- link credit


async def test_credit_follows_the_spec_formula_and_drain(emulator: Emulator, client: RawClient) -> None:
    _enqueue(emulator, "q1", b"a", b"b", b"c")
    attach = await _attach_receiver(client, "q1")
    assert attach.initial_delivery_count == 0 and attach.source.address == "q1"
    client.send(_flow(0, 0, 2))
    got = [await client.expect(Transfer), await client.expect(Transfer)]
    assert [g.performative.settled for g in got] == [False, False]
    # The same flow restated grants nothing new: credit = 0 + 2 - 2.
    client.send(_flow(0, 0, 2))
    assert await _sync_point(client, 0) == []
    client.send(_flow(0, 2, 5, drain=True))
    third = await client.expect(Transfer)
    assert decode_message(third.payload).body == [b"c"]
    drained = (await client.expect(Flow)).performative
    assert drained.handle == 0 and drained.drain
    assert drained.delivery_count == 7 and drained.link_credit == 0, "drain uses up the remaining credit"


async def test_waiting_receiver_is_woken_by_a_send(emulator: Emulator, client: RawClient) -> None:
    await _attach_receiver(client, "q1")
    client.send(_flow(0, 0, 5))
    assert await _sync_point(client, 0) == []
    _enqueue(emulator, "q1", b"late")
    transfer = await client.expect(Transfer)
    assert decode_message(transfer.payload).body == [b"late"]


async def test_delivery_stamps_service_bus_annotations(emulator: Emulator, client: RawClient) -> None:
    _enqueue(emulator, "q1", b"x")
    await _attach_receiver(client, "q1")
    client.send(_flow(0, 0, 1))
    frame = await client.expect(Transfer)
    transfer = frame.performative
    msg = decode_message(frame.payload)
    token = uuid.UUID(bytes_le=transfer.delivery_tag)
    assert msg.header is not None and msg.header.delivery_count == 0
    ann = msg.message_annotations
    assert ann["x-opt-sequence-number"] == 1 and type(ann["x-opt-sequence-number"]).__name__ == "Long"
    assert type(ann["x-opt-enqueued-time"]).__name__ == "Timestamp"
    assert ann["x-opt-locked-until"] == int((START + 30) * 1000)
    assert msg.delivery_annotations["x-opt-lock-token"] == token, (
        "the lock token also travels as an annotation"
    )
    assert emulator.broker.entity_counts("q1").locked == 1


# ------------------------------------------------------------------------------ frame splitting


async def test_outgoing_delivery_is_split_to_the_peer_frame_size(emulator: Emulator) -> None:
    c = await RawClient.connect(emulator.port)
    await c.handshake(mechanism="PLAIN", max_frame_size=512)
    body = bytes(range(256)) * 12
    _enqueue(emulator, "q1", body)
    await _attach_receiver(c, "q1")
    c.send(_flow(0, 0, 1))
    frames = []
    while True:
        f = await c.expect(Transfer)
        assert len(encode_frame(1, f.performative, f.payload)) <= 512 + 64
        frames.append(f)
        if not f.performative.more:
            break
    assert len(frames) > 1
    assert {f.performative.delivery_id for f in frames} == {0}
    assert {f.performative.delivery_tag for f in frames} == {frames[0].performative.delivery_tag}
    assert decode_message(b"".join(f.payload for f in frames)).body == [body]
    await c.close()


async def test_incoming_multi_frame_delivery_is_reassembled(emulator: Emulator, client: RawClient) -> None:
    await _attach_sender(client, "q1")
    await client.expect(Flow)
    payload = _message(b"z" * 900, message_id="big")
    parts = [payload[:300], payload[300:600], payload[600:]]
    for i, part in enumerate(parts):
        client.send(
            Transfer(
                handle=0,
                delivery_id=0,
                delivery_tag=b"t",
                message_format=0,
                settled=False,
                more=i < len(parts) - 1,
            ),
            part,
        )
    disposition = (await client.expect(Disposition)).performative
    assert disposition.settled and isinstance(disposition.state, Accepted)
    [stored] = emulator.broker.peek("q1", 1, 10)
    assert stored.message_id == "big"
    assert decode_message(stored.bare).body == [b"z" * 900]


async def test_batch_delivery_becomes_separate_messages(emulator: Emulator, client: RawClient) -> None:
    await _attach_sender(client, "q1")
    await client.expect(Flow)
    inner = [_message(f"m{i}".encode(), message_id=f"id{i}") for i in range(3)]
    envelope = encode_message(Message(properties=Properties(message_id="id0"), body=inner))
    client.send(
        Transfer(
            handle=0, delivery_id=0, delivery_tag=b"b", message_format=BATCH_MESSAGE_FORMAT, settled=False
        ),
        envelope,
    )
    assert isinstance((await client.expect(Disposition)).performative.state, Accepted)
    assert [m.message_id for m in emulator.broker.peek("q1", 1, 10)] == ["id0", "id1", "id2"]


async def test_too_large_message_is_rejected(emulator: Emulator, client: RawClient) -> None:
    attach = await _attach_sender(client, "small")
    assert attach.max_message_size == 1024
    await client.expect(Flow)
    client.send(
        Transfer(handle=0, delivery_id=0, delivery_tag=b"x", message_format=0, settled=False),
        _message(b"y" * 2000),
    )
    state = (await client.expect(Disposition)).performative.state
    assert isinstance(state, Rejected) and state.error.condition == "amqp:link:message-size-exceeded"
    assert emulator.broker.entity_counts("small").active == 0


# ---------------------------------------------------------------------------------- settlement


async def _receive(client: RawClient, count: int) -> list[Transfer]:
    client.send(_flow(0, 0, count))
    return [(await client.expect(Transfer)).performative for _ in range(count)]


async def test_settlement_outcomes_and_echoes(emulator: Emulator, client: RawClient) -> None:
    _enqueue(emulator, "q1", b"complete", b"defer", b"dead", b"release", b"abandon")
    await _attach_receiver(client, "q1")
    t = await _receive(client, 5)
    client.send(Disposition(role=Role.RECEIVER, first=t[0].delivery_id, settled=False, state=Accepted()))
    echo = (await client.expect(Disposition)).performative
    assert echo.role == Role.SENDER and echo.settled and isinstance(echo.state, Accepted)
    client.send(
        Disposition(
            role=Role.RECEIVER,
            first=t[1].delivery_id,
            settled=False,
            state=Modified(delivery_failed=True, undeliverable_here=True),
        )
    )
    echo = (await client.expect(Disposition)).performative
    assert isinstance(echo.state, Modified) and echo.state.undeliverable_here
    client.send(
        Disposition(
            role=Role.RECEIVER,
            first=t[2].delivery_id,
            settled=False,
            state=Rejected(
                Error(
                    "com.microsoft:dead-letter",
                    "why",
                    {"DeadLetterReason": "bad", "DeadLetterErrorDescription": "why"},
                )
            ),
        )
    )
    echo = (await client.expect(Disposition)).performative
    assert isinstance(echo.state, Rejected) and echo.state.error is None, (
        "dead-letter is echoed as bare rejected"
    )
    # 7.14 style: pre-settled, nothing echoed.
    client.send(Disposition(role=Role.RECEIVER, first=t[3].delivery_id, settled=True, state=Released()))
    client.send(
        Disposition(
            role=Role.RECEIVER, first=t[4].delivery_id, settled=True, state=Modified(delivery_failed=True)
        )
    )
    assert await _sync_point(client, 0) == []
    # An echoed delivery is settled for good: repeating the outcome is ignored, not applied twice.
    client.send(Disposition(role=Role.RECEIVER, first=t[0].delivery_id, settled=False, state=Accepted()))
    assert await _sync_point(client, 0) == []
    counts = emulator.broker.entity_counts("q1")
    assert (counts.active, counts.deferred, counts.dead_lettered, counts.locked) == (2, 1, 1, 0)
    [dead] = emulator.broker.peek("q1/$DeadLetterQueue", 1, 5)
    assert dead.dead_letter_reason == "bad"
    released, abandoned = sorted(emulator.broker.peek("q1", 1, 10), key=lambda m: m.sequence_number)[-2:]
    assert (released.delivery_count, abandoned.delivery_count) == (0, 1)


async def test_settling_after_the_lock_expired_is_rejected_with_lock_lost(
    emulator: Emulator, client: RawClient
) -> None:
    _enqueue(emulator, "q1", b"slow")
    await _attach_receiver(client, "q1")
    [t] = await _receive(client, 1)
    clock = emulator.clock
    assert isinstance(clock, FakeClock)
    clock.advance(31)
    emulator.broker.tick()
    client.send(Disposition(role=Role.RECEIVER, first=t.delivery_id, settled=False, state=Accepted()))
    echo = (await client.expect(Disposition)).performative
    assert (
        isinstance(echo.state, Rejected) and echo.state.error.condition == "com.microsoft:message-lock-lost"
    )


# ------------------------------------------------------------------------------------ sessions


async def test_next_available_session_waits_then_times_out(client: RawClient) -> None:
    client.send(
        Attach(
            name="sess",
            handle=0,
            role=Role.RECEIVER,
            snd_settle_mode=0,
            rcv_settle_mode=1,
            source=Source(address="s1", filter={"com.microsoft:session-filter": None}),
            target=Target(address="local"),
            properties={"com.microsoft:timeout": UInt(200)},
        )
    )
    attach = (await client.expect(Attach)).performative
    assert attach.source is None
    detach = (await client.expect(Detach)).performative
    assert detach.closed and detach.error.condition == "com.microsoft:timeout"


async def test_session_attach_echoes_the_session_and_its_lock(emulator: Emulator, client: RawClient) -> None:
    _enqueue(emulator, "s1", b"s", session="A")
    attach = await _attach_receiver(client, "s1", filter={"com.microsoft:session-filter": None})
    assert attach.source.filter["com.microsoft:session-filter"] == "A"
    ticks = attach.properties["com.microsoft:locked-until-utc"]
    assert ticks == 621_355_968_000_000_000 + int((START + 30) * 10_000_000)
    client.send(_flow(0, 0, 1))
    transfer = await client.expect(Transfer)
    assert decode_message(transfer.payload).properties.group_id == "A"

    rival = await RawClient.connect(emulator.port)
    await rival.handshake(mechanism="PLAIN")
    refused = await _attach_receiver(rival, "s1", filter={"com.microsoft:session-filter": "A"})
    assert refused.source is None
    assert (
        await rival.expect(Detach)
    ).performative.error.condition == "com.microsoft:session-cannot-be-locked"

    client.send(Detach(handle=0, closed=True))
    await client.expect(Detach)
    accepted = await _attach_receiver(rival, "s1", handle=1, filter={"com.microsoft:session-filter": "A"})
    assert accepted.source.filter["com.microsoft:session-filter"] == "A", "detaching released the session"
    await rival.close()


async def test_waiting_session_receiver_gets_a_new_session(emulator: Emulator, client: RawClient) -> None:
    client.send(
        Attach(
            name="sess",
            handle=0,
            role=Role.RECEIVER,
            snd_settle_mode=0,
            rcv_settle_mode=1,
            source=Source(address="s1", filter={"com.microsoft:session-filter": None}),
            target=Target(address="local"),
        )
    )
    assert await _sync_point(client, 0) == [], "no session yet: the attach is held"
    _enqueue(emulator, "s1", b"hello", session="B")
    attach = (await client.expect(Attach)).performative
    assert attach.source.filter["com.microsoft:session-filter"] == "B"


async def test_session_lock_expiry_detaches_with_session_lock_lost(
    emulator: Emulator, client: RawClient
) -> None:
    _enqueue(emulator, "s1", b"s", session="C")
    await _attach_receiver(client, "s1", filter={"com.microsoft:session-filter": "C"})
    clock = emulator.clock
    assert isinstance(clock, FakeClock)
    clock.advance(31)
    emulator.broker.tick()
    detach = (await client.expect(Detach)).performative
    assert detach.error.condition == "com.microsoft:session-lock-lost"


async def test_end_and_late_detach_are_tolerated(emulator: Emulator, client: RawClient) -> None:
    await _attach_sender(client, "q1")
    await client.expect(Flow)
    client.send(End())
    await client.expect(End)
    client.send(Detach(handle=0, closed=False))  # pyamqp does this after end
    client.send(Begin(next_outgoing_id=0, incoming_window=10, outgoing_window=10), channel=2)
    assert (await client.expect(Begin)).performative.remote_channel == 2


async def test_transaction_coordinator_is_refused(client: RawClient) -> None:
    coordinator = Described(ULong(0x30), [Array([Symbol("amqp:local-transactions")], Symbol)])
    client.send(
        Attach(
            name="txn",
            handle=0,
            role=Role.SENDER,
            source=Source(address="local"),
            target=coordinator,
            initial_delivery_count=0,
        )
    )
    attach = (await client.expect(Attach)).performative
    assert attach.target is None
    assert (await client.expect(Detach)).performative.error.condition == "amqp:not-implemented"
    # The connection is still usable.
    assert (await _attach_sender(client, "q1", handle=1)).target is not None


async def test_detaching_a_waiting_session_receiver_is_answered(
    emulator: Emulator, client: RawClient
) -> None:
    client.send(
        Attach(
            name="sess",
            handle=0,
            role=Role.RECEIVER,
            snd_settle_mode=0,
            rcv_settle_mode=1,
            source=Source(address="s1", filter={"com.microsoft:session-filter": None}),
            target=Target(address="local"),
        )
    )
    assert await _sync_point(client, 0) == []
    client.send(Detach(handle=0, closed=True))
    attach = (await client.expect(Attach)).performative
    assert attach.source is None
    assert (await client.expect(Detach)).performative.closed
    _enqueue(emulator, "s1", b"later", session="D")
    assert await _sync_point(client, 0) == [], "the abandoned wait takes no session"
    assert emulator.broker.accept_session("s1", "D", "someone-else") is not None


async def test_slow_reader_gets_backpressure_not_unbounded_buffering(emulator: Emulator) -> None:
    c = await RawClient.connect(emulator.port)
    await c.handshake(mechanism="PLAIN")
    body = b"\xab" * (256 * 1024)
    _enqueue(emulator, "big", *([body] * 80))  # 20 MB in total
    await _attach_receiver(c, "big")
    c.send(_flow(0, 0, 80))
    await asyncio.sleep(0.5)  # the client reads nothing meanwhile
    locked = emulator.broker.entity_counts("big").locked
    assert 0 < locked < 80, "the broker stops taking messages while the socket is full"
    received = 0
    while received < 80:
        item = await c.next()
        assert item is not None
        if isinstance(item.performative, Transfer) and not item.performative.more:
            received += 1
    assert emulator.broker.entity_counts("big").locked == 80
    await c.close()
