"""One AMQP 1.0 client connection: protocol headers, SASL, open/close, heartbeats, sessions.

The connection owns the socket. Frames are decoded as they arrive and dispatched synchronously, and
everything the broker writes while handling them (or later, when a waiting receiver is woken) is
collected and written in one ``write`` per burst, so a batch of deliveries costs one system call.
When the transport's buffer fills up, outgoing links stop pulling messages until it drains again.

A malformed frame closes only this connection with ``amqp:decode-error``; the server keeps serving
everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any, Protocol

from .codec import DecodeError
from .frames import (
    AMQP_HEADER,
    EMPTY_FRAME,
    FRAME_TYPE_SASL,
    SASL_HEADER,
    Frame,
    FrameDecoder,
    ProtocolHeader,
    ProtocolHeaderError,
    encode_frame,
)
from .performatives import (
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Open,
    SaslCode,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Transfer,
)
from .session import Session, frame

__all__ = ["Connection", "ConnectionHandler"]

log = logging.getLogger("dtf_sb.emulator")

#: What the broker accepts per frame; pyamqp asks for 1 MiB too, so a 1 MiB message fits in one frame.
DEFAULT_MAX_FRAME_SIZE = 1024 * 1024
#: Stop producing deliveries while this many bytes wait for the socket.
WRITE_HIGH_WATER = 4 * 1024 * 1024
_READ_SIZE = 256 * 1024
_ids = itertools.count(1)


class ConnectionHandler(Protocol):
    """What the server plugs into a connection: link creation, SASL PLAIN and teardown."""

    def attach(self, session: Session, attach: Attach) -> None:
        """Create the broker's end of a link the client attached (or refuse it)."""

    def check_plain(self, username: str, password: str) -> bool:
        """Whether SASL PLAIN credentials are a valid key name and key."""

    def closed(self, connection: Connection) -> None:
        """The connection is gone; release whatever it held."""

    def after_burst(self, connection: Connection) -> None:
        """Everything read so far has been handled (a good moment to re-arm timers)."""


