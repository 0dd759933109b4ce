"""Approving documents, whatever the route: a billing run with ``auto_approve_invoices`` (the Prefect
``bill`` flow and ``billbridge bill`` alike), a person's ``invoices mark`` or the API. Each goes
through ``store.outbound_documents.approve_and_queue`` with the pushes of the ``push_targets`` setting, so an
approved document is queued for the same vendors, once, however it got there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from sqlalchemy.orm import Session

from billbridge.billing.documents import push_targets
from billbridge.flows.invoice_generation import BillingSummary, run_billing
from billbridge.settings import Settings
from billbridge.store.db import Store
from billbridge.store.outbound_documents import StatusChange, approve_and_queue, draft_ids, set_status
from billbridge.vendors.registry import document_targets

APPROVE_BATCH = 500


def approve_drafts(store: Store, configured_targets: list[str]) -> dict[str, int]:
    """Approve every draft and queue its pushes, a batch per transaction. Returns messages per topic."""
    queued: dict[str, int] = {}
    targets = push_targets(document_targets(configured_targets))
    while True:
        with store.write() as session:
            ids = draft_ids(session, limit=APPROVE_BATCH)
            if not ids:
                return queued
            for topic, n in approve_and_queue(session, ids, targets).items():
                queued[topic] = queued.get(topic, 0) + n


def bill(
    store: Store, settings: Settings, as_of: date, *, on_progress: Callable[[int], None] | None = None
) -> tuple[BillingSummary, dict[str, int]]:
    """A billing run as configured: every document due by ``as_of``, then, with
    ``auto_approve_invoices``, the drafts approved and their pushes queued (messages per topic)."""
    summary = run_billing(
        store, as_of, chunk_size=settings.billing_chunk_size, workers=settings.billing_workers, on_progress=on_progress
    )
    queued = approve_drafts(store, settings.push_targets) if settings.auto_approve_invoices else {}
    return summary, queued


def mark(
    session: Session, settings: Settings, number: str, status: str, *, entity_id: int | None = None
) -> StatusChange:
    """A person moves a document along its lifecycle, in the caller's transaction (see
    ``store.outbound_documents.set_status``); approving queues its pushes to the configured targets."""
    return set_status(
        session, number, status, push_targets(document_targets(settings.push_targets)), entity_id=entity_id
    )
