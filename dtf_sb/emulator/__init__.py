"""An embedded Azure Service Bus emulator: AMQP 1.0 over TCP with Service Bus semantics.

The real azure-servicebus SDK talks to it through an ordinary connection string::

    async with Emulator("Config.json", port=0) as emu:
        client = ServiceBusClient.from_connection_string(emu.connection_string)

It is dtf-sb's test backend and usable on its own (``python -m dtf_sb.emulator``); it imports
nothing else from dtf_sb.
"""

from __future__ import annotations

from .auth import generate_sas_token
from .broker import (
    Broker,
    CorrelationFilter,
    FakeClock,
    QueueProperties,
    Rule,
    SqlFilter,
    SubscriptionProperties,
    SystemClock,
    TopicProperties,
)
from .config import EmulatorConfig, load_config, parse_config
from .server import DEFAULT_SAS_KEY, DEFAULT_SAS_KEY_NAME, Emulator

__all__ = [
    "DEFAULT_SAS_KEY",
    "DEFAULT_SAS_KEY_NAME",
    "Broker",
    "CorrelationFilter",
    "Emulator",
    "EmulatorConfig",
    "FakeClock",
    "QueueProperties",
    "Rule",
    "SqlFilter",
    "SubscriptionProperties",
    "SystemClock",
    "TopicProperties",
    "generate_sas_token",
    "load_config",
    "parse_config",
]
