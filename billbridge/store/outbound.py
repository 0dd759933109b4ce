"""Documents on their way out: approving drafts with their outbox messages, and reading a document
as the neutral ``OutboundDocument`` the ERP and payment mappings take."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billbridge.billing import lifecycle
from billbridge.billing.documents import DocumentLine, OutboundDocument
from billbridge.store import outbox
from billbridge.store.models import Contract, ContractVersion, Customer, Invoice, InvoiceLine, LegalEntity

PUSH_VERSION = 1  # documents are immutable once numbered; a correction is a new document
# Contract-level lines (a contract discount, a minimum-commitment true-up) belong to no product; in
# the ERP they post to an item of their own, named by the line's kind.
CONTRACT_LINE_ITEMS = {"discount": "DISCOUNT", "minimum": "MINIMUM-COMMITMENT"}


def outbound_documents(session: Session, invoice_ids: Sequence[int]) -> dict[int, OutboundDocument]:
    """invoice id -> the document as it leaves billbridge (lines in order)."""
    if not invoice_ids:
        return {}
    heads = session.execute(
        select(
            Invoice.id,
            Invoice.number,
            Invoice.doc_type,
            LegalEntity.entity_ref,
            Customer.customer_ref,
            Customer.name,
            Customer.email,
            Contract.contract_ref,
            Invoice.currency,
            Invoice.billing_date,
            Invoice.due_date,
            Invoice.invoice_total,
            ContractVersion.auto_charge,
        )
        .join(Contract, Contract.id == Invoice.contract_id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .join(LegalEntity, LegalEntity.id == Invoice.entity_id)
        .join(
            ContractVersion,
            (ContractVersion.contract_id == Invoice.contract_id) & (ContractVersion.version_no == Invoice.version_no),
        )
        .where(Invoice.id.in_(invoice_ids))
    ).all()
    lines: dict[int, list[DocumentLine]] = defaultdict(list)
    for row in session.execute(
        select(
            InvoiceLine.invoice_id,
            InvoiceLine.line_ref,
            InvoiceLine.product_ref,
            InvoiceLine.kind,
            InvoiceLine.description,
            InvoiceLine.quantity,
            InvoiceLine.billed_amount,
            InvoiceLine.start_date,
            InvoiceLine.end_date,
        )
        .where(InvoiceLine.invoice_id.in_(invoice_ids))
        .order_by(InvoiceLine.invoice_id, InvoiceLine.position)
    ):
        lines[row.invoice_id].append(
            DocumentLine(
                line_ref=row.line_ref,
                product_ref=row.product_ref or CONTRACT_LINE_ITEMS.get(row.kind, row.kind.upper()),
                description=row.description,
                quantity=row.quantity,
                amount=row.billed_amount,  # signed: a credit line is negative
                start_date=row.start_date,
                end_date=row.end_date,
            )
        )
    return {
        h.id: OutboundDocument(
            number=h.number,
            doc_type=h.doc_type,
            version=PUSH_VERSION,
            entity_ref=h.entity_ref,
            customer_ref=h.customer_ref,
            customer_name=h.name,
            customer_email=h.email,
            contract_ref=h.contract_ref,
            currency=h.currency,
            billing_date=h.billing_date,
            due_date=h.due_date,
            total=h.invoice_total,
            auto_charge=bool(h.auto_charge),
            lines=tuple(lines[h.id]),
        )
        for h in heads
    }


def approve_and_queue(
    session: Session, invoice_ids: Sequence[int], targets: Callable[[OutboundDocument], Sequence[str]]
) -> dict[str, int]:
    """Approve draft documents and queue a push message per target, in the caller's transaction:
    the status change and the messages announcing it commit together. Returns messages per topic."""
    queued: dict[str, int] = defaultdict(int)
    documents = outbound_documents(session, invoice_ids)
    for invoice in session.scalars(select(Invoice).where(Invoice.id.in_(invoice_ids)).with_for_update()):
        if invoice.status != "draft":
            continue
        invoice.status = lifecycle.transition(invoice.status, "approved")
        document = documents[invoice.id]
        for target in targets(document):
            topic = f"push.{target}"
            if outbox.enqueue(
                session,
                topic=topic,
                aggregate_type=invoice.doc_type,
                aggregate_id=invoice.id,
                dedupe_key=f"{topic}:{document.number}:v{document.version}",
                payload={"number": document.number, "version": document.version},
            ):
                queued[topic] += 1
    return dict(queued)


def draft_ids(session: Session, limit: int | None = None) -> list[int]:
    query = select(Invoice.id).where(Invoice.status == "draft").order_by(Invoice.id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def mark_sent(session: Session, invoice_ids: Sequence[int]) -> None:
    """Documents the ERP (or Stripe) now holds are sent: approved -> sent (paid when the total is
    zero: nothing is due), any later status stays. Two statements for the lot; their status condition
    keeps a concurrent change (paid, void) intact."""
    if not invoice_ids:
        return
    totals = session.execute(
        select(Invoice.id, Invoice.invoice_total).where(Invoice.id.in_(invoice_ids), Invoice.status == "approved")
    ).all()
    by_status: dict[str, list[int]] = {}
    for ident, total in totals:
        by_status.setdefault(lifecycle.status_when_sent(total), []).append(ident)
    lifecycle.transition("approved", "sent")
    for status, ids in by_status.items():
        session.execute(
            update(Invoice)
            .where(Invoice.id.in_(ids), Invoice.status == "approved")
            .values(status=status)
            .execution_options(synchronize_session=False)
        )
