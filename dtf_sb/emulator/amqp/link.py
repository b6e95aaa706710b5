"""AMQP 1.0 link endpoints: attach/detach, link credit and delivery reassembly.

The engine only ever plays the far end of what the client attached: a client *sender* meets an
:class:`IncomingLink` (the broker receives), a client *receiver* meets an :class:`OutgoingLink` (the
broker sends). Subclasses decide what a delivery means (a message for an entity, a CBS or
``$management`` request) and where outgoing messages come from; this module owns the bookkeeping
the spec prescribes, so every endpoint gets credit arithmetic, drain and multi-frame transfers right
the same way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .performatives import (
    Attach,
    Detach,
    Error,
    Flow,
    ReceiverSettleMode,
    Role,
    SenderSettleMode,
    Source,
    Target,
    Transfer,
)

if TYPE_CHECKING:
    from .session import Session

__all__ = ["IncomingLink", "Link", "OutgoingLink"]

log = logging.getLogger("dtf_sb.emulator")

#: Credit the broker grants a client sender, topped up whenever half of it has been used.
DEFAULT_INCOMING_CREDIT = 1000

#: Beyond this a delivery being reassembled is refused, whatever the entity allows.
MAX_DELIVERY_BYTES = 110 * 1024 * 1024


class Link:
    """State shared by both directions: names, handles, and the attach/detach exchange."""

    role: bool = Role.SENDER

    def __init__(self, session: Session, attach: Attach) -> None:
        self.session = session
        self.remote_attach = attach
        self.name = attach.name
        self.remote_handle = attach.handle
        self.handle = session.allocate_handle()
        self.attached = False
        self.detached = False

    # -- attach ------------------------------------------------------------------------------

    def attach_response(self) -> Attach:
        """Our attach, mirroring the client's terminus; subclasses add what their role needs."""
        remote = self.remote_attach
        return Attach(
            name=self.name,
            handle=self.handle,
            role=self.role,
            snd_settle_mode=remote.snd_settle_mode,
            rcv_settle_mode=remote.rcv_settle_mode,
            source=remote.source if remote.source is not None else Source(),
            target=remote.target if remote.target is not None else Target(),
        )

    def open(self, attach: Attach | None = None) -> None:
        """Send our attach (the given one or :meth:`attach_response`) and start working."""
        self.session.send_performative(attach if attach is not None else self.attach_response())
        self.attached = True
        self.on_attached()

    def refuse(self, condition: str, description: str) -> None:
        """Answer the attach with a null terminus and detach it at once, as Service Bus refuses links.

        A null source (or target, for a client sender) tells the client no terminus was created; the
        detach that follows carries the reason the SDK turns into an exception.
        """
        self.session.send_performative(self._null_attach())
        self.attached = True
        self.detach(Error(condition, description, {}))

    def on_attached(self) -> None:
        """Called once our attach is on its way."""

    # -- detach ------------------------------------------------------------------------------

    def detach(self, error: Error | None = None, *, closed: bool = True) -> None:
        """Detach from our side (an error, a lost session lock, shutdown)."""
        if self.detached:
            return
        if error is not None:
            log.debug(
                "link %r detached by the broker: %s %s", self.name, error.condition, error.description or ""
            )
        self.detached = True
        if self.attached:
            self.session.send_performative(Detach(handle=self.handle, closed=closed, error=error))
        self.session.forget_link(self)
        self.on_detached()

    def on_remote_detach(self, detach: Detach) -> None:
        """The client detached: answer in kind unless we already did."""
        if self.detached:
            return
        self.detached = True
        if not self.attached:
            # Still pending (a session receiver waiting for a session): complete the handshake
            # with an empty terminus so the client's detach gets its answer.
            self.session.send_performative(self._null_attach())
            self.attached = True
        self.session.send_performative(Detach(handle=self.handle, closed=detach.closed))
        self.session.forget_link(self)
        self.on_detached()

    def _null_attach(self) -> Attach:
        remote = self.remote_attach
        if self.role == Role.SENDER:
            return Attach(
                name=self.name, handle=self.handle, role=self.role, source=None, target=remote.target
            )
        return Attach(name=self.name, handle=self.handle, role=self.role, source=remote.source, target=None)

    def on_detached(self) -> None:
        """Called exactly once when the link is gone for any reason (detach, end, close, drop)."""

    def on_flow(self, flow: Flow) -> None:
        """A link-level flow for this link."""

    def send_flow(self, **fields: Any) -> None:
        self.session.send_link_flow(self, **fields)


