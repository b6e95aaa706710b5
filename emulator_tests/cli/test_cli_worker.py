"""`dtf-sb worker MODULE:ATTR` as a container runs it: a Registry served with settings from the environment."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import textwrap
import urllib.request
from pathlib import Path

from conftest import hub_env

APP = textwrap.dedent(
    """
    from dtf_sb import Registry

    async def shout(text: str) -> str:
        return text.upper() + "!"

    async def shouting(ctx, words):
        return [await ctx.call_activity(shout, w) for w in words]

    registry = Registry()
    registry.add_orchestrator(shouting)
    registry.add_activity(shout)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_worker_serves_a_registry_from_environment_settings(hub, cli, tmp_path: Path) -> None:
    (tmp_path / "shout_app.py").write_text(APP, encoding="utf-8")
    port = _free_port()
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dtf_sb.cli",
        "worker",
        "shout_app:registry",
        "--health-port",
        str(port),
        "--health-host",
        "127.0.0.1",
        cwd=str(tmp_path),
        env=hub_env(hub),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(200):
            if await asyncio.to_thread(_get_or_none, f"http://127.0.0.1:{port}/ready") == 200:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the worker never reported ready")
        assert await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/health") == 200
        result = await cli("start", "shouting", "--input", '["hi", "there"]', "--wait", "60", "--json")
        assert result.code == 0, result.stderr
        state = result.json()
        assert state["status"] == "COMPLETED"
        assert state["output"] == '["HI!","THERE!"]'
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(worker.communicate(), 60)
    assert worker.returncode == 0, err.decode()
    assert b"stopping" in out


def _get_or_none(url: str) -> int | None:
    try:
        return _get(url)
    except OSError:
        return None
