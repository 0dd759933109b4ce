"""The quickbooks channel: QuickBooks e-mails its own invoices (POST /invoice/{id}/send), each once;
a message a crash left ``sending`` is looked up there (EmailStatus) and finished without a second mail."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlalchemy import update

from billbridge.flows.approval import approve_drafts
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.messages import plan_messages, send_messages
from billbridge.flows.push import push, quickbooks_connector
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.store import external_refs, messages, outbox
from billbridge.store.db import Store
from billbridge.store.message_models import CustomerMessage
from tests.docs import REFERENCE, contract
from tests.flows.test_push_quickbooks import settings_for


def test_quickbooks_sends_each_invoice_once_and_a_crash_is_finished_by_looking_it_up(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    entity = {**REFERENCE["entities"][0], "messaging": {"channel": "quickbooks"}}
    customers = [
        {"customer_ref": f"q{i}", "name": f"Q {i}", "entity_ref": "us", "contacts": [{"email": f"ap@q{i}.example"}]}
        for i in range(3)
    ]
    doc = {
        "entities": [entity],
        "products": REFERENCE["products"],
        "customers": customers,
        "contracts": [contract(f"QK{i}", customer=f"q{i}") for i in range(3)],
    }
    assert not import_document(store, doc).errors
    run_billing(store, date(2026, 1, 1))
    approve_drafts(store, ["quickbooks"])
    settings = settings_for(qbo, database_url, tmp_path)
    push(store, settings, "quickbooks")
    plan_messages(store, settings, date(2026, 1, 2))
    with store.read() as session:
        rows = messages.listing(session)
    assert {r["channel"] for r in rows} == {"quickbooks"} and len(rows) == 3
    # One invoice QuickBooks already mailed before a crash left our message `sending`:
    first = rows[-1]
    with store.read() as session:
        qbo_id = external_refs.get_external_id(session, "quickbooks", "invoice", _invoice_id(store, first["id"]))
    assert qbo_id is not None
    connector = quickbooks_connector(store, settings)
    connector.send_invoice(qbo_id, ["ap@q0.example"], [], "before-the-crash")
    with store.write() as session:
        session.execute(update(CustomerMessage).where(CustomerMessage.id == first["id"]).values(state="sending"))
    summary = send_messages(store, settings)
    assert summary.outcomes == {"invoice sent by quickbooks": 2, "sent before": 1}
    assert sorted(e["To"] for e in qbo.company.sent_emails) == ["ap@q0.example", "ap@q1.example", "ap@q2.example"]
    for email in qbo.company.sent_emails:
        invoice = qbo.company.get("Invoice", email["Invoice"])
        assert invoice["EmailStatus"] == "EmailSent" and invoice["BillEmail"] == {"Address": email["To"]}
        assert invoice["DeliveryInfo"]["DeliveryType"] == "Email"
    with store.write() as session:  # even handed back, nothing goes twice
        outbox.retry_now(session, [p["id"] for p in outbox.pending(session)])
    assert send_messages(store, settings).outcomes == {}
    assert len(qbo.company.sent_emails) == 3
    with store.read() as session:
        assert {r["state"] for r in messages.listing(session)} == {"sent"}


def _invoice_id(store: Store, message_id: int) -> int:
    with store.read() as session:
        row = session.get(CustomerMessage, message_id)
        assert row is not None and row.invoice_id is not None
        return row.invoice_id
