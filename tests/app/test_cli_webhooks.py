"""`billbridge webhooks list` and `webhooks process` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.app.cli import webhooks as webhooks_cli
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


@pytest.mark.slow
def test_the_sandboxes_send_their_signed_webhooks_to_billbridge_serve(
    store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What `billbridge sandbox` sets up: Stripe's and QuickBooks' sandboxes deliver to the API's
    webhook endpoints, and the settings it prints are the ones the API verifies them with."""
    from typing import Any

    import stripe

    from billbridge.api.app import create_app
    from billbridge.app.demo import running_sandboxes
    from billbridge.sandbox.server import SandboxServer
    from billbridge.settings import Settings

    served: dict[str, Any] = {}

    async def api(scope: Any, receive: Any, send: Any) -> None:  # the app comes once the secrets are known
        await served["app"](scope, receive, send)

    server = SandboxServer(api, name="api")  # its port is bound here: the sandboxes are told it first
    with running_sandboxes(3, webhooks_to=server.url) as running:
        for key, value in running.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
        monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
        monkeypatch.setenv("BILLBRIDGE_WEBHOOKS_INLINE", "false")  # kept in the inbox, not acted on
        served["app"] = create_app(store, Settings())
        server.start()
        try:
            client = stripe.StripeClient(
                running.env["BILLBRIDGE_STRIPE__API_KEY"],
                base_addresses={"api": running.env["BILLBRIDGE_STRIPE__BASE_URL"]},
            )
            client.v1.customers.create(params={"email": "ada@example.com"})
            running.stripe.sandbox.webhook.flush()
            running.quickbooks.company.notify([("Invoice", "7", "Create", "2026-12-01T10:00:00Z")])
            running.quickbooks.company.webhook.flush()
        finally:
            server.stop()
    assert running.stripe.sandbox.webhook.failed == [] and running.stripe.sandbox.webhook.delivered
    assert [status for status, _ in running.quickbooks.company.webhook.delivered] == [200]
    with store.read() as session:
        received = {(e["source"], e["event_type"]) for e in inbox.list_events(session, limit=100)}
    assert ("stripe", "customer.created") in received and ("quickbooks", "Invoice.Create") in received


def test_a_signed_delivery_that_was_refused_is_listed_with_the_reason(
    store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A signed Stripe event with a 500-character type is refused (400) and kept: `webhooks list`
    shows it as refused with the reason, and `webhooks process` leaves it alone."""
    import time

    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from billbridge.api.app import create_app
    from billbridge.sandbox.stripe import sign
    from billbridge.settings import Settings, StripeSettings

    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    settings = Settings(
        webhooks_inline=False,
        stripe=StripeSettings(api_key=SecretStr("sk_test_x"), webhook_secret=SecretStr("whsec_x")),
    )
    payload = json.dumps({"id": "evt_odd", "object": "event", "type": "t" * 500, "created": 1764576000}).encode()
    with TestClient(create_app(store, settings)) as client:
        answer = client.post(
            "/webhooks/stripe",
            content=payload,
            headers={
                "Stripe-Signature": sign(payload, "whsec_x", int(time.time())),
                "Content-Type": "application/json",
            },
        )
    assert answer.status_code == 400
    # The CLI's console fixed its width when first imported (from COLUMNS then, whatever test that was).
    monkeypatch.setattr(webhooks_cli, "console", Console(width=200))
    table = runner.invoke(app, ["webhooks", "list"])
    assert table.exit_code == 0, table.output
    [row] = [line for line in table.output.splitlines() if "stripe" in line]
    assert "refused" in row and "event type: 500 characters, more than the 120 kept" in row, table.output
    assert json.loads(runner.invoke(app, ["webhooks", "process", "--json"]).output)["events"] == {}
    assert json.loads(runner.invoke(app, ["webhooks", "list", "--pending", "--json"]).output) == []