class OutgoingLink(Link):
    """The broker is the sender: credit comes from the client, deliveries go out as transfers.

    Credit follows the spec formula (part 2, 2.6.7): the client's ``delivery-count + link-credit``
    minus ours; restated flows therefore never add up. :meth:`pump` is called whenever sending may
    have become possible (credit arrived, the session window opened, the transport drained).
    """

    role = Role.SENDER

    def __init__(self, session: Session, attach: Attach) -> None:
        super().__init__(session, attach)
        self.delivery_count = 0
        self.credit = 0
        self.drain = False
        self.settle_mode = attach.snd_settle_mode

    @property
    def pre_settled(self) -> bool:
        """Whether the client asked for settled deliveries (receive-and-delete)."""
        return self.settle_mode == SenderSettleMode.SETTLED

    def attach_response(self) -> Attach:
        base = super().attach_response()
        return Attach(
            name=base.name,
            handle=base.handle,
            role=base.role,
            snd_settle_mode=base.snd_settle_mode,
            rcv_settle_mode=base.rcv_settle_mode,
            source=base.source,
            target=base.target,
            initial_delivery_count=self.delivery_count,
            max_message_size=self.max_message_size(),
            properties=self.attach_properties(),
        )

    def max_message_size(self) -> int | None:
        return None

    def attach_properties(self) -> dict[Any, Any] | None:
        return None

    def on_flow(self, flow: Flow) -> None:
        if flow.link_credit is None:
            if flow.echo:
                self.send_state()
            return
        count = flow.delivery_count if flow.delivery_count is not None else 0
        self.credit = max(0, count + flow.link_credit - self.delivery_count)
        self.drain = flow.drain
        if self.attached and not self.detached:
            self.pump()
        if self.drain and self.attached and not self.detached:
            self.finish_drain()
        elif flow.echo:
            self.send_state()

    def finish_drain(self) -> None:
        """Use up the remaining credit without sending, and say so (part 2, 2.6.7 drain)."""
        self.delivery_count += self.credit
        self.credit = 0
        self.drain = False
        self.send_state(drain=True)

    def send_state(self, *, drain: bool = False) -> None:
        self.send_flow(delivery_count=self.delivery_count, link_credit=self.credit, drain=drain, available=0)

    def can_send(self) -> bool:
        return self.credit > 0 and not self.detached and self.attached and self.session.can_send()

    def send_delivery(
        self,
        tag: bytes,
        payload: bytes,
        *,
        settled: bool,
        message_format: int = 0,
        context: Any = None,
    ) -> int:
        """Send one delivery (split into frames as needed); returns its delivery-id.

        An unsettled delivery is remembered with ``context`` until the client's disposition arrives,
        which then reaches :meth:`on_disposition`.
        """
        delivery_id = self.session.send_transfer(
            self, tag, payload, settled=settled, message_format=message_format, context=context
        )
        self.delivery_count += 1
        self.credit = max(0, self.credit - 1)
        return delivery_id

    def pump(self) -> None:
        """Send whatever is available within the current credit."""

    def on_disposition(self, delivery_id: int, context: Any, state: Any, settled: bool) -> None:
        """The client settled (or updated) one of our deliveries."""


class IncomingLink(Link):
    """The broker is the receiver: we grant credit and reassemble multi-frame deliveries.

    The broker always settles first (rcv-settle-mode first): pyamqp ignores unsettled dispositions on
    its sender links, so honouring ``second`` would hang every send.
    """

    role = Role.RECEIVER

    def __init__(self, session: Session, attach: Attach, *, credit: int = DEFAULT_INCOMING_CREDIT) -> None:
        super().__init__(session, attach)
        self.window = credit
        self.credit = 0
        self.delivery_count = attach.initial_delivery_count or 0
        self._first: Transfer | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._settled = False

    def attach_response(self) -> Attach:
        base = super().attach_response()
        return Attach(
            name=base.name,
            handle=base.handle,
            role=base.role,
            snd_settle_mode=base.snd_settle_mode,
            rcv_settle_mode=ReceiverSettleMode.FIRST,
            source=base.source,
            target=base.target,
            max_message_size=self.max_message_size(),
            properties=self.attach_properties(),
        )

    def max_message_size(self) -> int | None:
        return None

    def attach_properties(self) -> dict[Any, Any] | None:
        return None

    def on_attached(self) -> None:
        self.grant()

    def grant(self) -> None:
        self.credit = self.window
        self.send_flow(delivery_count=self.delivery_count, link_credit=self.credit)

    def on_flow(self, flow: Flow) -> None:
        if flow.delivery_count is not None:
            # The sender may advance its count (drain); our credit is relative to it.
            consumed = flow.delivery_count - self.delivery_count
            if consumed > 0:
                self.delivery_count = flow.delivery_count
                self.credit = max(0, self.credit - consumed)
        if flow.echo or flow.drain or self.credit < self.window // 2:
            self.grant()

    def on_transfer(self, transfer: Transfer, payload: bytes) -> None:
        if self._first is None:
            self._first = transfer
            self._chunks = []
            self._size = 0
            self._settled = bool(transfer.settled)
        elif transfer.settled:
            self._settled = True
        if transfer.aborted:
            self._first = None
            self._chunks = []
            return
        self._chunks.append(payload)
        self._size += len(payload)
        if self._size > MAX_DELIVERY_BYTES:
            self._first = None
            self._chunks = []
            self.detach(
                Error(
                    "amqp:link:message-size-exceeded", f"deliveries are limited to {MAX_DELIVERY_BYTES}", {}
                )
            )
            return
        if transfer.more:
            return
        first = self._first
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._first = None
        self._chunks = []
        self.delivery_count += 1
        self.credit -= 1
        if self.credit < self.window // 2:
            self.grant()
        state = self.on_delivery(first, data)
        if state is not None and not self._settled and first.delivery_id is not None:
            self.session.settle_incoming(first.delivery_id, state)

    def on_delivery(self, transfer: Transfer, data: bytes) -> Any:
        """Handle one complete delivery; return the outcome to settle it with (None: settle later)."""
        return None
