"""Fixtures of the hub-operations suite: a pool of hubs (one per collected test), workers, a client.

The pool, the worker and client fixtures and the backend choice (``--sb-backend``) come from
``emulator_tests/hubpool.py``; Blob Storage is Azurite unless ``DTF_SB_STORAGE_CONNECTION_STRING``
names an account.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dtf_sb.testing.runtime import DevEnvironment


@pytest.fixture(scope="session")
def dtf_sb_environment(hub_pool: Callable[..., DevEnvironment]) -> DevEnvironment:
    return hub_pool("op", Path(__file__).parent, spare=2)