class Connection:
    """The server side of one TCP connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: ConnectionHandler,
        *,
        container_id: str = "dtf-sb-emulator",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        channel_max: int = 4999,
    ) -> None:
        self.id = next(_ids)
        self.reader = reader
        self.writer = writer
        self.handler = handler
        self.container_id = container_id
        self.max_frame_size = max_frame_size
        self.channel_max = channel_max
        self.peer_max_frame_size = 512
        self.peer_container_id: str | None = None
        self.peer_hostname: str | None = None
        self.sasl_username: str | None = None
        """Key name a SASL PLAIN login proved; None for ANONYMOUS (authorisation then comes from CBS)."""
        self.context: dict[str, Any] = {}
        """Per-connection state of the server (CBS tokens, ...)."""
        self.sessions: dict[int, Session] = {}
        self._by_local: dict[int, Session] = {}
        self._decoder = FrameDecoder(max_frame_size)
        self._stage = "header"
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._flush_pending = False
        self._draining = False
        self._starved = False
        self._closed = False
        self._opened = False
        self._heartbeat: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until the peer goes away or the connection is closed."""
        log.debug("connection %d from %s accepted", self.id, self.peer)
        try:
            while not self._closed:
                data = await self.reader.read(_READ_SIZE)
                if not data:
                    break
                self.feed(data)
                self.handler.after_burst(self)
                self.flush()
                if not self.writable and not self._closed:
                    await self._drain()
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
            log.debug("connection %d: transport error %r", self.id, exc)
        finally:
            self._teardown()

    def feed(self, data: bytes) -> None:
        """Decode and handle bytes from the peer."""
        try:
            items = self._decoder.feed(data)
        except ProtocolHeaderError as exc:
            log.debug("connection %d: bad protocol header: %s", self.id, exc.reason)
            self.write(exc.supported)
            self.abort(graceful=True)
            return
        except DecodeError as exc:
            self.close(Error("amqp:decode-error", str(exc), {}))
            return
        for item in items:
            if self._closed:
                return
            try:
                if isinstance(item, ProtocolHeader):
                    self._on_header(item)
                else:
                    self._on_frame(item)
            except DecodeError as exc:
                self.close(Error("amqp:decode-error", str(exc), {}))
                return

    # -- protocol header and SASL -----------------------------------------------------------

    def _on_header(self, header: ProtocolHeader) -> None:
        if header.is_sasl and self._stage == "header":
            self.write(SASL_HEADER)
            self.write(encode_frame(0, SaslMechanisms(("ANONYMOUS", "PLAIN", "MSSBCBS"))))
            self._stage = "sasl"
        elif not header.is_sasl and self._stage in ("header", "sasl-done"):
            self.write(AMQP_HEADER)
            self._stage = "open"
        else:
            self.write(SASL_HEADER if self._stage == "header" else AMQP_HEADER)
            self.abort(graceful=True)

    def _on_sasl(self, frame: Frame) -> None:
        init = frame.performative
        if self._stage != "sasl" or not isinstance(init, SaslInit):
            raise DecodeError(f"unexpected SASL frame {type(init).__name__}")
        mechanism = str(init.mechanism).upper()
        code = SaslCode.OK
        if mechanism == "PLAIN":
            response = init.initial_response or b""
            parts = response.split(b"\x00")
            username = parts[1].decode("utf-8", "replace") if len(parts) == 3 else ""
            password = parts[2].decode("utf-8", "replace") if len(parts) == 3 else ""
            if self.handler.check_plain(username, password):
                self.sasl_username = username
            else:
                code = SaslCode.AUTH
        elif mechanism not in ("ANONYMOUS", "MSSBCBS", "EXTERNAL"):
            code = SaslCode.AUTH
        log.debug(
            "connection %d: SASL %s -> %s", self.id, mechanism, "ok" if code == SaslCode.OK else "refused"
        )
        self.write(encode_frame(0, SaslOutcome(code=code)))
        if code == SaslCode.OK:
            self._stage = "sasl-done"
        else:
            self.abort(graceful=True)

    # -- AMQP frames -------------------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        if frame.frame_type == FRAME_TYPE_SASL:
            self._on_sasl(frame)
            return
        p = frame.performative
        if p is None:
            return  # heartbeat
        if self._stage != "open":
            raise DecodeError(f"{type(p).__name__} before the AMQP protocol header")
        if isinstance(p, Transfer):
            session = self.sessions.get(frame.channel)
            if session is not None:
                session.on_transfer(p, frame.payload)
            return
        if isinstance(p, Disposition):
            session = self.sessions.get(frame.channel)
            if session is not None:
                session.on_disposition(p)
            return
        if isinstance(p, Flow):
            session = self.sessions.get(frame.channel)
            if session is not None:
                session.on_flow(p)
            return
        if isinstance(p, Open):
            self._on_open(p)
        elif not self._opened:
            raise DecodeError(f"{type(p).__name__} before open")
        elif isinstance(p, Begin):
            self._on_begin(frame.channel, p)
        elif isinstance(p, Attach):
            session = self.sessions.get(frame.channel)
            if session is not None:
                session.on_attach(p)
        elif isinstance(p, Detach):
            session = self.sessions.get(frame.channel)
            if session is not None:
                session.on_detach(p)
        elif isinstance(p, End):
            session = self.sessions.pop(frame.channel, None)
            if session is not None:
                self._by_local.pop(session.channel, None)
                session.end()
        elif isinstance(p, Close):
            log.debug("connection %d: client closed%s", self.id, f" ({p.error.condition})" if p.error else "")
            self.close()

    def _on_open(self, open_: Open) -> None:
        if self._opened:
            raise DecodeError("open received twice")
        self._opened = True
        self.peer_container_id = open_.container_id
        self.peer_hostname = open_.hostname
        self.peer_max_frame_size = max(512, min(open_.max_frame_size, 1 << 31))
        log.debug(
            "connection %d: open container-id=%s hostname=%s max-frame-size=%d",
            self.id,
            open_.container_id,
            open_.hostname,
            self.peer_max_frame_size,
        )
        self.write(
            frame(
                0,
                Open(
                    container_id=self.container_id,
                    hostname=open_.hostname,
                    max_frame_size=self.max_frame_size,
                    channel_max=self.channel_max,
                ),
            )
        )
        if open_.idle_time_out:
            interval = max(0.05, open_.idle_time_out / 2000)
            self._heartbeat = self._loop.create_task(self._beat(interval))

    def _on_begin(self, channel: int, begin: Begin) -> None:
        if channel in self.sessions:
            raise DecodeError(f"channel {channel} is already in use")
        local = channel if channel not in self._by_local else self._free_channel()
        session = Session(self, local, channel, begin)
        self.sessions[channel] = session
        self._by_local[local] = session
        session.send_performative(session.begin_response())
        log.debug("connection %d: session begun on channel %d", self.id, channel)

    def _free_channel(self) -> int:
        channel = 0
        while channel in self._by_local:
            channel += 1
        return channel

    async def _beat(self, interval: float) -> None:
        while not self._closed:
            await asyncio.sleep(interval)
            self.write(EMPTY_FRAME)

    # -- output ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes for the socket; they go out together at the end of the current burst."""
        if self._closed:
            return
        self._out.append(data)
        self._out_bytes += len(data)
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        if not self._out or (self._closed and self.writer.is_closing()):
            self._out.clear()
            self._out_bytes = 0
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_bytes = 0
        try:
            self.writer.write(data)
        except (ConnectionError, RuntimeError):
            self.abort()
            return
        if self.write_budget <= 0:
            if not self._draining:
                self._draining = True
                self._loop.create_task(self._drain())
        elif self._starved:
            # The kernel took what was queued: links that stopped for the budget may go on.
            self._starved = False
            self._loop.call_soon(self._pump_sessions)

    @property
    def write_budget(self) -> int:
        """Bytes outgoing links may still produce before backpressure stops them."""
        if self._closed:
            return 0
        return max(0, WRITE_HIGH_WATER - self._out_bytes - self.writer.transport.get_write_buffer_size())

    @property
    def writable(self) -> bool:
        """Whether outgoing links may produce more deliveries now (backpressure)."""
        if self.write_budget > 0:
            return True
        # Someone wanted to send and could not: pump again once the socket takes the bytes.
        self._starved = True
        return False

    async def _drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            self.abort()
            return
        finally:
            self._draining = False
        self._starved = False
        self._pump_sessions()

    def _pump_sessions(self) -> None:
        for session in list(self.sessions.values()):
            session.pump()

    # -- shutdown ----------------------------------------------------------------------------

    def close(self, error: Error | None = None) -> None:
        """Send close (with the reason) and drop the socket."""
        if self._closed:
            return
        if error is not None:
            log.debug(
                "connection %d closed by the broker: %s %s", self.id, error.condition, error.description
            )
        if self._opened or error is None:
            self.write(frame(0, Close(error=error)))
        else:
            # A failure before open: the spec still wants an open before a close.
            self.write(frame(0, Open(container_id=self.container_id)))
            self.write(frame(0, Close(error=error)))
        self.flush()
        self._closed = True
        with contextlib.suppress(Exception):
            self.writer.close()
        self._teardown()

    def abort(self, *, graceful: bool = False) -> None:
        """Drop the socket without a close frame.

        ``graceful`` lets what is already written (a protocol header, a SASL outcome) reach the
        peer first; otherwise the socket is reset at once, as when a broker goes down.
        """
        if not self._closed:
            self.flush()
        self._closed = True
        with contextlib.suppress(Exception):
            if graceful:
                self.writer.close()
            else:
                self.writer.transport.abort()
        self._teardown()

    def _teardown(self) -> None:
        if getattr(self, "_torn_down", False):
            return
        self._torn_down = True
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for session in list(self.sessions.values()):
            session.end(reply=False)
        self.sessions.clear()
        self._by_local.clear()
        with contextlib.suppress(Exception):
            self.writer.close()
        log.debug("connection %d from %s closed", self.id, self.peer)
        self.handler.closed(self)

    @property
    def closed(self) -> bool:
        return self._closed
