"""AMQP 1.0 sessions: channel, transfer windows, delivery ids and the link handle table.

A session numbers transfers and deliveries for all its links and enforces the windows both ways:
pyamqp stops sending once the window the broker advertised is used up, and stops reading into a full
window of its own, so the broker replenishes its incoming window with session flows and never sends
beyond the client's (part 2, 2.5.6).
"""

from __future__ import annotations

import dataclasses
import logging
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .frames import encode_frame
from .performatives import (
    Accepted,
    Attach,
    Begin,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Modified,
    Rejected,
    Released,
    Role,
    Transfer,
    performative_to_described,
)
from .types import Described

if TYPE_CHECKING:
    from .connection import Connection
    from .link import Link, OutgoingLink

__all__ = ["Session", "frame", "transfer_frame"]

log = logging.getLogger("dtf_sb.emulator")

#: The incoming window the broker advertises; a session flow restores it once half is used.
INCOMING_WINDOW = 65536
OUTGOING_WINDOW = 65536
_UINT = 1 << 32


_FIELD_COUNTS: dict[type, int] = {}
_OUTCOMES = (Accepted, Rejected, Released, Modified)


def frame(channel: int, performative: Any, payload: bytes = b"") -> bytes:
    """Encode a frame with every performative field present (trailing ones as null).

    The spec lets trailing nulls be left off, but azure-servicebus 7.14's decoder indexes the field
    list directly (``frame[4]`` of an open) and reads an empty list as garbage, so the broker always
    sends the full list.
    """
    described = performative_to_described(performative)
    count = _FIELD_COUNTS.get(type(performative))
    if count is None:
        count = _FIELD_COUNTS[type(performative)] = len(dataclasses.fields(performative))
    values = described.value
    if len(values) < count:
        described = Described(described.descriptor, values + [None] * (count - len(values)))
    return encode_frame(channel, described, payload)


def _uint(value: int) -> bytes:
    if value == 0:
        return b"\x43"
    if value < 256:
        return bytes((0x52, value))
    return b"\x70" + value.to_bytes(4, "big")


_FRAME_HEAD = struct.Struct(">IBBH")


def transfer_frame(
    channel: int,
    handle: int,
    delivery_id: int,
    tag: bytes,
    message_format: int,
    settled: bool,
    more: bool,
    payload: bytes,
) -> bytes:
    """One transfer frame, laid out byte by byte: the per-delivery hot path.

    Same wire form as :func:`frame` with a :class:`Transfer` (all eleven fields, trailing nulls),
    without building and walking a dataclass for every message.
    """
    fields = b"".join(
        (
            _uint(handle),
            _uint(delivery_id),
            bytes((0xA0, len(tag))),
            tag,
            _uint(message_format),
            b"\x41" if settled else b"\x42",
            b"\x41" if more else b"\x42",
            b"\x40\x40\x40\x40\x40",
        )
    )
    body = bytes((0x00, 0x53, 0x14, 0xC0, len(fields) + 1, 11)) + fields
    return _FRAME_HEAD.pack(8 + len(body) + len(payload), 2, 0, channel) + body + payload


@dataclass(slots=True)
class _Unsettled:
    link: OutgoingLink
    context: Any


