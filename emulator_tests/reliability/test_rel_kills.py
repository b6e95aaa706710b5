"""Kill -9 at every commit step: worker processes die between the steps of the episode commit.

Each worker process is told one fault point (``DTF_SB_FAULTS``) and ends itself with ``os._exit(137)``
there, with no cleanup, as a SIGKILL would; a supervisor replaces it at once. The audit then checks
the promises of DESIGN section 4: every instance completes with the right result, no history event
appears twice (instance store, and every session-state write the broker accepted), nothing is left
in any queue or dead-letter queue. Extra activity runs are allowed (at least once) and reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from storm import each_point_once, rotating_points, run_storm

from dtf_sb.servicebus.faults import FAULT_POINTS
from dtf_sb.testing.runtime import HubConnection


def _show(report: Any) -> None:
    print("storm report:", json.dumps(report.summary(), sort_keys=True))


async def test_a_worker_killed_once_at_each_commit_step_loses_and_duplicates_nothing(
    hub: HubConnection, emulator: Any, workdir: Path
) -> None:
    report = await run_storm(
        hub,
        emulator,
        workdir=workdir,
        kill_budget=len(FAULT_POINTS),
        plan=each_point_once(),
        workers=2,
        wave=3,
        max_instances=60,
        drain_timeout=240,
    )
    _show(report)
    assert set(report.kills_by_point) == set(FAULT_POINTS), report.kills_by_point
    assert report.completed == report.instances
    assert not report.problems(), "\n".join(report.problems())


@pytest.mark.slow
async def test_a_kill_storm_at_every_commit_step_loses_and_duplicates_nothing(
    storm_hub: HubConnection, emulator: Any, workdir: Path
) -> None:
    report = await run_storm(
        storm_hub,
        emulator,
        workdir=workdir,
        kill_budget=120,
        plan=rotating_points(0.4, seed=5),
        workers=4,
        wave=12,
        min_instances=30,
        max_delivery_count=100,
        drain_timeout=400,
        forked=True,
    )
    _show(report)
    assert report.kills >= 120
    assert set(report.kills_by_point) == set(FAULT_POINTS), report.kills_by_point
    assert report.completed == report.instances
    assert not report.problems(), "\n".join(report.problems())
