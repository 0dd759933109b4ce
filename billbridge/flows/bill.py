"""Prefect flow ``bill``: generate the invoices due, then (if configured) approve them and queue their pushes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from billbridge.flows import approval
from billbridge.flows.invoice_generation import BillingSummary
from billbridge.flows.metrics_refresh import refresh as refresh_metrics
from billbridge.settings import Settings
from billbridge.store.db import open_store


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
    summary, queued = approval.bill(store, settings, day)
    create_markdown_artifact(billing_markdown(summary, queued), key="billing-run", description=f"Billing as of {day}")
    refresh_metrics(store, workers=settings.billing_workers)
    return {**summary.as_dict(), "queued": queued}
