"""Errors of the Blob Storage layer.

Every message here is written for the operator reading a log: it names the thing that failed (a key, an
instance, a hub) and what that usually means, and never carries a connection string, account key or
token. Callers that need the HTTP details of an unexpected failure still get the SDK's own exception.
"""

from __future__ import annotations

__all__ = [
    "HistoryConflictError",
    "HistoryGapError",
    "InstanceNotFinishedError",
    "InvalidHubNameError",
    "PayloadNotFoundError",
    "StorageAuthenticationError",
    "StorageConfigurationError",
    "StorageError",
]


class StorageError(Exception):
    """Base class of every error raised by ``dtf_sb.storage``."""


class StorageConfigurationError(StorageError, ValueError):
    """The connection settings cannot describe a Blob Storage account (malformed, missing parts)."""


class InvalidHubNameError(StorageConfigurationError):
    """A task hub name that cannot be turned into valid Blob Storage container names."""


class StorageAuthenticationError(StorageError):
    """Blob Storage refused the credentials (wrong key, expired SAS, missing role assignment)."""


class PayloadNotFoundError(StorageError, LookupError):
    """A payload key points to a blob that does not exist."""

    def __init__(self, key: str, container: str) -> None:
        self.key = key
        self.container = container
        super().__init__(
            f"payload {key!r} does not exist in container {container!r}: it was purged (its instance "
            "was purged or its payloads were garbage-collected) or never written (the upload failed "
            "before the message that refers to it was sent)"
        )


class InstanceNotFinishedError(StorageError):
    """Purge was asked to remove an instance that can still make progress."""

    def __init__(self, instance_id: str, status: str) -> None:
        self.instance_id = instance_id
        self.status = status
        super().__init__(
            f"instance {instance_id!r} is {status}; only a finished instance (Completed, Failed, "
            "Terminated or Canceled) can be purged. Wait for it to finish or terminate it first"
        )


class HistoryGapError(StorageError):
    """A history batch starts after the end of the stored history, so earlier events are missing."""

    def __init__(self, instance_id: str, execution_id: str, expected: int, got: int) -> None:
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.expected = expected
        self.got = got
        super().__init__(
            f"history of instance {instance_id!r} execution {execution_id!r} holds {expected} events but "
            f"the batch starts at event {got}: events {expected}..{got - 1} were never tracked"
        )


class HistoryConflictError(StorageError):
    """The stored history disagrees with a redelivered batch (different bytes for the same events)."""
