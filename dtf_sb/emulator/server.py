"""The emulator server: a Service Bus namespace behind an asyncio AMQP listener.

:class:`Emulator` owns the broker, the TCP listener, the optional ``/health`` endpoint and the
timer that drives the broker's clock. Links the clients attach are routed here: ``$cbs`` and
``<entity>/$management`` to the request/response nodes, everything else to entity links that send
into the broker or deliver out of it (:mod:`.entity_links`). Receivers never poll: the broker's
availability listener marks entities dirty, and one callback per loop iteration pumps the receivers
waiting on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from .amqp.connection import DEFAULT_MAX_FRAME_SIZE, Connection
from .amqp.link import IncomingLink, Link, OutgoingLink
from .amqp.performatives import Attach, Error, Role, Source, Target
from .amqp.session import Session
from .auth import Grants, resource_path
from .broker import Broker, Clock, SystemClock
from .broker.errors import EntityNotFound, SessionLockLost
from .config import EmulatorConfig, load_config, parse_config
from .entity_links import SESSION_FILTER, EntityReceiverLink, EntitySenderLink
from .nodes import CbsNode, ManagementNode, NodeReplyLink, NodeRequestLink

__all__ = ["DEFAULT_SAS_KEY", "DEFAULT_SAS_KEY_NAME", "Emulator"]

log = logging.getLogger("dtf_sb.emulator")

DEFAULT_SAS_KEY_NAME = "RootManageSharedAccessKey"
DEFAULT_SAS_KEY = "SAS_KEY_VALUE"
#: How long a next-available session attach waits without com.microsoft:timeout (Service Bus: ~60 s).
DEFAULT_SESSION_WAIT = 60.0


# ---------------------------------------------------------------------------------- namespace


class _Namespace:
    """Routes links and requests of every connection to the broker; one per emulator."""

    def __init__(
        self,
        broker: Broker,
        keys: Mapping[str, str],
        *,
        clock: Clock,
        session_wait: float,
    ) -> None:
        self.broker = broker
        self.keys = dict(keys)
        self.clock = clock
        self.session_wait = session_wait
        self.cbs = CbsNode(self.keys, now=clock.now)
        self.management = ManagementNode(broker)
        self.receivers: dict[str, set[EntityReceiverLink]] = {}
        self.session_waiters: dict[str, list[EntityReceiverLink]] = {}
        self.connections: set[Connection] = set()
        self._dirty: dict[str, set[str | None]] = {}
        self._pump_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        broker.add_listener(self._on_available)
        broker.add_session_lost_listener(self._on_session_lost)

    # -- connection handler ------------------------------------------------------------------

    def check_plain(self, username: str, password: str) -> bool:
        key = self.keys.get(username)
        return key is not None and key == password

    def closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.broker.release_owner(connection)
        self.reschedule()

    def after_burst(self, connection: Connection) -> None:
        self.reschedule()

    def grants(self, connection: Connection) -> Grants:
        grants = connection.context.get("grants")
        if grants is None:
            grants = Grants(everything=connection.sasl_username is not None)
            connection.context["grants"] = grants
        return grants

    def attach(self, session: Session, attach: Attach) -> None:
        client_sends = attach.role == Role.SENDER
        terminus = attach.target if client_sends else attach.source
        if terminus is not None and not isinstance(terminus, (Source, Target)):
            # A transaction coordinator (or another terminus type): the SDKs never need one.
            odd: Link = (
                _RefusedIncoming(session, attach) if client_sends else _RefusedOutgoing(session, attach)
            )
            session.register(odd)
            odd.refuse("amqp:not-implemented", "Transactions are not supported by the emulator")
            return
        address = terminus.address if terminus is not None else None
        path = resource_path(address or "")
        log.debug(
            "connection %d: attach %r %s %s",
            session.connection.id,
            attach.name,
            "sender to" if client_sends else "receiver from",
            address,
        )
        link: Link
        if path == "$cbs":
            link = (
                NodeRequestLink(session, attach, self.handle_request, "$cbs")
                if client_sends
                else NodeReplyLink(session, attach, "$cbs")
            )
            session.register(link)
            link.open()
            return
        if path.endswith("/$management"):
            entity = path[: -len("/$management")]
            node = f"{entity}/$management"
            link = (
                NodeRequestLink(session, attach, self.handle_request, node)
                if client_sends
                else NodeReplyLink(session, attach, node)
            )
            session.register(link)
            error = self._check_entity(session.connection, entity)
            if error is not None:
                link.refuse(*error)
                return
            link.open()
            return
        try:
            ref = self.broker.resolve(path)
        except EntityNotFound as exc:
            ref = None
            error: tuple[str, str] | None = (exc.condition, exc.message)
        else:
            error = self._check_entity(session.connection, ref.path)
        if client_sends:
            if ref is not None and error is None and not ref.sendable:
                error = ("amqp:not-allowed", f"Cannot send to {ref.path}: send to a queue or topic")
            if ref is not None and error is None:
                sender = EntitySenderLink(session, attach, self, ref)
                session.register(sender)
                sender.open()
                return
            refused_sender = _RefusedIncoming(session, attach)
            session.register(refused_sender)
            refused_sender.refuse(*(error or ("amqp:internal-error", "unroutable")))
            return
        source = attach.source
        filters = source.filter if source is not None and source.filter else {}
        session_filter = SESSION_FILTER in filters
        if ref is not None and error is None:
            if not ref.receivable:
                error = ("amqp:not-allowed", f"Cannot receive from topic {ref.path}: use a subscription")
            elif ref.requires_session and not session_filter:
                error = (
                    "amqp:not-allowed",
                    f"{ref.path} requires sessions: use a session receiver",
                )
            elif session_filter and not ref.requires_session:
                error = ("amqp:not-allowed", f"{ref.path} is not session-enabled")
        if ref is None or error is not None:
            refused = _RefusedOutgoing(session, attach)
            session.register(refused)
            refused.refuse(*(error or ("amqp:internal-error", "unroutable")))
            return
        receiver = EntityReceiverLink(session, attach, self, ref, session_filter=session_filter)
        session.register(receiver)
        receiver.start()

    def _check_entity(self, connection: Connection, path: str) -> tuple[str, str] | None:
        try:
            ref = self.broker.resolve(path)
        except EntityNotFound as exc:
            return (exc.condition, exc.message)
        if not self.grants(connection).allows(ref.entity, self.clock.now()) and not self.grants(
            connection
        ).allows(ref.path, self.clock.now()):
            return (
                "amqp:unauthorized-access",
                f"Unauthorized access to '{ref.path}': put a valid token for it on $cbs first",
            )
        return None

    # -- requests ----------------------------------------------------------------------------

    def handle_request(self, link: NodeRequestLink, request: Any) -> Any:
        connection = link.session.connection
        if link.node == "$cbs":
            return self.cbs.handle(request, self.grants(connection))
        entity = link.node[: -len("/$management")]

        def owners(path: str, session_id: str, link_name: str | None) -> Any:
            return self._session_owner(connection, path, session_id, link_name)

        try:
            ref = self.broker.resolve(entity)
        except EntityNotFound:
            return self.management.handle(entity, request, owners)
        return self.management.handle(ref.path, request, owners)

    def _session_owner(
        self, connection: Connection, path: str, session_id: str, link_name: str | None
    ) -> Any:
        """The receiver on this connection holding the session; management calls act on its behalf."""
        candidates = [
            link
            for link in self.receivers.get(path.lower(), ())
            if link.session.connection is connection
            and link.session_id is not None
            and link.session_id.lower() == (session_id or "").lower()
        ]
        for link in candidates:
            if link_name is None or link.name == link_name:
                return link
        if candidates:
            return candidates[0]
        return connection

    # -- wake-ups ----------------------------------------------------------------------------

    def _on_available(self, path: str, session_id: str | None) -> None:
        self._dirty.setdefault(path.lower(), set()).add(session_id)
        if not self._pump_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # broker used before the server runs; start() pumps what is pending
            self._pump_scheduled = True
            loop.call_soon(self._pump_dirty)

    def _on_session_lost(self, path: str, session_id: str, owner: Any) -> None:
        if isinstance(owner, EntityReceiverLink) and not owner.detached:
            owner.session_id = None
            owner.detach(
                Error(SessionLockLost.condition, f"The session lock for {session_id!r} has expired", {})
            )
            owner.session.connection.flush()

    def _pump_dirty(self) -> None:
        self._pump_scheduled = False
        dirty, self._dirty = self._dirty, {}
        touched: set[Connection] = set()
        for key, session_ids in dirty.items():
            for waiter in list(self.session_waiters.get(key, ())):
                if waiter.detached or waiter.attached:
                    waiter._unlist()
                    continue
                waiter.try_lock(None)
                touched.add(waiter.session.connection)
            for link in list(self.receivers.get(key, ())):
                if link.credit <= 0 or link.detached:
                    continue
                if (
                    link.session_id is not None
                    and None not in session_ids
                    and not any(s is not None and s.lower() == link.session_id.lower() for s in session_ids)
                ):
                    continue
                connection = link.session.connection
                try:
                    link.pump()
                except Exception:
                    log.exception("delivering on link %r failed", link.name)
                    connection.close(Error("amqp:internal-error", "the emulator hit an internal error", {}))
                touched.add(connection)
        for connection in touched:
            connection.flush()
        self.reschedule()

    def reschedule(self) -> None:
        """Arm the timer for the broker's next deadline (lock expiry, schedule, TTL)."""
        deadline = self.broker.next_deadline()
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None
        if deadline is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        delay = max(0.0, deadline - self.clock.now())
        self._timer_at = deadline
        self._timer = loop.call_later(delay + 0.001, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.broker.tick()
        self.reschedule()

    def resume(self) -> None:
        """Serving (again): arm the timer and deliver what became available meanwhile."""
        self.reschedule()
        if self._dirty and not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump_dirty)

    def shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None


