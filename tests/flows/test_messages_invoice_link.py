"""QuickBooks' InvoiceLink as the pay link: with online payments on, an invoice QuickBooks holds with
a BillEmail has a sharable link (read with ``include=invoiceLink``), and billbridge's e-mail and its
PDF carry it; an invoice QuickBooks gives no link to carries none."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from pypdf import PdfReader

from billbridge.flows.approval import approve_drafts
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.messages import plan_messages, send_messages
from billbridge.flows.push import push, quickbooks_connector
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.settings import SmtpSettings
from billbridge.store import external_refs
from billbridge.store.db import Store
from billbridge.store.models import Invoice
from tests.docs import REFERENCE, contract
from tests.flows.test_push_quickbooks import settings_for


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox() as running:
        yield running


def test_the_invoice_link_is_the_pay_link_of_the_email_and_the_pdf(
    store: Store, qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    qbo.company.online_payments = True  # QuickBooks Payments on for the company
    customers = [
        # l0 has an e-mail in QuickBooks (BillEmail): it gets a link; l1 has none there: no link
        {"customer_ref": "l0", "name": "L 0", "entity_ref": "us", "email": "ap@l0.example"},
        {"customer_ref": "l1", "name": "L 1", "entity_ref": "us", "contacts": [{"email": "ap@l1.example"}]},
    ]
    doc = {
        "entities": [REFERENCE["entities"][0]],
        "products": REFERENCE["products"],
        "customers": customers,
        "contracts": [contract(f"LK{i}", customer=f"l{i}") for i in range(2)],
    }
    assert not import_document(store, doc).errors
    run_billing(store, date(2026, 1, 1))
    approve_drafts(store, ["quickbooks"])
    settings = settings_for(qbo, database_url, tmp_path).model_copy(update={"smtp": SmtpSettings(**smtp.settings())})
    push(store, settings, "quickbooks")
    with store.read() as session:
        ids = {
            inv.customer_id: external_refs.get_external_id(session, "quickbooks", "invoice", inv.id)
            for inv in session.query(Invoice).all()
        }
    assert all(ids.values()) and len(ids) == 2
    links = {}
    connector = quickbooks_connector(store, settings)
    for qbo_id in ids.values():
        assert qbo_id is not None
        record = qbo.company.get("Invoice", qbo_id)
        assert "InvoiceLink" not in record  # only read with include=invoiceLink
        links[record["BillEmail"]["Address"] if record.get("BillEmail") else None] = connector.invoice_link(qbo_id)
    link = links["ap@l0.example"]
    assert link is not None and link.startswith("https://connect.intuit.sandbox/") and links[None] is None
    plan_messages(store, settings, date(2026, 1, 2))
    assert send_messages(store, settings).outcomes == {"invoice": 2}
    received = {r.recipients[0]: r.message for r in smtp.mailbox.items()}
    for address, expected in (("ap@l0.example", link), ("ap@l1.example", None)):
        message = received[address]
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        [attachment] = list(message.iter_attachments())
        pdf = PdfReader(io.BytesIO(attachment.get_payload(decode=True))).pages[0].extract_text()
        if expected is None:
            assert "intuit" not in text and "intuit" not in pdf
        else:
            assert expected in text and expected in pdf.replace("\n", "").replace(" ", "")
