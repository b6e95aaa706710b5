"""Performatives, terminus, delivery states and SASL frames: wire types, defaults and SDK interop."""

from __future__ import annotations

import dataclasses
import struct
import uuid
from typing import Any

import pytest
from azure.servicebus._pyamqp import _decode as sdk_decode
from azure.servicebus._pyamqp import _encode as sdk_encode
from azure.servicebus._pyamqp import endpoints as sdk_endpoints
from azure.servicebus._pyamqp import outcomes as sdk_outcomes
from azure.servicebus._pyamqp import performatives as sdk_perf
from azure.servicebus._pyamqp.constants import Role as SdkRole
from hypothesis import given, settings
from hypothesis import strategies as st

from dtf_sb.emulator.amqp.codec import DecodeError, decode, encode
from dtf_sb.emulator.amqp.frames import FRAME_TYPE_AMQP, FRAME_TYPE_SASL, FrameDecoder
from dtf_sb.emulator.amqp.performatives import (
    DELIVERY_STATES,
    PERFORMATIVES,
    SASL_FRAMES,
    Accepted,
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Modified,
    Open,
    Received,
    Rejected,
    Released,
    Role,
    SaslChallenge,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    SaslResponse,
    Source,
    Target,
    Transfer,
    described_to_performative,
    performative_to_described,
)
from dtf_sb.emulator.amqp.types import Array, Described, Symbol, UByte, UInt, ULong, UShort

DESCRIPTORS = {
    Open: (0x10, "amqp:open:list"),
    Begin: (0x11, "amqp:begin:list"),
    Attach: (0x12, "amqp:attach:list"),
    Flow: (0x13, "amqp:flow:list"),
    Transfer: (0x14, "amqp:transfer:list"),
    Disposition: (0x15, "amqp:disposition:list"),
    Detach: (0x16, "amqp:detach:list"),
    End: (0x17, "amqp:end:list"),
    Close: (0x18, "amqp:close:list"),
    Error: (0x1D, "amqp:error:list"),
    Received: (0x23, "amqp:received:list"),
    Accepted: (0x24, "amqp:accepted:list"),
    Rejected: (0x25, "amqp:rejected:list"),
    Released: (0x26, "amqp:released:list"),
    Modified: (0x27, "amqp:modified:list"),
    Source: (0x28, "amqp:source:list"),
    Target: (0x29, "amqp:target:list"),
    SaslMechanisms: (0x40, "amqp:sasl-mechanisms:list"),
    SaslInit: (0x41, "amqp:sasl-init:list"),
    SaslChallenge: (0x42, "amqp:sasl-challenge:list"),
    SaslResponse: (0x43, "amqp:sasl-response:list"),
    SaslOutcome: (0x44, "amqp:sasl-outcome:list"),
}

ERROR = Error(
    condition="com.microsoft:dead-letter",
    description="bad",
    info={"DeadLetterReason": "r", Symbol("n"): 1},
)

SAMPLES: list[Any] = [
    Open(container_id="c", hostname="localhost", max_frame_size=65536, channel_max=255, idle_time_out=30000),
    Open(container_id="c", offered_capabilities=("a", "b"), properties={"product": "x"}),
    Begin(remote_channel=1, next_outgoing_id=0, incoming_window=5000, outgoing_window=5000, handle_max=63),
    Attach(
        name="link",
        handle=3,
        role=Role.SENDER,
        snd_settle_mode=0,
        rcv_settle_mode=1,
        source=Source(address="amqps://h/q1", filter={"com.microsoft:session-filter": "s1"}),
        target=Target(address="receiver-link"),
        initial_delivery_count=0,
        max_message_size=262144,
        properties={"com.microsoft:locked-until-utc": 638000000000000000},
    ),
    Attach(name="n", handle=0, role=Role.RECEIVER),
    Flow(
        next_incoming_id=1,
        incoming_window=10,
        next_outgoing_id=2,
        outgoing_window=10,
        handle=1,
        delivery_count=4,
        link_credit=0,
        drain=True,
    ),
    Transfer(
        handle=1,
        delivery_id=7,
        delivery_tag=uuid.UUID(int=5).bytes_le,
        message_format=0x80013700,
        settled=False,
        more=True,
    ),
    Transfer(handle=1),
    Disposition(role=Role.RECEIVER, first=1, last=3, settled=True, state=Accepted()),
    Disposition(role=Role.SENDER, first=1, settled=True, state=Modified(True, False, {"x-opt-a": 1})),
    Disposition(role=Role.SENDER, first=1, settled=True, state=Rejected(ERROR)),
    Disposition(role=Role.SENDER, first=1, state=Received(section_number=1, section_offset=20)),
    Disposition(role=Role.RECEIVER, first=0, settled=True, state=Released()),
    Detach(handle=2, closed=True, error=Error(condition="com.microsoft:timeout", description="no session")),
    End(),
    End(error=ERROR),
    Close(error=Error(condition="amqp:connection:forced")),
    SaslMechanisms(sasl_server_mechanisms=("ANONYMOUS", "MSSBCBS")),
    SaslInit(mechanism="ANONYMOUS", initial_response=b"", hostname="localhost"),
    SaslChallenge(challenge=b"c"),
    SaslResponse(response=b"r"),
    SaslOutcome(code=0, additional_data=b"ok"),
]


