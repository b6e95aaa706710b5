"""Creating the async BlobServiceClient, and keeping secrets out of everything we raise.

Two ways in, as everywhere in dtf-sb: a connection string (including ``UseDevelopmentStorage=true``), or
an account URL plus an ``azure-identity`` credential.

API version: the SDK's default (2026-10-06 for azure-storage-blob 12.31) is newer than any Azurite knows,
and Azurite rejects it unless started with ``--skipApiVersionCheck``. Our own Azurite fixture passes that
flag, but developers also run Azurite by hand (VS Code, Docker) without it. So for development storage
(``UseDevelopmentStorage=true``, the ``devstoreaccount1`` account or a loopback endpoint) we pin the newest
version the installed SDK supports that is not newer than :data:`DEVELOPMENT_API_VERSION`, which Azurite
3.35 and later accept. Real accounts keep the SDK default. An explicit ``api_version`` always wins.

Secrets: the SDK's own errors do not contain the account key, but our messages must not either, and a
wrong key should read as "wrong key", not as an XML dump. :func:`translate_errors` turns authentication
failures into :class:`StorageAuthenticationError` and connection failures into a :class:`StorageError`
naming only the endpoint.
"""

from __future__ import annotations

import functools
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar
from urllib.parse import urlparse

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.storage.blob.aio import BlobServiceClient

from dtf_sb.storage.errors import StorageAuthenticationError, StorageConfigurationError, StorageError

__all__ = [
    "DEVELOPMENT_API_VERSION",
    "BlobConnectionOptions",
    "create_blob_service_client",
    "guarded",
    "is_development_storage",
    "translate_errors",
]

#: Newest blob API version we pin for development storage (Azurite 3.35 accepts up to 2025-11-05).
DEVELOPMENT_API_VERSION = "2025-11-05"
_DEVELOPMENT_ACCOUNT = "devstoreaccount1"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_KNOWN_PARTS = frozenset(
    {
        "defaultendpointsprotocol",
        "accountname",
        "accountkey",
        "sharedaccesssignature",
        "blobendpoint",
        "queueendpoint",
        "tableendpoint",
        "fileendpoint",
        "endpointsuffix",
        "usedevelopmentstorage",
        "developmentstorageproxyuri",
    }
)


@dataclass(frozen=True, kw_only=True)
class BlobConnectionOptions:
    """Where Blob Storage is and how to authenticate. Secrets are excluded from ``repr``."""

    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None
    credential: Any = field(default=None, repr=False)
    api_version: str | None = None

    def create_client(self, **client_kwargs: Any) -> BlobServiceClient:
        """The client these options describe (see :func:`create_blob_service_client`)."""
        return create_blob_service_client(
            connection_string=self.connection_string,
            account_url=self.account_url,
            credential=self.credential,
            api_version=self.api_version,
            **client_kwargs,
        )


