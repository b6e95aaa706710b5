"""Azure Blob Storage for dtf-sb: large payloads and the instance store (state, history, queries).

The layer speaks bytes, plain strings and its own small dataclasses, so it does not depend on the core
model; the Service Bus runtime adapts its events and states to it.
"""

from __future__ import annotations

from dtf_sb.storage.connection import (
    DEVELOPMENT_API_VERSION,
    BlobConnectionOptions,
    create_blob_service_client,
    is_development_storage,
)
from dtf_sb.storage.errors import (
    HistoryConflictError,
    HistoryGapError,
    InstanceNotFinishedError,
    InvalidHubNameError,
    PayloadNotFoundError,
    StorageAuthenticationError,
    StorageConfigurationError,
    StorageError,
)
from dtf_sb.storage.instances import InstanceStore
from dtf_sb.storage.naming import HubContainers, container_names
from dtf_sb.storage.payloads import PayloadInfo, PayloadStore
from dtf_sb.storage.records import (
    FINISHED_STATUSES,
    InstanceRecord,
    JumpStartRecord,
    PurgeFilter,
    PurgeResult,
    is_finished,
)

__all__ = [
    "DEVELOPMENT_API_VERSION",
    "FINISHED_STATUSES",
    "BlobConnectionOptions",
    "HistoryConflictError",
    "HistoryGapError",
    "HubContainers",
    "InstanceNotFinishedError",
    "InstanceRecord",
    "InstanceStore",
    "InvalidHubNameError",
    "JumpStartRecord",
    "PayloadInfo",
    "PayloadNotFoundError",
    "PayloadStore",
    "PurgeFilter",
    "PurgeResult",
    "StorageAuthenticationError",
    "StorageConfigurationError",
    "StorageError",
    "container_names",
    "create_blob_service_client",
    "is_development_storage",
    "is_finished",
]
