"""dtf-sb: durable orchestrations in plain async Python on Azure Service Bus.

The core programming model is re-exported here; the Service Bus worker and client add themselves to
this module as they land (``TaskHubWorker``, ``TaskHubClient``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from dtf_sb.core.rewind import RewindError

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
    "RewindError",
    "SubOrchestrationFailedError",
    "Task",
    "TaskFailedError",
    "TaskMessage",
    "when_all",
    "when_any",
]

if TYPE_CHECKING:
    from dtf_sb.client import OrchestrationAlreadyExistsError as OrchestrationAlreadyExistsError
    from dtf_sb.client import TaskHubClient as TaskHubClient
    from dtf_sb.middleware import DispatchContext as DispatchContext
    from dtf_sb.options import JumpStartOptions as JumpStartOptions
    from dtf_sb.options import TaskHubOptions as TaskHubOptions
    from dtf_sb.options import WorkerOptions as WorkerOptions
    from dtf_sb.servicebus.deadletters import DeadLetter as DeadLetter
    from dtf_sb.servicebus.operations import OrchestrationQueryResult as OrchestrationQueryResult
    from dtf_sb.servicebus.operations import PurgeResult as PurgeResult
    from dtf_sb.worker import TaskHubWorker as TaskHubWorker
    from dtf_sb.worker import WorkerStats as WorkerStats

# The Service Bus runtime is loaded on first use: importing dtf_sb (or dtf_sb.core) must not pull in
# the Azure SDKs, so the pure core stays importable and testable on its own.
_RUNTIME_EXPORTS = {
    "DeadLetter": "dtf_sb.servicebus.deadletters",
    "DispatchContext": "dtf_sb.middleware",
    "JumpStartOptions": "dtf_sb.options",
    "OrchestrationAlreadyExistsError": "dtf_sb.client",
    "OrchestrationQueryResult": "dtf_sb.servicebus.operations",
    "PurgeResult": "dtf_sb.servicebus.operations",
    "TaskHubClient": "dtf_sb.client",
    "TaskHubOptions": "dtf_sb.options",
    "TaskHubWorker": "dtf_sb.worker",
    "WorkerOptions": "dtf_sb.options",
    "WorkerStats": "dtf_sb.worker",
}
__all__ += sorted(_RUNTIME_EXPORTS)


def __getattr__(name: str) -> object:
    module = _RUNTIME_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dtf_sb' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