@pytest.mark.parametrize("performative", SAMPLES, ids=lambda p: type(p).__name__)
def test_round_trip(performative: Any) -> None:
    raw = encode(performative_to_described(performative))
    decoded = described_to_performative(decode(raw)[0])
    assert decoded == performative
    assert type(decoded) is type(performative)
    assert encode(performative_to_described(decoded)) == raw


@pytest.mark.parametrize("cls", list(DESCRIPTORS), ids=lambda c: c.__name__)
def test_descriptor_codes_and_symbolic_names(cls: type) -> None:
    code, name = DESCRIPTORS[cls]
    assert cls.DESCRIPTOR == code  # type: ignore[attr-defined]
    sample = next(s for s in _all_composites(SAMPLES) if type(s) is cls)
    described = performative_to_described(sample)
    assert described.descriptor == code and type(described.descriptor) is ULong
    # The same list under the symbolic descriptor decodes to the same object.
    assert described_to_performative(Described(Symbol(name), described.value)) == sample
    assert described_to_performative(Described(ULong(code), described.value)) == sample


def _all_composites(values: list[Any]) -> list[Any]:
    """The samples and every composite nested in them (terminus, states, errors)."""
    found = []
    for value in values:
        if dataclasses.is_dataclass(value):
            found.append(value)
            found += _all_composites([getattr(value, f.name) for f in dataclasses.fields(value)])
    return found


def test_groups_are_complete() -> None:
    assert set(PERFORMATIVES) == {Open, Begin, Attach, Flow, Transfer, Disposition, Detach, End, Close}
    assert set(SASL_FRAMES) == {SaslMechanisms, SaslInit, SaslChallenge, SaslResponse, SaslOutcome}
    assert set(DELIVERY_STATES) == {Received, Accepted, Rejected, Released, Modified}


def test_field_types_on_the_wire() -> None:
    attach = performative_to_described(SAMPLES[3]).value
    assert type(attach[0]) is str
    assert type(attach[1]) is UInt
    assert attach[2] is False
    assert type(attach[3]) is UByte and type(attach[4]) is UByte
    assert attach[5].descriptor == 0x28 and attach[6].descriptor == 0x29
    assert type(attach[9]) is UInt
    assert type(attach[10]) is ULong
    assert all(type(k) is Symbol for k in attach[13])
    source = attach[5].value
    assert all(type(k) is Symbol for k in source[7])
    open_ = performative_to_described(SAMPLES[0]).value
    assert [type(v) for v in open_[2:5]] == [UInt, UShort, UInt]
    caps = performative_to_described(SAMPLES[1]).value[7]
    assert isinstance(caps, Array) and caps.items == ["a", "b"] and all(type(s) is Symbol for s in caps.items)
    mechanisms = performative_to_described(SaslMechanisms(("ANONYMOUS",))).value[0]
    assert isinstance(mechanisms, Array)  # an array even for one mechanism (C.1)
    raw = encode(performative_to_described(SaslMechanisms(("ANONYMOUS",))))
    assert raw.startswith(bytes.fromhex("005340c0")) and b"\xe0" in raw
    flow = performative_to_described(SAMPLES[5]).value
    assert all(type(v) is UInt for v in flow[:8] if v is not None)
    error = performative_to_described(ERROR).value
    assert type(error[0]) is Symbol and all(type(k) is Symbol for k in error[2])
    outcome = performative_to_described(SaslOutcome(code=1)).value
    assert type(outcome[0]) is UByte


