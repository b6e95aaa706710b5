"""The outcome of one orchestration episode, as handed to the transport."""

from __future__ import annotations

from dataclasses import dataclass, field

from dtf_sb.core.actions import CompleteOrchestrationAction, OrchestratorAction
from dtf_sb.core.history import HistoryEvent
from dtf_sb.core.state import OrchestrationRuntimeState
from dtf_sb.core.status import OrchestrationStatus

__all__ = ["OrchestratorResult"]


@dataclass(slots=True, kw_only=True)
class OrchestratorResult:
    """The outcome of one episode; the fields are described in ``dtf_sb.core.executor``'s docstring."""

    instance_id: str
    execution_id: str | None
    status: OrchestrationStatus
    actions: list[OrchestratorAction]
    new_history_events: list[HistoryEvent]
    runtime_state: OrchestrationRuntimeState
    custom_status: str | None = None
    completion: CompleteOrchestrationAction | None = None
    dropped_events: list[tuple[HistoryEvent, str]] = field(default_factory=list)
    previous_generations: list[OrchestratorResult] = field(default_factory=list)

    @property
    def is_complete(self) -> bool:
        """True when the newest generation ended (completed, failed or terminated)."""
        return self.completion is not None

    @property
    def output(self) -> str | None:
        """Encoded result, or the failure text, of a completed execution."""
        if self.completion is None:
            return None
        if self.completion.failure_details is not None:
            return str(self.completion.failure_details)
        return self.completion.result

    @property
    def generations(self) -> list[OrchestratorResult]:
        """Every generation this episode touched, oldest first (usually just ``[self]``)."""
        return [*self.previous_generations, self]
