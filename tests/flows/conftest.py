"""Fixtures for flow tests: a Prefect API (one temporary server per test process) and a QuickBooks sandbox."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from billbridge.sandbox.quickbooks.running import RunningQuickBooks

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry calls from a sandboxed machine
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    from prefect.settings import (
        PREFECT_API_BLOCKS_REGISTER_ON_START,
        PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    # No flow run heartbeats (Prefect's default: one every 180 s, for a server to notice a crashed
    # run): each run's heartbeat thread sleeps in 1 s steps and is joined when the run ends, so every
    # flow run, subflows included, took about a second longer. The tests' runs are in-process.
    # No certificate checks against the harness's plain-HTTP server: Prefect makes a client for every
    # task run, and each loaded certifi's whole CA bundle into a new SSL context (as the demo, app/demo.py).
    quicker = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}
    # The harness's server does not register every block type Prefect knows when it starts (half its
    # start-up): a block a test saves registers its own type, as Block.save does. Set before the
    # harness starts its server, which takes the settings in force then.
    server = {PREFECT_API_BLOCKS_REGISTER_ON_START: False}
    with (
        temporary_settings(updates=server),
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates=quicker),
    ):
        yield


@pytest.fixture
def flow_env(prefect_api: None, database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Flows read their settings from the environment, as a deployment's would: point them at the test store."""
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", "/nonexistent/billbridge.toml")
    return database_url


@pytest.fixture
def qbo() -> Iterator[RunningQuickBooks]:
    """A QuickBooks company sandbox on loopback (TLS), stopped after the test."""
    from billbridge.sandbox.quickbooks.running import start_quickbooks

    running = start_quickbooks(limits=None)  # the flows' connectors are unpaced (test_push_quickbooks)
    try:
        yield running
    finally:
        running.stop()
