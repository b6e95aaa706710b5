"""Backend selection for every end-to-end test: which Service Bus endpoint the suite talks to.

The same tests run unchanged against three endpoints, chosen with ``--sb-backend``:

``embedded`` (default)
    dtf-sb's own emulator (:class:`dtf_sb.testing.emulator.EmulatorThread`) in a background thread.
``container``
    Microsoft's Service Bus emulator image with SQL Server, started through testcontainers. Where no
    Docker engine answers, every test that needs the backend is skipped with the reason.
``azure``
    A real namespace, from ``DTF_SB_SERVICEBUS_CONNECTION_STRING``; skipped with the reason when unset.
    Queues named in a test directory's Config.json are created through the administration client if
    they do not exist yet, so the suite can be pointed at an empty namespace.

Each test directory describes its entities in an official-emulator Config.json and asks
``sb_backend.endpoint(path)`` for a connection string; one endpoint per config per test session keeps
the suite fast.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Hub pools and the worker/client fixtures of the suites that run orchestrations (see hubpool.py).
from hubpool import (  # noqa: F401
    client,
    dtf_sb_client,
    dtf_sb_hub,
    dtf_sb_worker,
    dtf_sb_worker_options,
    hub,
    hub_pool,
    start_worker,
    worker_options,
)

BACKENDS = ("embedded", "container", "azure")
CONNECTION_STRING_ENV = "DTF_SB_SERVICEBUS_CONNECTION_STRING"

EMULATOR_IMAGE = "mcr.microsoft.com/azure-messaging/servicebus-emulator:latest"
SQL_IMAGE = "mcr.microsoft.com/mssql/server:2022-CU14-ubuntu-22.04"
SQL_PASSWORD = "Dtf-Sb-Emulator-1"
EMULATOR_CONFIG_PATH = "/ServiceBus_Emulator/ConfigFiles/Config.json"

# Queue properties the official emulator's Config-schema.json knows; anything else (our emulator's
# extensions, such as a larger maximum message size) is dropped before the file reaches the container.
OFFICIAL_QUEUE_PROPERTIES = frozenset(
    {
        "DeadLetteringOnMessageExpiration",
        "DefaultMessageTimeToLive",
        "DuplicateDetectionHistoryTimeWindow",
        "ForwardDeadLetteredMessagesTo",
        "ForwardTo",
        "LockDuration",
        "MaxDeliveryCount",
        "RequiresDuplicateDetection",
        "RequiresSession",
    }
)


_EMPTY_CONFIG: dict[str, Any] = {
    "UserConfig": {
        "Namespaces": [{"Name": "sbemulatorns", "Queues": [], "Topics": []}],
        "Logging": {"Type": "Console"},
    }
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--sb-backend",
        action="store",
        default=os.environ.get("DTF_SB_BACKEND", "embedded"),
        choices=BACKENDS,
        help="Service Bus endpoint for emulator_tests: embedded (default), container or azure",
    )


def load_config(path: Path) -> dict[str, Any]:
    """Parse an official-emulator Config.json."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def config_queues(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The queue entries of the (single) namespace in a Config.json."""
    namespaces = config["UserConfig"]["Namespaces"]
    return [q for ns in namespaces for q in ns.get("Queues", [])]


