"""Auto-charge through Stripe and reconciliation from Stripe and QuickBooks, end to end against the
sandboxes: declines wait with their reason, a new card pays, every payment is recorded once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from billbridge.app.settings import Settings, StripeSettings
from billbridge.flows.bill import approve_drafts
from billbridge.flows.billing_run import run_billing
from billbridge.flows.collect import collect
from billbridge.flows.importing import import_file
from billbridge.flows.push import push, stripe_connector
from billbridge.flows.reconcile import reconcile
from billbridge.sandbox.quickbooks.running import RunningQuickBooks, start_quickbooks
from billbridge.sandbox.stripe import RunningStripe, start_seeded
from billbridge.store import external_refs, outbox
from billbridge.store.db import Store
from billbridge.store.invoices import list_invoices
from tests.flows.test_push_quickbooks import settings_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "contracts"


@pytest.fixture
def stripe_sandbox() -> Iterator[RunningStripe]:
    with start_seeded() as running:
        yield running


def bill_and_approve(store: Store, targets: list[str]) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        import_file(store, path)
    run_billing(store, date(2026, 11, 22))
    approve_drafts(store, targets)


def statuses(store: Store, contract_ref: str) -> set[str]:
    with store.read() as session:
        return {str(d["status"]) for d in list_invoices(session, contract_ref=contract_ref)}


def test_auto_charge_declines_then_pays_and_reconciles_once(
    store: Store, stripe_sandbox: RunningStripe, database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        stripe=StripeSettings(api_key=SecretStr(stripe_sandbox.api_key), base_url=stripe_sandbox.url),
    )
    bill_and_approve(store, ["stripe"])  # only the auto-charge contract's invoices go to Stripe
    with store.read() as session:
        auto = list_invoices(session, contract_ref="C-100-globex")
    assert auto and push(store, settings, "stripe").outcomes == {"created": len(auto)}
    # The fewest calls: the customer searched for and created once, each invoice created, its lines
    # added in one call, finalized.
    calls = stripe_sandbox.sandbox.faults
    assert calls.total_calls("customers/search") == calls.total_calls("^POST /v1/customers$") == 1
    assert calls.total_calls() == 2 + 3 * len(auto)
    assert statuses(store, "C-100-globex") == {"sent"}
    with store.read() as session:
        assert all(external_refs.get_external_id(session, "stripe", "invoice", int(d["id"])) for d in auto)

    connector = stripe_connector(settings)
    customer = connector.find_customer("globex")
    connector.attach_default_payment_method(customer, "pm_card_chargeDeclinedInsufficientFunds")
    declined = collect(store, settings)
    assert declined.outcomes == {"declined": len(auto)}
    with store.read() as session:
        waiting = outbox.pending(session)
    assert len(waiting) == len(auto) and all("insufficient_funds" in str(w["last_error"]) for w in waiting)
    assert statuses(store, "C-100-globex") == {"sent"}  # open, not paid
    assert collect(store, settings).outcomes == {}  # the next try waits for the dunning date

    connector.attach_default_payment_method(customer, "pm_card_visa")  # the customer updates the card
    with store.write() as session:
        outbox.retry_now(session, [w["id"] for w in waiting])
    assert collect(store, settings).outcomes == {"charged": len(auto)}

    first = reconcile(store, settings, "stripe")
    assert first.outcomes == {"matched": len(auto)}, first.unmatched
    assert statuses(store, "C-100-globex") == {"paid"}
    again = reconcile(store, settings, "stripe")
    assert again.outcomes.get("matched", 0) == 0  # nothing recorded twice
    with store.read() as session:
        paid = list_invoices(session, contract_ref="C-100-globex")
    assert all(d["amount_paid"] == d["invoice_total"] for d in paid)


@pytest.fixture
def qbo() -> Iterator[RunningQuickBooks]:
    running = start_quickbooks()
    try:
        yield running
    finally:
        running.stop()


def test_quickbooks_payments_reconcile_in_full_and_in_part_once(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(qbo, database_url, tmp_path)
    bill_and_approve(store, ["quickbooks"])
    push(store, settings, "quickbooks")
    with store.read() as session:
        documents = [d for d in list_invoices(session) if d["doc_type"] == "invoice"]
        qbo_id = {
            str(d["number"]): external_refs.get_external_id(session, "quickbooks", "invoice", int(d["id"]))
            for d in documents
        }
    full, part = documents[0], documents[1]
    qbo.company.receive_payment({qbo_id[str(full["number"])]: Decimal(str(full["invoice_total"]))}, ref="CHK-1001")
    half = (Decimal(str(part["invoice_total"])) / 2).quantize(Decimal("0.01"))
    qbo.company.receive_payment({qbo_id[str(part["number"])]: half}, ref="CHK-1002")

    summary = reconcile(store, settings, "quickbooks")
    assert summary.outcomes == {"matched": 2}, summary.unmatched
    with store.read() as session:
        by_number = {str(d["number"]): d for d in list_invoices(session)}
    assert by_number[str(full["number"])]["status"] == "paid"
    assert by_number[str(part["number"])]["status"] == "partially_paid"
    assert by_number[str(part["number"])]["amount_paid"] == half
    assert reconcile(store, settings, "quickbooks").outcomes.get("matched", 0) == 0
