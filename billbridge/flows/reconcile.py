"""Reconciliation: payments pulled back from Stripe or QuickBooks, matched to our invoices, recorded once.

Page by page: read what the page's decisions need, let the domain decide what becomes of each
payment (billing/reconciliation.py: new and matched by billing/matching.py, seen before, changed at
its source, our own mirror, deleted), record it with its allocations (a payment seen before is
skipped by its ref), and save the cursor in the same transaction. Unmatched payments are recorded
unapplied and reported with the reason, never dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from sqlalchemy.orm import Session

from billbridge.billing import reconciliation
from billbridge.billing.documents import IncomingPayment
from billbridge.billing.matching import MATCH_WINDOW_DAYS, Match, OpenInvoice, PaidInvoice
from billbridge.flows.heap import bulk_gc
from billbridge.flows.limits import no_slot, vendor_slot
from billbridge.flows.messages import MessagesSent, send_made
from billbridge.flows.metrics_refresh import refresh as refresh_metrics
from billbridge.flows.mirror import MIRRORS_TO, mirror_payments, mirror_targets, queue_application, queue_mirrors
from billbridge.flows.partner_fees import FeesAfter, accrue_after
from billbridge.flows.push import token_vault
from billbridge.mapping.fields import Refused
from billbridge.settings import Settings
from billbridge.store import quarantine
from billbridge.store.cursors import get_cursor, set_cursor
from billbridge.store.db import Store, open_store
from billbridge.store.invoices import open_invoices, paid_amounts
from billbridge.store.messages import Audience
from billbridge.store.partners import invoice_customers
from billbridge.store.payments import (
    PaymentIn,
    apply_by_hand,
    known_payment_refs,
    lock_payment_source,
    record_payments,
    redo_payment,
    source_versions,
    undo_payment,
    zero_payment,
)
from billbridge.store.statistics import FreshStatistics
from billbridge.vendors.contract import PaymentPage
from billbridge.vendors.registry import (
    VENDORS,
    PaymentPull,
    PaymentSource,
    TokenVault,
    display_name,
    payment_sources,
    vendor,
)

PAYMENTS = "payments"  # the record type of payments in the quarantine


@dataclass
class ReconcileSummary:
    source: str
    outcomes: Counter[str] = field(default_factory=Counter)  # see billing.matching.settle; seen_before, mirrored
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (payment ref, reason)
    mirrored: Counter[str] = field(default_factory=Counter)  # entries in QuickBooks: created, existing, waiting
    quarantined: list[Refused] = field(default_factory=list)  # payments whose record could not be read
    # What was recorded: the customers and invoices its payments name; ``amended``: one changed at its source.
    customers: set[str] = field(default_factory=set)
    invoices: set[str] = field(default_factory=set)
    amended: bool = False
    fees: FeesAfter | None = None  # the partner fees accrued after it (or why not)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "outcomes": dict(self.outcomes),
            "mirrored_to_quickbooks": dict(self.mirrored),
            "unmatched": [{"payment": p, "reason": r} for p, r in self.unmatched],
            "quarantined": [{"record": q.key, "field": q.field, "message": q.reason} for q in self.quarantined],
            **({"partner_fees": self.fees.as_dict()} if self.fees is not None else {}),
        }

    def markdown(self) -> str:
        lines = [f"# Reconciliation: {self.source}", "", "| outcome | payments |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(self.outcomes.items())]
        lines += [f"| entered in QuickBooks: {k} | {v} |" for k, v in sorted(self.mirrored.items())]
        if self.unmatched:
            lines += ["", "## Not (fully) matched", "", "| payment | reason |", "|---|---|"]
            lines += [f"| {p} | {r.replace('|', '/')} |" for p, r in self.unmatched[:200]]
        if self.quarantined:
            lines += ["", "## Quarantined", "", "| record | field | reason |", "|---|---|---|"]
            lines += [f"| {q.key} | {q.field} | {q.reason.replace('|', '/')} |" for q in self.quarantined[:200]]
        return "\n".join(lines) + "\n" + (self.fees.markdown() if self.fees is not None else "")


def payment_source(source: str) -> Callable[[Settings, TokenVault], PaymentSource]:
    """How to build the payment source ``source`` (the registry's); a ValueError naming the known ones."""
    build = vendor(source).payments if source in VENDORS else None
    if build is None:
        raise ValueError(f"unknown payment source {source!r} (expected {' or '.join(payment_sources())})")
    return build


def _pages(streams: Mapping[str, PaymentPull], cursors: Mapping[str, str | None]) -> Iterator[PaymentPage]:
    """The source's payment streams, each from its own cursor, in order; each page names its stream."""
    for stream, pull in streams.items():
        for page in pull(cursors[stream]):
            yield replace(page, stream=stream)


def reconcile(
    store: Store,
    settings: Settings,
    source: str,
    *,
    slot: Callable[[str], AbstractContextManager[None]] = no_slot,
) -> ReconcileSummary:
    """Pull the source's payments (refunds, disputes) since the stored cursors and record each once,
    matched where possible; then enter in QuickBooks the Stripe payments this or an earlier run
    queued for it. ``slot(vendor)`` is held while talking to each vendor (the flow's concurrency)."""
    build = payment_source(source)
    targets = mirror_targets(settings, source)
    with slot(source):
        payments = build(settings, token_vault(store, settings))
        try:
            streams = payments.payment_streams()
            with store.read() as session:
                cursors = {stream: get_cursor(session, source, stream) for stream in streams}
            summary = record_pages(
                store, source, _pages(streams, cursors), mirror_to=targets, window_days=settings.match_window_days
            )
        finally:
            payments.close()
    if targets:
        with slot(MIRRORS_TO):
            mirrored = mirror_payments(store, settings)
        summary.mirrored.update(mirrored.outcomes)
        summary.unmatched += [
            (f"entry in {display_name(MIRRORS_TO)} (outbox message {m})", e) for m, e in mirrored.failures
        ]
    summary.fees = fees_after(store, settings, summary)
    return summary


def fees_after(store: Store, settings: Settings, summary: ReconcileSummary) -> FeesAfter | None:
    """Accrue the partner fees the payments just recorded earned (or undid): for the partners of their
    customers, or of every one when a payment changed at its source. None: nothing was recorded."""
    if not (summary.customers or summary.invoices or summary.amended):
        return None
    if summary.amended:
        return accrue_after(store, settings)
    try:
        with store.read() as session:
            customers = summary.customers | invoice_customers(session, summary.invoices)
    except Exception as error:  # noqa: BLE001 - the reconciliation stands: reported, not raised
        return FeesAfter(error=f"{type(error).__name__}: {error}")
    return accrue_after(store, settings, customers)


def record_pages(
    store: Store,
    source: str,
    pages: Iterable[PaymentPage],
    *,
    mirror_to: Sequence[str] = (),
    window_days: int = MATCH_WINDOW_DAYS,
) -> ReconcileSummary:
    """Match and record each page's payments, and save the page's cursor, in one transaction per page.
    Payments applied to our invoices are queued, in the same transaction, for entry in ``mirror_to``.
    ``window_days``: see billing.matching (rule 3)."""
    summary = ReconcileSummary(source)
    statistics = FreshStatistics(store, grown=("payments", "payment_allocations"), read=("invoices",))
    # Who each customer's receipts go to, read the first time one of its payments is recorded in the
    # run and kept for its later pages (their customers come back page after page).
    audiences: dict[int, Audience] = {}
    with bulk_gc():  # a page makes a dozen objects a payment (rows, receipts): see flows/heap.py
        for page in pages:
            with store.write() as session:
                lock_payment_source(session, source)  # a concurrent run of this source waits, then sees ours
                wanted = reconciliation.lookups(page.payments)
                # Locked (PostgreSQL): matched and recorded on these balances, not read again.
                rows = open_invoices(session, numbers=wanted.numbers, customer_refs=wanted.customer_refs, lock=True)
                paid = (
                    {r["number"]: PaidInvoice(**r) for r in paid_amounts(session, wanted.refunded)}
                    if wanted.refunded
                    else {}
                )
                refs = [f"{source}:{p.payment_ref}" for p in page.payments]
                seen = known_payment_refs(session, refs)
                again = reconciliation.needs_version(refs, page.payments, seen)
                versions = source_versions(session, again) if again else {}
                decision = reconciliation.decide(
                    refs, page.payments, seen, versions, _open(rows), paid, wanted, window_days=window_days
                )
                summary.outcomes.update(decision.outcomes)
                summary.unmatched += decision.unmatched
                batch = [_to_record(d.ref, d.payment, d.match) for d in decision.to_record]
                # The refs were read above in this transaction, under the source's lock, and are distinct.
                recorded = record_payments(session, batch, refs_checked=True, open_rows=rows, audiences=audiences)
                new_ones = [made for made, new in zip(batch, recorded, strict=True) if new]
                summary.customers.update(made.customer_ref for made in new_ones if made.customer_ref)
                summary.invoices.update(number for made in new_ones for number, _ in made.allocations)
                if mirror_to:
                    refund_of = {ref: p.refund_of for ref, p in zip(refs, page.payments, strict=True) if p.refund_of}
                    queue_mirrors(session, source, new_ones, mirror_to, refund_of)
                for ref, payment in decision.changed.items():
                    summary.outcomes["amended"] += 1
                    summary.amended = True
                    if (reason := _amend(session, ref, payment, window_days)) is not None:
                        summary.unmatched.append((ref, reason))
                _quarantine_refused(session, source, page)
                summary.quarantined += page.refused
                if page.cursor is not None:
                    set_cursor(session, source, page.stream, page.cursor)
            statistics.wrote(len(batch))
    return summary


def _quarantine_refused(session: Session, source: str, page: PaymentPage) -> None:
    """Keep the page's unreadable payment records (with the field and why) and take the ones read
    now off the quarantine, in the page's transaction: the cursor moves past neither unseen."""
    quarantine.quarantine_many(
        session,
        source=source,
        entries=[quarantine.Entry(PAYMENTS, r.key, r.field, r.reason, r.record) for r in page.refused],
    )
    read_now = [p.payment_ref for p in page.payments]
    if read_now and quarantine.has_open(session, source=source, record_type=PAYMENTS):
        quarantine.resolve_many(session, source=source, record_type=PAYMENTS, record_keys=read_now)


def _open(rows: list[dict[str, Any]]) -> list[OpenInvoice]:
    return [OpenInvoice(r["number"], r["customer_ref"], r["currency"], r["open_amount"], r["due_date"]) for r in rows]


def _to_record(ref: str, payment: IncomingPayment, match: Match) -> PaymentIn:
    """The payment as the store records it: matched, with the reason it waits for a person, if any."""
    return PaymentIn(
        ref,
        payment.currency,
        payment.amount,
        payment.received_on,
        match.allocations,
        payment.customer_ref,
        payment.method,
        payment.reference,
        match.reason,
        payment.source_version,
    )


def _amend(session: Session, ref: str, payment: IncomingPayment, window_days: int) -> str | None:
    """Record a payment edited (or voided, or deleted) at its source since it was recorded: what it
    applied is taken back, then it is applied again as it now is (reconciliation.rematch). The
    reason it waits for a person, if it does."""
    undo_payment(session, ref)
    rows = open_invoices(session, numbers=reconciliation.rematch_numbers(payment)) if not payment.deleted else []
    match = reconciliation.rematch(payment, _open(rows), window_days=window_days)
    if match is None:  # deleted at its source: nothing was received
        zero_payment(session, ref, str(payment.source_version))
        return None
    redo_payment(session, _to_record(ref, payment, match))
    return match.reason


@dataclass(frozen=True)
class AppliedByHand:
    amount: Decimal
    queued_for: tuple[str, ...]  # the other books the application is queued for (QuickBooks, for a Stripe payment)


def apply_payment(
    store: Store, settings: Settings, payment_ref: str, number: str, amount: Decimal | None = None
) -> AppliedByHand:
    """A person applies a recorded payment's unapplied money to an open invoice (from the review list).
    For a source mirrored to QuickBooks: a payment no invoice had taken is queued for entry there now,
    with this application; one entered before gets the application on its entry there."""
    source = payment_ref.split(":", 1)[0]
    targets = mirror_targets(settings, source)
    with store.write() as session:
        payment, share, entered_before = apply_by_hand(session, payment_ref, number, amount)
        if entered_before:
            queue_application(session, source, payment, number, share, targets)
        else:
            queue_mirrors(session, source, [payment], targets)
    return AppliedByHand(share, targets)


@flow(name="reconcile_payments")
def reconcile_payments(source: str = "stripe") -> dict[str, Any]:
    """Match the payments received in ``source`` to invoices and send their receipts; rerunning
    records (and sends) nothing twice."""
    settings = Settings()
    store = open_store(settings.database)
    summary, sent = reconcile_and_send(store, settings, source, slot=vendor_slot)
    create_markdown_artifact(
        summary.markdown() + sent.markdown(), key=f"reconcile-{source}", description=f"Payments from {source}"
    )
    refresh_metrics(store, workers=settings.billing_workers)
    return {**summary.as_dict(), "messages": sent.as_dict()}


def reconcile_and_send(
    store: Store,
    settings: Settings,
    source: str,
    *,
    slot: Callable[[str], AbstractContextManager[None]] = no_slot,
) -> tuple[ReconcileSummary, MessagesSent]:
    """Reconcile ``source``, then send the messages due, among them the receipts of the payments it
    applied (committed with them). A send that fails leaves them queued and is reported: the
    reconciliation stands."""
    summary = reconcile(store, settings, source, slot=slot)
    return summary, send_made(store, settings)
