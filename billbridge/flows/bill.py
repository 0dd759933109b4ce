"""Prefect flow ``bill``: generate the invoices due, then (if configured) approve them and queue their pushes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from billbridge.app.settings import Settings
from billbridge.billing.documents import OutboundDocument
from billbridge.flows.billing_run import BillingSummary, run_billing
from billbridge.flows.metrics_refresh import refresh as refresh_metrics
from billbridge.store.db import Store, open_store
from billbridge.store.outbound import approve_and_queue, draft_ids

APPROVE_BATCH = 500


def push_targets(configured: list[str]) -> Any:
    """Which targets a document goes to: the ERP takes every document, Stripe the auto-charge invoices."""

    def targets(document: OutboundDocument) -> list[str]:
        out = []
        if "quickbooks" in configured:
            out.append("quickbooks")
        if "stripe" in configured and document.auto_charge and document.doc_type == "invoice":
            out.append("stripe")
        return out

    return targets


def approve_drafts(store: Store, configured_targets: list[str]) -> dict[str, int]:
    """Approve every draft and queue its pushes, a batch per transaction."""
    queued: dict[str, int] = {}
    targets = push_targets(configured_targets)
    while True:
        with store.write() as session:
            ids = draft_ids(session, limit=APPROVE_BATCH)
            if not ids:
                return queued
            for topic, n in approve_and_queue(session, ids, targets).items():
                queued[topic] = queued.get(topic, 0) + n


def billing_markdown(summary: BillingSummary, queued: dict[str, int]) -> str:
    lines = [f"# Billing run as of {summary.as_of}", "", "| | |", "|---|---:|"]
    lines += [
        f"| contracts | {summary.contracts} |",
        f"| invoices | {summary.documents['invoice']} |",
        f"| credit notes | {summary.documents['credit_note']} |",
        f"| pending adjustments | {summary.pending_adjustments} |",
    ]
    lines += [f"| billed {cur} | {total} |" for cur, total in sorted(summary.totals.items())]
    lines += [f"| queued for {topic} | {n} |" for topic, n in sorted(queued.items())]
    if summary.failed:
        lines += ["", "## Contracts that could not be billed", "", "| contract | reason |", "|---|---|"]
        lines += [f"| {ref} | {reason.replace('|', '/')} |" for ref, reason in summary.failed[:200]]
    return "\n".join(lines) + "\n"


@flow(name="bill")
def bill(as_of: date | None = None) -> dict[str, Any]:
    """Bill every contract up to ``as_of`` (default today, UTC). Rerunning creates nothing twice."""
    settings = Settings()
    store = open_store(settings.database)
    day = as_of or datetime.now(UTC).date()
    summary = run_billing(store, day, chunk_size=settings.billing_chunk_size, workers=settings.billing_workers)
    queued = approve_drafts(store, settings.push_targets) if settings.auto_approve_invoices else {}
    create_markdown_artifact(billing_markdown(summary, queued), key="billing-run", description=f"Billing as of {day}")
    refresh_metrics(store, workers=settings.billing_workers)
    return {**summary.as_dict(), "queued": queued}
