"""Options, hub entity definitions, fault points, middleware order and secrets kept out of errors."""

from __future__ import annotations

import logging
from dataclasses import FrozenInstanceError

import pytest

from dtf_sb.middleware import DispatchContext, run_pipeline
from dtf_sb.options import TaskHubOptions, WorkerOptions
from dtf_sb.servicebus.connection import ServiceBusConnection, redact
from dtf_sb.servicebus.entities import emulator_config, emulator_queues, hub_queue_definitions
from dtf_sb.servicebus.faults import CRASH_EXIT_CODE, FAULT_POINTS, FaultPoints, env_fault_injector

SECRET = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs="
CONNECTION = f"Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=Root;SharedAccessKey={SECRET};UseDevelopmentEmulator=true;"


def test_options_have_dtfs_defaults_and_are_frozen() -> None:
    options = TaskHubOptions(hub_name="myhub")
    assert options.max_delivery_count == 10
    assert options.lock_duration == 60
    assert options.duplicate_detection_window == 4 * 3600
    assert options.prefetch_count == 50
    assert options.session_overflow_threshold == 230 * 1024
    assert options.session_max_size == 10 * 1024 * 1024
    assert options.message_overflow_threshold == 170 * 1024
    assert options.jump_start.interval == 5 and options.jump_start.ignore_window == 600
    assert options.track_history is True
    workers = WorkerOptions()
    assert (workers.max_concurrent_orchestrations, workers.max_concurrent_activities) == (100, 10)
    assert workers.max_concurrent_tracking_sessions == 20
    with pytest.raises(FrozenInstanceError):
        options.hub_name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "field",
    ["session_hold_seconds", "extended_session_idle_seconds"],
)
def test_negative_session_waits_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        WorkerOptions(**{field: -1.0})


@pytest.mark.parametrize(
    "field",
    [
        "orchestration_accept_concurrency",
        "max_orchestration_accept_concurrency",
        "tracking_accept_concurrency",
        "max_tracking_accept_concurrency",
    ],
)
def test_accept_concurrency_below_one_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        WorkerOptions(**{field: 0})


@pytest.mark.parametrize("value", [0.0, -0.1, 5.0])
def test_a_receive_poll_interval_outside_zero_to_one_second_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="receive_poll_interval"):
        WorkerOptions(receive_poll_interval=value)


def test_one_tls_context_serves_every_service_bus_client() -> None:
    connection = ServiceBusConnection(connection_string=CONNECTION)
    first, second = connection.client(), connection.client()
    assert first._config.ssl_context is not None
    assert first._config.ssl_context is second._config.ssl_context
    assert connection.client(connection_verify="/tmp/ca.pem")._config.ssl_context is None


@pytest.mark.parametrize("name", ["", "-bad", "has space", "a" * 80, "x/y"])
def test_unusable_hub_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="hub_name"):
        TaskHubOptions(hub_name=name)


def test_hub_queues_have_sessions_and_duplicate_detection_where_the_protocol_needs_them() -> None:
    queues = {q.name: q for q in hub_queue_definitions(TaskHubOptions(hub_name="Hub1", max_delivery_count=7))}
    assert set(queues) == {"Hub1/orchestrator", "Hub1/worker", "Hub1/tracking"}
    assert queues["Hub1/orchestrator"].requires_session and queues["Hub1/tracking"].requires_session
    assert not queues["Hub1/worker"].requires_session
    assert all(q.requires_duplicate_detection and q.max_delivery_count == 7 for q in queues.values())


def test_emulator_config_matches_the_definitions_within_the_official_limits() -> None:
    options = TaskHubOptions(hub_name="h")
    config = emulator_config(options)
    [namespace] = config["UserConfig"]["Namespaces"]
    queues = {q["Name"]: q["Properties"] for q in namespace["Queues"]}
    assert set(queues) == {q.name for q in hub_queue_definitions(options)}
    assert queues["h/orchestrator"]["RequiresSession"] is True
    assert queues["h/worker"]["RequiresSession"] is False
    assert queues["h/orchestrator"]["DuplicateDetectionHistoryTimeWindow"] == "PT5M"
    assert queues["h/orchestrator"]["LockDuration"] == "PT1M"
    embedded = {q.name: q for q in emulator_queues(options)}
    assert embedded["h/orchestrator"].requires_session
    assert embedded["h/worker"].duplicate_detection_window == options.duplicate_detection_window


