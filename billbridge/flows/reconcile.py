"""Reconciliation: payments pulled back from Stripe or QuickBooks, matched to our invoices, recorded once.

Page by page: match each payment (billing/matching.py), record it with its allocations (a payment
seen before is skipped by its ref), and save the cursor in the same transaction. Unmatched
payments are recorded unapplied and reported with the reason, never dropped.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from billbridge.app.settings import Settings
from billbridge.billing.documents import IncomingPayment
from billbridge.billing.matching import OpenInvoice, match_payment
from billbridge.flows.limits import vendor_slot
from billbridge.flows.push import quickbooks_connector, stripe_connector
from billbridge.store.cursors import get_cursor, set_cursor
from billbridge.store.db import Store, open_store
from billbridge.store.invoices import open_invoices, record_payment

STREAM = "payments"


@dataclass
class ReconcileSummary:
    source: str
    outcomes: Counter[str] = field(default_factory=Counter)  # matched, partly_matched, unmatched, seen_before
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (payment ref, reason)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "outcomes": dict(self.outcomes),
            "unmatched": [{"payment": p, "reason": r} for p, r in self.unmatched],
        }

    def markdown(self) -> str:
        lines = [f"# Reconciliation: {self.source}", "", "| outcome | payments |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(self.outcomes.items())]
        if self.unmatched:
            lines += ["", "## Not (fully) matched", "", "| payment | reason |", "|---|---|"]
            lines += [f"| {p} | {r.replace('|', '/')} |" for p, r in self.unmatched[:200]]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Page:
    payments: list[IncomingPayment]
    cursor: str | None


def _pages(source: str, store: Store, settings: Settings, cursor: str | None) -> Iterator[_Page]:
    if source == "stripe":
        for stripe_page in stripe_connector(settings).pull_payments(cursor):
            yield _Page(stripe_page.payments, stripe_page.cursor)
    elif source == "quickbooks":
        with quickbooks_connector(store, settings) as connector:
            for qbo_page in connector.pull_payments(cursor):
                yield _Page(qbo_page.payments, qbo_page.cursor)
    else:
        raise ValueError(f"unknown payment source {source!r} (expected stripe or quickbooks)")


def reconcile(store: Store, settings: Settings, source: str) -> ReconcileSummary:
    """Pull the source's payments since the stored cursor and record each once, matched where possible."""
    summary = ReconcileSummary(source)
    with store.read() as session:
        cursor = get_cursor(session, source, STREAM)
    for page in _pages(source, store, settings, cursor):
        with store.write() as session:
            rows = open_invoices(
                session,
                numbers=[n for p in page.payments for n in p.invoice_numbers],
                customer_refs=[p.customer_ref for p in page.payments if p.customer_ref],
            )
            invoices = {r["number"]: OpenInvoice(**r) for r in rows}
            by_customer: dict[str, list[OpenInvoice]] = defaultdict(list)
            for invoice in invoices.values():
                by_customer[invoice.customer_ref].append(invoice)
            for payment in page.payments:
                match = match_payment(payment, invoices, by_customer)
                recorded = record_payment(
                    session,
                    payment_ref=f"{source}:{payment.payment_ref}",
                    currency=payment.currency,
                    amount=payment.amount,
                    received_on=payment.received_on,
                    allocations=list(match.allocations),
                    customer_ref=payment.customer_ref,
                    method=payment.method,
                    reference=payment.reference,
                )
                if not recorded:
                    summary.outcomes["seen_before"] += 1
                    continue
                for number, share in match.allocations:  # later payments in this page see what is left
                    invoice = invoices[number]
                    invoices[number] = OpenInvoice(
                        invoice.number,
                        invoice.customer_ref,
                        invoice.currency,
                        invoice.open_amount - share,
                        invoice.due_date,
                    )
                by_customer = defaultdict(list)
                for invoice in invoices.values():
                    by_customer[invoice.customer_ref].append(invoice)
                outcome = (
                    "matched"
                    if match.matched and match.reason is None
                    else "partly_matched"
                    if match.matched
                    else "unmatched"
                )
                summary.outcomes[outcome] += 1
                if match.reason:
                    summary.unmatched.append((f"{source}:{payment.payment_ref}", match.reason))
            if page.cursor is not None:
                set_cursor(session, source, STREAM, page.cursor)
    return summary


@flow(name="reconcile_payments")
def reconcile_payments(source: str = "stripe") -> dict[str, Any]:
    """Match the payments received in ``source`` to invoices; rerunning records nothing twice."""
    settings = Settings()
    store = open_store(settings.database)
    with vendor_slot(source):
        summary = reconcile(store, settings, source)
    create_markdown_artifact(summary.markdown(), key=f"reconcile-{source}", description=f"Payments from {source}")
    return summary.as_dict()
