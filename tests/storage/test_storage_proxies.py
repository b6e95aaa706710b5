"""Proxy settings are read from the environment once per client, with the usual rules."""

from __future__ import annotations

import pytest

from dtf_sb.storage import create_blob_service_client

ACCOUNT = "https://acct.blob.core.windows.net"


def _proxy_of(client: object) -> object:
    return client._config.proxy_policy.proxies  # type: ignore[attr-defined]


def _trusts_environment(client: object) -> bool:
    return client._pipeline._transport._use_env_settings  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_requests_do_not_consult_the_environment_each_time() -> None:
    client = create_blob_service_client(account_url=ACCOUNT, credential="key")
    assert not _trusts_environment(client)
    assert not _proxy_of(client)


def test_an_https_proxy_in_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    client = create_blob_service_client(account_url=ACCOUNT, credential="key")
    assert _proxy_of(client) == {"https": "http://proxy.example:3128"}


def test_no_proxy_exempts_the_account_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", ".blob.core.windows.net")
    client = create_blob_service_client(account_url=ACCOUNT, credential="key")
    assert not _proxy_of(client)


def test_explicit_transport_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    client = create_blob_service_client(account_url=ACCOUNT, credential="key", use_env_settings=True)
    assert _trusts_environment(client)
    assert not _proxy_of(client)