class Session:
    """One begun session on a connection."""

    def __init__(self, connection: Connection, channel: int, remote_channel: int, begin: Begin) -> None:
        self.connection = connection
        self.channel = channel
        self.remote_channel = remote_channel
        self.next_outgoing_id = 0
        self.next_incoming_id = begin.next_outgoing_id
        self.incoming_window = INCOMING_WINDOW
        self.remote_incoming_window = begin.incoming_window
        self.remote_outgoing_window = begin.outgoing_window
        self.handle_max = begin.handle_max
        self.next_delivery_id = 0
        self.links: dict[int, Link] = {}
        self._handles: set[int] = set()
        self._unsettled: dict[int, _Unsettled] = {}
        self.ended = False

    # -- lifecycle ---------------------------------------------------------------------------

    def begin_response(self) -> Begin:
        return Begin(
            remote_channel=self.remote_channel,
            next_outgoing_id=self.next_outgoing_id,
            incoming_window=self.incoming_window,
            outgoing_window=OUTGOING_WINDOW,
            handle_max=min(self.handle_max, 65535),
        )

    def end(self, error: Error | None = None, *, reply: bool = True) -> None:
        """End the session, detaching every link (the peer's end or ours)."""
        if self.ended:
            return
        self.ended = True
        for link in list(self.links.values()):
            link.detached = True
            link.on_detached()
        self.links.clear()
        self._unsettled.clear()
        if reply:
            self.send_performative(End(error=error))

    # -- handles -----------------------------------------------------------------------------

    def allocate_handle(self) -> int:
        handle = 0
        while handle in self._handles:
            handle += 1
        self._handles.add(handle)
        return handle

    def forget_link(self, link: Link) -> None:
        if self.links.get(link.remote_handle) is link:
            del self.links[link.remote_handle]
        self._handles.discard(link.handle)
        for delivery_id in [d for d, u in self._unsettled.items() if u.link is link]:
            del self._unsettled[delivery_id]

    # -- output ------------------------------------------------------------------------------

    def send_performative(self, performative: Any, payload: bytes = b"") -> None:
        if self.ended and not isinstance(performative, End):
            return
        self.connection.write(frame(self.channel, performative, payload))

    def _session_flow_fields(self) -> dict[str, Any]:
        return {
            "next_incoming_id": self.next_incoming_id % _UINT,
            "incoming_window": self.incoming_window,
            "next_outgoing_id": self.next_outgoing_id % _UINT,
            "outgoing_window": OUTGOING_WINDOW,
        }

    def send_session_flow(self) -> None:
        self.incoming_window = INCOMING_WINDOW
        self.send_performative(Flow(**self._session_flow_fields()))

    def send_link_flow(self, link: Link, **fields: Any) -> None:
        if link.detached and not fields.get("drain"):
            return
        self.send_performative(Flow(**self._session_flow_fields(), handle=link.handle, **fields))

    def can_send(self) -> bool:
        return self.remote_incoming_window > 0 and not self.ended and self.connection.writable

    def send_transfer(
        self,
        link: OutgoingLink,
        tag: bytes,
        payload: bytes,
        *,
        settled: bool,
        message_format: int,
        context: Any,
    ) -> int:
        """Send a delivery as one or more transfer frames within the peer's max-frame-size.

        Continuation frames repeat delivery-id, tag and format: pyamqp takes the tag of the last
        frame that carried a delivery-id, so omitting them in only some frames would lose the lock
        token of a large message.
        """
        delivery_id = self.next_delivery_id
        self.next_delivery_id = (delivery_id + 1) % _UINT
        limit = self.connection.peer_max_frame_size
        channel, handle = self.channel, link.handle
        if len(tag) > 255:
            raise ValueError("delivery tags are at most 32 bytes")
        single = transfer_frame(channel, handle, delivery_id, tag, message_format, settled, False, payload)
        if len(single) <= limit:
            self.connection.write(single)
            frames = 1
        else:
            overhead = len(single) - len(payload)
            chunk = max(1, limit - overhead)
            frames = 0
            for start in range(0, len(payload), chunk):
                end = start + chunk
                more = end < len(payload)
                piece = payload[start:end]
                self.connection.write(
                    transfer_frame(channel, handle, delivery_id, tag, message_format, settled, more, piece)
                )
                frames += 1
        self.next_outgoing_id += frames
        self.remote_incoming_window -= frames
        if not settled:
            self._unsettled[delivery_id] = _Unsettled(link, context)
        return delivery_id

    def settle_incoming(self, delivery_id: int, state: Any) -> None:
        """Settle a client delivery with our outcome (the broker is always first to settle)."""
        self.send_performative(
            Disposition(role=Role.RECEIVER, first=delivery_id, last=delivery_id, settled=True, state=state)
        )

    def echo_settlement(self, delivery_id: int, state: Any) -> None:
        """Confirm the client's settlement of one of our deliveries (what azure-servicebus 7.15 awaits)."""
        self.send_performative(
            Disposition(role=Role.SENDER, first=delivery_id, last=delivery_id, settled=True, state=state)
        )

    # -- input -------------------------------------------------------------------------------

    def on_attach(self, attach: Attach) -> None:
        existing = self.links.get(attach.handle)
        if existing is not None:
            log.debug("attach reuses handle %s of link %r; replacing it", attach.handle, existing.name)
            existing.detached = True
            self.forget_link(existing)
            existing.on_detached()
        self.connection.handler.attach(self, attach)

    def register(self, link: Link) -> None:
        """Make a link reachable by the client's handle (called by whoever created it)."""
        self.links[link.remote_handle] = link

    def on_flow(self, flow: Flow) -> None:
        next_incoming = flow.next_incoming_id if flow.next_incoming_id is not None else 0
        self.remote_incoming_window = next_incoming + flow.incoming_window - self.next_outgoing_id
        self.remote_outgoing_window = flow.outgoing_window
        if flow.handle is not None:
            link = self.links.get(flow.handle)
            if link is not None:
                link.on_flow(flow)
        elif flow.echo:
            self.send_session_flow()
        if self.remote_incoming_window > 0:
            self.pump()

    def pump(self) -> None:
        """Give every outgoing link a chance to send (window or transport opened up)."""
        for link in list(self.links.values()):
            if self.remote_incoming_window <= 0 or not self.connection.writable:
                break
            if link.role == Role.SENDER and not link.detached:
                link.pump()  # type: ignore[attr-defined]

    def on_transfer(self, transfer: Transfer, payload: bytes) -> None:
        self.next_incoming_id += 1
        self.incoming_window -= 1
        self.remote_outgoing_window -= 1
        if self.incoming_window <= INCOMING_WINDOW // 2:
            self.send_session_flow()
        link = self.links.get(transfer.handle)
        if link is None or link.role != Role.RECEIVER:
            # Transfers may still be in flight on a link the broker has just detached; drop them.
            log.debug("transfer on unattached handle %s dropped", transfer.handle)
            return
        link.on_transfer(transfer, payload)  # type: ignore[attr-defined]

    def on_disposition(self, disposition: Disposition) -> None:
        if disposition.role != Role.RECEIVER:
            return  # the client settling its own deliveries: we settled them already
        last = disposition.last if disposition.last is not None else disposition.first
        for delivery_id in range(disposition.first, last + 1):
            entry = self._unsettled.get(delivery_id)
            if entry is None:
                continue
            if disposition.settled or isinstance(disposition.state, _OUTCOMES):
                # An outcome ends the delivery: the broker settles it with its echo at once.
                del self._unsettled[delivery_id]
            entry.link.on_disposition(delivery_id, entry.context, disposition.state, disposition.settled)

    def on_detach(self, detach: Detach) -> None:
        link = self.links.get(detach.handle)
        if link is not None:
            link.on_remote_detach(detach)
