"""Subscription filters: correlation matching and the supported SQL subset."""

from __future__ import annotations

import pytest

from dtf_sb.emulator.broker import CorrelationFilter, FalseFilter, MessageView, SqlFilter, TrueFilter

ORDER = MessageView(
    {"message_id": "m-1", "subject": "order", "content_type": "application/json", "session_id": "s1"},
    {b"region": b"eu", "amount": 120, "priority": 2.5, "tag": "gold-plus"},
)


def test_true_false() -> None:
    assert TrueFilter().matches(ORDER)
    assert not FalseFilter().matches(ORDER)


def test_correlation_filter_matches_all_given_fields() -> None:
    assert CorrelationFilter(subject="order", properties={"region": "eu"}).matches(ORDER)
    assert not CorrelationFilter(subject="order", properties={"region": "us"}).matches(ORDER)
    assert not CorrelationFilter(correlation_id="c").matches(ORDER)
    assert not CorrelationFilter(properties={"missing": None}).matches(ORDER)
    assert CorrelationFilter().matches(ORDER)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1=1", True),
        ("1 = 0", False),
        ("TRUE", True),
        ("sys.MessageId = 'm-1'", True),
        ("sys.Label = 'order' AND region = 'eu'", True),
        ("sys.Label = 'order' AND region = 'us'", False),
        ("region = 'us' OR amount > 100", True),
        ("NOT (amount > 100)", False),
        ("amount >= 120 AND amount <= 120 AND amount <> 121 AND amount != 1", True),
        ("priority < 3", True),
        ("user.region IN ('eu', 'us')", True),
        ("region NOT IN ('eu')", False),
        ("tag LIKE 'gold%'", True),
        ("tag LIKE 'g_ld-plus'", True),
        ("tag NOT LIKE '%silver%'", True),
        ("missing IS NULL AND region IS NOT NULL", True),
        ("EXISTS(region) AND NOT EXISTS(missing)", True),
        ("missing = 'x'", False),
        ("NOT missing = 'x'", False),  # unknown stays unknown under NOT
        ("missing = 'x' OR region = 'eu'", True),
        ("NOT (missing = 'x' AND region = 'us')", True),  # unknown AND false is false
        ("FALSE OR amount > 1", True),
        ("sys.ContentType = 'application/json'", True),
        ("sys.SessionId = 's1'", True),
        ("[region] = 'eu'", True),
        ("region = 'it''s'", False),
        ("amount = 'text'", False),
    ],
)
def test_sql_subset(expression: str, expected: bool) -> None:
    assert SqlFilter(expression).matches(ORDER) is expected


@pytest.mark.parametrize(
    "expression",
    [
        "amount + 1 > 2",
        "sys.Unknown = 1",
        "region =",
        "(region = 'eu'",
        "upper(region) = 'EU'",
        "region ~ 'x'",
    ],
)
def test_unsupported_sql_is_refused_when_built(expression: str) -> None:
    with pytest.raises(ValueError):
        SqlFilter(expression)