def test_trailing_nulls_and_defaults_are_omitted() -> None:
    assert encode(performative_to_described(End())) == bytes.fromhex("00531745")
    assert encode(performative_to_described(Accepted())) == bytes.fromhex("00532445")
    detach = performative_to_described(Detach(handle=1)).value
    assert detach == [1]
    flow = performative_to_described(Flow(incoming_window=1, next_outgoing_id=0, outgoing_window=1)).value
    assert flow == [None, 1, 0, 1]
    source = performative_to_described(Source(address="q")).value
    assert source == ["q"]


def test_absent_fields_take_spec_defaults() -> None:
    attach = described_to_performative(Described(ULong(0x12), ["n", UInt(0), True]))
    assert attach.snd_settle_mode == 2 and attach.rcv_settle_mode == 0
    assert attach.incomplete_unsettled is False and attach.source is None
    open_ = described_to_performative(Described(ULong(0x10), ["c", None, None]))
    assert open_.max_frame_size == 4294967295 and open_.channel_max == 65535
    begin = described_to_performative(Described(ULong(0x11), [None, UInt(0), UInt(1), UInt(1)]))
    assert begin.handle_max == 4294967295 and begin.remote_channel is None
    flow = described_to_performative(Described(ULong(0x13), [None, UInt(1), UInt(0), UInt(1)]))
    assert flow.drain is False and flow.echo is False and flow.link_credit is None
    source = described_to_performative(Described(ULong(0x28), []))
    assert source.expiry_policy == "session-end" and source.timeout == 0 and source.durable == 0


def test_multiple_symbol_fields_accept_a_single_symbol() -> None:
    value = described_to_performative(Described(ULong(0x40), [Symbol("ANONYMOUS")]))
    assert value.sasl_server_mechanisms == ("ANONYMOUS",)


def test_extra_trailing_fields_are_ignored() -> None:
    assert described_to_performative(Described(ULong(0x17), [None, "future"])) == End()


@pytest.mark.parametrize(
    ("described", "reason"),
    [
        (Described(ULong(0x99), []), "unknown"),
        (Described(Symbol("amqp:nope:list"), []), "unknown"),
        (Described(1.5, []), "unknown"),
        (Described(ULong(0x10), "not a list"), "described list"),
        (Described(ULong(0x10), []), "container_id is mandatory"),
        (Described(ULong(0x12), ["n", UInt(0)]), "role is mandatory"),
        (Described(ULong(0x12), ["n", "zero", True]), "integer"),
        (Described(ULong(0x12), ["n", True, True]), "integer"),
        (Described(ULong(0x12), [b"n", UInt(0), True]), "string"),
        (Described(ULong(0x12), ["n", UInt(0), UInt(1)]), "boolean"),
        (Described(ULong(0x12), ["n", UInt(0), True, None, None, "src"]), "described"),
        (Described(ULong(0x12), ["n", UInt(0), True, None, None, Described([1], [])]), "ulong or a symbol"),
        (Described(ULong(0x12), ["n", UInt(0), True, None, None, Described(ULong(0x28), [5])]), "string"),
        (Described(ULong(0x14), [UInt(0), None, "tag"]), "binary"),
        (Described(ULong(0x10), ["c", None, None, None, None, None, None, None, None, [1]]), "map"),
        (Described(ULong(0x40), [UInt(1)]), "symbols"),
        (Described(ULong(0x1D), [1]), "symbol"),
    ],
)
def test_bad_performatives_raise_decode_error(described: Described, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        described_to_performative(described)


def test_unknown_nested_composites_stay_described() -> None:
    # A coordinator target (transactions) must reach the link engine so it can refuse the link.
    coordinator = Described(
        Symbol("amqp:coordinator:list"), [Array([Symbol("amqp:local-transactions")], 0xA3)]
    )
    attach = described_to_performative(
        Described(ULong(0x12), ["txn", UInt(0), False, None, None, None, coordinator])
    )
    assert attach.target == coordinator
    raw = encode(performative_to_described(attach))
    assert described_to_performative(decode(raw)[0]) == attach
    transactional = Described(ULong(0x34), [b"txn-id", Described(ULong(0x24), [])])
    transfer = described_to_performative(
        Described(ULong(0x14), [UInt(0), None, None, None, None, None, None, transactional])
    )
    assert transfer.state == transactional


_ANY = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(0, 2**32 - 1).map(UInt),
        st.integers(-5, 5),
        st.text(max_size=5),
        st.text(alphabet="abc:-", max_size=5).map(Symbol),
        st.binary(max_size=5),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(max_size=3), children, max_size=3),
        st.builds(
            Described, st.sampled_from(sorted(c for c, _ in DESCRIPTORS.values())).map(ULong), children
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([c for c, _ in DESCRIPTORS.values()]), st.lists(_ANY, max_size=15))
def test_arbitrary_field_values_only_raise_decode_error(code: int, fields: list[Any]) -> None:
    try:
        value = described_to_performative(Described(ULong(code), fields))
    except DecodeError:
        return
    assert value.DESCRIPTOR == code
    # Whatever was accepted can be written back and read again unchanged.
    assert described_to_performative(decode(encode(performative_to_described(value)))[0]) == value


