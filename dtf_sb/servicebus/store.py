"""The hub's Blob Storage, in the core model's terms.

``dtf_sb.storage`` speaks bytes and its own records so it does not depend on the core; this adapter
encodes states and events with the core codec for it, and decodes what it returns. It also merges
jump-start records into reads: an instance whose start was recorded but not yet tracked reads as
``Pending`` (DTF reads its JumpStart table the same way, reference 6.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from ..core.codec import (
    decode_event,
    decode_orchestration_state,
    decode_task_message,
    encode_orchestration_state,
)
from ..core.history import ExecutionStartedEvent, HistoryEvent
from ..core.state import OrchestrationState
from ..core.status import OrchestrationStatus
from ..options import TaskHubOptions
from ..storage import PayloadStore, create_blob_service_client
from ..storage.instances import InstanceStore
from ..storage.records import InstanceRecord, JumpStartRecord

__all__ = ["HubStore", "pending_state_from_start"]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def pending_state_from_start(record: JumpStartRecord) -> OrchestrationState | None:
    """What a recorded-but-untracked start looks like to a client: a Pending execution."""
    try:
        message = decode_task_message(record.message)
    except Exception:
        return None
    event = message.event
    if not isinstance(event, ExecutionStartedEvent):
        return None
    return OrchestrationState(
        orchestration_instance=event.orchestration_instance,
        name=event.name,
        status=OrchestrationStatus.PENDING,
        version=event.version,
        input=event.input,
        tags=dict(event.tags),
        parent_instance=event.parent_instance,
        created_time=record.created_time,
        last_updated_time=record.last_sent_time or record.created_time,
        scheduled_start_time=event.scheduled_start_time,
    )


class HubStore:
    """Payloads and instance records of one hub; owns its blob service client."""

    def __init__(
        self,
        options: TaskHubOptions,
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: Any = None,
    ) -> None:
        if not connection_string and not account_url:
            raise ValueError(
                "a Blob Storage account is required (instance store and large payloads): pass "
                "storage_connection_string, or storage_account_url with a credential"
            )
        self._service = create_blob_service_client(
            connection_string=connection_string or None,
            account_url=None if connection_string else account_url,
            credential=None if connection_string else credential,
        )
        self.payloads = PayloadStore(self._service, options.hub_name)
        self.instances = InstanceStore(self._service, options.hub_name, payloads=self.payloads)

    async def ensure(self) -> None:
        await self.payloads.ensure()
        await self.instances.ensure()

    async def delete(self) -> None:
        await self.instances.delete_store()
        await self.payloads.delete_store()

    async def close(self) -> None:
        await self._service.close()

    # -- tracking ------------------------------------------------------------------------------------
    async def append_history(
        self, instance_id: str, execution_id: str, first_event_index: int, lines: list[bytes]
    ) -> None:
        await self.instances.append_history(instance_id, execution_id, first_event_index, lines)

    async def write_state(self, state: OrchestrationState, *, version: int) -> None:
        await self.instances.upsert_state(
            encode_orchestration_state(state, compress=None),
            instance_id=state.instance_id,
            execution_id=state.execution_id or "",
            name=state.name,
            status=state.status.name,
            created_time=state.created_time or _now(),
            last_updated_time=state.last_updated_time or _now(),
            completed_time=state.completed_time if state.status.is_terminal else None,
            version=version,
        )

    # -- reading -------------------------------------------------------------------------------------
    @staticmethod
    def _decode(record: InstanceRecord | None) -> OrchestrationState | None:
        return None if record is None else decode_orchestration_state(record.state)

    async def get_state(
        self, instance_id: str, *, execution_id: str | None = None
    ) -> OrchestrationState | None:
        state = self._decode(await self.instances.get_state(instance_id, execution_id))
        if state is not None:
            return state
        if execution_id is not None:
            record = await self.instances.get_jump_start(instance_id, execution_id)
            return pending_state_from_start(record) if record is not None else None
        # an instance not tracked yet: its own jump-start records (one prefix listing, not a hub scan)
        starts = await self.instances.get_jump_starts(instance_id)
        if not starts:
            return None
        return pending_state_from_start(max(starts, key=lambda r: r.created_time))

    async def get_history(self, instance_id: str, *, execution_id: str | None = None) -> list[HistoryEvent]:
        return [decode_event(line) for line in await self.instances.read_history(instance_id, execution_id)]

    async def query(
        self,
        *,
        statuses: Sequence[OrchestrationStatus] | None,
        name: str | None,
        created_from: datetime | None,
        created_to: datetime | None,
        instance_id_prefix: str | None,
        page_size: int,
        continuation_token: str | None,
    ) -> tuple[list[OrchestrationState], str | None]:
        records, token = await self.instances.query(
            status=[s.name for s in statuses] if statuses is not None else None,
            name=name,
            created_from=created_from,
            created_to=created_to,
            instance_id_prefix=instance_id_prefix,
            page_size=page_size,
            continuation_token=continuation_token,
        )
        return [decode_orchestration_state(r.state) for r in records], token

    async def purge_instance(self, instance_id: str) -> int:
        result = await self.instances.purge_instance(instance_id)
        return (
            result.executions
            + result.history_blobs
            + result.payloads
            + result.jump_starts
            + result.other_blobs
        )

    # -- jump-start ----------------------------------------------------------------------------------
    async def put_jump_start(self, instance_id: str, execution_id: str, body: bytes) -> None:
        await self.instances.put_jump_start(instance_id, execution_id, body, _now())

    async def due_jump_starts(self, older_than: datetime) -> list[JumpStartRecord]:
        return await self.instances.list_jump_starts(older_than=older_than)

    async def execution_recorded(self, instance_id: str, execution_id: str) -> bool:
        return await self.instances.get_state(instance_id, execution_id) is not None

    async def mark_jump_start_sent(self, instance_id: str, execution_id: str) -> None:
        await self.instances.mark_jump_start_sent(instance_id, execution_id, sent_time=_now())

    async def delete_jump_start(self, instance_id: str, execution_id: str) -> None:
        await self.instances.delete_jump_start(instance_id, execution_id)
