"""Entity properties: what a queue, topic or subscription is configured to do.

Names and defaults follow Azure Service Bus (``QueueProperties`` of the administration client); durations
are seconds as floats so the broker can do arithmetic with its clock directly. The dataclasses are frozen:
an entity's behaviour is fixed for the broker's lifetime, as it is for the official emulator, whose
Config.json is read only at start.
"""

from __future__ import annotations

import re
from dataclasses import KW_ONLY, dataclass, field

from .filters import CorrelationFilter, FalseFilter, SqlFilter, TrueFilter

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_MESSAGE_SIZE_LIMIT",
    "EntityProperties",
    "QueueProperties",
    "Rule",
    "RuleFilter",
    "SubscriptionProperties",
    "TopicProperties",
]

DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024
"""Standard tier and official-emulator limit."""

MAX_MESSAGE_SIZE_LIMIT = 100 * 1024 * 1024
"""The Premium tier ceiling; the embedded emulator lets tests raise the per-entity limit up to it."""

_NAME = re.compile(r"^[A-Za-z0-9]$|^[A-Za-z0-9][\w\-./]*[A-Za-z0-9]$")

RuleFilter = TrueFilter | FalseFilter | CorrelationFilter | SqlFilter


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{kind} name {name!r} is invalid: use letters, digits, '_', '-', '.', '/', "
            "starting and ending with a letter or digit"
        )
    if "$" in name or name.lower().endswith("/subscriptions") or "/subscriptions/" in name.lower():
        raise ValueError(f"{kind} name {name!r} uses a reserved path segment")


def _check_common(
    kind: str,
    name: str,
    *,
    duplicate_detection_window: float,
    default_ttl: float | None,
    max_message_size: int,
) -> None:
    _check_name(kind, name)
    if duplicate_detection_window <= 0:
        raise ValueError(f"{kind} {name!r}: duplicate_detection_window must be positive")
    if default_ttl is not None and default_ttl <= 0:
        raise ValueError(f"{kind} {name!r}: default_ttl must be positive or None")
    if not 1 <= max_message_size <= MAX_MESSAGE_SIZE_LIMIT:
        raise ValueError(
            f"{kind} {name!r}: max_message_size must be between 1 and {MAX_MESSAGE_SIZE_LIMIT} bytes, "
            f"got {max_message_size}"
        )


def _check_receivable(
    kind: str, name: str, *, lock_duration: float, max_delivery_count: int, forward_to: str | None
) -> None:
    if lock_duration <= 0:
        raise ValueError(f"{kind} {name!r}: lock_duration must be positive")
    if max_delivery_count < 1:
        raise ValueError(f"{kind} {name!r}: max_delivery_count must be at least 1")
    if forward_to is not None and forward_to.lower() == name.lower():
        raise ValueError(f"{kind} {name!r}: forward_to cannot name the entity itself")


@dataclass(frozen=True)
class QueueProperties:
    """A queue. ``None`` for ``default_ttl`` means messages live until consumed."""

    name: str
    _: KW_ONLY
    lock_duration: float = 60.0
    max_delivery_count: int = 10
    requires_session: bool = False
    requires_duplicate_detection: bool = False
    duplicate_detection_window: float = 600.0
    default_ttl: float | None = None
    dead_lettering_on_expiration: bool = False
    forward_to: str | None = None
    forward_dead_lettered_to: str | None = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE

    def __post_init__(self) -> None:
        _check_common(
            "queue",
            self.name,
            duplicate_detection_window=self.duplicate_detection_window,
            default_ttl=self.default_ttl,
            max_message_size=self.max_message_size,
        )
        _check_receivable(
            "queue",
            self.name,
            lock_duration=self.lock_duration,
            max_delivery_count=self.max_delivery_count,
            forward_to=self.forward_to,
        )


@dataclass(frozen=True)
class Rule:
    """A subscription rule. The action expression is kept for fidelity but not applied (see ``filters``)."""

    name: str
    filter: RuleFilter = field(default_factory=TrueFilter)
    _: KW_ONLY
    action: str | None = None


@dataclass(frozen=True)
class SubscriptionProperties:
    """A topic subscription: a queue fed by the topic through its rules.

    No rules means the ``$Default`` rule with a true filter, as Service Bus creates for a new subscription.
    """

    name: str
    _: KW_ONLY
    lock_duration: float = 60.0
    max_delivery_count: int = 10
    requires_session: bool = False
    default_ttl: float | None = None
    dead_lettering_on_expiration: bool = False
    forward_to: str | None = None
    forward_dead_lettered_to: str | None = None
    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        _check_name("subscription", self.name)
        if "/" in self.name:
            raise ValueError(f"subscription name {self.name!r} cannot contain '/'")
        if self.default_ttl is not None and self.default_ttl <= 0:
            raise ValueError(f"subscription {self.name!r}: default_ttl must be positive or None")
        _check_receivable(
            "subscription",
            self.name,
            lock_duration=self.lock_duration,
            max_delivery_count=self.max_delivery_count,
            forward_to=None,
        )
        object.__setattr__(self, "rules", tuple(self.rules))

    @property
    def effective_rules(self) -> tuple[Rule, ...]:
        return self.rules or (Rule("$Default", TrueFilter()),)


@dataclass(frozen=True)
class TopicProperties:
    """A topic: accepts sends, fans each message out to the subscriptions whose rules match."""

    name: str
    _: KW_ONLY
    requires_duplicate_detection: bool = False
    duplicate_detection_window: float = 600.0
    default_ttl: float | None = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    subscriptions: tuple[SubscriptionProperties, ...] = ()

    def __post_init__(self) -> None:
        _check_common(
            "topic",
            self.name,
            duplicate_detection_window=self.duplicate_detection_window,
            default_ttl=self.default_ttl,
            max_message_size=self.max_message_size,
        )
        object.__setattr__(self, "subscriptions", tuple(self.subscriptions))
        seen: set[str] = set()
        for sub in self.subscriptions:
            if sub.name.lower() in seen:
                raise ValueError(f"topic {self.name!r}: duplicate subscription {sub.name!r}")
            seen.add(sub.name.lower())


EntityProperties = QueueProperties | TopicProperties
