"""`billbridge webhooks list` and `webhooks process` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.store import webhooks as inbox
from billbridge.store.db import Store
from billbridge.store.webhooks import InboxEvent

runner = CliRunner()


def test_events_with_nothing_to_do_are_listed_then_marked_ignored_with_the_reason(
    store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    with store.write() as session:
        inbox.receive(
            session,
            [
                InboxEvent("stripe", "evt_1", "customer.created", "cus_1", None, '{"id": "evt_1"}'),
                InboxEvent("quickbooks", "1:Invoice:7:Create:t", "Invoice.Create", "7", None, '{"realmId": "1"}'),
            ],
        )
    listed = runner.invoke(app, ["webhooks", "list", "--pending", "--json"])
    assert listed.exit_code == 0, listed.output
    assert sorted(e["event_type"] for e in json.loads(listed.output)) == ["Invoice.Create", "customer.created"]

    processed = runner.invoke(app, ["webhooks", "process", "--json"])
    assert processed.exit_code == 0, processed.output
    assert json.loads(processed.output) == {"events": {"ignored": 2}, "actions": {}, "notes": {}, "failures": []}
    after = {e["event_type"]: e for e in json.loads(runner.invoke(app, ["webhooks", "list", "--json"]).output)}
    assert after["customer.created"]["note"] == "nothing to do for customer.created"
    assert after["Invoice.Create"]["note"] == "invoices go from billbridge to QuickBooks, not back"
    assert {e["outcome"] for e in after.values()} == {"ignored"}
    assert json.loads(runner.invoke(app, ["webhooks", "list", "--pending", "--json"]).output) == []
    table = runner.invoke(app, ["webhooks", "list"])
    assert table.exit_code == 0 and "Webhooks" in table.output
