"""Documents on their way out: status changes with the outbox messages they announce (approving
queues the pushes, going back withdraws them), and reading a document as the neutral
``OutboundDocument`` the ERP and payment mappings take."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select, update
from sqlalchemy.orm import Session, aliased

from billbridge.billing import lifecycle
from billbridge.billing.documents import DocumentLine, OutboundDocument
from billbridge.store import messages, outbox
from billbridge.store.models import (
    Contract,
    ContractVersion,
    Customer,
    Invoice,
    InvoiceLine,
    LegalEntity,
    OutboxMessage,
    utcnow,
)

PUSH_VERSION = 1  # documents are immutable once numbered; a correction is a new document
# Contract-level lines (a contract discount, a minimum-commitment true-up) belong to no product; in
# the ERP they post to an item of their own, named by the line's kind.
CONTRACT_LINE_ITEMS = {"discount": "DISCOUNT", "minimum": "MINIMUM-COMMITMENT"}
_CREDITED = aliased(Invoice)  # the invoice a credit note credits
Targets = Callable[[OutboundDocument], Sequence[str]]
"""Where an approved document is pushed (``billing.documents.push_targets`` of the configured targets)."""


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
            Customer.message_channel,
            LegalEntity.messaging,
            _CREDITED.number.label("applies_to"),
        )
        .join(Contract, Contract.id == Invoice.contract_id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .join(LegalEntity, LegalEntity.id == Invoice.entity_id)
        .join(
            ContractVersion,
            (ContractVersion.contract_id == Invoice.contract_id) & (ContractVersion.version_no == Invoice.version_no),
        )
        .outerjoin(_CREDITED, _CREDITED.id == Invoice.applies_to_id)
        .where(Invoice.id.in_(invoice_ids))
    ).all()
    lines: dict[int, list[DocumentLine]] = defaultdict(list)
    rows = session.execute(
        select(
            InvoiceLine.invoice_id,
            InvoiceLine.contract_id,
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
    ).all()
    passed = pass_through_lines(session, {row.contract_id for row in rows})  # a reseller's lines: each its own
    for row in rows:
        lines[row.invoice_id].append(
            DocumentLine(
                line_ref=row.line_ref,
                product_ref=row.product_ref or CONTRACT_LINE_ITEMS.get(row.kind, row.kind.upper()),
                description=row.description,
                quantity=row.quantity,
                amount=row.billed_amount,  # signed: a credit line is negative
                start_date=row.start_date,
                end_date=row.end_date,
                pass_through=row.line_ref in passed.get(row.contract_id, ()),
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
            channel=str(h.message_channel or (h.messaging or {}).get("channel") or "email"),
            applies_to=h.applies_to,
        )
        for h in heads
    }


NONE_RECOGNITION = '"recognition":"none"'  # a line's ``recognition: none`` as the stored terms (JSON) write it


def pass_through_lines(session: Session, contract_ids: Iterable[int]) -> dict[int, set[str]]:
    """contract id -> the line refs its terms mark ``recognition: none`` (pass-through), each line as the
    contract's latest version says, as revenue recognition reads it. Only contracts with such a line in
    some version have their terms read."""
    ids = list(contract_ids)
    if not ids:
        return {}
    marked = select(ContractVersion.contract_id).where(
        ContractVersion.contract_id.in_(ids), ContractVersion.terms.contains(NONE_RECOGNITION, autoescape=True)
    )
    rows = session.execute(
        select(ContractVersion.contract_id, ContractVersion.terms)
        .where(ContractVersion.contract_id.in_(marked))
        .order_by(ContractVersion.contract_id, ContractVersion.effective_date, ContractVersion.version_no)
    )
    methods: dict[int, dict[str, object]] = defaultdict(dict)
    for contract_id, terms in rows:
        for line in json.loads(terms).get("lines", []):
            methods[contract_id][line["line_ref"]] = line.get("recognition")
    return {cid: {ref for ref, method in found.items() if method == "none"} for cid, found in methods.items()}


def approve_and_queue(session: Session, invoice_ids: Sequence[int], targets: Targets) -> dict[str, int]:
    """Approve documents and queue a push message per target, in the caller's transaction: the
    status change and the messages announcing it commit together. Every route to approved goes
    through here (a billing run's auto-approval, a person's ``invoices mark``, the API); documents
    the lifecycle does not let approve (approved already, sent, void) are left as they are, so
    nothing is ever queued twice. Returns messages per topic."""
    queued: dict[str, int] = defaultdict(int)
    documents = outbound_documents(session, invoice_ids)
    for invoice in session.scalars(select(Invoice).where(Invoice.id.in_(invoice_ids)).with_for_update()):
        approved = lifecycle.approval(invoice.status)
        if approved is None:
            continue
        invoice.status = approved
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


@dataclass(frozen=True)
class StatusChange:
    """What a status change did: the pushes it queued (approving) or withdrew (leaving approved)."""

    number: str
    previous: str
    status: str
    queued: dict[str, int] = field(default_factory=dict)
    withdrawn: int = 0


def set_status(
    session: Session, number: str, target: str, targets: Targets, *, entity_id: int | None = None
) -> StatusChange:
    """Move a document (of ``entity_id``, when given) to ``target`` as a person asks, if the lifecycle
    allows it. Approving queues the pushes as a billing run's auto-approval does
    (:func:`approve_and_queue`); leaving approved (back to review, or void) withdraws the pushes no
    relay has started, and is refused once one has (the document may be at the vendor). Raises
    LookupError for an unknown number, InvalidTransition for a change that is not allowed."""
    query = select(Invoice).where(Invoice.number == number).with_for_update()
    if entity_id is not None:
        query = query.where(Invoice.entity_id == entity_id)
    invoice = session.scalar(query)
    if invoice is None:
        raise LookupError(f"no invoice or credit note numbered {number!r}")
    previous = invoice.status
    status = lifecycle.transition(previous, target, amount_paid=invoice.amount_paid)
    if status == previous:
        return StatusChange(number, previous, status)
    withdrawn = _withdraw_pushes(session, invoice, status) if previous == "approved" and status != "sent" else 0
    if status == "approved":
        return StatusChange(number, previous, status, queued=approve_and_queue(session, [invoice.id], targets))
    invoice.status = status
    if status == "sent":  # issued by a person's word: its delivery message comes with it
        session.flush()
        messages.deliveries(session, [invoice.id], utcnow().date())
    if lifecycle.releases_period(status):  # the next run bills its period again
        invoice.period_released = True
    return StatusChange(number, previous, status, withdrawn=withdrawn)


def _withdraw_pushes(session: Session, invoice: Invoice, target: str) -> int:
    """Delete the push messages of a document leaving approved, so it never reaches a vendor. A push
    delivered, or tried with an unknown outcome, may have put it there: then the change is refused.
    (A push the vendor refused, parked, did not.) Deleted, a later approval queues them afresh."""
    messages = list(
        session.scalars(
            select(OutboxMessage)
            .where(
                OutboxMessage.aggregate_id == invoice.id,
                OutboxMessage.aggregate_type == invoice.doc_type,
                OutboxMessage.topic.startswith("push."),
            )
            .with_for_update()
        )
    )
    started = [
        m for m in messages if m.delivered_at is not None or (m.attempts and not outbox.is_parked(m.available_at))
    ]
    if started:
        where = ", ".join(sorted({m.topic.removeprefix("push.") for m in started}))
        raise lifecycle.InvalidTransition(
            f"{invoice.number} cannot go from approved to {target}: it may already be in {where} "
            f"(its push was delivered or is under way); once it is sent, correct it by a credit note"
        )
    for message in messages:
        session.delete(message)
    return len(messages)


def draft_ids(session: Session, limit: int | None = None) -> list[int]:
    query = select(Invoice.id).where(Invoice.status == "draft").order_by(Invoice.id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def mark_sent(session: Session, invoice_ids: Sequence[int], *, as_of: date | None = None) -> list[int]:
    """Documents the ERP (or Stripe) now holds are sent: approved -> sent (paid when the total is
    zero: nothing is due), any later status stays. Issuing is the event of a document's delivery
    message: it is made here, in the same transaction (``store.messages.deliveries``, dated
    ``as_of``, today by default), so no document is issued without one and none gets two. A few
    statements for the lot; their status condition keeps a concurrent change (paid, void) intact.
    Returns the documents issued by this call."""
    if not invoice_ids:
        return []
    totals = session.execute(
        select(Invoice.id, Invoice.invoice_total).where(Invoice.id.in_(invoice_ids), Invoice.status == "approved")
    ).all()
    by_status: dict[str, list[int]] = {}
    for ident, total in totals:
        by_status.setdefault(lifecycle.status_when_sent(total), []).append(ident)
    issued: list[int] = []
    for status, ids in by_status.items():
        done = session.execute(
            update(Invoice)
            .where(Invoice.id.in_(ids), Invoice.status == "approved")
            .values(status=status)
            .execution_options(synchronize_session=False)
            .returning(Invoice.id)
        )
        issued += [int(i) for i in done.scalars()]
    messages.deliveries(session, issued, as_of or utcnow().date())
    return issued
