"""Name -> function lookup for orchestrators and activities.

History records names, not functions, so a replay on another worker finds the code through this table.
Registering a function without a name uses ``fn.__name__`` (what ``call_activity(fn)`` records).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dtf_sb.core.errors import ActivityNotRegisteredError, OrchestratorNotRegisteredError

Orchestrator = Callable[..., Any]
Activity = Callable[..., Any]


def function_name(fn: Callable[..., Any] | str) -> str:
    """The name a function is registered and recorded under by default."""
    if isinstance(fn, str):
        return fn
    name = getattr(fn, "__durable_name__", None) or getattr(fn, "__name__", None)
    if not name:
        raise TypeError(f"cannot derive a name from {fn!r}; pass a name")
    return str(name)


class Registry:
    """Orchestrators by (name, version) and activities by name."""

    def __init__(self) -> None:
        self._orchestrators: dict[tuple[str, str], Orchestrator] = {}
        self._activities: dict[str, Activity] = {}
        self._names: dict[int, str] = {}

    def add_orchestrator(
        self, fn: Orchestrator, *, name: str | None = None, version: str | None = None
    ) -> str:
        """Register ``fn``; returns the name it is registered under."""
        key = name or function_name(fn)
        self._orchestrators[(key, version or "")] = fn
        self._names.setdefault(id(fn), key)
        return key

    def add_activity(self, fn: Activity, *, name: str | None = None) -> str:
        key = name or function_name(fn)
        self._activities[key] = fn
        self._names.setdefault(id(fn), key)
        return key

    def get_orchestrator(self, name: str, version: str | None = None) -> Orchestrator:
        """Exact (name, version) first, then the unversioned registration."""
        fn = self._orchestrators.get((name, version or "")) or self._orchestrators.get((name, ""))
        if fn is None:
            raise OrchestratorNotRegisteredError(
                f"no orchestrator named {name!r}"
                + (f" (version {version!r})" if version else "")
                + " is registered with this worker"
            )
        return fn

    def get_activity(self, name: str) -> Activity:
        fn = self._activities.get(name)
        if fn is None:
            raise ActivityNotRegisteredError(f"no activity named {name!r} is registered with this worker")
        return fn

    def name_of(self, fn: Callable[..., Any] | str) -> str:
        """The registered name of ``fn`` (falls back to the default name for unregistered functions)."""
        if isinstance(fn, str):
            return fn
        return self._names.get(id(fn)) or function_name(fn)

    def orchestrators(self) -> list[tuple[str, str | None, Orchestrator]]:
        """Every registration as (name, version or None, function), to copy them into a worker."""
        return [(name, version or None, fn) for (name, version), fn in self._orchestrators.items()]

    def activities(self) -> list[tuple[str, Activity]]:
        return list(self._activities.items())

    @property
    def orchestrator_names(self) -> list[str]:
        return sorted({name for name, _ in self._orchestrators})

    @property
    def activity_names(self) -> list[str]:
        return sorted(self._activities)