def test_a_fields_map_with_a_non_ascii_key_is_refused_on_decode() -> None:
    # modified (0x27) carries message-annotations as a fields map, whose keys are symbols
    with pytest.raises(DecodeError, match="symbols"):
        described_to_performative(Described(ULong(0x27), [None, None, {"\x80": None}]))


def test_only_composites_can_be_converted() -> None:
    with pytest.raises(TypeError):
        performative_to_described("open")


# ---------------------------------------------------------------------------- the SDK's frames


def _sdk_frame(frame: Any, channel: int = 1, frame_type: bytes = b"\x00") -> bytes:
    header, body = sdk_encode.encode_frame(frame, frame_type=frame_type)
    assert body is not None
    return header + struct.pack(">H", channel) + bytes(body)


def test_sdk_open_begin_attach_transfer_decode_to_dataclasses() -> None:
    props = {
        "product": "azsdk-python-servicebus",
        "version": "7.15.0",
        "user-agent": "azsdk-python-servicebus/7.15.0 pyamqp/2.0.0a1",
    }
    open_frame = sdk_perf.OpenFrame(
        container_id="SBSender-0b2c",
        hostname="localhost",
        max_frame_size=1048576,
        channel_max=65535,
        idle_timeout=None,
        outgoing_locales=None,
        incoming_locales=None,
        offered_capabilities=None,
        desired_capabilities=None,
        properties=props,
    )
    begin_frame = sdk_perf.BeginFrame(
        remote_channel=None,
        next_outgoing_id=0,
        incoming_window=65536,
        outgoing_window=65536,
        handle_max=4294967295,
        offered_capabilities=None,
        desired_capabilities=None,
        properties=None,
    )
    source = sdk_endpoints.Source(
        address="amqps://localhost:5672/q1", filters={"com.microsoft:session-filter": None}
    )
    target = sdk_endpoints.Target(address="receiver-link-abc")
    attach_frame = sdk_perf.AttachFrame(
        name="5d8c",
        handle=2,
        role=SdkRole.Receiver,
        send_settle_mode=0,
        rcv_settle_mode=1,
        source=source,
        target=target,
        unsettled=None,
        incomplete_unsettled=False,
        initial_delivery_count=None,
        max_message_size=1048576,
        offered_capabilities=None,
        desired_capabilities=None,
        properties={"com.microsoft:receiver-name": "SBReceiver-1", "com.microsoft:timeout": 19880},
    )
    transfer_frame = sdk_perf.TransferFrame(
        handle=1,
        delivery_id=0,
        delivery_tag=b"\x00\x00\x00\x01",
        message_format=0,
        settled=False,
        more=False,
        rcv_settle_mode=None,
        state=None,
        resume=None,
        aborted=None,
        batchable=None,
        payload=b"\x00\x53\x75\xa0\x05hello",
    )
    stream = b"AMQP\x00\x01\x00\x00" + b"".join(
        _sdk_frame(f, channel=1) for f in (open_frame, begin_frame, attach_frame, transfer_frame)
    )
    decoder = FrameDecoder(1 << 20)
    items = decoder.feed(stream)
    assert len(items) == 5
    frames = items[1:]
    assert all(f.frame_type == FRAME_TYPE_AMQP and f.channel == 1 for f in frames)
    open_, begin, attach, transfer = (f.performative for f in frames)
    assert open_ == Open(
        container_id="SBSender-0b2c",
        hostname="localhost",
        max_frame_size=1048576,
        channel_max=65535,
        properties={Symbol(k): v for k, v in props.items()},
    )
    assert begin == Begin(next_outgoing_id=0, incoming_window=65536, outgoing_window=65536)
    assert attach.name == "5d8c" and attach.handle == 2 and attach.role is Role.RECEIVER
    assert (attach.snd_settle_mode, attach.rcv_settle_mode) == (0, 1)
    assert attach.source.address == "amqps://localhost:5672/q1"
    assert attach.source.filter == {"com.microsoft:session-filter": None}
    assert attach.target == Target(address="receiver-link-abc")
    assert attach.initial_delivery_count is None and attach.max_message_size == 1048576
    assert attach.properties["com.microsoft:timeout"] == 19880
    assert transfer == Transfer(
        handle=1, delivery_id=0, delivery_tag=b"\x00\x00\x00\x01", message_format=0, settled=False
    )
    assert frames[3].payload == b"\x00\x53\x75\xa0\x05hello"


