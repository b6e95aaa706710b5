"""The three queues of a task hub, defined once for Azure, the official emulator and the embedded one.

A hub only works when every queue has the properties the commit protocol relies on: sessions on the
orchestrator and tracking queues (one session per instance keeps its messages ordered and its state
in one place) and duplicate detection on all three (a replayed episode re-sends outbound messages
with the same deterministic ids and the broker must drop the repeats). Keeping the definitions in
one function means Azure, the official emulator's Config.json and the embedded emulator cannot drift.

Unlike DTF, the worker and tracking queues also get duplicate detection: without transactions they
are where a re-sent activity invocation or tracking snapshot would otherwise land twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..options import TaskHubOptions

if TYPE_CHECKING:
    from azure.servicebus.aio.management import ServiceBusAdministrationClient

__all__ = [
    "QueueDefinition",
    "create_hub_queues",
    "delete_hub_queues",
    "emulator_config",
    "emulator_queues",
    "hub_queue_definitions",
]

_log = logging.getLogger("dtf_sb.servicebus.entities")

# The official emulator's Config.json schema caps these (reference A.3); Azure accepts far more.
_OFFICIAL_MAX_DEDUPE_WINDOW = 300.0
_OFFICIAL_MAX_LOCK = 300.0
_OFFICIAL_MAX_DELIVERY = 10


@dataclass(frozen=True)
class QueueDefinition:
    """The properties of one hub queue, independent of who creates it."""

    name: str
    requires_session: bool
    requires_duplicate_detection: bool
    max_delivery_count: int
    lock_duration: float
    duplicate_detection_window: float
    max_size_in_megabytes: int = 1024


def hub_queue_definitions(options: TaskHubOptions) -> list[QueueDefinition]:
    """Orchestrator, worker and tracking queue definitions for ``options.hub_name``."""

    def make(name: str, *, sessions: bool) -> QueueDefinition:
        return QueueDefinition(
            name=name,
            requires_session=sessions,
            requires_duplicate_detection=True,
            max_delivery_count=options.max_delivery_count,
            lock_duration=options.lock_duration,
            duplicate_detection_window=options.duplicate_detection_window,
            max_size_in_megabytes=options.max_queue_size_mb,
        )

    return [
        make(options.orchestrator_queue, sessions=True),
        make(options.worker_queue, sessions=False),
        make(options.tracking_queue, sessions=True),
    ]


def _iso_duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT"
    if hours:
        text += f"{hours}H"
    if minutes:
        text += f"{minutes}M"
    if secs or text == "PT":
        text += f"{secs}S"
    return text


def emulator_config(options: TaskHubOptions, *, namespace: str = "sbemulatorns") -> dict[str, Any]:
    """The hub's queues as the official emulator's Config.json.

    The official emulator refuses values past its schema limits (duplicate-detection window and lock
    at most 5 minutes, at most 10 deliveries), so those are clamped here; a re-sent message older than
    the clamped window is then caught by the receivers' own de-duplication instead of the broker's.
    """
    queues = []
    for q in hub_queue_definitions(options):
        queues.append(
            {
                "Name": q.name,
                "Properties": {
                    "DeadLetteringOnMessageExpiration": False,
                    "DefaultMessageTimeToLive": "PT1H",
                    "DuplicateDetectionHistoryTimeWindow": _iso_duration(
                        max(5.0, min(q.duplicate_detection_window, _OFFICIAL_MAX_DEDUPE_WINDOW))
                    ),
                    "ForwardDeadLetteredMessagesTo": "",
                    "ForwardTo": "",
                    "LockDuration": _iso_duration(max(5.0, min(q.lock_duration, _OFFICIAL_MAX_LOCK))),
                    "MaxDeliveryCount": min(q.max_delivery_count, _OFFICIAL_MAX_DELIVERY),
                    "RequiresDuplicateDetection": q.requires_duplicate_detection,
                    "RequiresSession": q.requires_session,
                },
            }
        )
    return {
        "UserConfig": {
            "Namespaces": [{"Name": namespace, "Queues": queues, "Topics": []}],
            "Logging": {"Type": "File"},
        }
    }


def emulator_queues(options: TaskHubOptions) -> list[Any]:
    """The hub's queues as the embedded emulator's ``QueueProperties``.

    Imported lazily: production workers never load the emulator package.
    """
    from dtf_sb.emulator import QueueProperties

    return [
        QueueProperties(
            name=q.name,
            lock_duration=q.lock_duration,
            max_delivery_count=q.max_delivery_count,
            requires_session=q.requires_session,
            requires_duplicate_detection=q.requires_duplicate_detection,
            duplicate_detection_window=q.duplicate_detection_window,
        )
        for q in hub_queue_definitions(options)
    ]


async def create_hub_queues(
    admin: ServiceBusAdministrationClient, options: TaskHubOptions, *, if_not_exists: bool = True
) -> list[str]:
    """Create the hub's queues; returns the names created.

    With ``if_not_exists`` existing queues are kept as they are (DTF's CreateIfNotExists: their
    properties are not updated); otherwise they are deleted and re-created, which destroys every
    in-flight instance because orchestration state lives in the orchestrator queue's sessions.
    """
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    created: list[str] = []
    for q in hub_queue_definitions(options):
        if not if_not_exists:
            try:
                await admin.delete_queue(q.name)
            except ResourceNotFoundError:
                pass
        try:
            await admin.create_queue(
                q.name,
                requires_session=q.requires_session,
                requires_duplicate_detection=q.requires_duplicate_detection,
                max_delivery_count=q.max_delivery_count,
                lock_duration=timedelta(seconds=q.lock_duration),
                duplicate_detection_history_time_window=timedelta(seconds=q.duplicate_detection_window),
                max_size_in_megabytes=q.max_size_in_megabytes,
            )
            created.append(q.name)
        except ResourceExistsError:
            _log.debug("queue %s already exists; kept as is", q.name)
    return created


async def delete_hub_queues(admin: ServiceBusAdministrationClient, options: TaskHubOptions) -> list[str]:
    """Delete the hub's queues (missing ones are fine); returns the names deleted."""
    from azure.core.exceptions import ResourceNotFoundError

    deleted: list[str] = []
    for q in hub_queue_definitions(options):
        try:
            await admin.delete_queue(q.name)
            deleted.append(q.name)
        except ResourceNotFoundError:
            pass
    return deleted
