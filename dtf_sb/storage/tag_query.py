"""Instance queries as blob-index tag expressions, and the continuation tokens that page through them.

Find Blobs by Tags only ANDs conditions, so "status in (A, B)" becomes one expression per status, run one
after another; the continuation token records which expression we are in, the service's marker within
it, and the last blob name returned from the service page at that marker. Tags compare as strings, which is why ``naming`` formats times at fixed width and instance ids
as hex.

The tag index of a real account is eventually consistent (Azure documents a short delay after a write),
so the store downloads each match and checks the filter again against the record itself: a query may
return fewer records than a page holds, never a record that does not match.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dtf_sb.storage.naming import format_time, instance_prefix_bounds, name_tag, status_key
from dtf_sb.storage.records import InstanceRecord

__all__ = ["InstanceQuery", "decode_token", "encode_token"]

STATE_KIND = "state"


@dataclass(frozen=True, kw_only=True)
class InstanceQuery:
    """The filters of one query; ``None`` (or an empty status list) means "any"."""

    statuses: Sequence[str] | None = None
    name: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    instance_id_prefix: str | None = None

    def expressions(self) -> list[str]:
        """One tag expression per requested status (or a single one without a status filter)."""
        common = [f"\"kind\" = '{STATE_KIND}'"]
        if self.name is not None:
            common.append(f"\"name\" = '{name_tag(self.name)}'")
        if self.created_from is not None:
            common.append(f"\"created\" >= '{format_time(self.created_from)}'")
        if self.created_to is not None:
            common.append(f"\"created\" < '{format_time(self.created_to)}'")
        if self.instance_id_prefix:
            low, high = instance_prefix_bounds(self.instance_id_prefix)
            common.append(f"\"iid\" >= '{low}'")
            common.append(f"\"iid\" < '{high}'")
        if not self.statuses:
            return [" AND ".join(common)]
        keys = list(dict.fromkeys(status_key(status) for status in self.statuses))
        return [" AND ".join([*common, f"\"status\" = '{key}'"]) for key in keys]

    def matches(self, record: InstanceRecord) -> bool:
        """The same filter evaluated on a downloaded record (the tag index may lag behind writes)."""
        if self.statuses and status_key(record.status) not in {status_key(s) for s in self.statuses}:
            return False
        if self.name is not None and record.name != self.name:
            return False
        if self.created_from is not None and format_time(record.created_time) < format_time(
            self.created_from
        ):
            return False
        if self.created_to is not None and format_time(record.created_time) >= format_time(self.created_to):
            return False
        if self.instance_id_prefix and not record.instance_id.lower().startswith(
            self.instance_id_prefix.lower()
        ):
            return False
        return True


def encode_token(expression_index: int, marker: str | None, after: str | None) -> str:
    """An opaque token: which expression, the service's marker in it, and the last name returned."""
    raw = json.dumps([expression_index, marker, after], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[int, str | None, str | None]:
    try:
        padded = token + "=" * (-len(token) % 4)
        index, marker, after = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(index, int) or index < 0:
            raise ValueError(token)
        if not all(value is None or isinstance(value, str) for value in (marker, after)):
            raise ValueError(token)
    except (ValueError, TypeError) as exc:
        raise ValueError("continuation_token is not one this store returned") from exc
    return index, marker, after
