"""How hub names, instance ids, times and names become container names, blob paths and tag values.

Everything the stores write is addressed through these functions, so the layout rules live in one place:

* Containers: one for payloads and one for instance data per hub, ``<hub>-payloads`` and
  ``<hub>-instances``. Azure allows 3-63 characters of ``[a-z0-9-]`` without leading, trailing or double
  hyphens, so the hub name is lowercased, ``_`` and ``.`` become ``-``, and anything still invalid is an
  :class:`InvalidHubNameError` rather than a silently different name.
* Path segments: instance ids are arbitrary strings, but a ``/`` inside an id would make the prefix of one
  instance swallow another (``a`` vs ``a/b``) and ``.``/``..`` segments are normalised away by URL handling.
  Segments are therefore percent-encoded over everything but ``[A-Za-z0-9_-]``. Instance ids are
  lowercased first because Service Bus compares session ids case-insensitively: ``ABC`` and ``abc`` are
  one session, hence one instance; the records keep the id as written.
* Tag values: blob index tags accept only ``[A-Za-z0-9 +-.:=_/]`` and at most 256 characters, and compare
  as strings. Times use a fixed-width UTC form so string order is time order; instance ids are hex-encoded
  (prefix-preserving, and ``'g'`` sorts above every hex digit, which gives the exclusive upper bound of a
  prefix range); names use a readable escape, or a digest when too long.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, unquote

from dtf_sb.storage.errors import InvalidHubNameError

__all__ = [
    "HubContainers",
    "container_names",
    "decode_metadata",
    "encode_instance_segment",
    "encode_metadata",
    "encode_segment",
    "format_time",
    "instance_prefix_bounds",
    "instance_tag",
    "name_tag",
    "parse_time",
    "status_key",
]

_CONTAINER_MAX = 63
_PAYLOADS_SUFFIX = "-payloads"
_INSTANCES_SUFFIX = "-instances"
_BASE_MAX = _CONTAINER_MAX - max(len(_PAYLOADS_SUFFIX), len(_INSTANCES_SUFFIX))
_BASE_RE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")
_SEGMENT_SAFE = re.compile(rb"[A-Za-z0-9_-]")
_TAG_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 +-.:/")
_TAG_MAX = 256
#: bytes of the lowercased instance id kept in the prefix tag (hex doubles it; 256 is the tag limit)
INSTANCE_TAG_BYTES = 120


@dataclass(frozen=True)
class HubContainers:
    """The container names of one hub."""

    payloads: str
    instances: str


def container_names(hub: str) -> HubContainers:
    """Map a hub name to its containers, or explain why it cannot be mapped."""
    base = hub.strip().lower().replace("_", "-").replace(".", "-")
    problem: str | None = None
    if not base:
        problem = "it is empty"
    elif len(base) > _BASE_MAX:
        problem = f"it is {len(base)} characters long and at most {_BASE_MAX} fit a container name"
    elif not _BASE_RE.match(base):
        problem = (
            "container names allow only letters, digits and single hyphens (not at the start or end), "
            f"and it maps to {base!r}"
        )
    if problem is not None:
        raise InvalidHubNameError(
            f"hub name {hub!r} cannot be used for Blob Storage containers: {problem}. Use 1-{_BASE_MAX} "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return HubContainers(payloads=base + _PAYLOADS_SUFFIX, instances=base + _INSTANCES_SUFFIX)


def encode_segment(value: str) -> str:
    """Percent-encode one path segment so it can never contain ``/`` or be ``.``/``..``."""
    if not value:
        raise ValueError("an empty id cannot name a blob path segment")
    out: list[str] = []
    for byte in value.encode("utf-8"):
        if _SEGMENT_SAFE.match(bytes((byte,))):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def encode_instance_segment(instance_id: str) -> str:
    """The path segment of an instance: case-folded like Service Bus session ids, then encoded."""
    return encode_segment(instance_id.lower())


def instance_tag(instance_id: str) -> str:
    """Hex of the lowercased id's first bytes: string prefixes map to tag prefixes."""
    return instance_id.lower().encode("utf-8")[:INSTANCE_TAG_BYTES].hex()


def instance_prefix_bounds(prefix: str) -> tuple[str, str]:
    """Inclusive lower and exclusive upper tag bound of every id starting with ``prefix``."""
    low = instance_tag(prefix)
    return low, low + "g"


def name_tag(name: str) -> str:
    """A tag-safe, equality-preserving form of an orchestration name.

    Allowed characters stay readable; others (and ``_``, ``=``, the escape characters) become ``_XX``.
    Names whose encoding exceeds the tag limit become ``=`` plus a SHA-256 digest, which no escaped
    name can start with.
    """
    out: list[str] = []
    for byte in name.encode("utf-8"):
        out.append(chr(byte) if byte in _TAG_SAFE else f"_{byte:02X}")
    encoded = "".join(out)
    if len(encoded) <= _TAG_MAX:
        return encoded
    return "=" + hashlib.sha256(name.encode("utf-8")).hexdigest()


def status_key(status: str) -> str:
    """Normalise a status spelling (``ContinuedAsNew``, ``CONTINUED_AS_NEW``) to one tag value."""
    key = re.sub(r"[^A-Za-z0-9]", "", status).upper()
    if not key:
        raise ValueError(f"status {status!r} has no letters or digits")
    return key


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def format_time(value: datetime) -> str:
    """Fixed-width UTC ISO form (``2026-01-02T03:04:05.000006Z``): sorts as strings sort. Naive is UTC."""
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def encode_metadata(values: dict[str, str]) -> dict[str, str]:
    """Blob metadata travels in HTTP headers (ASCII only): percent-encode every value."""
    return {key: quote(value, safe="") for key, value in values.items()}


def decode_metadata(values: dict[str, str] | None) -> dict[str, str]:
    return {key.lower(): unquote(value) for key, value in (values or {}).items()}
