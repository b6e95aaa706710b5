"""End-to-end throughput of the embedded Service Bus emulator with the real async SDK.

One sender and one peek-lock receiver (completing every message) move 1 KB messages through a plain
queue and then through a session queue. The emulator runs in a subprocess so its CPU time can be
read from /proc apart from the client's; the goal is that the emulator spends less CPU per message
than the SDK client does.

    python benchmarks/emulator_throughput.py [--messages 20000]

The last line printed is one JSON object:
{"benchmark": "emulator_throughput", "queue_msgs_per_s": ..., "session_msgs_per_s": ..., "emulator_cpu_share": ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

CONFIG = {
    "UserConfig": {
        "Namespaces": [
            {
                "Name": "sbemulatorns",
                "Queues": [
                    {"Name": "bench", "Properties": {"LockDuration": "PT1M", "MaxDeliveryCount": 10}},
                    {
                        "Name": "bench-sessions",
                        "Properties": {
                            "LockDuration": "PT1M",
                            "MaxDeliveryCount": 10,
                            "RequiresSession": True,
                        },
                    },
                ],
                "Topics": [],
            }
        ]
    }
}
BODY = os.urandom(1024)
SEND_BATCH = 100
RECEIVE_BATCH = 100


def _child_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc (no psutil needed)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Phase:
    name: str
    messages: int
    seconds: float
    emulator_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


async def _send(client: ServiceBusClient, queue: str, count: int, session_id: str | None) -> None:
    async with client.get_queue_sender(queue) as sender:
        for start in range(0, count, SEND_BATCH):
            n = min(SEND_BATCH, count - start)
            await sender.send_messages([ServiceBusMessage(BODY, session_id=session_id) for _ in range(n)])


async def _receive(client: ServiceBusClient, queue: str, count: int, sessions: bool) -> int:
    kwargs = {"session_id": NEXT_AVAILABLE_SESSION} if sessions else {}
    got = 0
    async with client.get_queue_receiver(queue, prefetch_count=RECEIVE_BATCH, **kwargs) as receiver:
        while got < count:
            batch = await receiver.receive_messages(max_message_count=RECEIVE_BATCH, max_wait_time=10)
            if not batch:
                break
            for message in batch:
                await receiver.complete_message(message)
            got += len(batch)
    return got


async def _phase(conn_str: str, pid: int, name: str, queue: str, count: int, sessions: bool) -> Phase:
    async with ServiceBusClient.from_connection_string(conn_str) as client:
        emu0, own0, t0 = _child_cpu(pid), _own_cpu(), time.perf_counter()
        session_id = "bench-session" if sessions else None
        _, received = await asyncio.gather(
            _send(client, queue, count, session_id), _receive(client, queue, count, sessions)
        )
        t1, emu1, own1 = time.perf_counter(), _child_cpu(pid), _own_cpu()
    if received != count:
        raise SystemExit(f"{name}: received {received} of {count} messages")
    return Phase(name, count, t1 - t0, emu1 - emu0, own1 - own0)


def _start_emulator(config_path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dtf_sb.emulator",
            "--config",
            str(config_path),
            "--port",
            "0",
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("Endpoint="):
        proc.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return proc, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per phase (default 20000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "Config.json"
        config_path.write_text(json.dumps(CONFIG), encoding="utf-8")
        proc, conn_str = _start_emulator(config_path)
        try:
            phases = [
                asyncio.run(_phase(conn_str, proc.pid, "queue", "bench", args.messages, False)),
                asyncio.run(
                    _phase(conn_str, proc.pid, "session queue", "bench-sessions", args.messages, True)
                ),
            ]
        finally:
            proc.terminate()
            proc.wait(10)
    for p in phases:
        print(
            f"{p.name:>14}: {p.messages} msgs in {p.seconds:.2f}s = {p.rate:,.0f} msg/s; "
            f"CPU emulator {p.emulator_cpu:.2f}s ({p.emulator_cpu / p.messages * 1e6:.0f} us/msg), "
            f"client {p.client_cpu:.2f}s ({p.client_cpu / p.messages * 1e6:.0f} us/msg)"
        )
    emulator_cpu = sum(p.emulator_cpu for p in phases)
    client_cpu = sum(p.client_cpu for p in phases)
    share = emulator_cpu / (emulator_cpu + client_cpu) if emulator_cpu + client_cpu else 0.0
    print(
        json.dumps(
            {
                "benchmark": "emulator_throughput",
                "messages": args.messages,
                "queue_msgs_per_s": round(phases[0].rate, 1),
                "session_msgs_per_s": round(phases[1].rate, 1),
                "emulator_cpu_s": round(emulator_cpu, 3),
                "client_cpu_s": round(client_cpu, 3),
                "emulator_cpu_share": round(share, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
