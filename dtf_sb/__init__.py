"""dtf-sb: durable orchestrations in plain async Python on Azure Service Bus."""

from __future__ import annotations

__all__: list[str] = []
