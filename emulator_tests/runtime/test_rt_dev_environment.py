"""The reusable local environment (``dtf_sb.testing.runtime``) that users start for their own tests."""

from __future__ import annotations

from typing import Any

import pytest
from rtkit import output

from dtf_sb import OrchestrationContext, OrchestrationStatus
from dtf_sb.options import TaskHubOptions
from dtf_sb.testing.runtime import DevEnvironment, dev_environment, named, worker_for


async def shout(text: str) -> str:
    return text.upper()


async def shouting(ctx: OrchestrationContext, text: str) -> str:
    return await ctx.call_activity("loud", text)


async def test_dev_environment_runs_an_orchestration_on_its_own_services(sb_backend: Any) -> None:
    if sb_backend.name != "embedded":
        pytest.skip(
            f"dev_environment starts the embedded emulator; this run targets --sb-backend={sb_backend.name}"
        )
    async with dev_environment(["orders", TaskHubOptions(hub_name="billing")]) as env:
        assert [h.hub_name for h in env.hubs] == ["orders", "billing"]
        assert env.emulator is not None and env.azurite is not None
        billing = env.hub("BILLING")
        assert billing.options.hub_name == "billing"
        async with worker_for(billing, [shouting], [named(shout, name="loud")]):
            async with billing.client() as client:
                iid = await client.schedule_new_orchestration(shouting, input="quiet")
                state = await client.wait_for_orchestration_completion(iid, timeout=30)
        assert state.status == OrchestrationStatus.COMPLETED
        assert output(state) == "QUIET"
        # The other hub's queues are separate: its store knows nothing of billing's instance.
        async with env.hub("orders").client() as orders_client:
            assert await orders_client.get_orchestration_state(iid) is None
    assert not env.running


def test_environment_refuses_duplicate_hub_names() -> None:
    with pytest.raises(ValueError, match="repeated: orders"):
        DevEnvironment(["orders", "Orders"])


def test_fresh_hubs_run_out_instead_of_being_shared() -> None:
    env = DevEnvironment(
        ["a", "b"],
        servicebus_connection_string="Endpoint=sb://127.0.0.1;SharedAccessKeyName=k;SharedAccessKey=secret1",
        storage_connection_string="AccountName=x;AccountKey=secret2",
    )
    assert [env.fresh_hub().hub_name, env.fresh_hub().hub_name] == ["a", "b"]
    with pytest.raises(LookupError, match="all 2 hubs"):
        env.fresh_hub()
    with pytest.raises(KeyError, match="serves: a, b"):
        env.hub("c")
    # Keys never show in reprs, which end up in test reports.
    assert "secret" not in repr(env)
    assert "secret" not in repr(env.hub("a"))
