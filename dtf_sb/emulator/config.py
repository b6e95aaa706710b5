"""Entity configuration in the official Service Bus emulator's Config.json format.

A Config.json written for Microsoft's emulator container loads here unchanged and yields the same entities
with the same defaults (LockDuration PT1M, MaxDeliveryCount 3, DefaultMessageTimeToLive PT1H,
DuplicateDetectionHistoryTimeWindow PT20S), so a test suite can switch between the container and the
embedded emulator with one file. The same shape is accepted as Python dicts and lists, and ready-made
``QueueProperties``/``TopicProperties`` pass through.

Differences, on purpose: the official emulator's narrower ranges (TTL at most PT1H, MaxDeliveryCount at
most 10, at most 50 entities, fixed 256 KB messages) apply only with ``strict=True``; by default the
Azure Service Bus limits apply, and ``MaxMessageSizeInKilobytes`` (Premium's setting, up to 102400) may be
given for queues and topics. Every error names the offending field by its path in the document.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .broker.entities import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_MESSAGE_SIZE_LIMIT,
    EntityProperties,
    QueueProperties,
    Rule,
    RuleFilter,
    SubscriptionProperties,
    TopicProperties,
)
from .broker.filters import CorrelationFilter, SqlFilter, TrueFilter

__all__ = [
    "DEFAULT_NAMESPACE",
    "ConfigError",
    "EmulatorConfig",
    "load_config",
    "parse_config",
    "parse_duration",
]

DEFAULT_NAMESPACE = "sbemulatorns"

_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_TIMESPAN = re.compile(
    r"^(?:(?P<days>\d+)\.)?(?P<hours>\d{1,2}):(?P<minutes>\d{2}):(?P<seconds>\d{2}(?:\.\d+)?)$"
)


class ConfigError(ValueError):
    """Invalid configuration; ``field`` is the path of the offending value, e.g. ``Queues[0].Name``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class EmulatorConfig:
    """A loaded configuration: the namespace name and its entities, ready for ``Broker(config.entities)``."""

    namespace: str = DEFAULT_NAMESPACE
    entities: tuple[EntityProperties, ...] = ()
    logging: str = "Console"


