"""Per-session bookkeeping inside a session-enabled queue or subscription.

Service Bus has no per-message locks in a session: the session lock covers every message the holder
received, so a session record tracks the holder, the lock's expiry, the lock tokens issued under it (so a
lost lock invalidates them all at once) and the session state blob.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from .messages import Owner

__all__ = ["SessionRecord"]


@dataclass
class SessionRecord:
    session_id: str
    state: bytes | None = None
    last_updated: float = 0.0
    owner: Owner | None = None
    locked_until: float | None = None
    lock_tokens: set[uuid.UUID] = field(default_factory=set)
    message_count: int = 0
    """Messages of this session in the store, in any state (active, locked, deferred, scheduled)."""

    @property
    def is_locked(self) -> bool:
        return self.owner is not None

    def held_by(self, owner: Owner | None, now: float) -> bool:
        """Whether ``owner`` holds a lock that has not expired yet (expiry may not have been ticked)."""
        return (
            self.owner is not None
            and self.owner == owner
            and self.locked_until is not None
            and self.locked_until > now
        )

    @property
    def disposable(self) -> bool:
        """Nothing would be lost by forgetting the record: no messages, no state, no lock."""
        return self.message_count == 0 and self.state is None and self.owner is None
