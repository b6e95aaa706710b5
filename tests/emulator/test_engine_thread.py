"""``EmulatorThread``: the emulator on its own loop, so the blocking sync SDK can use it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusAuthenticationError

from dtf_sb.emulator import QueueProperties
from dtf_sb.testing.emulator import EmulatorThread

CONFIG = {
    "UserConfig": {
        "Namespaces": [
            {
                "Name": "sbemulatorns",
                "Queues": [{"Name": "jobs", "Properties": {"LockDuration": "PT30S"}}],
                "Topics": [],
            }
        ]
    }
}


def test_sync_sdk_round_trip_and_broker_access(tmp_path: Path) -> None:
    config = tmp_path / "Config.json"
    config.write_text(json.dumps(CONFIG), encoding="utf-8")
    with EmulatorThread(str(config)) as emu:
        assert emu.connection_string.startswith(f"Endpoint=sb://127.0.0.1:{emu.port};")
        assert emu.connection_string.endswith("UseDevelopmentEmulator=true;")
        with ServiceBusClient.from_connection_string(emu.connection_string) as client:
            with client.get_queue_sender("jobs") as sender:
                sender.send_messages(ServiceBusMessage(b"work", message_id="w1"))
            assert emu.broker_call("entity_counts", "jobs").active == 1
            with client.get_queue_receiver("jobs", max_wait_time=5) as receiver:
                [msg] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
                assert msg.message_id == "w1" and msg.delivery_count == 0
                receiver.complete_message(msg)
        assert emu.call(lambda: emu.emulator.broker.entity_counts("jobs").active) == 0


def test_restart_keeps_messages_on_the_same_port() -> None:
    with EmulatorThread([QueueProperties("q")]) as emu:
        port = emu.port
        with ServiceBusClient.from_connection_string(emu.connection_string) as client:
            with client.get_queue_sender("q") as sender:
                sender.send_messages(ServiceBusMessage(b"survives"))
        emu.stop()
        assert emu.call(lambda: emu.emulator.running) is False
        emu.restart()
        assert emu.port == port
        with ServiceBusClient.from_connection_string(emu.connection_string) as client:
            with client.get_queue_receiver("q", max_wait_time=5) as receiver:
                [msg] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
                assert b"".join(msg.body) == b"survives"
                receiver.complete_message(msg)


def test_custom_key_is_required() -> None:
    with EmulatorThread([QueueProperties("q")], sas_key_name="app", sas_key="s3cret") as emu:
        assert "SharedAccessKeyName=app;SharedAccessKey=s3cret;" in emu.connection_string
        wrong = emu.connection_string.replace("s3cret", "guess")
        with ServiceBusClient.from_connection_string(wrong, retry_total=0) as client:
            with pytest.raises(ServiceBusAuthenticationError), client.get_queue_sender("q") as sender:
                sender.send_messages(ServiceBusMessage(b"no"))
        assert emu.broker_call("entity_counts", "q").active == 0
