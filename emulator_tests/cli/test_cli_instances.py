"""Driving ``dtf-sb`` as a user does: start, inspect, signal, rewind and purge instances of a hub."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from dtf_sb import OrchestrationContext

TIMEOUT = 30.0


class Fix:
    deployed = False


async def say(name: str) -> str:
    return f"Hello {name}!"


async def shaky(name: str) -> str:
    if not Fix.deployed:
        raise ConnectionError("downstream is down")
    return f"ok {name}"


async def greet(ctx: OrchestrationContext, name: str) -> str:
    return await ctx.call_activity(say, name)


async def approval(ctx: OrchestrationContext, _: Any) -> str:
    answer = await ctx.wait_for_external_event("approve")
    return f"approved: {answer}"


async def fragile(ctx: OrchestrationContext, name: str) -> str:
    return await ctx.call_activity(shaky, name)


ORCHESTRATORS = [greet, approval, fragile]
ACTIVITIES = [say, shaky]


async def _status_json(cli: Any, iid: str, wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        result = await cli("status", iid, "--json")
        if result.code in (0, 1) and result.json()["status"] == wanted:
            return result.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"{iid} never became {wanted}: {result}")
        await asyncio.sleep(0.2)


async def test_start_wait_status_history_and_list(start_worker, cli) -> None:
    await start_worker(ORCHESTRATORS, ACTIVITIES)

    started = await cli(
        "start", "greet", "--input", '"Tokyo"', "--id", "cli-greet-1", "--wait", "30", "--json"
    )
    assert started.code == 0, started.stderr
    state = started.json()
    assert state["status"] == "COMPLETED"
    assert state["output"] == '"Hello Tokyo!"'
    assert state["orchestration_instance"]["instance_id"] == "cli-greet-1"

    plain = await cli("status", "cli-greet-1")
    assert plain.code == 0
    assert "status" in plain.stdout and "COMPLETED" in plain.stdout and "Hello Tokyo!" in plain.stdout

    history = await cli("history", "cli-greet-1")
    assert history.code == 0
    lines = history.stdout.splitlines()
    assert lines[0].split()[:4] == ["TIME", "+OFFSET", "EVENT", "ID"]
    events = [line.split()[3] for line in lines[1:]]
    for kind in ("ExecutionStarted", "TaskScheduled", "TaskCompleted", "ExecutionCompleted"):
        assert kind in events, history.stdout
    completed = next(line for line in lines if " TaskCompleted " in line)
    assert completed.rstrip().endswith(("ms", "s")), "a completion shows how long its task took"
    as_json = (await cli("history", "cli-greet-1", "--json")).json()
    assert [e["event_type"] for e in as_json][-1] in ("OrchestratorCompletedEvent", "ExecutionCompletedEvent")
    assert any(e["event_type"] == "TaskScheduledEvent" and e["name"] == "say" for e in as_json)

    second = await cli("start", "greet", "--input", '"Oslo"', "--id", "cli-greet-2")
    assert second.code == 0 and second.stdout.strip() == "cli-greet-2"
    await _status_json(cli, "cli-greet-2", "COMPLETED")
    other = await cli("start", "approval", "--id", "cli-other-1", "--json")
    assert other.json() == {"instance_id": "cli-other-1"}
    await _status_json(cli, "cli-other-1", "RUNNING")

    listed = await cli("list", "--prefix", "cli-greet", "--json")
    assert listed.code == 0
    assert sorted(s["orchestration_instance"]["instance_id"] for s in listed.json()) == [
        "cli-greet-1",
        "cli-greet-2",
    ]
    running = await cli("list", "--status", "running", "--json")
    assert [s["orchestration_instance"]["instance_id"] for s in running.json()] == ["cli-other-1"]
    named = await cli("list", "--name", "greet", "--status", "completed,failed", "--limit", "1", "--json")
    assert len(named.json()) == 1
    table = await cli("list")
    assert table.stdout.splitlines()[0].split()[:3] == ["INSTANCE", "ID", "NAME"]
    assert "cli-other-1" in table.stdout and "RUNNING" in table.stdout


async def test_raise_suspend_resume_terminate(start_worker, cli) -> None:
    await start_worker(ORCHESTRATORS, ACTIVITIES)
    assert (await cli("start", "approval", "--id", "cli-approve")).code == 0
    await _status_json(cli, "cli-approve", "RUNNING")

    suspended = await cli("suspend", "cli-approve", "--reason", "audit")
    assert suspended.code == 0 and "suspend requested for cli-approve" in suspended.stdout
    await _status_json(cli, "cli-approve", "SUSPENDED")
    raised = await cli("raise", "cli-approve", "approve", "--data", '"by alice"', "--json")
    assert raised.json() == {"instance_id": "cli-approve", "event": "approve"}
    assert (await cli("resume", "cli-approve")).code == 0
    done = await _status_json(cli, "cli-approve", "COMPLETED")
    assert done["output"] == '"approved: by alice"'

    assert (await cli("start", "approval", "--id", "cli-stop")).code == 0
    await _status_json(cli, "cli-stop", "RUNNING")
    stopped = await cli("terminate", "cli-stop", "--reason", "no longer needed", "--recursive", "--json")
    assert stopped.json() == {"instance_id": "cli-stop", "requested": "terminate"}
    await _status_json(cli, "cli-stop", "TERMINATED")
    # The status of a terminated instance is shown, and the exit code says it did not complete.
    shown = await cli("status", "cli-stop")
    assert shown.code == 1 and "TERMINATED" in shown.stdout


async def test_rewind_and_purge(start_worker, cli) -> None:
    Fix.deployed = False
    await start_worker(ORCHESTRATORS, ACTIVITIES)
    assert (await cli("start", "fragile", "--input", '"a"', "--id", "cli-fragile")).code == 0
    failed = await _status_json(cli, "cli-fragile", "FAILED")
    assert "downstream is down" in failed["failure_details"]["message"]

    refused = await cli("purge", "cli-fragile-not-there")
    assert refused.code == 3 and "no instance 'cli-fragile-not-there'" in refused.stderr

    Fix.deployed = True
    rewound = await cli("rewind", "cli-fragile", "--reason", "fixed")
    assert rewound.code == 0 and "rewind requested" in rewound.stdout
    done = await _status_json(cli, "cli-fragile", "COMPLETED")
    assert done["output"] == '"ok a"'
    again = await cli("rewind", "cli-fragile")
    assert again.code == 2 and "only a Failed instance can be rewound" in again.stderr

    assert (await cli("start", "approval", "--id", "cli-busy")).code == 0
    await _status_json(cli, "cli-busy", "RUNNING")
    busy = await cli("purge", "cli-busy")
    assert busy.code == 1 and "only a finished instance" in busy.stderr

    purged = await cli("purge", "cli-fragile", "--json")
    assert purged.code == 0, purged.stderr
    result = purged.json()
    assert result["instances"] == 1 and result["executions"] == 2 and result["blobs"] > 2
    gone = await cli("status", "cli-fragile")
    assert gone.code == 3 and "no instance 'cli-fragile'" in gone.stderr

    assert (await cli("start", "greet", "--input", '"x"', "--id", "cli-many-1", "--wait", "30")).code == 0
    needs_filter = await cli("purge")
    assert needs_filter.code == 2 and "at least one filter" in needs_filter.stderr
    by_filter = await cli("purge", "--prefix", "cli-", "--status", "completed")
    assert by_filter.code == 0
    assert by_filter.stdout.startswith("purged 1 instance(s)")
    assert (await cli("status", "cli-busy")).code == 0