def _parse_connection_string(connection_string: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in connection_string.split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise StorageConfigurationError(
                "the Blob Storage connection string is malformed: every part must look like Name=value "
                "(parts are separated by ';')"
            )
        parts[key.strip().lower()] = value.strip()
    return parts


def is_development_storage(*, connection_string: str | None = None, account_url: str | None = None) -> bool:
    """True for Azurite-style endpoints: dev-storage shortcut, the dev account, or a loopback host."""
    urls: list[str] = []
    if connection_string is not None:
        parts = _parse_connection_string(connection_string)
        if parts.get("usedevelopmentstorage", "").lower() == "true":
            return True
        if parts.get("accountname", "").lower() == _DEVELOPMENT_ACCOUNT:
            return True
        if "blobendpoint" in parts:
            urls.append(parts["blobendpoint"])
    if account_url is not None:
        urls.append(account_url)
    for url in urls:
        host = (urlparse(url).hostname or "").lower()
        if host in _LOOPBACK_HOSTS:
            return True
    return False


def _development_api_version() -> str | None:
    """The newest SDK-supported API version not newer than :data:`DEVELOPMENT_API_VERSION`.

    The SDK refuses versions it does not know, so the pin must come from its own list; that list is
    private, hence the defensive import (with no list we leave the SDK default and rely on the flag).
    """
    try:
        from azure.storage.blob._serialize import _SUPPORTED_API_VERSIONS
    except ImportError:
        return None
    candidates = [v for v in _SUPPORTED_API_VERSIONS if v <= DEVELOPMENT_API_VERSION]
    return max(candidates) if candidates else None


def create_blob_service_client(
    *,
    connection_string: str | None = None,
    account_url: str | None = None,
    credential: Any = None,
    api_version: str | None = None,
    **client_kwargs: Any,
) -> BlobServiceClient:
    """An async BlobServiceClient from a connection string or an account URL plus credential.

    ``client_kwargs`` go to the SDK client (retry settings, ``logging_enable``, transport). The caller
    owns the client and closes it (``async with client`` or ``await client.close()``).
    """
    if (connection_string is None) == (account_url is None):
        raise StorageConfigurationError(
            "give exactly one of connection_string or account_url (with a credential) for Blob Storage"
        )
    if api_version is None and is_development_storage(
        connection_string=connection_string, account_url=account_url
    ):
        api_version = _development_api_version()
    if api_version is not None:
        client_kwargs["api_version"] = api_version
    if connection_string is not None:
        parts = _parse_connection_string(connection_string)
        usable = parts.get("usedevelopmentstorage", "").lower() == "true" or (
            ("accountname" in parts or "blobendpoint" in parts)
            and ("accountkey" in parts or "sharedaccesssignature" in parts or "blobendpoint" in parts)
        )
        if not usable:
            # only recognised part names: in a mangled string a "name" can be a piece of the key
            present = ", ".join(sorted(_KNOWN_PARTS.intersection(parts))) or "none recognised"
            raise StorageConfigurationError(
                "the Blob Storage connection string has no account: it needs AccountName and AccountKey "
                "(or SharedAccessSignature, or BlobEndpoint), or UseDevelopmentStorage=true; parts "
                f"present: {present}"
            )
        try:
            return _with_proxies_resolved_once(
                lambda **kw: BlobServiceClient.from_connection_string(
                    connection_string, credential=credential, **kw
                ),
                client_kwargs,
            )
        except (ValueError, TypeError) as exc:
            raise StorageConfigurationError(
                f"the Blob Storage connection string was rejected ({type(exc).__name__}); check its "
                "AccountName, AccountKey and BlobEndpoint parts"
            ) from None
    assert account_url is not None
    if not urlparse(account_url).scheme:
        raise StorageConfigurationError(
            f"account_url {_without_query(account_url)!r} needs a scheme, e.g. "
            "https://<account>.blob.core.windows.net"
        )
    try:
        return _with_proxies_resolved_once(
            lambda **kw: BlobServiceClient(account_url, credential=credential, **kw), client_kwargs
        )
    except (ValueError, TypeError) as exc:
        raise StorageConfigurationError(
            f"cannot create a Blob Storage client for {_without_query(account_url)!r} ({type(exc).__name__})"
        ) from None


def _with_proxies_resolved_once(
    build: Callable[..., BlobServiceClient], client_kwargs: dict[str, Any]
) -> BlobServiceClient:
    """Build the client with the environment's proxy settings read now, not on every request.

    By default the SDK's aiohttp transport trusts the environment, and aiohttp then parses the proxy
    variables and looks for a netrc file (on a worker thread) for every single request: a large share
    of a busy worker's CPU. A client talks to one account endpoint, so its proxy is decided here, once,
    with the same rules (``HTTP(S)_PROXY``, ``NO_PROXY``). A caller that passes its own ``transport``,
    ``use_env_settings`` or ``proxies`` keeps full control.
    """
    if any(key in client_kwargs for key in ("transport", "use_env_settings", "proxies")):
        return build(**client_kwargs)
    client = build(use_env_settings=False, **client_kwargs)
    proxies = _environment_proxies(client.url)
    if proxies:
        # the first client never opened a session, so there is nothing to close
        client = build(use_env_settings=False, proxies=proxies, **client_kwargs)
    return client


def _environment_proxies(url: str) -> dict[str, str]:
    parsed = urlparse(url)
    if not parsed.hostname or urllib.request.proxy_bypass(parsed.hostname):
        return {}
    proxy = urllib.request.getproxies().get(parsed.scheme)
    return {parsed.scheme: proxy} if proxy else {}


def _without_query(url: str) -> str:
    """A URL fit for messages: a SAS token travels in the query string, so the query is dropped."""
    return url.split("?", 1)[0].split("#", 1)[0]


def _error_code(exc: HttpResponseError) -> str:
    """The service's error code as sent (the SDK may wrap it in an enum whose str() is the enum name)."""
    code = exc.error_code
    return str(getattr(code, "value", code) or "")


def _is_auth_failure(exc: HttpResponseError) -> bool:
    code = _error_code(exc)
    return exc.status_code in (401, 403) and ("Authentication" in code or "Authorization" in code or not code)


@asynccontextmanager
async def translate_errors(client: BlobServiceClient) -> AsyncIterator[None]:
    """Re-raise authentication and connection failures as our errors, naming only the endpoint.

    ``from None``: the original exception holds the HTTP request, which we do not want printed next to
    our message in tracebacks (it carries the signed Authorization header).
    """
    try:
        yield
    except ClientAuthenticationError as exc:
        raise StorageAuthenticationError(_auth_message(client, exc)) from None
    except HttpResponseError as exc:
        if _is_auth_failure(exc):
            raise StorageAuthenticationError(_auth_message(client, exc)) from None
        raise
    except ServiceRequestError:
        raise StorageError(
            f"cannot reach Blob Storage at {_endpoint(client)}: connection failed (is the account URL "
            "right, and for development storage is Azurite running?)"
        ) from None


def _endpoint(client: BlobServiceClient) -> str:
    parsed = urlparse(client.url)
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"


def _auth_message(client: BlobServiceClient, exc: HttpResponseError) -> str:
    return (
        f"Blob Storage at {_endpoint(client)} refused the credentials of account {client.account_name!r} "
        f"(HTTP {exc.status_code} {_error_code(exc)}): check the account key, SAS token or the "
        "credential's role assignment"
    )


_P = ParamSpec("_P")
_R = TypeVar("_R")


class _HasService(Protocol):
    @property
    def service_client(self) -> BlobServiceClient: ...


_S = TypeVar("_S", bound=_HasService)


def guarded(
    method: Callable[Concatenate[_S, _P], Awaitable[_R]],
) -> Callable[Concatenate[_S, _P], Awaitable[_R]]:
    """Decorate a store method so its failures go through :func:`translate_errors`."""

    @functools.wraps(method)
    async def wrapper(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        async with translate_errors(self.service_client):
            return await method(self, *args, **kwargs)

    return wrapper
