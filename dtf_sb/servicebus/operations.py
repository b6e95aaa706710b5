"""Instance queries and purge, in the core model's terms, for the client and the CLI.

The instance store answers queries from blob index tags and purges one instance by its blob prefix;
this module adds what an operator expects on top: typed results, a filter that purges only finished
instances and reports progress as it goes, and the collection of payload blobs nothing refers to any
more (left behind by episodes that crashed between uploading an overflow payload and committing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..core.state import OrchestrationState
from ..core.status import OrchestrationStatus
from ..storage.errors import InstanceNotFinishedError
from ..storage.records import PurgeResult as StoragePurgeResult
from .store import HubStore

__all__ = [
    "DEFAULT_ORPHAN_GRACE",
    "OrchestrationQueryResult",
    "PurgeResult",
    "purge_instance",
    "purge_instances",
    "query_instances",
]

#: Payloads younger than this are never collected: their message may still be in flight.
DEFAULT_ORPHAN_GRACE = timedelta(hours=1)

_FINISHED = (
    OrchestrationStatus.COMPLETED,
    OrchestrationStatus.FAILED,
    OrchestrationStatus.TERMINATED,
    OrchestrationStatus.CANCELED,
)
_PAGE = 500


@dataclass(frozen=True)
class OrchestrationQueryResult:
    """One page of executions (each continue-as-new generation is its own record) and the next token."""

    states: list[OrchestrationState]
    continuation_token: str | None


@dataclass(frozen=True)
class PurgeResult:
    """What a purge removed: instances, execution records, and blobs of every kind in total."""

    instances: int = 0
    executions: int = 0
    blobs: int = 0
    orphaned_payloads: int = 0
    skipped: list[str] = field(default_factory=list)
    """Instances that matched the filter but were not purged because they can still make progress."""


def _from_storage(result: StoragePurgeResult) -> PurgeResult:
    return PurgeResult(
        instances=result.instances,
        executions=result.executions,
        blobs=result.executions
        + result.history_blobs
        + result.payloads
        + result.jump_starts
        + result.other_blobs,
    )


async def query_instances(
    store: HubStore,
    *,
    status: Sequence[OrchestrationStatus] | OrchestrationStatus | None = None,
    name: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    instance_id_prefix: str | None = None,
    page_size: int = 100,
    continuation_token: str | None = None,
) -> OrchestrationQueryResult:
    statuses = [status] if isinstance(status, OrchestrationStatus) else status
    states, token = await store.query(
        statuses=statuses,
        name=name,
        created_from=created_from,
        created_to=created_to,
        instance_id_prefix=instance_id_prefix,
        page_size=page_size,
        continuation_token=continuation_token,
    )
    return OrchestrationQueryResult(states=states, continuation_token=token)


async def purge_instance(store: HubStore, instance_id: str) -> PurgeResult:
    """Remove a finished instance; ``InstanceNotFinishedError`` (naming its status) otherwise."""
    return _from_storage(await store.instances.purge_instance(instance_id))


async def purge_instances(
    store: HubStore,
    *,
    status: Sequence[OrchestrationStatus] | OrchestrationStatus | None = None,
    name: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    instance_id_prefix: str | None = None,
    on_progress: Callable[[int], Any] | None = None,
    orphan_grace: timedelta = DEFAULT_ORPHAN_GRACE,
) -> PurgeResult:
    """Purge every finished instance with an execution matching the filter, then collect orphans.

    An instance whose newest execution is still running (restarted with the same id, or
    continued-as-new) is skipped and listed in ``skipped``, not an error: a time-range purge must
    not fail because one old instance was re-used.
    """
    statuses = [status] if isinstance(status, OrchestrationStatus) else list(status or _FINISHED)
    instance_ids: dict[str, str] = {}
    token: str | None = None
    while True:
        page = await query_instances(
            store,
            status=statuses,
            name=name,
            created_from=created_from,
            created_to=created_to,
            instance_id_prefix=instance_id_prefix,
            page_size=_PAGE,
            continuation_token=token,
        )
        for state in page.states:
            instance_ids.setdefault(state.instance_id.casefold(), state.instance_id)
        token = page.continuation_token
        if token is None:
            break
    total = StoragePurgeResult()
    skipped: list[str] = []
    for instance_id in instance_ids.values():
        try:
            total = total + await store.instances.purge_instance(instance_id)
        except InstanceNotFinishedError:
            skipped.append(instance_id)
            continue
        if on_progress is not None:
            on_progress(1)
    orphans = await store.instances.collect_garbage(older_than=datetime.now(timezone.utc) - orphan_grace)
    result = _from_storage(total)
    return PurgeResult(
        instances=result.instances,
        executions=result.executions,
        blobs=result.blobs + orphans,
        orphaned_payloads=orphans,
        skipped=skipped,
    )
