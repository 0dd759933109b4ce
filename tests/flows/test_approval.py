"""Approving by hand queues what automatic approval queues, once, whatever the route (straight from
draft, after review), and the document then reaches QuickBooks; taking an approval back withdraws
its pushes, unless one may already have reached the vendor."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.flows.approval import approve_drafts
from billbridge.flows.importing import import_file
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.outbox_relay import LEASE
from billbridge.flows.push import push
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.store import outbox
from billbridge.store.db import Store, open_store
from billbridge.store.invoices import list_invoices
from billbridge.store.models import OutboxMessage
from tests.flows.test_push_quickbooks import EXAMPLES, in_quickbooks, settings_for

runner = CliRunner()
TARGETS = '["quickbooks", "stripe"]'


def mark(number: str, status: str) -> str:
    result = runner.invoke(app, ["invoices", "mark", number, status])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def billed_drafts(url: str) -> tuple[Store, list[dict[str, Any]]]:
    store = open_store(url)
    for path in sorted(EXAMPLES.glob("*.yaml")):
        import_file(store, path)
    run_billing(store, date(2026, 11, 22))
    with store.read() as session:
        return store, list_invoices(session)


def messages(store: Store, invoice_ids: set[int]) -> set[tuple[Any, ...]]:
    with store.read() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.aggregate_id.in_(invoice_ids)))
        return {(m.topic, m.aggregate_type, m.aggregate_id, m.dedupe_key, str(m.payload)) for m in rows}


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BILLBRIDGE_PUSH_TARGETS", TARGETS)
    return database_url


def test_approved_by_hand_from_draft_or_review_queues_what_auto_approval_queues_and_reaches_quickbooks(
    cli_env: str, qbo: RunningQuickBooks, tmp_path: Path
) -> None:
    store, documents = billed_drafts(cli_env)
    auto_charge = next(d for d in documents if d["contract_ref"] == "C-100-globex")  # Stripe charges it
    other = next(d for d in documents if d["contract_ref"] == "C-101-initech")
    chosen = {int(auto_charge["id"]), int(other["id"])}

    said = mark(str(auto_charge["number"]), "approved")
    assert said.startswith(f"{auto_charge['number']}: draft -> approved")
    assert "queued for push.quickbooks: 1" in said and "queued for push.stripe: 1" in said
    assert mark(str(other["number"]), "under_review") == f"{other['number']}: draft -> under_review"
    said = mark(str(other["number"]), "approved")
    assert "under_review -> approved" in said and "queued for push.quickbooks: 1" in said and "stripe" not in said
    assert mark(str(other["number"]), "approved") == f"{other['number']} is approved already"
    by_hand = messages(store, chosen)
    assert len(by_hand) == 3  # once each: QuickBooks for both, Stripe for the auto-charge invoice

    # The same documents approved by a billing run's auto-approval, in a store of their own.
    auto_store, _ = billed_drafts(f"sqlite:///{tmp_path / 'auto.db'}")
    approve_drafts(auto_store, ["quickbooks", "stripe"])
    assert messages(auto_store, chosen) == by_hand
    auto_store.dispose()

    summary = push(store, settings_for(qbo, cli_env, tmp_path), "quickbooks")
    assert summary.outcomes == {"created": 2}
    assert in_quickbooks(qbo) == sorted([str(auto_charge["number"]), str(other["number"])])
    with store.read() as session:
        status = {d["number"]: d["status"] for d in list_invoices(session)}
    assert status[auto_charge["number"]] == status[other["number"]] == "sent"
    store.dispose()


def test_taking_an_approval_back_withdraws_its_pushes_until_one_has_started(cli_env: str) -> None:
    store, documents = billed_drafts(cli_env)
    first, second = (str(d["number"]) for d in documents[:2])
    mark(first, "approved")
    assert mark(first, "under_review") == f"{first}: approved -> under_review withdrawn: 2 push(es) not started"
    with store.read() as session:
        assert outbox.pending(session) == []  # nothing left for a relay to push
    assert "queued for push.quickbooks: 1" in mark(first, "approved")  # queued afresh, once

    mark(second, "approved")
    with store.write() as session:  # a relay claims the pushes to QuickBooks: their outcome is unknown
        outbox.claim(session, topic="push.quickbooks", limit=10, lease=LEASE)
    result = runner.invoke(app, ["invoices", "mark", second, "void"])
    out = " ".join(result.output.split())
    assert result.exit_code == 1 and f"{second} cannot go from approved to void: it may already be in quickbooks" in out
    with store.read() as session:
        assert {d["number"]: d["status"] for d in list_invoices(session)}[second] == "approved"
        assert len([p for p in outbox.pending(session) if p["reference"] == second]) == 2  # kept
    store.dispose()
