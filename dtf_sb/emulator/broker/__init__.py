"""Broker core of the embedded Service Bus emulator: entities, locks, sessions, schedules, dead-lettering.

Pure and synchronous with an injected clock; the AMQP server adapts it to the wire.

Supported: queues and topics with subscriptions; peek-lock and receive-and-delete; complete, abandon,
release, defer (+ receive by sequence number) and dead-letter, with properties to modify; lock expiry and
renewal; MaxDeliveryCount and TTL dead-lettering; scheduled messages and cancellation; peek; sessions
(next-available or named accept, lock expiry and renewal, state, listing); duplicate detection; ForwardTo
and ForwardDeadLetteredMessagesTo (at most four hops, then the transfer dead-letter queue); subscription
rules with true, correlation and SQL-subset filters (see ``filters``).

Not supported: rule actions (kept in the configuration, not applied, because the broker never rewrites the
encoded message), partitioned entities, transactions, entity management at run time, and message/size
quotas other than the per-message maximum.
"""

from __future__ import annotations

from .broker import AvailabilityListener, Broker, SessionLostListener
from .clock import Clock, FakeClock, SystemClock
from .entities import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_MESSAGE_SIZE_LIMIT,
    EntityProperties,
    QueueProperties,
    Rule,
    RuleFilter,
    SubscriptionProperties,
    TopicProperties,
)
from .errors import (
    BrokerError,
    EntityNotFound,
    InvalidOperation,
    MessageLockLost,
    MessageNotFound,
    MessageTooLarge,
    SessionCannotBeLocked,
    SessionLockLost,
    SessionStateTooLarge,
)
from .filters import CorrelationFilter, FalseFilter, MessageView, SqlFilter, TrueFilter
from .messages import (
    BrokerMessage,
    EntityCounts,
    EntityRef,
    IncomingMessage,
    MessageState,
    Owner,
    ReceiveMode,
    SessionLock,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_MESSAGE_SIZE_LIMIT",
    "AvailabilityListener",
    "Broker",
    "BrokerError",
    "BrokerMessage",
    "Clock",
    "CorrelationFilter",
    "EntityCounts",
    "EntityNotFound",
    "EntityProperties",
    "EntityRef",
    "FakeClock",
    "FalseFilter",
    "IncomingMessage",
    "InvalidOperation",
    "MessageLockLost",
    "MessageNotFound",
    "MessageState",
    "MessageTooLarge",
    "MessageView",
    "Owner",
    "QueueProperties",
    "ReceiveMode",
    "Rule",
    "RuleFilter",
    "SessionCannotBeLocked",
    "SessionLock",
    "SessionLockLost",
    "SessionLostListener",
    "SessionStateTooLarge",
    "SqlFilter",
    "SubscriptionProperties",
    "SystemClock",
    "TopicProperties",
    "TrueFilter",
]