class _RefusedIncoming(IncomingLink):
    """Stands in for a client sender the broker refuses; it only lives for the attach/detach pair."""


class _RefusedOutgoing(OutgoingLink):
    """Stands in for a client receiver the broker refuses."""


# ---------------------------------------------------------------------------------- emulator


def _load(config: Any) -> EmulatorConfig:
    if config is None:
        return parse_config({"Queues": [], "Topics": []})
    if isinstance(config, EmulatorConfig):
        return config
    if isinstance(config, (str, os.PathLike)):
        return load_config(config)
    if isinstance(config, Mapping):
        return parse_config(config)
    if isinstance(config, Iterable):
        return parse_config(list(config))
    raise TypeError(f"unsupported emulator config {type(config).__name__}")


class Emulator:
    """An embedded Service Bus namespace on a local TCP port.

    ``config`` is a path to an official-emulator Config.json, its parsed dict, a list of
    ``QueueProperties``/``TopicProperties`` (or Config.json entity objects), an ``EmulatorConfig``,
    or None for a namespace without entities. The broker state lives as long as this object:
    :meth:`stop` drops every connection and refuses new ones, :meth:`restart` serves again on the
    same port with every message, lock and session state kept, as after a broker restart.
    """

    def __init__(
        self,
        config: Any = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        health_port: int | None = None,
        namespace: str | None = None,
        sas_key_name: str = DEFAULT_SAS_KEY_NAME,
        sas_key: str = DEFAULT_SAS_KEY,
        extra_keys: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        session_wait: float = DEFAULT_SESSION_WAIT,
    ) -> None:
        self.config = _load(config)
        self.host = host
        self.port = port
        self.health_port = health_port
        self.namespace = namespace or self.config.namespace
        self.sas_key_name = sas_key_name
        self.sas_key = sas_key
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.max_frame_size = max_frame_size
        self.broker = Broker(self.config.entities, clock=self.clock)
        keys = {sas_key_name: sas_key, **(extra_keys or {})}
        self._ns = _Namespace(self.broker, keys, clock=self.clock, session_wait=session_wait)
        self._server: asyncio.Server | None = None
        self._health: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Emulator:
        """Listen (again); with ``port=0`` the first start picks a free port and keeps it."""
        if self._closed:
            raise RuntimeError("the emulator has been closed")
        if self._server is not None:
            return self
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        sockets = self._server.sockets or ()
        if sockets:
            self.port = sockets[0].getsockname()[1]
        if self.health_port is not None and self._health is None:
            self._health = await asyncio.start_server(self._serve_health, self.host, self.health_port)
            hsockets = self._health.sockets or ()
            if hsockets:
                self.health_port = hsockets[0].getsockname()[1]
        self._ns.resume()
        log.info(
            "Service Bus emulator listening on %s:%d (namespace %s)", self.host, self.port, self.namespace
        )
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection; the broker's state is kept for :meth:`restart`."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for connection in list(self._ns.connections):
            connection.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._ns.shutdown()
        log.info("Service Bus emulator on port %d stopped", self.port)

    async def restart(self) -> None:
        """A broker restart: connections drop, state survives, the same port serves again."""
        await self.stop()
        await self.start()

    async def close(self) -> None:
        """Stop for good, including the health endpoint."""
        await self.stop()
        self._closed = True
        health, self._health = self._health, None
        if health is not None:
            health.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(health.wait_closed(), 5)

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- addresses ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"sb://{self.host}:{self.port}"

    @property
    def connection_string(self) -> str:
        """What the Service Bus SDKs take; ``UseDevelopmentEmulator`` makes them skip TLS."""
        return (
            f"Endpoint={self.endpoint};SharedAccessKeyName={self.sas_key_name};"
            f"SharedAccessKey={self.sas_key};UseDevelopmentEmulator=true;"
        )

    @property
    def connections(self) -> int:
        """Open client connections (for tests of reconnect behaviour)."""
        return len(self._ns.connections)

    # -- serving -----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        connection = Connection(reader, writer, self._ns, max_frame_size=self.max_frame_size)
        self._ns.connections.add(connection)
        try:
            await connection.run()
        except asyncio.CancelledError:
            connection.abort()
        except Exception:
            log.exception("connection %d failed", connection.id)
            connection.close(Error("amqp:internal-error", "the emulator hit an internal error", {}))
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _serve_health(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """``GET /health`` as the official emulator answers it (port 5300 there)."""
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            line = request.split(b"\r\n", 1)[0].decode("latin-1").split()
            path = line[1] if len(line) >= 2 else "/"
            if len(line) >= 1 and line[0] in ("GET", "HEAD") and path.split("?")[0] == "/health":
                if self.running:
                    status, body = "200 OK", b'{"status":"healthy","message":"Service is healthy."}'
                else:
                    status, body = (
                        "503 Service Unavailable",
                        b'{"status":"unhealthy","message":"Service is stopped."}',
                    )
            else:
                status, body = "404 Not Found", b'{"status":"not found"}'
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode("latin-1")
            writer.write(head + (body if line and line[0] != "HEAD" else b""))
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
