"""Shared Access Signature validation, as Service Bus does it for CBS put-token and SASL PLAIN.

Service Bus authorises a connection per entity: a client proves it holds a key by signing the
resource URI with HMAC-SHA256, and the token then covers every entity whose path starts with the
signed resource path. The emulator checks the same things (signature, key name, expiry, resource
prefix) so that tests see a wrong key refused exactly where production would refuse it.

Clients differ in how they percent-encode the signed URI (Python's ``quote_plus``, JavaScript's
``encodeURIComponent``, .NET's ``WebUtility.UrlEncode``), so the signature is checked against every
encoding the resource could plausibly have been signed with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit

__all__ = [
    "Grants",
    "SasError",
    "SasKey",
    "SasToken",
    "generate_sas_token",
    "parse_sas_token",
    "resource_path",
    "validate_sas_token",
]


class SasError(Exception):
    """A token that does not grant access; the message says why (never echoes the key)."""


@dataclass(frozen=True)
class SasKey:
    """One shared access policy of the namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class SasToken:
    """A token whose signature checked out: what it grants and until when."""

    resource: str
    """The signed resource path, normalised (no scheme/host, no slashes at either end, lower case)."""
    key_name: str
    expires_at: float
    """Seconds since the epoch."""

    def covers(self, entity_path: str) -> bool:
        """Whether the token grants access to ``entity_path`` (a prefix match on path segments)."""
        if not self.resource:
            return True
        path = resource_path(entity_path)
        return path == self.resource or path.startswith(self.resource + "/")

    def valid_at(self, now: float) -> bool:
        return now < self.expires_at


def resource_path(uri: str) -> str:
    """The entity path a URI or bare path names: ``sb://host:1/Q1/`` and ``q1`` both give ``q1``."""
    text = uri.strip()
    if "://" in text:
        text = urlsplit(text).path
    return text.strip("/").lower()


def parse_sas_token(token: str) -> dict[str, str]:
    """The ``sr``/``sig``/``se``/``skn`` fields of a ``SharedAccessSignature ...`` string, still encoded."""
    text = token.strip()
    prefix = "SharedAccessSignature "
    if not text.startswith(prefix):
        raise SasError("not a SharedAccessSignature token")
    fields: dict[str, str] = {}
    for part in text[len(prefix) :].split("&"):
        name, sep, value = part.partition("=")
        if not sep:
            raise SasError("malformed SharedAccessSignature token")
        fields[name.strip()] = value.strip()
    for required in ("sr", "sig", "se", "skn"):
        if required not in fields:
            raise SasError(f"SharedAccessSignature token lacks '{required}'")
    return fields


def _signatures(key: str, encoded_resources: set[str], expiry: str) -> list[bytes]:
    secret = key.encode("utf-8")
    return [
        base64.b64encode(hmac.new(secret, f"{uri}\n{expiry}".encode(), hashlib.sha256).digest())
        for uri in encoded_resources
    ]


def validate_sas_token(
    token: str,
    keys: Mapping[str, str],
    *,
    now: Callable[[], float] = time.time,
) -> SasToken:
    """Check a SAS token against the namespace's keys; raise :class:`SasError` when it grants nothing."""
    fields = parse_sas_token(token)
    key_name = unquote_plus(fields["skn"])
    key = keys.get(key_name)
    if key is None:
        raise SasError(f"unknown shared access policy '{key_name}'")
    try:
        expiry = int(unquote_plus(fields["se"]))
    except ValueError as exc:
        raise SasError("SharedAccessSignature expiry is not an integer") from exc
    resource = unquote_plus(fields["sr"])
    candidates = {
        fields["sr"],
        quote_plus(resource),
        quote(resource, safe=""),
        quote(resource, safe="~()*!.'"),
        quote_plus(resource).lower(),
        quote_plus(resource.lower()),
    }
    signature = unquote_plus(fields["sig"]).encode("ascii", "replace")
    if not any(hmac.compare_digest(signature, s) for s in _signatures(key, candidates, str(expiry))):
        raise SasError("SharedAccessSignature signature does not match")
    if expiry <= now():
        raise SasError("SharedAccessSignature token has expired")
    return SasToken(resource=resource_path(resource), key_name=key_name, expires_at=float(expiry))


def generate_sas_token(uri: str, key_name: str, key: str, *, expiry: int | None = None) -> str:
    """A token the emulator accepts; for tests and tools that talk to the emulator without the SDK."""
    expires = int(time.time()) + 3600 if expiry is None else int(expiry)
    encoded = quote_plus(uri)
    signature = _signatures(key, {encoded}, str(expires))[0].decode("ascii")
    return (
        f"SharedAccessSignature sr={encoded}&sig={quote_plus(signature)}"
        f"&se={expires}&skn={quote_plus(key_name)}"
    )


class Grants:
    """What one connection may touch: everything (SASL PLAIN with a key) or what its CBS tokens cover."""

    def __init__(self, *, everything: bool = False) -> None:
        self.everything = everything
        self._tokens: dict[str, SasToken] = {}

    def add(self, token: SasToken) -> None:
        """Keep the newest token per resource (a refresh replaces the one it renews)."""
        self._tokens[token.resource] = token

    def allows(self, entity_path: str, now: float) -> bool:
        if self.everything:
            return True
        return any(t.valid_at(now) and t.covers(entity_path) for t in self._tokens.values())
