"""Messages made with the events that cause them, whatever their dates: an invoice pushed a month
after its billing date is delivered, a QuickBooks payment entered with a date three weeks back gets
its receipt; a run that stops right after the event's commit leaves its message queued for the next
relay, which sends it once; reruns make nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from billbridge.flows.approval import approve_drafts
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.messages import plan_messages, send_messages
from billbridge.flows.push import push
from billbridge.flows.reconcile import reconcile
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.settings import Settings, SmtpSettings
from billbridge.store import external_refs, messages
from billbridge.store.db import Store
from billbridge.store.invoices import list_invoices
from tests.docs import REFERENCE, contract
from tests.flows.messaging_world import ENTITY
from tests.flows.test_push_quickbooks import settings_for

pytestmark = pytest.mark.slow  # QuickBooks and SMTP sandboxes

TODAY = date.today()  # the day the push and the reconciliation run: the messages are made today
BILLED = TODAY - timedelta(days=30)  # the invoices' billing date: approved and pushed a month late


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox() as running:
        yield running


def billed_a_month_ago(store: Store) -> None:
    """Two customers with a billing contact each, billed 30 days ago (due in 30 days: no reminder due
    yet) and approved for QuickBooks today."""
    doc = {
        "entities": [ENTITY],
        "products": REFERENCE["products"],
        "customers": [
            {"customer_ref": f"e{i}", "name": f"E {i}", "entity_ref": "us", "contacts": [{"email": f"ap@e{i}.example"}]}
            for i in range(2)
        ],
        "contracts": [
            contract(f"EK{i}", customer=f"e{i}", contract_start_date=BILLED.isoformat(), payment_terms_days=60)
            for i in range(2)
        ],
    }
    assert not import_document(store, doc).errors
    run_billing(store, BILLED)
    approve_drafts(store, ["quickbooks"])


def with_smtp(qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path) -> Settings:
    return settings_for(qbo, database_url, tmp_path).model_copy(update={"smtp": SmtpSettings(**smtp.settings())})


def subjects(smtp: SmtpSandbox) -> list[str]:
    return sorted(str(r.message["Subject"]) for r in smtp.mailbox.items())


def test_an_invoice_pushed_a_month_after_its_billing_date_is_delivered_once(
    store: Store, qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    billed_a_month_ago(store)
    settings = with_smtp(qbo, smtp, database_url, tmp_path)
    # The push commits the documents sent with their deliveries; the run stops there (killed before
    # any relay): the next run's relay sends them.
    assert push(store, settings, "quickbooks").outcomes == {"created": 2}
    with store.read() as session:
        made = messages.listing(session, kind="invoice")
    assert {(m["state"], m["as_of"]) for m in made} == {("queued", TODAY)}  # made the day they were issued
    assert plan_messages(store, settings, TODAY).created == {}
    assert send_messages(store, settings).outcomes == {"invoice": 2}
    assert subjects(smtp) == ["Invoice US-INV-1 from Acme Inc.", "Invoice US-INV-2 from Acme Inc."]
    # Reruns of the push and the daily run make nothing twice.
    assert push(store, settings, "quickbooks").outcomes == {}
    assert plan_messages(store, settings, TODAY).created == {}
    assert send_messages(store, settings).outcomes == {}
    assert len(smtp.mailbox.items()) == 2


def test_a_quickbooks_payment_dated_three_weeks_back_gets_its_receipt_once(
    store: Store, qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    billed_a_month_ago(store)
    settings = with_smtp(qbo, smtp, database_url, tmp_path)
    push(store, settings, "quickbooks")
    with store.read() as session:
        first = list_invoices(session)[0]
        qbo_id = external_refs.get_external_id(session, "quickbooks", "invoice", int(str(first["id"])))
    assert qbo_id is not None
    # A cheque entered by hand today, dated 20 days ago, paying 500.00 of the invoice's 1,200.00.
    received = TODAY - timedelta(days=20)
    qbo.company.receive_payment({qbo_id: Decimal("500.00")}, ref="CHK-77", txn_date=received.isoformat())
    assert reconcile(store, settings, "quickbooks").outcomes == {"matched": 1}
    assert send_messages(store, settings).outcomes == {"invoice": 2, "receipt": 1}
    [receipt] = [r for r in smtp.mailbox.items() if str(r.message["Subject"]).startswith("Payment received")]
    assert receipt.recipients == ("ap@e0.example",)  # a QuickBooks payment names no customer: its invoice's
    with store.read() as session:
        [made] = messages.listing(session, kind="receipt")
        context = messages.sending_context(session, int(made["id"]))
    assert context is not None and made["as_of"] == received
    assert context["details"]["payment"]["applied"] == [
        {"number": first["number"], "amount": "500.00", "open": "700.00"}
    ]
    # The same payment read again (a rerun, a replayed webhook's reconciliation): no second receipt.
    assert reconcile(store, settings, "quickbooks").outcomes.get("matched", 0) == 0
    assert plan_messages(store, settings, TODAY).created == {}
    assert send_messages(store, settings).outcomes == {}
    with store.read() as session:
        assert len(messages.listing(session, kind="receipt")) == 1
    assert len(smtp.mailbox.items()) == 3  # two deliveries, one receipt
