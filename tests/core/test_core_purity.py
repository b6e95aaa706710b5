"""The core stays pure: importing it loads neither asyncio nor any Azure package."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = [
    "dtf_sb.core",
    "dtf_sb.core.actions",
    "dtf_sb.core.activity",
    "dtf_sb.core.codec",
    "dtf_sb.core.context",
    "dtf_sb.core.dedupe",
    "dtf_sb.core.errors",
    "dtf_sb.core.executor",
    "dtf_sb.core.history",
    "dtf_sb.core.messages",
    "dtf_sb.core.registry",
    "dtf_sb.core.result",
    "dtf_sb.core._decisions",
    "dtf_sb.core.retry",
    "dtf_sb.core.state",
    "dtf_sb.core.status",
    "dtf_sb.core.tasks",
    "dtf_sb.core.typed",
]

PROBE = """
import importlib, json, sys
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("asyncio", "azure"))))
"""


def test_core_imports_no_asyncio_and_no_azure():
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=MODULES)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_probe_would_notice_asyncio():
    """Guards the probe itself: importing asyncio must show up."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=["asyncio"])],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "asyncio" in json.loads(out.stdout.strip().splitlines()[-1])
