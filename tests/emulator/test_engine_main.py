"""``python -m dtf_sb.emulator``: the standalone server prints its connection string and serves /health."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from azure.servicebus import ServiceBusClient, ServiceBusMessage

CONFIG = {
    "UserConfig": {
        "Namespaces": [
            {"Name": "sbemulatorns", "Queues": [{"Name": "standalone", "Properties": {}}], "Topics": []}
        ]
    }
}


def test_standalone_server(tmp_path: Path) -> None:
    config = tmp_path / "Config.json"
    config.write_text(json.dumps(CONFIG), encoding="utf-8")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dtf_sb.emulator",
            "--config",
            str(config),
            "--port",
            "0",
            "--health-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        conn_str = proc.stdout.readline().strip()
        health = proc.stdout.readline().strip()
        assert proc.stdout.readline().strip() == "Emulator Service is Successfully Up!"
        assert conn_str.startswith("Endpoint=sb://127.0.0.1:") and conn_str.endswith(
            "UseDevelopmentEmulator=true;"
        )
        url = health.split(" ", 1)[1]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert json.loads(response.read()) == {"status": "healthy", "message": "Service is healthy."}
        with ServiceBusClient.from_connection_string(conn_str) as client:
            with client.get_queue_sender("standalone") as sender:
                sender.send_messages(ServiceBusMessage(b"hi"))
            with client.get_queue_receiver("standalone", max_wait_time=5) as receiver:
                [msg] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
                assert b"".join(msg.body) == b"hi"
                receiver.complete_message(msg)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
