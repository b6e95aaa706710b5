"""Broker errors, each carrying the AMQP error condition the server must send.

The condition strings are the ones the azure-servicebus SDK maps to its exception types, so the server can
forward ``err.condition`` and ``str(err)`` without a translation table of its own. ``status_code`` is the
HTTP-style code a ``$management`` response carries for the same failure.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "EntityNotFound",
    "InvalidOperation",
    "MessageLockLost",
    "MessageNotFound",
    "MessageTooLarge",
    "SessionCannotBeLocked",
    "SessionLockLost",
    "SessionStateTooLarge",
]


class BrokerError(Exception):
    """Base of every error the broker raises on purpose."""

    condition: str = "amqp:internal-error"
    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EntityNotFound(BrokerError):
    """The address names no configured queue, topic or subscription."""

    condition = "amqp:not-found"
    status_code = 404


class MessageTooLarge(BrokerError):
    """A message (or batch member) is larger than the entity accepts."""

    condition = "amqp:link:message-size-exceeded"
    status_code = 413


class SessionStateTooLarge(BrokerError):
    """Session state larger than the entity's maximum message size.

    The same condition as an oversized message, so the SDK raises ``MessageSizeExceededError``, which is what
    a caller needs to decide to spill state elsewhere.
    """

    condition = "amqp:link:message-size-exceeded"
    status_code = 413


class MessageLockLost(BrokerError):
    """The lock token is unknown, expired, or already settled."""

    condition = "com.microsoft:message-lock-lost"
    status_code = 410


class SessionLockLost(BrokerError):
    """The caller no longer holds the session lock (expired, released, or never held)."""

    condition = "com.microsoft:session-lock-lost"
    status_code = 410


class SessionCannotBeLocked(BrokerError):
    """The named session is locked by another receiver."""

    condition = "com.microsoft:session-cannot-be-locked"
    status_code = 409


class MessageNotFound(BrokerError):
    """A sequence number names no message in the state the operation needs (deferred, scheduled)."""

    condition = "com.microsoft:message-not-found"
    status_code = 404


class InvalidOperation(BrokerError):
    """The request is well formed but not allowed on this entity (e.g. sending to a dead-letter queue)."""

    condition = "com.microsoft:argument-error"
    status_code = 400
