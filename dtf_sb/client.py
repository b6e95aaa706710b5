"""TaskHubClient: start, signal, inspect and manage orchestration instances of a hub.

Names follow durabletask-python. Starting an instance follows DTF (reference 2.3): check the
instance store for an existing instance (``dedupe_statuses``), write a jump-start record, then send
``ExecutionStarted`` with the message id ``{instance_id}_{execution_id}``. If the process dies
between the record and the send, a worker's jump-start manager re-sends the start later with the
same id. Until the instance's first episode is tracked, its state is read from the jump-start record
and reported as ``Pending`` (DTF writes that Pending row from the worker instead; reading it from the
record gives the same answer without a write on the worker's hot path).

Control messages (events, terminate, suspend, resume) go straight to the instance's session. Each
carries a unique message id, written into the event itself for raised events, so a redelivered copy
is recognised once it is in history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from .core.codec import encode_payload, encode_task_message
from .core.history import (
    EventRaisedEvent,
    ExecutionResumedEvent,
    ExecutionStartedEvent,
    ExecutionSuspendedEvent,
    ExecutionTerminatedEvent,
    HistoryEvent,
)
from .core.messages import OrchestrationInstance, TaskMessage
from .core.registry import function_name
from .core.rewind import RewindError, RewindRequest, encode_rewind_request, rewind_history
from .core.state import OrchestrationState
from .core.status import OrchestrationStatus
from .options import TaskHubOptions
from .servicebus._loop import is_transient
from .servicebus._outbound import Outbound, start_message_id
from .servicebus._senders import SenderPool
from .servicebus.connection import ServiceBusConnection, redact
from .servicebus.control import terminate_message
from .servicebus.deadletters import (
    DeadLetter,
    HubQueue,
    list_dead_letters,
    purge_dead_letters,
    resubmit_dead_letters,
)
from .servicebus.entities import create_hub_queues, delete_hub_queues, hub_queue_definitions
from .servicebus.messages import MessageEnvelope
from .servicebus.operations import (
    DEFAULT_ORPHAN_GRACE,
    OrchestrationQueryResult,
    PurgeResult,
    purge_instance,
    purge_instances,
    query_instances,
)
from .servicebus.store import HubStore

__all__ = ["OrchestrationAlreadyExistsError", "TaskHubClient"]

_log = logging.getLogger("dtf_sb.client")

_FINISHED = frozenset(
    {
        OrchestrationStatus.COMPLETED,
        OrchestrationStatus.FAILED,
        OrchestrationStatus.TERMINATED,
        OrchestrationStatus.CANCELED,
    }
)


class OrchestrationAlreadyExistsError(Exception):
    """``schedule_new_orchestration`` found an instance with that id in a status that blocks re-use."""

    def __init__(self, instance_id: str, status: OrchestrationStatus) -> None:
        super().__init__(
            f"An orchestration with id '{instance_id}' already exists. It is in state {status.name.title()}"
        )
        self.instance_id = instance_id
        self.status = status


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class TaskHubClient:
    """Client of one task hub; use ``async with`` or call ``close()``."""

    def __init__(
        self,
        options: TaskHubOptions,
        *,
        servicebus_connection_string: str | None = None,
        fully_qualified_namespace: str | None = None,
        storage_connection_string: str | None = None,
        storage_account_url: str | None = None,
        credential: Any = None,
    ) -> None:
        self.options = options
        self._connection = ServiceBusConnection(
            connection_string=servicebus_connection_string,
            fully_qualified_namespace=fully_qualified_namespace,
            credential=credential,
        )
        self._store = HubStore(
            options,
            connection_string=storage_connection_string,
            account_url=storage_account_url,
            credential=credential,
        )
        self._envelope = MessageEnvelope(options, self._store.payloads)
        self._senders = SenderPool(self._connection, self._envelope)

    def __repr__(self) -> str:
        return f"TaskHubClient(hub={self.options.hub_name!r}, namespace={self._connection.namespace!r})"

    async def __aenter__(self) -> TaskHubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._senders.close()
        await self._store.close()

    # -- hub lifecycle -------------------------------------------------------------------------------
    async def create_hub(self, *, if_not_exists: bool = True) -> None:
        """Create the hub's queues and storage containers.

        Against a development emulator (``UseDevelopmentEmulator=true``) the queues come from the
        emulator's configuration (``entities.emulator_config``/``emulator_queues``); there the call
        checks that they exist and says how to declare them if they do not.
        """
        if self._connection.is_development_emulator:
            await self._check_queues_exist()
        else:
            async with self._connection.admin_client() as admin:
                await create_hub_queues(admin, self.options, if_not_exists=if_not_exists)
        await self._store.ensure()

    async def delete_hub(self) -> None:
        """Delete the hub's queues (all in-flight state with them) and its storage containers."""
        if not self._connection.is_development_emulator:
            async with self._connection.admin_client() as admin:
                await delete_hub_queues(admin, self.options)
        await self._store.delete()

    async def _check_queues_exist(self) -> None:
        from azure.servicebus.exceptions import MessagingEntityNotFoundError

        client = self._connection.client(retry_total=0)
        async with client:
            for queue in hub_queue_definitions(self.options):
                try:
                    async with client.get_queue_sender(queue.name):
                        pass
                except MessagingEntityNotFoundError:
                    raise RuntimeError(
                        f"queue {queue.name!r} does not exist on the emulator; the emulator takes its queues "
                        "from its configuration: start it with dtf_sb.servicebus.entities.emulator_queues(options) "
                        "or emulator_config(options)"
                    ) from None

    # -- starting ------------------------------------------------------------------------------------
    async def schedule_new_orchestration(
        self,
        orchestrator: Callable[..., Any] | str,
        *,
        input: Any = None,
        instance_id: str | None = None,
        start_at: datetime | None = None,
        tags: dict[str, str] | None = None,
        version: str | None = None,
        dedupe_statuses: Sequence[OrchestrationStatus] | None = None,
    ) -> str:
        """Start an instance; returns its id.

        ``dedupe_statuses`` as DTF: ``None`` refuses any existing instance with this id, a list
        refuses only instances in those statuses (an empty list never refuses).
        """
        name = function_name(orchestrator)
        instance_id = instance_id or uuid.uuid4().hex
        existing = await self._store.get_state(instance_id)
        if existing is not None and (dedupe_statuses is None or existing.status in set(dedupe_statuses)):
            raise OrchestrationAlreadyExistsError(instance_id, existing.status)
        execution_id = uuid.uuid4().hex
        instance = OrchestrationInstance(instance_id, execution_id)
        start = _utc(start_at) if start_at is not None else None
        event = ExecutionStartedEvent(
            name=name,
            orchestration_instance=instance,
            version=version,
            input=encode_payload(input),
            tags=dict(tags or {}),
            scheduled_start_time=start,
        )
        body = encode_task_message(
            TaskMessage(event=event, orchestration_instance=instance, tags=dict(tags or {})), compress=False
        )
        await self._store.put_jump_start(instance_id, execution_id, body)
        try:
            await self._senders.send(
                [
                    Outbound(
                        queue=self.options.orchestrator_queue,
                        body=body,
                        message_id=start_message_id(instance_id, execution_id),
                        session_id=instance_id,
                        instance_id=instance_id,
                        execution_id=execution_id,
                        kind="start",
                        scheduled_enqueue_time=start,
                    )
                ]
            )
        except Exception as exc:
            if not is_transient(exc):
                # It will fail the same way when re-sent: drop the record so the id is not held Pending.
                with contextlib.suppress(Exception):
                    await self._store.delete_jump_start(instance_id, execution_id)
                raise
            _log.warning(
                "sending the start of %s failed (%s: %s); the jump-start manager will send it",
                instance_id,
                type(exc).__name__,
                redact(str(exc))[:200],
            )
        return instance_id

    # -- reading -------------------------------------------------------------------------------------
    async def get_orchestration_state(
        self, instance_id: str, *, execution_id: str | None = None
    ) -> OrchestrationState | None:
        """The latest execution's state (or the given execution's); None for an unknown instance."""
        return await self._store.get_state(instance_id, execution_id=execution_id)

    async def get_orchestration_history(
        self, instance_id: str, *, execution_id: str | None = None
    ) -> list[HistoryEvent]:
        """History events as tracked in the instance store (latest execution unless given)."""
        return await self._store.get_history(instance_id, execution_id=execution_id)

    async def _poll(
        self, instance_id: str, done: Callable[[OrchestrationState], bool], timeout: float, what: str
    ) -> OrchestrationState:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.1
        while True:
            state = await self._store.get_state(instance_id)
            if state is not None and done(state):
                return state
            remaining = deadline - loop.time()
            if remaining <= 0:
                status = state.status.name if state is not None else "unknown"
                raise TimeoutError(
                    f"instance {instance_id!r} did not {what} within {timeout} s (status: {status})"
                )
            await asyncio.sleep(min(delay, remaining))
            delay = min(1.0, delay * 1.5)

    async def wait_for_orchestration_start(
        self, instance_id: str, *, timeout: float = 60.0
    ) -> OrchestrationState:
        """Wait until the instance has left ``Pending``; ``TimeoutError`` otherwise."""
        return await self._poll(
            instance_id, lambda s: s.status is not OrchestrationStatus.PENDING, timeout, "start"
        )

    async def wait_for_orchestration_completion(
        self, instance_id: str, *, timeout: float = 60.0
    ) -> OrchestrationState:
        """Wait until the latest execution is Completed, Failed or Terminated; ``TimeoutError`` otherwise."""
        return await self._poll(instance_id, lambda s: s.status in _FINISHED, timeout, "complete")

    # -- signalling ----------------------------------------------------------------------------------
    async def _send_to_instance(
        self, instance_id: str, event: HistoryEvent, message_id: str, kind: str
    ) -> None:
        body = encode_task_message(
            TaskMessage(event=event, orchestration_instance=OrchestrationInstance(instance_id, None)),
            compress=False,
        )
        await self._senders.send(
            [
                Outbound(
                    queue=self.options.orchestrator_queue,
                    body=body,
                    message_id=message_id,
                    session_id=instance_id,
                    instance_id=instance_id,
                    execution_id=None,
                    kind=kind,
                )
            ]
        )

    async def raise_orchestration_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        """Deliver an external event to the instance's current execution."""
        message_id = uuid.uuid4().hex
        event = EventRaisedEvent(name=event_name, input=encode_payload(data), message_id=message_id)
        await self._send_to_instance(instance_id, event, message_id, "event")

    async def terminate_orchestration(
        self, instance_id: str, *, reason: Any = None, recursive: bool = False
    ) -> None:
        """Terminate the instance; running activities are not cancelled (as in DTF).

        With ``recursive=True`` the instance, once terminated, terminates every sub-orchestration
        it created that has not finished, and they do the same with theirs.
        """
        if not recursive:
            event = ExecutionTerminatedEvent(input=encode_payload(reason))
            await self._send_to_instance(instance_id, event, uuid.uuid4().hex, "terminate")
            return
        outbound, _ = terminate_message(
            self.options,
            instance_id,
            reason=encode_payload(reason),
            message_id=uuid.uuid4().hex,
            recursive=True,
        )
        await self._senders.send([outbound])

    async def suspend_orchestration(self, instance_id: str, *, reason: str | None = None) -> None:
        """Suspend: new events are held (in history) until ``resume_orchestration``."""
        await self._send_to_instance(
            instance_id, ExecutionSuspendedEvent(reason=reason), uuid.uuid4().hex, "suspend"
        )

    async def resume_orchestration(self, instance_id: str, *, reason: str | None = None) -> None:
        await self._send_to_instance(
            instance_id, ExecutionResumedEvent(reason=reason), uuid.uuid4().hex, "resume"
        )

    async def rewind_orchestration(self, instance_id: str, *, reason: str | None = None) -> str:
        """Retry a Failed instance's failed activities and sub-orchestrations and let it continue.

        The instance continues as a new execution whose history is the failed one without the
        failure (see ``dtf_sb.core.rewind``); returns that execution's id. The request goes through
        the instance's session like any event, so it takes effect when a worker processes it.
        Needs the tracked history (``TaskHubOptions.track_history``).
        """
        state = await self._store.get_state(instance_id)
        if state is None:
            raise RewindError(f"no instance {instance_id!r} in hub {self.options.hub_name!r}")
        if state.status is not OrchestrationStatus.FAILED:
            raise RewindError(
                f"instance {instance_id!r} is {state.status.name.title()}; only a Failed instance can be rewound"
            )
        history = await self._store.get_history(instance_id, execution_id=state.execution_id)
        if not history:
            raise RewindError(
                f"instance {instance_id!r} has no tracked history to rewind from (is track_history off?)"
            )
        plan = rewind_history(history, new_execution_id=uuid.uuid4().hex, now=datetime.now(timezone.utc))
        request = RewindRequest(
            instance_id=instance_id,
            previous_execution_id=plan.previous_execution_id,
            execution_id=plan.execution_id,
            reason=reason,
            events=plan.events,
        )
        await self._send_to_instance(
            instance_id, encode_rewind_request(request), f"rewind-{plan.execution_id}", "rewind"
        )
        return plan.execution_id

    # -- management ----------------------------------------------------------------------------------
    async def purge_orchestration(self, instance_id: str) -> PurgeResult:
        """Remove a finished instance's state, history, history chunks and payload blobs.

        Refuses an instance that can still run (``InstanceNotFinishedError`` naming its status).
        """
        return await purge_instance(self._store, instance_id)

    async def purge_orchestrations(
        self,
        *,
        status: Sequence[OrchestrationStatus] | OrchestrationStatus | None = None,
        name: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        instance_id_prefix: str | None = None,
        on_progress: Callable[[int], Any] | None = None,
        orphan_grace: timedelta = DEFAULT_ORPHAN_GRACE,
    ) -> PurgeResult:
        """Purge every finished instance matching the filter, then payload blobs nothing refers to."""
        return await purge_instances(
            self._store,
            status=status,
            name=name,
            created_from=created_from,
            created_to=created_to,
            instance_id_prefix=instance_id_prefix,
            on_progress=on_progress,
            orphan_grace=orphan_grace,
        )

    async def query_orchestrations(
        self,
        *,
        status: Sequence[OrchestrationStatus] | OrchestrationStatus | None = None,
        name: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        instance_id_prefix: str | None = None,
        page_size: int = 100,
        continuation_token: str | None = None,
    ) -> OrchestrationQueryResult:
        """One page of matching executions (each continue-as-new generation is its own record).

        ``created_to`` is exclusive. A page may hold fewer than ``page_size`` states while more
        follow; ``continuation_token`` is None only at the end.
        """
        return await query_instances(
            self._store,
            status=status,
            name=name,
            created_from=created_from,
            created_to=created_to,
            instance_id_prefix=instance_id_prefix,
            page_size=page_size,
            continuation_token=continuation_token,
        )

    # -- dead letters --------------------------------------------------------------------------------
    async def list_dead_letters(self, *, queue: HubQueue, max_count: int = 100) -> list[DeadLetter]:
        """Dead-lettered messages of one hub queue (peeked: nothing is locked or changed)."""
        async with self._connection.client() as client:
            return await list_dead_letters(
                client, self.options, self._envelope, queue=queue, max_count=max_count
            )

    async def resubmit_dead_letters(
        self,
        *,
        queue: HubQueue,
        sequence_numbers: Sequence[int] | None = None,
        on_progress: Callable[[int], Any] | None = None,
    ) -> int:
        """Send dead-lettered messages (all, or those numbered) back to their queue; returns the count."""
        async with self._connection.client() as client:
            return await resubmit_dead_letters(
                client, self.options, queue=queue, sequence_numbers=sequence_numbers, on_progress=on_progress
            )

    async def purge_dead_letters(
        self,
        *,
        queue: HubQueue,
        sequence_numbers: Sequence[int] | None = None,
        on_progress: Callable[[int], Any] | None = None,
    ) -> int:
        """Delete dead-lettered messages (all, or those numbered); returns the count."""
        async with self._connection.client() as client:
            return await purge_dead_letters(
                client, self.options, queue=queue, sequence_numbers=sequence_numbers, on_progress=on_progress
            )
