"""Addresses of orchestration instances and the envelope that carries events between them.

A ``TaskMessage`` is DTF's unit of transport: one history event, the instance (and execution) it is
for, and a sequence number. The transport serializes it with ``codec.encode_task_message``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dtf_sb.core.history import HistoryEvent


@dataclass(frozen=True, slots=True)
class OrchestrationInstance:
    """An instance id plus the execution (generation) of it; continue-as-new changes only the latter."""

    instance_id: str
    execution_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentInstance:
    """Where a sub-orchestration reports back: the parent's address and the parent's action id."""

    name: str
    version: str | None
    task_schedule_id: int
    orchestration_instance: OrchestrationInstance


@dataclass(slots=True, kw_only=True)
class TaskMessage:
    """One event addressed to one orchestration execution.

    ``tags`` mirrors DTF's ``OrchestrationExecutionContext.OrchestrationTags`` and rides on activity and
    sub-orchestration messages.
    """

    event: HistoryEvent
    orchestration_instance: OrchestrationInstance
    sequence_number: int = 0
    tags: dict[str, str] = field(default_factory=dict)
