"""SAS token validation: what Service Bus accepts and refuses on $cbs put-token."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote, quote_plus

import pytest
from azure.servicebus._pyamqp.utils import generate_sas_token as sdk_generate_sas_token

from dtf_sb.emulator.auth import Grants, SasError, generate_sas_token, resource_path, validate_sas_token

KEYS = {"RootManageSharedAccessKey": "SAS_KEY_VALUE", "listen": "other-secret"}
NOW = 1_800_000_000.0


def _now() -> float:
    return NOW


def test_accepts_the_python_sdk_token() -> None:
    token = sdk_generate_sas_token(
        "sb://127.0.0.1:5672/q1", "RootManageSharedAccessKey", "SAS_KEY_VALUE", int(NOW) + 60
    )
    granted = validate_sas_token(token, KEYS, now=_now)
    assert granted.resource == "q1"
    assert granted.key_name == "RootManageSharedAccessKey"
    assert granted.expires_at == NOW + 60


def test_accepts_a_javascript_style_token() -> None:
    uri = "sb://127.0.0.1:5672/q1/$DeadLetterQueue"
    encoded = quote(uri, safe="~()*!.'")  # encodeURIComponent
    expiry = int(NOW) + 60
    sig = base64.b64encode(
        hmac.new(b"SAS_KEY_VALUE", f"{encoded}\n{expiry}".encode(), hashlib.sha256).digest()
    ).decode()
    token = f"SharedAccessSignature sr={encoded}&sig={quote(sig, safe='')}&se={expiry}&skn=RootManageSharedAccessKey"
    assert validate_sas_token(token, KEYS, now=_now).resource == "q1/$deadletterqueue"


@pytest.mark.parametrize(
    ("key_name", "key", "expiry", "message"),
    [
        ("RootManageSharedAccessKey", "wrong", 60, "signature"),
        ("listen", "SAS_KEY_VALUE", 60, "signature"),
        ("nobody", "SAS_KEY_VALUE", 60, "unknown shared access policy"),
        ("RootManageSharedAccessKey", "SAS_KEY_VALUE", -1, "expired"),
    ],
)
def test_refuses_bad_tokens(key_name: str, key: str, expiry: int, message: str) -> None:
    token = generate_sas_token("sb://host/q1", key_name, key, expiry=int(NOW) + expiry)
    with pytest.raises(SasError, match=message):
        validate_sas_token(token, KEYS, now=_now)


@pytest.mark.parametrize(
    "token", ["Bearer abc", "SharedAccessSignature sr=x&sig=y", "SharedAccessSignature junk"]
)
def test_refuses_malformed_tokens(token: str) -> None:
    with pytest.raises(SasError):
        validate_sas_token(token, KEYS, now=_now)


def test_tampered_resource_breaks_the_signature() -> None:
    token = generate_sas_token(
        "sb://host/q1", "RootManageSharedAccessKey", "SAS_KEY_VALUE", expiry=int(NOW) + 60
    )
    forged = token.replace(quote_plus("sb://host/q1"), quote_plus("sb://host/q2"))
    with pytest.raises(SasError, match="signature"):
        validate_sas_token(forged, KEYS, now=_now)


def test_token_covers_its_resource_by_path_segments() -> None:
    granted = validate_sas_token(
        generate_sas_token(
            "sb://host/orders", "RootManageSharedAccessKey", "SAS_KEY_VALUE", expiry=int(NOW) + 60
        ),
        KEYS,
        now=_now,
    )
    assert granted.covers("Orders")
    assert granted.covers("orders/$DeadLetterQueue")
    assert granted.covers("amqps://host:5671/orders/$management")
    assert not granted.covers("orders2")
    assert not granted.covers("other")


def test_namespace_token_covers_everything_until_it_expires() -> None:
    token = generate_sas_token(
        "sb://host/", "RootManageSharedAccessKey", "SAS_KEY_VALUE", expiry=int(NOW) + 60
    )
    grants = Grants()
    grants.add(validate_sas_token(token, KEYS, now=_now))
    assert grants.allows("anything/at/all", NOW)
    assert not grants.allows("anything", NOW + 61)
    assert Grants(everything=True).allows("x", NOW + 10**9)
    assert not Grants().allows("x", NOW)


def test_resource_path_normalises_uris() -> None:
    assert resource_path("amqps://HOST:5671/Q1/") == "q1"
    assert resource_path("/t1/Subscriptions/S") == "t1/subscriptions/s"
    assert resource_path("sb://host") == ""