def parse_duration(value: Any, *, field: str = "duration") -> float:
    """Seconds from an ISO-8601 duration (``PT1M``, ``P1DT2H``), a .NET TimeSpan (``00:01:00``) or a number.

    Years and months are refused: their length in seconds is ambiguous.
    """
    if isinstance(value, bool):
        raise ConfigError(field, f"expected an ISO-8601 duration such as 'PT1M', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().upper()
        match = _DURATION.match(text) if text.startswith("P") else _TIMESPAN.match(value.strip())
        if not match or text in ("P", "PT") or not any(match.groupdict().values()):
            raise ConfigError(field, f"expected an ISO-8601 duration such as 'PT1M' or 'P1D', got {value!r}")
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        seconds = (
            parts.get("weeks", 0.0) * 604800
            + parts.get("days", 0.0) * 86400
            + parts.get("hours", 0.0) * 3600
            + parts.get("minutes", 0.0) * 60
            + parts.get("seconds", 0.0)
        )
    else:
        raise ConfigError(field, f"expected an ISO-8601 duration such as 'PT1M', got {value!r}")
    if seconds <= 0:
        raise ConfigError(field, f"duration must be positive, got {value!r}")
    return seconds


# ------------------------------------------------------------------------------------------ field readers


class _Reader:
    """Reads one ``Properties`` object, remembering which keys were used so unknown ones are reported."""

    def __init__(self, data: Any, field: str, allowed: Sequence[str]) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(field, f"expected an object, got {type(data).__name__}")
        self.data = data
        self.field = field
        by_lower = {key.lower(): key for key in allowed}
        self.values: dict[str, Any] = {}
        for key, value in data.items():
            canonical = by_lower.get(str(key).lower())
            if canonical is None:
                raise ConfigError(
                    f"{field}.{key}", f"unknown property; expected one of {', '.join(sorted(allowed))}"
                )
            self.values[canonical] = value

    def path(self, key: str) -> str:
        return f"{self.field}.{key}"

    def boolean(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(self.path(key), f"expected true or false, got {value!r}")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.path(key), f"expected an integer, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(self.path(key), f"must be between {low} and {high}, got {value}")
        return value

    def duration(self, key: str, default: float | None, low: float, high: float | None) -> float | None:
        if key not in self.values or self.values[key] is None:
            return default
        seconds = parse_duration(self.values[key], field=self.path(key))
        if seconds < low or (high is not None and seconds > high):
            limit = f"between {_iso(low)} and {_iso(high)}" if high is not None else f"at least {_iso(low)}"
            raise ConfigError(self.path(key), f"must be {limit}, got {self.values[key]!r}")
        return seconds

    def entity_name(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ConfigError(self.path(key), f"expected an entity name, got {value!r}")
        return value

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(self.path(key), f"expected a string, got {value!r}")
        return value


def _iso(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"P{int(seconds // 86400)}D"
    if seconds % 60 == 0:
        return f"PT{int(seconds // 60)}M"
    return f"PT{seconds:g}S"


@dataclass(frozen=True)
class _Limits:
    lock_min: float
    lock_max: float
    delivery_max: int
    ttl_min: float
    ttl_max: float | None
    dedupe_min: float
    dedupe_max: float
    size_configurable: bool
    max_entities: int | None


_AZURE = _Limits(5.0, 300.0, 2000, 1.0, None, 20.0, 7 * 86400.0, True, None)
_OFFICIAL = _Limits(5.0, 300.0, 10, 300.0, 3600.0, 5.0, 300.0, False, 50)

_QUEUE_KEYS = (
    "DeadLetteringOnMessageExpiration",
    "DefaultMessageTimeToLive",
    "DuplicateDetectionHistoryTimeWindow",
    "ForwardDeadLetteredMessagesTo",
    "ForwardTo",
    "LockDuration",
    "MaxDeliveryCount",
    "RequiresDuplicateDetection",
    "RequiresSession",
    "MaxMessageSizeInKilobytes",
)
_TOPIC_KEYS = (
    "DefaultMessageTimeToLive",
    "DuplicateDetectionHistoryTimeWindow",
    "RequiresDuplicateDetection",
    "MaxMessageSizeInKilobytes",
)
_SUBSCRIPTION_KEYS = (
    "DeadLetteringOnMessageExpiration",
    "DefaultMessageTimeToLive",
    "ForwardDeadLetteredMessagesTo",
    "ForwardTo",
    "LockDuration",
    "MaxDeliveryCount",
    "RequiresSession",
)
_CORRELATION_KEYS = {
    "ContentType": "content_type",
    "CorrelationId": "correlation_id",
    "Label": "subject",
    "MessageId": "message_id",
    "ReplyTo": "reply_to",
    "ReplyToSessionId": "reply_to_session_id",
    "SessionId": "session_id",
    "To": "to",
}


def _name(item: Mapping[str, Any], field: str) -> str:
    name = item.get("Name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{field}.Name", f"expected a non-empty string, got {name!r}")
    return name


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(field, f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(field, f"expected a list, got {type(value).__name__}")
    return list(value)


def _build(field: str, factory: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return factory(*args, **kwargs)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(field, str(exc)) from exc


def _max_size(reader: _Reader, limits: _Limits) -> int:
    if "MaxMessageSizeInKilobytes" not in reader.values:
        return DEFAULT_MAX_MESSAGE_SIZE
    if not limits.size_configurable:
        raise ConfigError(
            reader.path("MaxMessageSizeInKilobytes"),
            "the official emulator's message size is fixed at 256 KB",
        )
    kb = reader.integer("MaxMessageSizeInKilobytes", 256, 1, MAX_MESSAGE_SIZE_LIMIT // 1024)
    return kb * 1024


def _queue(item: Any, field: str, limits: _Limits) -> QueueProperties:
    item = _object(item, field)
    name = _name(item, field)
    props = _Reader(item.get("Properties"), f"{field}.Properties", _QUEUE_KEYS)
    return _build(
        f"{field}.Name",
        QueueProperties,
        name,
        lock_duration=props.duration("LockDuration", 60.0, limits.lock_min, limits.lock_max),
        max_delivery_count=props.integer("MaxDeliveryCount", 3, 1, limits.delivery_max),
        requires_session=props.boolean("RequiresSession", False),
        requires_duplicate_detection=props.boolean("RequiresDuplicateDetection", False),
        duplicate_detection_window=props.duration(
            "DuplicateDetectionHistoryTimeWindow", 20.0, limits.dedupe_min, limits.dedupe_max
        ),
        default_ttl=props.duration("DefaultMessageTimeToLive", 3600.0, limits.ttl_min, limits.ttl_max),
        dead_lettering_on_expiration=props.boolean("DeadLetteringOnMessageExpiration", False),
        forward_to=props.entity_name("ForwardTo"),
        forward_dead_lettered_to=props.entity_name("ForwardDeadLetteredMessagesTo"),
        max_message_size=_max_size(props, limits),
    )


def _rule_filter(props: _Reader) -> RuleFilter:
    kind = props.text("FilterType")
    if kind is None:
        if "SqlFilter" in props.values:
            kind = "Sql"
        elif "CorrelationFilter" in props.values:
            kind = "Correlation"
        else:
            return TrueFilter()
    if kind.lower() == "correlation":
        data = _Reader(
            props.values.get("CorrelationFilter"),
            props.path("CorrelationFilter"),
            (*_CORRELATION_KEYS, "Properties"),
        )
        kwargs: dict[str, Any] = {}
        for key, attr in _CORRELATION_KEYS.items():
            value = data.text(key)
            if value is not None:
                kwargs[attr] = value
        app = data.values.get("Properties") or {}
        kwargs["properties"] = dict(_object(app, data.path("Properties")))
        return CorrelationFilter(**kwargs)
    if kind.lower() == "sql":
        data = _Reader(props.values.get("SqlFilter"), props.path("SqlFilter"), ("SqlExpression",))
        expression = data.text("SqlExpression")
        if not expression:
            raise ConfigError(data.path("SqlExpression"), "a SQL filter needs an expression")
        return _build(data.path("SqlExpression"), SqlFilter, expression)
    raise ConfigError(props.path("FilterType"), f"expected 'Correlation' or 'Sql', got {kind!r}")


def _rule(item: Any, field: str) -> Rule:
    item = _object(item, field)
    name = _name(item, field)
    props = _Reader(
        item.get("Properties"),
        f"{field}.Properties",
        ("FilterType", "CorrelationFilter", "SqlFilter", "Action"),
    )
    action = None
    if props.values.get("Action") is not None:
        action_reader = _Reader(props.values["Action"], props.path("Action"), ("SqlExpression",))
        action = action_reader.text("SqlExpression")
    return Rule(name, _rule_filter(props), action=action)


def _subscription(item: Any, field: str, limits: _Limits) -> SubscriptionProperties:
    item = _object(item, field)
    name = _name(item, field)
    props = _Reader(item.get("Properties"), f"{field}.Properties", _SUBSCRIPTION_KEYS)
    rules = tuple(
        _rule(rule, f"{field}.Rules[{i}]")
        for i, rule in enumerate(_list(item.get("Rules"), f"{field}.Rules"))
    )
    return _build(
        f"{field}.Name",
        SubscriptionProperties,
        name,
        lock_duration=props.duration("LockDuration", 60.0, limits.lock_min, limits.lock_max),
        max_delivery_count=props.integer("MaxDeliveryCount", 3, 1, limits.delivery_max),
        requires_session=props.boolean("RequiresSession", False),
        default_ttl=props.duration("DefaultMessageTimeToLive", 3600.0, limits.ttl_min, limits.ttl_max),
        dead_lettering_on_expiration=props.boolean("DeadLetteringOnMessageExpiration", False),
        forward_to=props.entity_name("ForwardTo"),
        forward_dead_lettered_to=props.entity_name("ForwardDeadLetteredMessagesTo"),
        rules=rules,
    )


def _topic(item: Any, field: str, limits: _Limits) -> TopicProperties:
    item = _object(item, field)
    name = _name(item, field)
    props = _Reader(item.get("Properties"), f"{field}.Properties", _TOPIC_KEYS)
    subs_field = f"{field}.Subscriptions"
    subs = _list(item.get("Subscriptions"), subs_field)
    if limits.max_entities is not None and not 1 <= len(subs) <= 50:
        raise ConfigError(subs_field, f"a topic needs 1 to 50 subscriptions, got {len(subs)}")
    subscriptions = tuple(_subscription(sub, f"{subs_field}[{i}]", limits) for i, sub in enumerate(subs))
    return _build(
        f"{field}.Name",
        TopicProperties,
        name,
        requires_duplicate_detection=props.boolean("RequiresDuplicateDetection", False),
        duplicate_detection_window=props.duration(
            "DuplicateDetectionHistoryTimeWindow", 20.0, limits.dedupe_min, limits.dedupe_max
        ),
        default_ttl=props.duration("DefaultMessageTimeToLive", 3600.0, limits.ttl_min, limits.ttl_max),
        max_message_size=_max_size(props, limits),
        subscriptions=subscriptions,
    )


def _entity(item: Any, field: str, limits: _Limits) -> EntityProperties:
    if isinstance(item, (QueueProperties, TopicProperties)):
        return item
    data = _object(item, field)
    return _topic(data, field, limits) if "Subscriptions" in data else _queue(data, field, limits)


def _check_references(entities: Sequence[tuple[str, EntityProperties]]) -> None:
    names: dict[str, str] = {}
    for field, entity in entities:
        key = entity.name.lower()
        if key in names:
            raise ConfigError(
                f"{field}.Name",
                f"entity {entity.name!r} is already defined at {names[key]} (names are case-insensitive)",
            )
        names[key] = field
    for field, entity in entities:
        targets: list[tuple[str, str | None]] = []
        if isinstance(entity, QueueProperties):
            targets = [
                (f"{field}.Properties.ForwardTo", entity.forward_to),
                (f"{field}.Properties.ForwardDeadLetteredMessagesTo", entity.forward_dead_lettered_to),
            ]
        else:
            for i, sub in enumerate(entity.subscriptions):
                base = f"{field}.Subscriptions[{i}].Properties"
                targets += [
                    (f"{base}.ForwardTo", sub.forward_to),
                    (f"{base}.ForwardDeadLetteredMessagesTo", sub.forward_dead_lettered_to),
                ]
        for target_field, target in targets:
            if target and target.lower() not in names:
                raise ConfigError(
                    target_field,
                    f"names unknown entity {target!r}; configured: {', '.join(sorted(n for n in names))}",
                )


def _namespace(data: Mapping[str, Any], field: str, limits: _Limits) -> tuple[str, list[EntityProperties]]:
    name = data.get("Name", DEFAULT_NAMESPACE)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{field}.Name", f"expected a non-empty string, got {name!r}")
    unknown = set(data) - {"Name", "Queues", "Topics"}
    if unknown:
        raise ConfigError(f"{field}.{sorted(unknown)[0]}", "unknown key; expected Name, Queues, Topics")
    fields: list[tuple[str, EntityProperties]] = []
    for i, queue in enumerate(_list(data.get("Queues"), f"{field}.Queues")):
        fields.append((f"{field}.Queues[{i}]", _queue(queue, f"{field}.Queues[{i}]", limits)))
    for i, topic in enumerate(_list(data.get("Topics"), f"{field}.Topics")):
        fields.append((f"{field}.Topics[{i}]", _topic(topic, f"{field}.Topics[{i}]", limits)))
    if limits.max_entities is not None and len(fields) > limits.max_entities:
        raise ConfigError(field, f"at most {limits.max_entities} queues and topics, got {len(fields)}")
    _check_references(fields)
    return name, [entity for _, entity in fields]


def parse_config(data: Any, *, strict: bool = False) -> EmulatorConfig:
    """Build a configuration from parsed JSON or Python objects.

    Accepted shapes: the whole Config.json (``{"UserConfig": ...}``), its ``UserConfig`` object, one namespace
    object (``{"Name"?, "Queues", "Topics"}``), or a list whose items are ``QueueProperties``,
    ``TopicProperties`` or queue/topic objects in Config.json form (an object with ``Subscriptions`` is a
    topic). ``strict`` applies the official emulator's limits instead of Azure's.
    """
    limits = _OFFICIAL if strict else _AZURE
    if isinstance(data, Mapping):
        logging = "Console"
        field = "$"
        if "UserConfig" in data:
            data = _object(data["UserConfig"], "UserConfig")
            field = "UserConfig"
        if "Namespaces" in data:
            logging_data = data.get("Logging")
            if logging_data is not None:
                logging = _Reader(logging_data, f"{field}.Logging", ("Type",)).text("Type") or "Console"
            namespaces = _list(data["Namespaces"], f"{field}.Namespaces")
            if len(namespaces) != 1:
                raise ConfigError(
                    f"{field}.Namespaces", f"exactly one namespace is supported, got {len(namespaces)}"
                )
            ns_field = f"{field}.Namespaces[0]"
            name, entities = _namespace(_object(namespaces[0], ns_field), ns_field, limits)
            return EmulatorConfig(name, tuple(entities), logging)
        if "Queues" in data or "Topics" in data:
            name, entities = _namespace(data, field, limits)
            return EmulatorConfig(name, tuple(entities), logging)
        raise ConfigError(field, "expected UserConfig, Namespaces, or Queues/Topics")
    items = _list(data, "$")
    fields = [(f"[{i}]", _entity(item, f"[{i}]", limits)) for i, item in enumerate(items)]
    _check_references(fields)
    return EmulatorConfig(DEFAULT_NAMESPACE, tuple(entity for _, entity in fields))


def load_config(path: str | os.PathLike[str], *, strict: bool = False) -> EmulatorConfig:
    """Read a Config.json file; JSON syntax errors are reported with the file name and position."""
    with open(path, encoding="utf-8-sig") as handle:
        text = handle.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            str(path), f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    return parse_config(data, strict=strict)
