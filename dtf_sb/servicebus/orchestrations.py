"""The orchestration dispatcher: sessions of the orchestrator queue in, committed episodes out.

Per accepted session (one orchestration instance): receive a batch in session order, load the
history from session state, drop what was already applied, run the orchestrator (replay plus the
new events) through the orchestration middleware, and commit the episode in the order
``_episode`` documents. While the session is held its lock is renewed.

After an episode the session is kept while more messages are immediately available, then for
``WorkerOptions.session_hold_seconds`` (or ``extended_session_idle_seconds``, if longer) waiting for
the next one: an activity result that comes back within the hold costs no new session accept. The
loaded history stays in memory meanwhile, so the next episode skips reading session state and
chunks; it replays as usual unless extended sessions also keep the orchestrator alive. Losing the
lock, an error or the hold ending simply drops that memory: the next episode on any worker reloads
from session state.

Failures: an undecodable message is dead-lettered (reason ``MalformedMessage``) and the rest of the
batch proceeds; an orchestrator this worker does not have abandons the batch after
``type_missing_backoff`` so another worker can take it (DTF TypeMissing); any other error abandons
the batch, and Service Bus redelivers it (dead-lettering after the maximum delivery count).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..core.codec import decode_task_message
from ..core.errors import OrchestratorNotRegisteredError
from ..core.executor import OrchestrationExecutor
from ..core.history import EventRaisedEvent
from ..core.messages import TaskMessage
from ..middleware import DispatchMiddleware
from ..options import TaskHubOptions, WorkerOptions
from ._decide import UNLOADED, EpisodeDecider, HeldSession
from ._episode import ConfirmedTracking, EpisodePlan, commit_episode
from ._loop import renew_session_lock_while
from ._outbound import Outbound
from ._senders import SenderPool
from ._sessions import SessionDispatcher
from .connection import ServiceBusConnection, redact
from .control import apply_rewinds, terminate_children
from .faults import FaultPoints
from .messages import MalformedMessageError, MessageEnvelope, PayloadStoreLike
from .session_state import SessionStateCodec

__all__ = ["OrchestrationDispatcher"]

_log = logging.getLogger("dtf_sb.servicebus.orchestrations")
_DRAIN_WAIT = 0.05


class _SessionIO:
    """``EpisodeIO`` on a locked session: sends through the pool, state and settlement on the receiver."""

    def __init__(self, receiver: Any, senders: SenderPool, messages: Sequence[Any]) -> None:
        self._receiver = receiver
        self._senders = senders
        self._messages = messages

    async def send(self, messages: Sequence[Outbound]) -> None:
        await self._senders.send(messages)

    async def set_state(self, data: bytes | None) -> None:
        await self._receiver.session.set_state(data)

    async def complete(self) -> None:
        for message in self._messages:
            await self._receiver.complete_message(message)


class OrchestrationDispatcher(SessionDispatcher):
    def __init__(
        self,
        *,
        options: TaskHubOptions,
        worker_options: WorkerOptions,
        connection: ServiceBusConnection,
        envelope: MessageEnvelope,
        payloads: PayloadStoreLike | None,
        executor: OrchestrationExecutor,
        middlewares: Sequence[DispatchMiddleware],
        faults: FaultPoints,
        senders: SenderPool | None = None,
        forget_start: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            name="orchestration-dispatcher",
            connection=connection,
            queue=options.orchestrator_queue,
            max_concurrent=worker_options.max_concurrent_orchestrations,
            accept_concurrency=worker_options.orchestration_accept_concurrency,
            max_accept_concurrency=worker_options.max_orchestration_accept_concurrency,
            receive_timeout=worker_options.receive_timeout,
            poll_interval=worker_options.receive_poll_interval,
            transient_backoff=worker_options.transient_backoff,
            max_backoff=worker_options.max_backoff,
            logger=_log,
        )
        self._options = options
        self._worker_options = worker_options
        self._envelope = envelope
        self._payloads = payloads
        self._codec = SessionStateCodec(options, payloads)
        self._executor = executor
        self._middlewares = middlewares
        self._faults = faults
        self._owns_senders = senders is None
        self._senders = senders if senders is not None else SenderPool(connection, envelope)
        self._confirmed = ConfirmedTracking()
        self._forget_start = forget_start
        self._background: set[asyncio.Task[None]] = set()
        self._decider = EpisodeDecider(
            options=options,
            codec=self._codec,
            executor=executor,
            middlewares=middlewares,
            confirmed=self._confirmed,
            keep_live=worker_options.extended_session_idle_seconds > 0,
        )
        self.episodes = 0

    async def stop(self, *, graceful: bool, timeout: float) -> None:
        await super().stop(graceful=graceful, timeout=timeout)
        if self._owns_senders:
            await self._senders.close()

    async def process_session(self, receiver: Any) -> None:
        session_id = str(receiver.session.session_id)
        held = HeldSession()
        hold = max(
            self._worker_options.session_hold_seconds, self._worker_options.extended_session_idle_seconds
        )
        async with renew_session_lock_while(
            receiver, self._options.lock_duration, what=f"instance {session_id}"
        ):
            messages = await receiver.receive_messages(
                max_message_count=self._options.prefetch_count, max_wait_time=1.0
            )
            while messages and await self._episode(receiver, session_id, messages, held):
                if self._stopping.is_set():
                    return
                # whatever is already there (a batch that arrived during the episode) comes first
                messages = await receiver.receive_messages(
                    max_message_count=self._options.prefetch_count, max_wait_time=_DRAIN_WAIT
                )
                if not messages and hold > _DRAIN_WAIT:
                    messages = await self.receive_while_idle(
                        receiver, wait=hold, max_message_count=self._options.prefetch_count
                    )

    async def _episode(self, receiver: Any, session_id: str, messages: list[Any], held: HeldSession) -> bool:
        """Run one episode on the held session; returns whether to keep the session."""
        decoded: list[tuple[Any, TaskMessage]] = []
        # Session order: a message the SDK gave back (released) and received again can follow later ones.
        for message in sorted(messages, key=lambda m: m.sequence_number or 0):
            try:
                decoded.append((message, await self._decode(message, session_id)))
            except MalformedMessageError as exc:
                _log.error(
                    "dead-lettering malformed message %s of %s: %s", message.message_id, session_id, exc
                )
                await receiver.dead_letter_message(
                    message, reason="MalformedMessage", error_description=str(exc)[:1000]
                )
        if not decoded:
            return True
        batch = [m for m, _ in decoded]
        try:
            if held.loaded is UNLOADED:
                held.loaded = await self._codec.load(await receiver.session.get_state())
                held.live = None
            loaded, decoded = apply_rewinds(held.loaded, decoded)
            if loaded is not held.loaded:
                held.loaded, held.live = loaded, None
            plan, result = await self._decider.decide(
                session_id,
                held,
                [t for _, t in decoded],
                delivery_count=max((m.delivery_count or 1) for m, _ in decoded),
            )
            plan = terminate_children(self._options, plan, result, [t for _, t in decoded])
            await commit_episode(
                plan, _SessionIO(receiver, self._senders, batch), self._faults, self._confirmed
            )
        except OrchestratorNotRegisteredError as exc:
            backoff = self._worker_options.type_missing_backoff
            _log.warning(
                "%s; releasing %d message(s) of %s and accepting no sessions for %.0f s so a worker "
                "that has it can take them",
                exc,
                len(batch),
                session_id,
                backoff,
            )
            self.pause(backoff)
            # Not abandoned: the session is let go at once, which gives the messages back (counting one
            # delivery). An abandon first would count two per round, since the still-open link takes the
            # abandoned message again before it closes, halving the retries before dead-lettering.
            return False
        except asyncio.CancelledError:
            await _abandon_all(receiver, batch)
            raise
        except Exception as exc:
            _log.error(
                "episode of %s failed (%s: %s); abandoning %d message(s) for redelivery",
                session_id,
                type(exc).__name__,
                redact(str(exc))[:500],
                len(batch),
                exc_info=_log.isEnabledFor(logging.DEBUG),
            )
            await _abandon_all(receiver, batch)
            return False
        self.episodes += 1
        self._delete_chunks_later(plan)
        self._forget_dropped_starts_later(plan)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "episode instance=%s batch=%d new_events=%d actions=%s status=%s",
                session_id,
                len(batch),
                len(result.new_history_events) if result else 0,
                ",".join(a.kind for g in (result.generations if result else []) for a in g.actions) or "-",
                result.status.name if result else "unchanged",
            )
        held.loaded = plan.next_session
        if held.loaded is None or plan.terminated_for_size or (result is not None and result.is_complete):
            held.live = None
        return True

    async def _decode(self, message: Any, session_id: str) -> TaskMessage:
        body = await self._envelope.read(message)
        try:
            task_message = decode_task_message(body)
        except Exception as exc:
            raise MalformedMessageError(f"body is not a task message: {exc}") from None
        target = task_message.orchestration_instance.instance_id
        if target.casefold() != session_id.casefold():
            raise MalformedMessageError(
                f"message is addressed to instance {target!r} but arrived in session {session_id!r}"
            )
        event = task_message.event
        if isinstance(event, EventRaisedEvent) and event.message_id is None:
            # The transport id makes a redelivered copy recognisable once it is in history.
            event.message_id = str(message.message_id)
        return task_message

    def _delete_chunks_later(self, plan: EpisodePlan) -> None:
        if not plan.obsolete_chunks or self._payloads is None:
            return
        delete = getattr(self._payloads, "delete", None)
        if delete is not None:
            self._later(f"delete obsolete history chunks of {plan.instance_id}", delete(plan.obsolete_chunks))

    def _forget_dropped_starts_later(self, plan: EpisodePlan) -> None:
        """A start dropped because its instance was running would otherwise be re-sent by the
        jump-start manager for ever, and could start the instance again once it had finished."""
        if self._forget_start is None:
            return
        for instance_id, execution_id in plan.dropped_starts:
            _log.info("start of %s execution %s dropped: the instance is running", instance_id, execution_id)
            self._later(
                f"forget the dropped start of {instance_id}", self._forget_start(instance_id, execution_id)
            )

    def _later(self, what: str, work: Awaitable[Any]) -> None:
        """Best-effort clean-up after an episode, off the session's path."""

        async def run() -> None:
            try:
                await work
            except Exception as exc:
                _log.debug("could not %s: %s", what, exc)

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _abandon_all(receiver: Any, messages: Sequence[Any]) -> None:
    for message in messages:
        with contextlib.suppress(Exception):
            await receiver.abandon_message(message)
