"""The pytest plugin as a user loads it: ``-p dtf_sb.testing.plugin`` in a project of their own.

Run in a separate pytest process with default (strict) asyncio mode and none of this repository's
configuration, so the plugin's fixtures must stand on their own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

USER_TESTS = textwrap.dedent(
    """
    import pytest

    from dtf_sb import OrchestrationStatus
    from dtf_sb.core.codec import decode_payload


    async def double(value):
        return value * 2


    async def doubler(ctx, value):
        return await ctx.call_activity(double, value)


    @pytest.mark.asyncio
    async def test_first(dtf_sb_worker, dtf_sb_client, dtf_sb_hub):
        await dtf_sb_worker([doubler], [double])
        iid = await dtf_sb_client.schedule_new_orchestration(doubler, input=21)
        state = await dtf_sb_client.wait_for_orchestration_completion(iid, timeout=30)
        assert state.status == OrchestrationStatus.COMPLETED
        assert decode_payload(state.output) == 42
        assert dtf_sb_hub.hub_name == "test-000"


    @pytest.mark.asyncio
    async def test_second_gets_its_own_hub(dtf_sb_hub):
        assert dtf_sb_hub.hub_name == "test-001"


    def test_pool_is_exhausted(dtf_sb_hub):
        pass
    """
)


def test_plugin_fixtures_in_a_user_project(sb_backend: Any, tmp_path: Path) -> None:
    if sb_backend.name != "embedded":
        pytest.skip(
            f"the plugin starts the embedded emulator; this run targets --sb-backend={sb_backend.name}"
        )
    (tmp_path / "test_user.py").write_text(USER_TESTS, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\ndtf_sb_hubs = 2\n", encoding="utf-8"
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "dtf_sb.testing.plugin",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rA",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = completed.stdout + completed.stderr
    assert "PASSED test_user.py::test_first" in report, report
    assert "PASSED test_user.py::test_second_gets_its_own_hub" in report, report
    # A third test finds the pool empty and is told how to grow it, instead of sharing a hub.
    assert "ERROR test_user.py::test_pool_is_exhausted" in report, report
    assert "raise the dtf_sb_hubs ini option" in report, report
