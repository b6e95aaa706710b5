"""Entity links: the client's senders into the broker and receivers out of it.

A sender link turns each delivery (or batch) into one broker send and settles it with the broker's
verdict. A receiver link pumps deliveries out of the broker within the credit and the connection's
write budget, waits for a free session when a next-available session receiver attaches, and maps
dispositions onto complete/abandon/defer/dead-letter. They live apart from the server so the
listener and routing code stays small; the server's namespace creates them and wakes them up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from typing import TYPE_CHECKING, Any

from .amqp.codec import DecodeError
from .amqp.link import IncomingLink, OutgoingLink
from .amqp.message import BATCH_MESSAGE_FORMAT, decode_message, split_batch
from .amqp.performatives import (
    Accepted,
    Attach,
    Error,
    Modified,
    Rejected,
    Released,
    SenderSettleMode,
    Source,
    Transfer,
)
from .amqp.session import Session
from .amqp.types import Long, Symbol
from .broker import BrokerError, EntityRef
from .broker.errors import SessionCannotBeLocked, SessionLockLost
from .nodes import dotnet_ticks, incoming_message, stamp_message

if TYPE_CHECKING:
    from .server import _Namespace

__all__ = ["PUMP_BATCH", "SESSION_FILTER", "EntityReceiverLink", "EntitySenderLink"]

log = logging.getLogger("dtf_sb.emulator")

SESSION_FILTER = "com.microsoft:session-filter"
#: Deliveries taken from the broker per pump; bounds the work done per event-loop turn.
PUMP_BATCH = 256


class EntitySenderLink(IncomingLink):
    """A client sender to a queue or topic: each delivery (or batch) is one broker send."""

    def __init__(self, session: Session, attach: Attach, namespace: _Namespace, ref: EntityRef) -> None:
        super().__init__(session, attach)
        self.namespace = namespace
        self.ref = ref

    def max_message_size(self) -> int | None:
        return self.ref.max_message_size

    def attach_properties(self) -> dict[Any, Any] | None:
        return {Symbol("com.microsoft:max-message-batch-size"): Long(self.ref.max_message_size)}

    def on_delivery(self, transfer: Transfer, data: bytes) -> Any:
        try:
            msg = decode_message(data)
            if transfer.message_format == BATCH_MESSAGE_FORMAT:
                messages = [incoming_message(decode_message(part)) for part in split_batch(msg)]
            else:
                messages = [incoming_message(msg)]
        except DecodeError as exc:
            return Rejected(Error("amqp:decode-error", f"the message could not be decoded: {exc}", {}))
        try:
            self.namespace.broker.send(self.ref.path, messages)
        except BrokerError as exc:
            return Rejected(Error(exc.condition, exc.message, {}))
        return Accepted()


class EntityReceiverLink(OutgoingLink):
    """A client receiver on a queue, subscription or dead-letter queue (optionally one session)."""

    def __init__(
        self,
        session: Session,
        attach: Attach,
        namespace: _Namespace,
        ref: EntityRef,
        *,
        session_filter: bool,
    ) -> None:
        super().__init__(session, attach)
        self.namespace = namespace
        self.ref = ref
        self.mode = (
            "receive_and_delete" if attach.snd_settle_mode == SenderSettleMode.SETTLED else "peek_lock"
        )
        self.session_filter = session_filter
        self.session_id: str | None = None
        self.locked_until: float | None = None
        self._wait: asyncio.TimerHandle | None = None
        self._message_size = 1024 * 1024
        """Estimate of the next message's size (up at once, down gently) to fit batches to the budget."""

    # -- attach ------------------------------------------------------------------------------

    def max_message_size(self) -> int | None:
        return max(self.ref.max_message_size, 1024 * 1024)

    def attach_response(self) -> Attach:
        response = super().attach_response()
        if self.session_id is None:
            return response
        source = self.remote_attach.source or Source()
        filters = dict(source.filter or {})
        filters[Symbol(SESSION_FILTER)] = self.session_id
        return dataclasses.replace(
            response,
            source=dataclasses.replace(source, filter=filters),
            properties={Symbol("com.microsoft:locked-until-utc"): Long(dotnet_ticks(self.locked_until or 0))},
        )

    def start(self) -> None:
        """Open now, or (next-available session with none free) wait for one."""
        if not self.session_filter:
            self.open()
            return
        source = self.remote_attach.source
        wanted = (source.filter or {}).get(SESSION_FILTER) if source is not None else None
        if wanted is not None and not isinstance(wanted, str):
            wanted = str(wanted)
        if not self.try_lock(wanted):
            if wanted is not None:
                return
            props = self.remote_attach.properties or {}
            timeout_ms = props.get("com.microsoft:timeout")
            wait = timeout_ms / 1000.0 if isinstance(timeout_ms, int) else self.namespace.session_wait
            log.debug("link %r waits up to %.1fs for a session of %s", self.name, wait, self.ref.path)
            self.namespace.session_waiters.setdefault(self.ref.path.lower(), []).append(self)
            self._wait = asyncio.get_running_loop().call_later(wait, self._session_timeout)

    def try_lock(self, session_id: str | None) -> bool:
        """Try to accept the session; open the link on success. False: keep waiting (or refused)."""
        try:
            lock = self.namespace.broker.accept_session(self.ref.path, session_id, self)
        except SessionCannotBeLocked as exc:
            self.refuse(exc.condition, exc.message)
            return False
        except BrokerError as exc:
            self.refuse(exc.condition, exc.message)
            return False
        if lock is None:
            return False
        self.session_id = lock.session_id
        self.locked_until = lock.locked_until
        self._cancel_wait()
        log.debug("link %r locked session %r of %s", self.name, lock.session_id, self.ref.path)
        self.open()
        return True

    def _session_timeout(self) -> None:
        self._wait = None
        self._unlist()
        if not self.detached and not self.attached:
            self.refuse("com.microsoft:timeout", "No session was available within the requested timeout")
            self.session.connection.flush()

    def _cancel_wait(self) -> None:
        if self._wait is not None:
            self._wait.cancel()
            self._wait = None
        self._unlist()

    def _unlist(self) -> None:
        waiters = self.namespace.session_waiters.get(self.ref.path.lower())
        if waiters is not None and self in waiters:
            waiters.remove(self)

    def on_attached(self) -> None:
        self.namespace.receivers.setdefault(self.ref.path.lower(), set()).add(self)
        if self.credit > 0:
            # Credit granted while a session attach was still pending.
            self.pump()

    def on_detached(self) -> None:
        self._cancel_wait()
        receivers = self.namespace.receivers.get(self.ref.path.lower())
        if receivers is not None:
            receivers.discard(self)
        if self.session_id is not None:
            with contextlib.suppress(BrokerError):
                self.namespace.broker.release_session(self.ref.path, self.session_id, self)

    # -- delivering --------------------------------------------------------------------------

    def pump(self) -> None:
        broker = self.namespace.broker
        while self.can_send():
            if self.session_filter and self.session_id is None:
                return
            # Take no more than the socket can absorb: a locked message that cannot be written
            # would sit in memory with its lock running.
            affordable = max(1, self.session.connection.write_budget // self._message_size)
            try:
                batch = broker.receive(
                    self.ref.path,
                    max_count=min(self.credit, PUMP_BATCH, affordable),
                    mode=self.mode,  # type: ignore[arg-type]
                    session_id=self.session_id,
                    owner=self,
                )
            except SessionLockLost as exc:
                self.detach(Error(exc.condition, exc.message, {}))
                return
            except BrokerError as exc:
                self.detach(Error(exc.condition, exc.message, {}))
                return
            if not batch:
                return
            settled = self.pre_settled or self.mode == "receive_and_delete"
            for msg in batch:
                token = msg.lock_token
                payload = stamp_message(msg, lock_token=token)
                self._message_size = max(len(payload), self._message_size * 3 // 4, 1)
                tag = token.bytes_le if token is not None else msg.sequence_number.to_bytes(8, "big")
                self.send_delivery(tag, payload, settled=settled, context=token)

    def on_disposition(self, delivery_id: int, context: Any, state: Any, settled: bool) -> None:
        token: uuid.UUID | None = context
        if token is None or state is None:
            return
        broker = self.namespace.broker
        path = self.ref.path
        echo: Any = state
        try:
            if isinstance(state, Accepted):
                broker.complete(path, token)
            elif isinstance(state, Released):
                broker.release(path, token)
            elif isinstance(state, Modified):
                props = {str(k): v for k, v in (state.message_annotations or {}).items()}
                if state.undeliverable_here:
                    broker.defer(path, token, props or None)
                else:
                    broker.abandon(path, token, props or None)
            elif isinstance(state, Rejected):
                info = (state.error.info if state.error is not None else None) or {}
                reason = info.get("DeadLetterReason")
                description = info.get("DeadLetterErrorDescription")
                if description is None and state.error is not None:
                    description = state.error.description
                broker.dead_letter(
                    path,
                    token,
                    None if reason is None else str(reason),
                    None if description is None else str(description),
                )
                echo = Rejected()
            else:
                return
        except BrokerError as exc:
            echo = Rejected(Error(exc.condition, exc.message, {}))
        if not settled:
            self.session.echo_settlement(delivery_id, echo)
