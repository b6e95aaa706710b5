"""Config.json loading: the official emulator's format, Python forms, defaults, errors naming fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dtf_sb.emulator.broker import (
    Broker,
    CorrelationFilter,
    FakeClock,
    IncomingMessage,
    QueueProperties,
    SqlFilter,
    TopicProperties,
    TrueFilter,
)
from dtf_sb.emulator.config import ConfigError, load_config, parse_config, parse_duration

SQL_EXPRESSION = "sys.MessageId = '123456' AND userProp1 = 'value1'"

SAMPLE = {
    "UserConfig": {
        "Namespaces": [
            {
                "Name": "sbemulatorns",
                "Queues": [
                    {
                        "Name": "queue.1",
                        "Properties": {
                            "DeadLetteringOnMessageExpiration": False,
                            "DefaultMessageTimeToLive": "PT1H",
                            "DuplicateDetectionHistoryTimeWindow": "PT20S",
                            "ForwardDeadLetteredMessagesTo": "",
                            "ForwardTo": "",
                            "LockDuration": "PT1M",
                            "MaxDeliveryCount": 3,
                            "RequiresDuplicateDetection": False,
                            "RequiresSession": False,
                        },
                    }
                ],
                "Topics": [
                    {
                        "Name": "topic.1",
                        "Properties": {
                            "DefaultMessageTimeToLive": "PT1H",
                            "DuplicateDetectionHistoryTimeWindow": "PT20S",
                            "RequiresDuplicateDetection": False,
                        },
                        "Subscriptions": [
                            {
                                "Name": "subscription.1",
                                "Properties": {
                                    "DeadLetteringOnMessageExpiration": False,
                                    "DefaultMessageTimeToLive": "PT1H",
                                    "LockDuration": "PT1M",
                                    "MaxDeliveryCount": 3,
                                    "ForwardDeadLetteredMessagesTo": "",
                                    "ForwardTo": "",
                                    "RequiresSession": False,
                                },
                                "Rules": [
                                    {
                                        "Name": "app-prop-filter-1",
                                        "Properties": {
                                            "FilterType": "Correlation",
                                            "CorrelationFilter": {"ContentType": "application/json"},
                                        },
                                    },
                                    {
                                        "Name": "sql-filter-1",
                                        "Properties": {
                                            "FilterType": "Sql",
                                            "SqlFilter": {"SqlExpression": SQL_EXPRESSION},
                                            "Action": {"SqlExpression": "SET sys.To = 'Entity'"},
                                        },
                                    },
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
        "Logging": {"Type": "File"},
    }
}


def test_official_sample_loads_with_its_values(tmp_path: Path) -> None:
    path = tmp_path / "Config.json"
    path.write_text(json.dumps(SAMPLE), encoding="utf-8")
    config = load_config(path, strict=True)
    assert config.namespace == "sbemulatorns"
    assert config.logging == "File"
    queue, topic = config.entities
    assert queue == QueueProperties(
        "queue.1",
        lock_duration=60.0,
        max_delivery_count=3,
        duplicate_detection_window=20.0,
        default_ttl=3600.0,
    )
    assert isinstance(topic, TopicProperties)
    sub = topic.subscriptions[0]
    assert sub.name == "subscription.1" and sub.max_delivery_count == 3
    assert [rule.name for rule in sub.rules] == ["app-prop-filter-1", "sql-filter-1"]
    assert sub.rules[0].filter == CorrelationFilter(content_type="application/json")
    assert isinstance(sub.rules[1].filter, SqlFilter)
    assert sub.rules[1].action == "SET sys.To = 'Entity'"


def test_sample_entities_drive_a_broker_through_the_rules() -> None:
    broker = Broker(parse_config(SAMPLE).entities, clock=FakeClock())
    path = "topic.1/Subscriptions/subscription.1"
    broker.send(
        "topic.1", [IncomingMessage(b"json", "a", system_properties={"content_type": "application/json"})]
    )
    broker.send(
        "topic.1", [IncomingMessage(b"sql", "123456", application_properties={b"userProp1": b"value1"})]
    )
    broker.send(
        "topic.1", [IncomingMessage(b"neither", "zzz", application_properties={"userProp1": "value1"})]
    )
    assert [m.bare for m in broker.receive(path, max_count=10)] == [b"json", b"sql"]


def test_defaults_follow_the_official_emulator() -> None:
    (queue,) = parse_config({"Queues": [{"Name": "q"}], "Topics": []}).entities
    assert isinstance(queue, QueueProperties)
    assert (queue.lock_duration, queue.max_delivery_count, queue.default_ttl) == (60.0, 3, 3600.0)
    assert queue.duplicate_detection_window == 20.0
    assert queue.max_message_size == 256 * 1024


def test_python_list_form_mixes_objects_and_dicts() -> None:
    config = parse_config(
        [
            QueueProperties("hub/orchestrator", requires_session=True, forward_dead_lettered_to="parking"),
            {"Name": "parking", "Properties": {"MaxMessageSizeInKilobytes": 1024}},
            {"Name": "t", "Subscriptions": [{"Name": "all"}]},
        ]
    )
    orchestrator, parking, topic = config.entities
    assert isinstance(orchestrator, QueueProperties) and orchestrator.requires_session
    assert isinstance(parking, QueueProperties) and parking.max_message_size == 1024 * 1024
    assert isinstance(topic, TopicProperties)
    assert topic.subscriptions[0].effective_rules[0].filter == TrueFilter()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT1M", 60),
        ("PT20S", 20),
        ("PT1H", 3600),
        ("P1D", 86400),
        ("P1DT1H1M1.5S", 90061.5),
        ("00:05:00", 300),
        ("1.00:00:00", 86400),
        (45, 45),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["PT", "P", "1M", "P1Y", "PT-1S", "PT0S", "", True, None])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ConfigError, match="LockDuration"):
        parse_duration(text, field="LockDuration")


def _queue_error(properties: dict[str, object], *, strict: bool = False) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config({"Queues": [{"Name": "q", "Properties": properties}], "Topics": []}, strict=strict)
    return info.value


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"LockDuration": "PT1S"}, "$.Queues[0].Properties.LockDuration"),
        ({"LockDuration": "PT10M"}, "$.Queues[0].Properties.LockDuration"),
        ({"LockDuration": "soon"}, "$.Queues[0].Properties.LockDuration"),
        ({"MaxDeliveryCount": 0}, "$.Queues[0].Properties.MaxDeliveryCount"),
        ({"MaxDeliveryCount": "3"}, "$.Queues[0].Properties.MaxDeliveryCount"),
        ({"RequiresSession": "yes"}, "$.Queues[0].Properties.RequiresSession"),
        ({"ForwardTo": "elsewhere"}, "$.Queues[0].Properties.ForwardTo"),
        ({"ForwardDeadLetteredMessagesTo": "x"}, "$.Queues[0].Properties.ForwardDeadLetteredMessagesTo"),
        ({"MaxMessageSizeInKilobytes": 200000}, "$.Queues[0].Properties.MaxMessageSizeInKilobytes"),
        ({"LockDurationTypo": "PT1M"}, "$.Queues[0].Properties.LockDurationTypo"),
    ],
)
def test_errors_name_the_field(properties: dict[str, object], field: str) -> None:
    error = _queue_error(properties)
    assert error.field == field
    assert str(error).startswith(field)


def test_strict_mode_applies_the_official_limits() -> None:
    assert _queue_error({"MaxDeliveryCount": 11}, strict=True).field.endswith("MaxDeliveryCount")
    assert _queue_error({"DefaultMessageTimeToLive": "P1D"}, strict=True).field.endswith(
        "DefaultMessageTimeToLive"
    )
    assert _queue_error({"MaxMessageSizeInKilobytes": 1024}, strict=True).field.endswith(
        "MaxMessageSizeInKilobytes"
    )
    # The same values are fine under Azure's limits.
    parse_config(
        {"Queues": [{"Name": "q", "Properties": {"MaxDeliveryCount": 11, "DefaultMessageTimeToLive": "P1D"}}]}
    )


def test_structural_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"Queues": [{"Name": "ok"}, {"Name": "OK"}]})
    assert info.value.field == "$.Queues[1].Name"
    with pytest.raises(ConfigError) as info:
        parse_config({"Queues": [{"Name": "bad name!"}]})
    assert info.value.field == "$.Queues[0].Name"
    with pytest.raises(ConfigError) as info:
        parse_config({"UserConfig": {"Namespaces": [{"Name": "a"}, {"Name": "b"}]}})
    assert info.value.field == "UserConfig.Namespaces"
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "Topics": [
                    {
                        "Name": "t",
                        "Subscriptions": [
                            {
                                "Name": "s",
                                "Rules": [
                                    {
                                        "Name": "r",
                                        "Properties": {
                                            "FilterType": "Sql",
                                            "SqlFilter": {"SqlExpression": "a +"},
                                        },
                                    }
                                ],
                            }
                        ],
                    }
                ]
            }
        )
    assert info.value.field == "$.Topics[0].Subscriptions[0].Rules[0].Properties.SqlFilter.SqlExpression"
    with pytest.raises(ConfigError) as info:
        parse_config({"Topics": [{"Name": "t", "Subscriptions": []}]}, strict=True)
    assert info.value.field == "$.Topics[0].Subscriptions"


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "Config.json"
    path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"Config\.json"):
        load_config(path)
