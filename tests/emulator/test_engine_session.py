"""Frame encoding of the session layer: full field lists for old pyamqp, and the transfer fast path."""

from __future__ import annotations

from azure.servicebus._pyamqp._decode import decode_frame as sdk_decode_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from dtf_sb.emulator.amqp import Close, End, FrameDecoder, Open, Transfer
from dtf_sb.emulator.amqp.session import frame, transfer_frame


def _decode(data: bytes) -> object:
    [item] = FrameDecoder(1 << 24, expect_header=False).feed(data)
    return item


@settings(max_examples=200, deadline=None)
@given(
    channel=st.integers(0, 65535),
    handle=st.integers(0, 2**32 - 1),
    delivery_id=st.integers(0, 2**32 - 1),
    tag=st.binary(min_size=0, max_size=32),
    message_format=st.sampled_from([0, 0x80013700]) | st.integers(0, 2**32 - 1),
    settled=st.booleans(),
    more=st.booleans(),
    payload=st.binary(max_size=64),
)
def test_transfer_fast_path_matches_the_codec(
    channel: int,
    handle: int,
    delivery_id: int,
    tag: bytes,
    message_format: int,
    settled: bool,
    more: bool,
    payload: bytes,
) -> None:
    fast = transfer_frame(channel, handle, delivery_id, tag, message_format, settled, more, payload)
    reference = frame(
        channel,
        Transfer(
            handle=handle,
            delivery_id=delivery_id,
            delivery_tag=tag,
            message_format=message_format,
            settled=settled,
            more=more,
        ),
        payload,
    )
    assert _decode(fast) == _decode(reference)
    # What azure-servicebus's own decoder sees: all eleven fields, then the payload.
    _, fields = sdk_decode_frame(memoryview(fast)[8:])
    assert len(fields) == 12
    assert (fields[0], fields[1], bytes(fields[2]), fields[3], fields[4], fields[5]) == (
        handle,
        delivery_id,
        tag,
        message_format,
        settled,
        more,
    )
    assert bytes(fields[11]) == payload


def test_every_field_is_sent_for_old_decoders() -> None:
    # azure-servicebus 7.14 reads open's idle-time-out as frame[4] and an empty list as garbage.
    _, fields = sdk_decode_frame(memoryview(frame(0, Open(container_id="c")))[8:])
    assert len(fields) == 10 and fields[4] is None
    for performative in (End(), Close()):
        _, fields = sdk_decode_frame(memoryview(frame(0, performative))[8:])
        assert fields == [None]
