"""Where the CLI finds its hub and connections: flags first, then environment variables.

Every command that talks to a hub accepts the same four connection flags; each has an environment
variable so that a shell (or a container) is configured once. A missing setting is an error that
names both the flag and the variable, because "connection string not set" alone does not tell a user
where to put it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

__all__ = ["ENV", "CliError", "ConnectionSettings", "add_connection_flags", "connection_settings"]

ENV = {
    "hub": "DTF_SB_HUB",
    "servicebus_connection_string": "DTF_SB_SERVICEBUS_CONNECTION_STRING",
    "fully_qualified_namespace": "DTF_SB_SERVICEBUS_NAMESPACE",
    "storage_connection_string": "DTF_SB_STORAGE_CONNECTION_STRING",
    "storage_account_url": "DTF_SB_STORAGE_ACCOUNT_URL",
}


class CliError(Exception):
    """A user-facing failure: printed without a traceback, exit code ``code``."""

    def __init__(self, message: str, *, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ConnectionSettings:
    hub: str
    servicebus_connection_string: str | None
    fully_qualified_namespace: str | None
    storage_connection_string: str | None
    storage_account_url: str | None

    @property
    def uses_credential(self) -> bool:
        return self.servicebus_connection_string is None or self.storage_connection_string is None

    def client_kwargs(self) -> dict[str, object]:
        """Keyword arguments for TaskHubClient / TaskHubWorker (a credential when a string is missing)."""
        kwargs: dict[str, object] = {
            "servicebus_connection_string": self.servicebus_connection_string,
            "fully_qualified_namespace": self.fully_qualified_namespace,
            "storage_connection_string": self.storage_connection_string,
            "storage_account_url": self.storage_account_url,
        }
        if self.uses_credential:
            from azure.identity.aio import DefaultAzureCredential

            kwargs["credential"] = DefaultAzureCredential()
        return kwargs


def add_connection_flags(parser: argparse.ArgumentParser, *, storage: bool = True) -> None:
    group = parser.add_argument_group("connection (flags override environment variables)")
    group.add_argument("--hub", help=f"task hub name (${ENV['hub']})")
    group.add_argument(
        "--servicebus-connection-string",
        metavar="CS",
        help=f"Service Bus connection string (${ENV['servicebus_connection_string']})",
    )
    group.add_argument(
        "--namespace",
        dest="fully_qualified_namespace",
        metavar="HOST",
        help="Service Bus namespace host for azure-identity auth, e.g. myns.servicebus.windows.net "
        f"(${ENV['fully_qualified_namespace']})",
    )
    if storage:
        group.add_argument(
            "--storage-connection-string",
            metavar="CS",
            help=f"Blob Storage connection string (${ENV['storage_connection_string']})",
        )
        group.add_argument(
            "--storage-account-url",
            metavar="URL",
            help=f"Blob Storage account URL for azure-identity auth (${ENV['storage_account_url']})",
        )


def _pick(args: argparse.Namespace, key: str) -> str | None:
    value = getattr(args, key, None) or os.environ.get(ENV[key]) or None
    return value


def connection_settings(args: argparse.Namespace, *, storage: bool = True) -> ConnectionSettings:
    hub = _pick(args, "hub")
    if not hub:
        raise CliError(f"no task hub given: pass --hub NAME or set {ENV['hub']}")
    sb_cs = _pick(args, "servicebus_connection_string")
    sb_ns = _pick(args, "fully_qualified_namespace")
    if not sb_cs and not sb_ns:
        raise CliError(
            "no Service Bus connection: pass --servicebus-connection-string (or set "
            f"{ENV['servicebus_connection_string']}), or --namespace HOST (or {ENV['fully_qualified_namespace']}) "
            "to sign in with azure-identity. For local development run `dtf-sb dev` and copy what it prints."
        )
    st_cs = _pick(args, "storage_connection_string") if storage else None
    st_url = _pick(args, "storage_account_url") if storage else None
    if storage and not st_cs and not st_url:
        raise CliError(
            "no Blob Storage connection: pass --storage-connection-string (or set "
            f"{ENV['storage_connection_string']}), or --storage-account-url URL (or {ENV['storage_account_url']})."
        )
    return ConnectionSettings(hub, sb_cs, sb_ns, st_cs, st_url)
