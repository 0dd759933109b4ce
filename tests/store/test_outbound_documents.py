"""Approving drafts queues their pushes in the same transaction; documents read back whole."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import update

from billbridge.billing.documents import OutboundDocument, push_targets
from billbridge.flows.importing import import_file
from billbridge.flows.invoice_generation import run_billing
from billbridge.store import messages, outbox
from billbridge.store.db import Store
from billbridge.store.invoices import list_invoices
from billbridge.store.models import Invoice
from billbridge.store.outbound_documents import approve_and_queue, draft_ids, mark_sent, outbound_documents, set_status

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "contracts"
NO_PUSH = push_targets({})


def targets(document: OutboundDocument) -> list[str]:
    return ["quickbooks", "stripe"] if document.auto_charge and document.doc_type == "invoice" else ["quickbooks"]


def bill_examples(store: Store) -> None:
    """The example contracts imported and billed up to 2026-11-22: drafts to approve."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        import_file(store, path)
    run_billing(store, date(2026, 11, 22))


def test_approving_queues_one_push_per_target_once(store: Store) -> None:
    bill_examples(store)
    with store.read() as session:
        ids = draft_ids(session)
        documents = outbound_documents(session, ids)
        listed = {row["number"]: row for row in list_invoices(session)}
    assert len(documents) == len(ids) == len(listed) > 0
    for document in documents.values():
        # Lines as billed: they add up to the stored total, and the header matches the listing.
        assert sum((line.amount for line in document.lines), Decimal(0)) == document.total
        assert document.total == listed[document.number]["invoice_total"]
        assert document.customer_ref == listed[document.number]["customer_ref"]
    auto = sum(1 for d in documents.values() if d.auto_charge and d.doc_type == "invoice")
    assert 0 < auto < len(documents)  # the examples have both kinds

    with store.write() as session:
        queued = approve_and_queue(session, ids, targets)
    assert queued == {"push.quickbooks": len(ids), "push.stripe": auto}
    with store.write() as session:
        assert approve_and_queue(session, ids, targets) == {}  # approved already: nothing twice
        assert draft_ids(session) == []
        assert {row["status"] for row in list_invoices(session)} == {"approved"}
        pending = outbox.pending(session)
    assert len(pending) == len(ids) + auto
    assert {p["topic"] for p in pending} == {"push.quickbooks", "push.stripe"}


@pytest.mark.slow
def test_marking_sent_moves_only_approved_documents(store: Store) -> None:
    bill_examples(store)
    with store.write() as session:
        ids = draft_ids(session)
        numbers = {row["id"]: str(row["number"]) for row in list_invoices(session)}
        approve_and_queue(session, ids[1:], targets)  # the first stays a draft
        set_status(session, numbers[ids[2]], "void", NO_PUSH)  # approved, then voided before the push came back
    with store.write() as session:
        assert mark_sent(session, ids[:3]) == [ids[1]]  # the one it issued
    with store.read() as session:
        status = {row["id"]: row["status"] for row in list_invoices(session)}
    assert [status[i] for i in ids[:4]] == ["draft", "sent", "void", "approved"]
    # Issuing made the delivery message, in the same transaction, of the one document it issued;
    # a person marking a document sent issues it too; marking again makes nothing twice.
    with store.write() as session:
        set_status(session, numbers[ids[3]], "sent", NO_PUSH)
        mark_sent(session, ids[:4])
    with store.read() as session:
        made = [m["event_key"] for m in messages.listing(session, kind="invoice")]
    assert sorted(made) == sorted([f"invoice:{ids[1]}", f"invoice:{ids[3]}"])


def test_sending_settles_a_document_with_nothing_to_pay(store: Store) -> None:
    bill_examples(store)
    with store.write() as session:
        ids = draft_ids(session)
        approve_and_queue(session, ids, targets)
        rows = list_invoices(session)
        zero, other = rows[0], rows[1]
        session.execute(update(Invoice).where(Invoice.id == zero["id"]).values(invoice_total=Decimal("0.00")))
    with store.write() as session:
        mark_sent(session, [int(zero["id"]), int(other["id"])])
    with store.read() as session:
        status = {row["id"]: row["status"] for row in list_invoices(session)}
    assert status[zero["id"]] == "paid"  # nothing due: it never waits, is never late
    assert status[other["id"]] == "sent"
