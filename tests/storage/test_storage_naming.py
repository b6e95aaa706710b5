"""Pure rules of the storage layer: names, tag encodings, tokens, history framing, connection parsing."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtf_sb.storage import (
    BlobConnectionOptions,
    InvalidHubNameError,
    StorageConfigurationError,
    container_names,
    create_blob_service_client,
    is_development_storage,
    is_finished,
)
from dtf_sb.storage.history_log import frame_lines, parse_lines
from dtf_sb.storage.naming import (
    encode_instance_segment,
    encode_segment,
    format_time,
    instance_prefix_bounds,
    instance_tag,
    name_tag,
    parse_time,
    status_key,
)
from dtf_sb.storage.tag_query import InstanceQuery, decode_token, encode_token

SECRET = "c2VjcmV0LWtleS10aGF0LW11c3QtbmV2ZXItYmUtcHJpbnRlZC1hbnl3aGVyZS0xMjM0NTY3OA=="
TAG_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 +-.:=_/")


# -- containers ----------------------------------------------------------------------------------


def test_container_names_follow_azure_rules() -> None:
    names = container_names("My_Hub.v2")
    assert names.payloads == "my-hub-v2-payloads"
    assert names.instances == "my-hub-v2-instances"
    assert len(container_names("h" * 53).instances) == 63


@pytest.mark.parametrize(
    ("hub", "reason"),
    [
        ("", "empty"),
        ("h" * 54, "at most 53"),
        ("-hub", "single hyphens"),
        ("a--b", "single hyphens"),
        ("hub!", "single hyphens"),
        ("hub/x", "single hyphens"),
    ],
)
def test_unmappable_hub_names_explain_why(hub: str, reason: str) -> None:
    with pytest.raises(InvalidHubNameError, match=reason) as info:
        container_names(hub)
    assert repr(hub) in str(info.value)


# -- path segments and tags ----------------------------------------------------------------------


@given(st.text(min_size=1, max_size=60))
def test_segments_never_split_or_normalise(value: str) -> None:
    segment = encode_segment(value)
    assert "/" not in segment and segment not in (".", "..")
    assert set(segment) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-%")


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_segment_encoding_is_injective(a: str, b: str) -> None:
    assert (encode_segment(a) == encode_segment(b)) == (a == b)


def test_instance_segments_fold_case_like_session_ids() -> None:
    assert encode_instance_segment("Order-ABC") == encode_instance_segment("order-abc") == "order-abc"


@given(st.text(min_size=1, max_size=40), st.text(max_size=40))
def test_instance_prefix_range_contains_exactly_the_prefixed_ids(prefix: str, rest: str) -> None:
    low, high = instance_prefix_bounds(prefix)
    tag = instance_tag(prefix + rest)
    assert low <= tag < high
    assert set(tag) <= set("0123456789abcdef")


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_ids_without_the_prefix_fall_outside_its_range(prefix: str, other: str) -> None:
    if other.lower().startswith(prefix.lower()):
        return
    low, high = instance_prefix_bounds(prefix)
    inside = low <= instance_tag(other) < high
    # the tag keeps 120 bytes, so only ids that agree on all of them may be confused
    assert not inside or len(other.lower().encode()) >= 120


@given(st.text(max_size=300), st.text(max_size=300))
def test_name_tags_are_tag_safe_and_equality_preserving(a: str, b: str) -> None:
    assert set(name_tag(a)) <= TAG_CHARS and len(name_tag(a)) <= 256
    assert (name_tag(a) == name_tag(b)) == (a == b)


@given(
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)),
)
def test_time_tags_sort_like_times(a: datetime, b: datetime) -> None:
    assert (format_time(a) < format_time(b)) == (a < b)
    assert parse_time(format_time(a)) == a.replace(tzinfo=timezone.utc)


def test_aware_times_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 1, 1, 14, 0, tzinfo=plus_two)) == "2026-01-01T12:00:00.000000Z"


def test_status_spellings_share_one_key() -> None:
    assert status_key("ContinuedAsNew") == status_key("CONTINUED_AS_NEW") == "CONTINUEDASNEW"
    assert is_finished("Completed") and is_finished("TERMINATED") and is_finished("canceled")
    assert not is_finished("Running") and not is_finished("ContinuedAsNew") and not is_finished("Pending")


# -- queries -------------------------------------------------------------------------------------


def test_multiple_statuses_become_one_expression_each() -> None:
    query = InstanceQuery(statuses=["Running", "RUNNING", "Failed"], name="hello world")
    expressions = query.expressions()
    assert len(expressions) == 2
    assert "\"status\" = 'RUNNING'" in expressions[0] and "\"status\" = 'FAILED'" in expressions[1]
    assert all("\"kind\" = 'state'" in e and "\"name\" = 'hello world'" in e for e in expressions)


def test_name_with_quote_cannot_break_the_expression() -> None:
    [expression] = InstanceQuery(name="x' OR \"kind\" = 'jumpstart").expressions()
    assert expression.count("'") == 4


@given(st.integers(min_value=0, max_value=50), st.none() | st.text(), st.none() | st.text())
def test_tokens_round_trip(index: int, marker: str | None, after: str | None) -> None:
    assert decode_token(encode_token(index, marker, after)) == (index, marker, after)


@pytest.mark.parametrize("token", ["", "%%%", "WzEsMl0", "eyJhIjoxfQ"])
def test_foreign_tokens_are_rejected(token: str) -> None:
    with pytest.raises(ValueError, match="continuation_token"):
        decode_token(token)


# -- history framing -----------------------------------------------------------------------------


@given(st.lists(st.binary().filter(lambda b: b"\n" not in b), max_size=20))
def test_framed_lines_parse_back(lines: list[bytes]) -> None:
    assert parse_lines(frame_lines(0, lines)) == lines


def test_cut_short_last_line_is_not_an_event() -> None:
    data = frame_lines(0, [b"{}", b"[1]"])
    assert parse_lines(data + frame_lines(2, [b'"partial"'])[:9]) == [b"{}", b"[1]"]


# -- connection ----------------------------------------------------------------------------------


def test_development_storage_detection() -> None:
    assert is_development_storage(connection_string="UseDevelopmentStorage=true")
    assert is_development_storage(
        connection_string=f"AccountName=x;AccountKey={SECRET};BlobEndpoint=http://localhost:10000/x"
    )
    assert is_development_storage(account_url="http://127.0.0.1:10000/devstoreaccount1")
    assert not is_development_storage(
        connection_string=f"DefaultEndpointsProtocol=https;AccountName=prod;AccountKey={SECRET}"
    )


def test_development_client_pins_api_version_and_real_one_does_not() -> None:
    dev = create_blob_service_client(connection_string="UseDevelopmentStorage=true")
    assert dev.api_version <= "2025-11-05"
    real = create_blob_service_client(
        connection_string=f"DefaultEndpointsProtocol=https;AccountName=prod;AccountKey={SECRET}"
    )
    assert real.api_version > "2025-11-05"
    explicit = create_blob_service_client(
        connection_string="UseDevelopmentStorage=true", api_version="2025-05-05"
    )
    assert explicit.api_version == "2025-05-05"


@pytest.mark.parametrize(
    "connection_string",
    [
        f"garbage{SECRET}",
        f"AccountKey={SECRET}",
        f"Foo={SECRET};Bar=1",
        f"AccountName=x;AccountKey={SECRET};junk",
    ],
)
def test_bad_connection_strings_never_echo_the_secret(
    connection_string: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StorageConfigurationError) as info:
        create_blob_service_client(connection_string=connection_string)
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    for form in (SECRET, SECRET.lower(), SECRET[:20].lower()):
        assert form not in str(info.value).lower()
    assert info.value.__cause__ is None


def test_exactly_one_way_to_connect() -> None:
    with pytest.raises(StorageConfigurationError, match="exactly one"):
        create_blob_service_client()
    with pytest.raises(StorageConfigurationError, match="exactly one"):
        create_blob_service_client(connection_string="UseDevelopmentStorage=true", account_url="https://x")
    with pytest.raises(StorageConfigurationError, match="scheme") as info:
        create_blob_service_client(account_url=f"x.blob.core.windows.net/?sv=2025&sig={SECRET}")
    assert SECRET not in str(info.value)


def test_options_repr_hides_secrets() -> None:
    options = BlobConnectionOptions(connection_string=f"AccountName=a;AccountKey={SECRET}", credential=SECRET)
    assert SECRET not in repr(options)


class _FakeTokenCredential:
    """Stands in for an azure-identity credential; constructing a client must not call it."""

    async def get_token(self, *scopes: str, **kwargs: object) -> object:
        raise AssertionError("no request is made while constructing a client")


def test_account_url_with_credential_uses_the_sdk_default_version() -> None:
    credential = _FakeTokenCredential()
    options = BlobConnectionOptions(account_url="https://prod.blob.core.windows.net", credential=credential)
    client = options.create_client()
    assert client.account_name == "prod"
    assert client.credential is credential
    assert client.api_version > "2025-11-05"
    assert "credential" not in repr(options)