def test_sdk_sasl_and_disposition_frames_decode() -> None:
    init = sdk_perf.SASLInit(mechanism=b"ANONYMOUS", initial_response=b"", hostname="localhost")
    disposition = sdk_perf.DispositionFrame(
        role=SdkRole.Receiver,
        first=3,
        last=None,
        settled=False,
        state=sdk_outcomes.Modified(delivery_failed=True, undeliverable_here=True, message_annotations=None),
        batchable=None,
    )
    decoder = FrameDecoder(1 << 20, expect_header=False)
    sasl = decoder.feed(_sdk_frame(init, channel=0, frame_type=b"\x01"))[0]
    assert sasl.frame_type == FRAME_TYPE_SASL
    assert sasl.performative == SaslInit(mechanism="ANONYMOUS", initial_response=b"", hostname="localhost")
    raw = _sdk_frame(disposition)
    frame = decoder.feed(raw)[0]
    assert frame.performative == Disposition(
        role=Role.RECEIVER, first=3, settled=False, state=Modified(True, True)
    )


def test_sdk_decoder_reads_our_performatives() -> None:
    attach = Attach(
        name="link",
        handle=0,
        role=Role.SENDER,
        snd_settle_mode=0,
        rcv_settle_mode=0,
        source=Source(address="amqps://localhost/q1", filter={"com.microsoft:session-filter": "s1"}),
        target=Target(address="receiver-link"),
        initial_delivery_count=0,
        max_message_size=262144,
        properties={"com.microsoft:locked-until-utc": 638000000000000000},
    )
    raw = encode(performative_to_described(attach))
    code, fields = sdk_decode.decode_frame(memoryview(raw))
    assert code == 0x12
    assert fields[0] == b"link" and fields[1] == 0 and fields[2] is False
    assert fields[5][0] == b"amqps://localhost/q1"
    assert fields[5][7] == {b"com.microsoft:session-filter": b"s1"}
    assert fields[9] == 0 and fields[10] == 262144
    assert fields[13] == {b"com.microsoft:locked-until-utc": 638000000000000000}
    mechanisms = encode(performative_to_described(SaslMechanisms(("MSSBCBS", "ANONYMOUS"))))
    code, fields = sdk_decode.decode_frame(memoryview(mechanisms))
    assert code == 0x40 and b"ANONYMOUS" in fields[0]  # the SDK's `in` test needs an array (C.1)
    flow = Flow(
        incoming_window=5000,
        next_outgoing_id=0,
        outgoing_window=5000,
        handle=0,
        delivery_count=0,
        link_credit=100,
    )
    code, fields = sdk_decode.decode_frame(memoryview(encode(performative_to_described(flow))))
    assert code == 0x13 and fields[5] == 0 and fields[6] == 100 and fields[8] is False
