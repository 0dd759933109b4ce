"""`billbridge apikey ...` and `billbridge serve` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.flows.importing import import_document
from billbridge.store.db import open_store
from tests.api.conftest import USAGE_CONTRACT, event
from tests.docs import document
from tests.ports import free_port

runner = CliRunner()


@pytest.fixture
def env(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    store = open_store(database_url)
    import_document(store, document(USAGE_CONTRACT))
    store.dispose()
    return database_url


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_apikey_create_list_revoke(env: str) -> None:
    code, out = run("apikey", "create", "--entity", "us", "--name", "shop", "--json")
    assert code == 0, out
    created = json.loads(out)
    token, prefix = created["key"], created["prefix"]
    assert token.startswith(prefix + "_") and len(token) > 40

    code, out = run("apikey", "list", "--json")
    [listed] = json.loads(out)
    assert (listed["prefix"], listed["entity_ref"], listed["name"], listed["revoked_at"]) == (
        prefix,
        "us",
        "shop",
        None,
    )
    assert token not in out  # the key itself is shown once, at creation

    code, out = run("apikey", "create", "--entity", "us")
    assert code == 0 and "bb_" in out
    assert run("apikey", "create", "--entity", "nowhere")[0] == 1

    code, out = run("apikey", "revoke", prefix)
    assert code == 0 and "revoked" in out
    code, out = run("apikey", "revoke", str(created["id"]))  # by id, again: still revoked
    assert code == 0
    assert run("apikey", "revoke", "bb_unknown")[0] == 1
    code, out = run("apikey", "list", "--json")
    assert [k["revoked_at"] is not None for k in json.loads(out)] == [True, False]
    code, out = run("apikey", "list")
    assert code == 0 and prefix in out


def test_serve_answers_over_http(env: str, tmp_path: Path) -> None:
    code, out = run("apikey", "create", "--entity", "us", "--json")
    token = json.loads(out)["key"]
    port = free_port()
    command = Path(sys.executable).with_name("billbridge")
    server = subprocess.Popen(
        [str(command), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env={**os.environ, "BILLBRIDGE_DATABASE_URL": env, "BILLBRIDGE_CONFIG": str(tmp_path / "none.toml")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/docs", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "the server did not start in 30 s"
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "over-http-1"}
        response = httpx.post(f"{base}/api/usage/event", json=event(), headers=headers, timeout=10)
        assert response.status_code == 201, response.text
        assert response.json()["related_document_billing_date"] == "2026-02-01"
        again = httpx.post(f"{base}/api/usage/event", json=event(), headers=headers, timeout=10)
        assert again.status_code == 200 and again.json()["event_ref"] == response.json()["event_ref"]
        assert httpx.get(f"{base}/openapi.json", timeout=10).json()["info"]["title"] == "billbridge API"
        # Two workers: each batch answer ends its connection, and a client's next request reconnects
        # by itself (to whichever worker is free); every event is stored once.
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            for n in range(4):
                events = [event(event_id=f"over-http-b{n}-{i}") for i in range(50)]
                batch = client.post("/api/usage/events/batch", json={"events": events})
                assert batch.status_code == 200 and batch.json()["accepted"] == 50, batch.text
                assert batch.headers["connection"] == "close"
        assert (Path(env.removeprefix("sqlite:///") + "-writers.lock")).exists() or env.startswith("postgresql")
        store = open_store(env)
        try:
            with store.read() as session:
                from sqlalchemy import func, select

                from billbridge.store.models import UsageEvent

                assert session.scalar(select(func.count()).select_from(UsageEvent)) == 1 + 4 * 50
        finally:
            store.dispose()
    finally:
        server.terminate()
        server.wait(timeout=30)
