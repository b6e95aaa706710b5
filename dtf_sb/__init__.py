"""dtf-sb: durable orchestrations in plain async Python on Azure Service Bus.

The core programming model is re-exported here; the Service Bus worker and client add themselves to
this module as they land (``TaskHubWorker``, ``TaskHubClient``).
"""

from __future__ import annotations

from dtf_sb.core import (
    ActivityContext,
    EventTimeoutError,
    FailureDetails,
    NonDeterminismError,
    NonRetriableError,
    OrchestrationContext,
    OrchestrationExecutor,
    OrchestrationInstance,
    OrchestrationRuntimeState,
    OrchestrationSession,
    OrchestrationState,
    OrchestrationStatus,
    OrchestratorResult,
    Registry,
    RetryOptions,
    SubOrchestrationFailedError,
    Task,
    TaskFailedError,
    TaskMessage,
    when_all,
    when_any,
)

__all__ = [
    "ActivityContext",
    "EventTimeoutError",
    "FailureDetails",
    "NonDeterminismError",
    "NonRetriableError",
    "OrchestrationContext",
    "OrchestrationExecutor",
    "OrchestrationInstance",
    "OrchestrationRuntimeState",
    "OrchestrationSession",
    "OrchestrationState",
    "OrchestrationStatus",
    "OrchestratorResult",
    "Registry",
    "RetryOptions",
    "SubOrchestrationFailedError",
    "Task",
    "TaskFailedError",
    "TaskMessage",
    "when_all",
    "when_any",
]
