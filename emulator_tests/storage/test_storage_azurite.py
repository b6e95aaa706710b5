"""The Azurite fixture itself: it starts on a free loopback port, serves blobs, and cleans up."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dtf_sb.storage import create_blob_service_client
from dtf_sb.testing.azurite import Azurite, AzuriteError, find_azurite_executable


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def test_async_context_serves_blobs_then_removes_everything() -> None:
    async with Azurite() as server:
        port, data_dir = server.port, server.data_dir
        assert server.running and data_dir.is_dir()
        assert f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1" in server.connection_string
        client = create_blob_service_client(connection_string=server.connection_string)
        async with client:
            container = await client.create_container("probe")
            await container.upload_blob("b", b"hello")
            assert await (await container.download_blob("b")).readall() == b"hello"
    assert not server.running
    assert not data_dir.exists()
    assert not _port_open(port)
    server.stop()  # a second stop is harmless


def test_sync_start_stop() -> None:
    server = Azurite().start()
    try:
        assert _port_open(server.port)
        assert "port=" in repr(server)
    finally:
        server.stop()
    assert repr(server) == "Azurite(stopped)"
    with pytest.raises(AzuriteError, match="not running"):
        _ = server.port


def test_missing_executable_points_to_bootstrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DTF_SB_AZURITE", str(tmp_path / "no-such-azurite"))
    with pytest.raises(AzuriteError, match="does not exist"):
        find_azurite_executable()
    monkeypatch.delenv("DTF_SB_AZURITE")
    with pytest.raises(AzuriteError, match=r"scripts/bootstrap\.sh"):
        find_azurite_executable(search_from=[tmp_path])
    monkeypatch.chdir(tmp_path)
    assert find_azurite_executable().name == "azurite-blob"  # still found next to the package


def test_executable_that_exits_reports_its_output(tmp_path: Path) -> None:
    fake = tmp_path / "azurite-blob"
    fake.write_text("#!/bin/sh\necho 'cannot start: broken install' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(AzuriteError, match="broken install"):
        Azurite(executable=fake, port=1).start()


def test_azurite_dies_with_a_killed_test_process(tmp_path: Path) -> None:
    """A test run killed from outside (SIGKILL: no finalizers run) must not leave Azurite behind."""
    script = (
        "import sys, time\n"
        "from dtf_sb.testing.azurite import Azurite\n"
        "server = Azurite().start()\n"
        "print(server.port, server.data_dir, flush=True)\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port_text, data_dir = child.stdout.readline().split()
        port = int(port_text)
        assert _port_open(port)
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 60  # a liveness bound, not a speed goal
    while (_port_open(port) or Path(data_dir).exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _port_open(port), "Azurite outlived the killed process"
    assert not Path(data_dir).exists(), "Azurite's data directory outlived the killed process"