def test_fault_spec_from_the_environment_exits_like_a_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    monkeypatch.setenv("DTF_SB_FAULTS", "orchestration.after_send:1.0, activity.after_run:0:3")
    inject = env_fault_injector(exit=exits.append)
    assert inject is not None
    inject("activity.after_run", {})
    assert exits == []
    inject("orchestration.after_send", {"instance_id": "i"})
    assert exits == [CRASH_EXIT_CODE]
    monkeypatch.setenv("DTF_SB_FAULTS", "")
    assert env_fault_injector() is None
    with pytest.raises(ValueError, match="unknown fault point"):
        env_fault_injector("orchestration.after_nothing:1")
    with pytest.raises(ValueError, match="probability"):
        env_fault_injector("activity.after_send:2")
    assert "tracking.after_state" in FAULT_POINTS


def test_fault_points_call_every_injector_with_the_context() -> None:
    seen: list[tuple[str, dict]] = []
    points = FaultPoints(lambda p, c: seen.append((p, c)), None)
    points("activity.after_send", task_id=3)
    assert seen == [("activity.after_send", {"task_id": 3})]
    assert not FaultPoints(None).enabled


async def test_middleware_runs_outermost_first_and_can_replace_the_execution() -> None:
    order: list[str] = []

    def named(name: str):
        async def mw(ctx: DispatchContext, next_) -> None:
            order.append(f"{name}>")
            await next_()
            order.append(f"<{name}")

        return mw

    async def terminal(ctx: DispatchContext) -> None:
        order.append("run")
        ctx.result = "ran"

    ctx = DispatchContext(kind="activity", instance_id="i", execution_id="e", name="a")
    await run_pipeline([named("a"), named("b")], ctx, terminal)
    assert order == ["a>", "b>", "run", "<b", "<a"]
    assert ctx.result == "ran"

    async def short_circuit(ctx: DispatchContext, next_) -> None:
        ctx.result = "from middleware"
        await next_()

    replaced = DispatchContext(kind="activity", instance_id="i", execution_id="e", name="a")
    order.clear()
    await run_pipeline([short_circuit], replaced, terminal)
    assert replaced.result == "from middleware" and order == []

    async def twice(ctx: DispatchContext, next_) -> None:
        await next_()
        await next_()

    with pytest.raises(RuntimeError, match="more than once"):
        await run_pipeline(
            [twice], DispatchContext(kind="activity", instance_id="i", execution_id=None, name="a"), terminal
        )


def test_property_bag_by_type_or_name() -> None:
    ctx = DispatchContext(kind="orchestration", instance_id="i", execution_id=None, name="o")
    ctx.set_property(int, 5)
    ctx.set_property("custom", "x")
    assert ctx.get_property(int) == 5 and ctx.get_property("custom") == "x" and ctx.get_property(str) is None


def test_secrets_never_appear_in_reprs_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    connection = ServiceBusConnection(connection_string=CONNECTION)
    assert SECRET not in repr(connection)
    assert connection.namespace == "127.0.0.1:5672" and connection.is_development_emulator
    assert SECRET not in redact(f"failed with {CONNECTION} and sig=abc&se=1")
    assert "sig=***" in redact("https://x/y?sig=abc&se=1")
    with pytest.raises(ValueError) as caught:
        ServiceBusConnection(connection_string=f"SharedAccessKey={SECRET};nothing")
    assert SECRET not in str(caught.value)
    from dtf_sb import TaskHubClient, TaskHubWorker

    worker = TaskHubWorker(
        TaskHubOptions(hub_name="h"),
        servicebus_connection_string=CONNECTION,
        storage_connection_string=f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={SECRET};BlobEndpoint=http://127.0.0.1:1/a;",
    )
    assert SECRET not in repr(worker)
    with pytest.raises(ValueError) as missing:
        TaskHubClient(TaskHubOptions(hub_name="h"), servicebus_connection_string=CONNECTION)
    assert "storage" in str(missing.value).lower() and SECRET not in str(missing.value)
    assert all(SECRET not in r.getMessage() for r in caplog.records)
