"""Prefect tests: one offline Prefect server for the whole session (``prefect_test_harness``).

Prefect is optional: every test module here starts with ``pytest.importorskip("prefect", minversion=...)``,
so in an environment without it (the Airflow venv) the modules are reported as skipped. (The version
check matters: with ``tests/`` on ``sys.path`` this very folder imports as a namespace package named
``prefect``.) This file imports Prefect only inside fixtures.
"""

from __future__ import annotations

import os
import tempfile

import pytest

# Before Prefect is first imported: no telemetry, no writes to the user's ~/.prefect, and the
# package's own loggers (the gate's source-fallback warnings) reach the run logs the tests read.
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="carbon-sensors-prefect-"))
os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = "carbon_sensors"
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_API_KEY", None)


@pytest.fixture(scope="session")
def prefect_api():
    """An offline Prefect server (SQLite in a temporary folder) for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture
def client(prefect_api):
    """A synchronous Prefect client on the session's server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        yield c
