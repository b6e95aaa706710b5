"""Named fault-injection points between the steps of the commit protocols.

The runtime's exactly-once-history claim rests on what happens when a worker dies between two steps
of an episode's commit (send, write state, complete). Tests prove it by killing the worker exactly
there: in-process through ``WorkerOptions.fault_injector``, and for subprocess workers through the
environment variable ``DTF_SB_FAULTS="point:probability[:seed][,point:probability[:seed]...]"``,
which ends the process with ``os._exit(137)`` (what a SIGKILL looks like to a supervisor) so no
cleanup code runs, just as in a real crash.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FAULT_POINTS",
    "FaultPoints",
    "env_fault_injector",
    "parse_fault_spec",
]

_log = logging.getLogger("dtf_sb.servicebus.faults")

ENV_VAR = "DTF_SB_FAULTS"
CRASH_EXIT_CODE = 137

FAULT_POINTS = (
    "orchestration.after_send",
    "orchestration.after_state",
    "orchestration.after_complete",
    "activity.after_run",
    "activity.after_send",
    "activity.after_complete",
    "tracking.after_history",
    "tracking.after_state",
)


@dataclass(frozen=True)
class _Rule:
    point: str
    probability: float
    seed: int | None


def parse_fault_spec(spec: str) -> list[_Rule]:
    """Parse ``point:probability[:seed]`` items separated by commas; unknown points are an error."""
    rules: list[_Rule] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"{ENV_VAR} item {item!r} is not 'point:probability[:seed]'")
        point = parts[0]
        if point not in FAULT_POINTS:
            raise ValueError(
                f"{ENV_VAR} names unknown fault point {point!r}; known: {', '.join(FAULT_POINTS)}"
            )
        try:
            probability = float(parts[1])
            seed = int(parts[2]) if len(parts) == 3 else None
        except ValueError as exc:
            raise ValueError(
                f"{ENV_VAR} item {item!r}: probability must be a number, seed an integer"
            ) from exc
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"{ENV_VAR} item {item!r}: probability must be between 0 and 1")
        rules.append(_Rule(point, probability, seed))
    return rules


def env_fault_injector(
    spec: str | None = None, *, exit: Callable[[int], Any] = os._exit
) -> Callable[[str, dict[str, Any]], None] | None:
    """Build the injector ``DTF_SB_FAULTS`` describes, or None when it is unset or empty."""
    text = os.environ.get(ENV_VAR, "") if spec is None else spec
    rules = parse_fault_spec(text)
    if not rules:
        return None
    rngs = {rule.point: (rule.probability, random.Random(rule.seed)) for rule in rules}

    def inject(point: str, context: dict[str, Any]) -> None:
        entry = rngs.get(point)
        if entry is None:
            return
        probability, rng = entry
        if rng.random() < probability:
            _log.warning("fault injected at %s (%s); exiting with %d", point, context, CRASH_EXIT_CODE)
            logging.shutdown()
            exit(CRASH_EXIT_CODE)

    return inject


class FaultPoints:
    """Calls the configured injectors at a named point; a no-op when none is configured."""

    def __init__(self, *injectors: Callable[[str, dict[str, Any]], None] | None) -> None:
        self._injectors = [i for i in injectors if i is not None]

    @property
    def enabled(self) -> bool:
        return bool(self._injectors)

    def __call__(self, point: str, **context: Any) -> None:
        for injector in self._injectors:
            injector(point, context)
