"""Service Bus clients from a connection string or a namespace plus an azure-identity credential.

Connection strings carry keys, so nothing built from one may echo it: every error raised here is
re-worded through ``redact`` and the original exception is not chained (its text may include the
string). Log lines name the namespace host, never the string.
"""

from __future__ import annotations

import functools
import re
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.servicebus.aio import ServiceBusClient
    from azure.servicebus.aio.management import ServiceBusAdministrationClient

__all__ = [
    "ServiceBusConnection",
    "redact",
]

_SECRET_PATTERNS = [
    re.compile(r"(SharedAccessKey\s*=\s*)[^;]*", re.IGNORECASE),
    re.compile(r"(AccountKey\s*=\s*)[^;]*", re.IGNORECASE),
    re.compile(r"(SharedAccessSignature\s*=\s*)[^;]*", re.IGNORECASE),
    re.compile(r"((?<![A-Za-z])sig=)[^&;\s]*", re.IGNORECASE),
]


def redact(text: str) -> str:
    """Replace every key or signature in ``text`` with ``***``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every connection of the process.

    The SDK opens a connection per sender and receiver and, unless given a context, builds a new one
    each time, loading the CA bundle again: tens of milliseconds of CPU per session accept. This is the
    context it would build (certifi's bundle, hostname checked), made once.
    """
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _parse(connection_string: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in connection_string.split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError("Service Bus connection string is malformed: expected 'Key=Value' pairs")
        parts[key.strip().lower()] = value.strip()
    return parts


@dataclass(frozen=True)
class ServiceBusConnection:
    """How to reach a namespace; holds the secret but never prints it."""

    connection_string: str | None = None
    fully_qualified_namespace: str | None = None
    credential: Any = None

    def __post_init__(self) -> None:
        if self.connection_string:
            parts = _parse(self.connection_string)
            if "endpoint" not in parts:
                raise ValueError("Service Bus connection string has no Endpoint")
        elif not (self.fully_qualified_namespace and self.credential is not None):
            raise ValueError(
                "pass servicebus_connection_string, or fully_qualified_namespace together with a credential"
            )

    def __repr__(self) -> str:
        return f"ServiceBusConnection(namespace={self.namespace!r})"

    @property
    def namespace(self) -> str:
        if self.connection_string:
            endpoint = _parse(self.connection_string)["endpoint"]
            return re.sub(r"^[a-z]+://", "", endpoint).rstrip("/")
        return str(self.fully_qualified_namespace)

    @property
    def is_development_emulator(self) -> bool:
        if not self.connection_string:
            return False
        return _parse(self.connection_string).get("usedevelopmentemulator", "").lower() == "true"

    def client(self, **kwargs: Any) -> ServiceBusClient:
        """A new async client; each dispatcher gets its own so one's reconnects do not stall another."""
        from azure.servicebus.aio import ServiceBusClient

        if "ssl_context" not in kwargs and "connection_verify" not in kwargs:
            kwargs["ssl_context"] = _shared_ssl_context()
        try:
            if self.connection_string:
                return ServiceBusClient.from_connection_string(self.connection_string, **kwargs)
            return ServiceBusClient(str(self.fully_qualified_namespace), self.credential, **kwargs)
        except Exception as exc:
            raise ValueError(f"cannot create a Service Bus client: {redact(str(exc))}") from None

    def admin_client(self) -> ServiceBusAdministrationClient:
        from azure.servicebus.aio.management import ServiceBusAdministrationClient

        try:
            if self.connection_string:
                return ServiceBusAdministrationClient.from_connection_string(self.connection_string)
            return ServiceBusAdministrationClient(str(self.fully_qualified_namespace), self.credential)
        except Exception as exc:
            raise ValueError(
                f"cannot create a Service Bus administration client: {redact(str(exc))}"
            ) from None
