"""A small world for message tests: customers with contacts, billed and issued invoices, an SMTP sandbox."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.settings import Settings, SmtpSettings
from billbridge.store import messages
from billbridge.store.db import Store
from billbridge.store.models import Invoice
from billbridge.store.outbound_documents import mark_sent
from tests.docs import REFERENCE, contract

ENTITY = {
    **REFERENCE["entities"][0],
    "messaging": {
        "from_email": "billing@acme.example",
        "address": "1 Main St, Springfield; EIN 12-3456789",
        "payment_instructions": "Wire to IBAN US00 1234 5678, reference the invoice number.",
    },
}


def world(
    store: Store,
    customers: int,
    *,
    languages: tuple[str, ...] = ("en",),
    logo: Path | None = None,
    issued: date | None = None,
) -> list[int]:
    """``customers`` customers of the US entity (with ``logo`` on its documents) with one contact each,
    one monthly contract each, billed for January and sent; returns the invoice ids. ``issued``: sent
    by the event a push makes (``mark_sent`` on that day: their deliveries made with it); else their
    status is only set (as documents issued before messages were made with their events)."""
    entity = ENTITY if logo is None else {**ENTITY, "messaging": {**ENTITY["messaging"], "logo": str(logo)}}
    doc: dict[str, Any] = {
        "entities": [entity, REFERENCE["entities"][1]],
        "products": REFERENCE["products"],
        "customers": [
            {
                "customer_ref": f"c{i}",
                "name": f"Customer {i}",
                "entity_ref": "us",
                "contacts": [{"email": f"ap{i}@c{i}.example", "language": languages[i % len(languages)]}],
            }
            for i in range(customers)
        ],
        "contracts": [contract(f"K{i}", customer=f"c{i}", payment_terms_days=30) for i in range(customers)],
    }
    summary = import_document(store, doc)
    assert not summary.errors, summary.errors
    run_billing(store, date(2026, 1, 1))
    with store.write() as session:
        session.execute(update(Invoice).values(status="approved" if issued else "sent"))
        ids = list(session.scalars(select(Invoice.id).order_by(Invoice.id)))
        if issued:
            mark_sent(session, ids, as_of=issued)
        return ids


def queue_deliveries(store: Store, invoice_ids: list[int]) -> None:
    with store.write() as session:
        customers = dict(
            session.execute(select(Invoice.id, Invoice.customer_id).where(Invoice.id.in_(invoice_ids))).all()
        )
        messages.create(
            session,
            [
                messages.MessageDraft(f"invoice:{i}", "invoice", customers[i], date(2026, 1, 1), invoice_id=i)
                for i in invoice_ids
            ],
        )


def settings_for(smtp: SmtpSandbox, database_url: str, data_dir: Any) -> Settings:
    return Settings(database_url=database_url, data_dir=data_dir, smtp=SmtpSettings(**smtp.settings()))


def states(store: Store) -> dict[int, str]:
    with store.read() as session:
        return {r["id"]: r["state"] for r in messages.listing(session)}