def official_config(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` holding only what Microsoft's emulator accepts."""
    cleaned = copy.deepcopy(config)
    for queue in config_queues(cleaned):
        props = queue.get("Properties", {})
        for key in list(props):
            if key not in OFFICIAL_QUEUE_PROPERTIES:
                del props[key]
    return cleaned


@dataclass
class ServiceBusBackend:
    """One test session's view of a backend: starts endpoints lazily and stops them at the end.

    ``skip_reason`` is set when the backend cannot run here; asking it for an endpoint then skips the
    calling test with that reason instead of failing it.
    """

    name: str
    skip_reason: str | None = None
    _endpoints: dict[Path | None, str] = field(default_factory=dict)
    _closers: list[Any] = field(default_factory=list)

    def endpoint(self, config: Path | str | None = None) -> str:
        """A connection string for a namespace holding the entities of ``config`` (a Config.json path).

        ``None`` asks for a namespace with no predeclared entities, for tests that create their own.
        """
        if self.skip_reason:
            pytest.skip(self.skip_reason)
        config = Path(config).resolve() if config is not None else None
        if config not in self._endpoints:
            try:
                self._endpoints[config] = self._start(config)
            except _BackendUnavailable as exc:
                self.skip_reason = str(exc)
                pytest.skip(self.skip_reason)
        return self._endpoints[config]

    def _start(self, config: Path | None) -> str:
        if self.name == "embedded":
            return self._start_embedded(config)
        if self.name == "container":
            return self._start_container(config)
        return self._start_azure(config)

    def _start_embedded(self, config: Path | None) -> str:
        from dtf_sb.testing.emulator import EmulatorThread

        emulator = EmulatorThread(str(config) if config is not None else None)
        emulator.__enter__()
        self._closers.append(lambda: emulator.__exit__(None, None, None))
        return emulator.connection_string

    def _start_container(self, config: Path | None) -> str:
        _require_docker()
        from testcontainers.community.mssql import SqlServerContainer
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.network import Network
        from testcontainers.core.wait_strategies import HttpWaitStrategy

        network = Network().create()
        self._closers.append(network.remove)
        sql = (
            SqlServerContainer(SQL_IMAGE, password=SQL_PASSWORD)
            .with_network(network)
            .with_network_aliases("mssql")
        )
        sql.start()
        self._closers.append(sql.stop)
        payload = json.dumps(official_config(load_config(config) if config else _EMPTY_CONFIG)).encode()
        emulator = (
            DockerContainer(EMULATOR_IMAGE)
            .with_network(network)
            .with_network_aliases("servicebus")
            .with_env("ACCEPT_EULA", "Y")
            .with_env("SQL_SERVER", "mssql")
            .with_env("MSSQL_SA_PASSWORD", SQL_PASSWORD)
            .with_env("SQL_WAIT_INTERVAL", "0")
            .with_exposed_ports(5672, 5300)
            .with_copy_into_container(payload, EMULATOR_CONFIG_PATH)
            .waiting_for(HttpWaitStrategy(5300, "/health").for_status_code(200))
        )
        emulator.start()
        self._closers.append(emulator.stop)
        host, port = emulator.get_container_host_ip(), emulator.get_exposed_port(5672)
        return (
            f"Endpoint=sb://{host}:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
        )

    def _start_azure(self, config: Path | None) -> str:
        conn_str = os.environ.get(CONNECTION_STRING_ENV)
        if not conn_str:
            raise _BackendUnavailable(f"--sb-backend=azure needs {CONNECTION_STRING_ENV} to be set")
        if config is not None:
            _ensure_azure_queues(conn_str, load_config(config))
        return conn_str

    def close(self) -> None:
        """Stop what was started, newest first, so containers go before their network."""
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception as exc:
                print(f"sb-backend {self.name}: teardown step failed: {exc!r}")


class _BackendUnavailable(Exception):
    """The selected backend cannot run on this machine (the message says why)."""


def _require_docker() -> None:
    """Ask the Docker engine itself (socket or DOCKER_HOST) whether it answers."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise _BackendUnavailable(
            f"--sb-backend=container needs a Docker engine, none answered at {where}: {exc}"
        ) from exc


_ADMIN_PROPERTY_NAMES = {
    "DeadLetteringOnMessageExpiration": "dead_lettering_on_message_expiration",
    "DefaultMessageTimeToLive": "default_message_time_to_live",
    "DuplicateDetectionHistoryTimeWindow": "duplicate_detection_history_time_window",
    "LockDuration": "lock_duration",
    "MaxDeliveryCount": "max_delivery_count",
    "RequiresDuplicateDetection": "requires_duplicate_detection",
    "RequiresSession": "requires_session",
    "MaxMessageSizeInKilobytes": "max_message_size_in_kilobytes",
}


def _ensure_azure_queues(conn_str: str, config: dict[str, Any]) -> None:
    """Create the config's queues that a real namespace lacks, with the same properties."""
    from azure.core.exceptions import HttpResponseError, ResourceExistsError
    from azure.servicebus.management import ServiceBusAdministrationClient

    with ServiceBusAdministrationClient.from_connection_string(conn_str) as admin:
        existing = {q.name.lower() for q in admin.list_queues()}
        for queue in config_queues(config):
            if queue["Name"].lower() in existing:
                continue
            kwargs = {
                _ADMIN_PROPERTY_NAMES[k]: v
                for k, v in queue.get("Properties", {}).items()
                if k in _ADMIN_PROPERTY_NAMES and v not in ("", None)
            }
            try:
                admin.create_queue(queue["Name"], **kwargs)
            except ResourceExistsError:
                pass
            except HttpResponseError:
                if kwargs.pop("max_message_size_in_kilobytes", None) is None:
                    raise
                admin.create_queue(queue["Name"], **kwargs)  # a standard-tier namespace: default size


@pytest.fixture(scope="session")
def sb_backend(request: pytest.FixtureRequest) -> Iterator[ServiceBusBackend]:
    """The backend chosen with ``--sb-backend`` for this test session."""
    backend = ServiceBusBackend(request.config.getoption("--sb-backend"))
    try:
        yield backend
    finally:
        backend.close()
