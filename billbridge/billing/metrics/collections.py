"""Billing and collections: billed, collected and credited per month, accounts-receivable aging, DSO,
late invoices, collection rate and invoice status over time.

The inputs are documents grouped by what these figures depend on (:class:`DocumentGroup`: entity,
currency, type, status, billing and due date, with their count, total and amount paid) and the
money applied to invoices per day of payment (:class:`Collected`), so the same functions serve a
single invoice or a million summed by the store. Open means sent or partially paid; late means
open past its due date (``lifecycle.is_late``). Every figure is per entity and currency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from billbridge.billing.metrics.recurring import month_of, next_month

ZERO = Decimal(0)
OPEN = ("sent", "partially_paid")
ISSUED = ("sent", "partially_paid", "paid")  # sent to the customer (void ones are not owed)
AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", "over 90")
STATUS_COLUMNS = ("draft", "under_review", "approved", "sent", "late", "partially_paid", "paid", "void")
DSO_DAYS = 90

Segment = tuple[str, str]
"""(entity_ref, currency)"""


@dataclass(frozen=True)
class DocumentGroup:
    """Invoices or credit notes alike in everything the metrics read, with their sums."""

    entity_ref: str
    currency: str
    doc_type: str
    status: str
    billing_date: date
    due_date: date
    documents: int
    total: Decimal
    paid: Decimal

    @property
    def open_amount(self) -> Decimal:
        return self.total - self.paid if self.status in OPEN else ZERO

    def late_on(self, day: date) -> bool:
        return self.status in OPEN and day > self.due_date and self.open_amount > 0


@dataclass(frozen=True)
class Collected:
    """Money applied to invoices from payments received on ``day``."""

    entity_ref: str
    currency: str
    day: date
    amount: Decimal


@dataclass
class MonthFlow:
    """One month of one entity and currency: invoiced (non-void invoices by billing date), credited
    (non-void credit notes, as a positive amount) and collected (payments applied, by the day received)."""

    entity_ref: str
    currency: str
    month: date
    billed: Decimal = ZERO
    credited: Decimal = ZERO
    collected: Decimal = ZERO


def monthly_flows(
    groups: Iterable[DocumentGroup], collected: Iterable[Collected], first: date, last: date
) -> list[MonthFlow]:
    """Billed, credited and collected per month from ``first``'s month to ``last``'s, every month listed."""
    rows: dict[tuple[str, str, date], MonthFlow] = {}
    start, end = month_of(first), month_of(last)

    def row(entity: str, currency: str, month: date) -> MonthFlow | None:
        if not start <= month <= end:
            return None
        return rows.setdefault((entity, currency, month), MonthFlow(entity, currency, month))

    for g in groups:
        found = row(g.entity_ref, g.currency, month_of(g.billing_date))
        if found is None or g.status == "void":
            continue
        if g.doc_type == "credit_note":
            found.credited -= g.total
        else:
            found.billed += g.total
    for c in collected:
        found = row(c.entity_ref, c.currency, month_of(c.day))
        if found is not None:
            found.collected += c.amount
    out = []
    for entity, currency in sorted({(e, c) for e, c, _ in rows}):
        month = start
        while month <= end:
            out.append(rows.get((entity, currency, month)) or MonthFlow(entity, currency, month))
            month = next_month(month)
    return out


def aging_bucket(days_past_due: int) -> str:
    """current (not yet due), 1-30, 31-60, 61-90, over 90 days past due."""
    if days_past_due <= 0:
        return "current"
    if days_past_due <= 30:
        return "1-30"
    if days_past_due <= 60:
        return "31-60"
    if days_past_due <= 90:
        return "61-90"
    return "over 90"


@dataclass
class Aging:
    """Accounts receivable of one entity and currency on ``day``: open invoice balances by days past due."""

    entity_ref: str
    currency: str
    day: date
    buckets: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(AGING_BUCKETS, ZERO))
    invoices: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AGING_BUCKETS, 0))

    @property
    def receivable(self) -> Decimal:
        return sum(self.buckets.values(), ZERO)

    @property
    def late(self) -> Decimal:
        """Past due: every bucket but current."""
        return self.receivable - self.buckets["current"]

    @property
    def late_invoices(self) -> int:
        return sum(self.invoices.values()) - self.invoices["current"]


def aging(groups: Iterable[DocumentGroup], day: date) -> list[Aging]:
    """AR aging on ``day``: each open invoice's balance in the bucket of its days past due. The
    buckets of an entity and currency sum to its receivable."""
    out: dict[Segment, Aging] = {}
    for g in groups:
        if g.doc_type != "invoice" or g.status not in OPEN:
            continue
        row = out.setdefault((g.entity_ref, g.currency), Aging(g.entity_ref, g.currency, day))
        bucket = aging_bucket((day - g.due_date).days)
        row.buckets[bucket] += g.open_amount
        row.invoices[bucket] += g.documents
    return [out[k] for k in sorted(out)]


@dataclass(frozen=True)
class Collections:
    """Headline collection figures of one entity and currency on ``day``.

    - ``receivable``: open invoice balances; ``late`` / ``late_invoices``: the part past due.
    - ``dso`` (days sales outstanding): receivable / invoiced in the last 90 days x 90 (None when
      nothing was invoiced then).
    - ``collection_rate``: of the invoices issued (sent, partly or fully paid) and due in the 90
      days up to ``day``, the share of their total paid (None when none).
    """

    entity_ref: str
    currency: str
    day: date
    receivable: Decimal
    late: Decimal
    late_invoices: int
    billed_last_90: Decimal
    dso: Decimal | None
    collection_rate: Decimal | None


def collections(groups: Iterable[DocumentGroup], day: date) -> list[Collections]:
    """See :class:`Collections`; one row per entity and currency with documents."""
    groups = list(groups)
    window_start = day - timedelta(days=DSO_DAYS - 1)
    billed: dict[Segment, Decimal] = defaultdict(Decimal)
    due_total: dict[Segment, Decimal] = defaultdict(Decimal)
    due_paid: dict[Segment, Decimal] = defaultdict(Decimal)
    segments: set[Segment] = set()
    for g in groups:
        key = (g.entity_ref, g.currency)
        segments.add(key)
        if g.doc_type != "invoice" or g.status == "void":
            continue
        if window_start <= g.billing_date <= day:
            billed[key] += g.total
        if g.status in ISSUED and window_start <= g.due_date <= day:
            due_total[key] += g.total
            due_paid[key] += g.paid
    aged = {(a.entity_ref, a.currency): a for a in aging(groups, day)}
    out = []
    for key in sorted(segments):
        a = aged.get(key) or Aging(key[0], key[1], day)
        dso = (a.receivable / billed[key] * DSO_DAYS).quantize(Decimal("0.1")) if billed[key] > 0 else None
        rate = (due_paid[key] / due_total[key]).quantize(Decimal("0.0001")) if due_total[key] > 0 else None
        out.append(Collections(key[0], key[1], day, a.receivable, a.late, a.late_invoices, billed[key], dso, rate))
    return out


@dataclass
class StatusMonth:
    """Documents billed in ``month`` of one entity and currency by their status on ``day`` (late split
    out of sent and partially paid), with counts and totals: the seed's Invoices tab over time."""

    entity_ref: str
    currency: str
    month: date
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUS_COLUMNS, 0))
    amounts: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(STATUS_COLUMNS, ZERO))


def status_over_time(groups: Iterable[DocumentGroup], day: date, first: date, last: date) -> list[StatusMonth]:
    """Invoice status over time, per billing month from ``first``'s to ``last``'s (credit notes aside)."""
    rows: dict[tuple[str, str, date], StatusMonth] = {}
    start, end = month_of(first), month_of(last)
    for g in groups:
        month = month_of(g.billing_date)
        if g.doc_type != "invoice" or not start <= month <= end:
            continue
        row = rows.setdefault((g.entity_ref, g.currency, month), StatusMonth(g.entity_ref, g.currency, month))
        column = "late" if g.late_on(day) else g.status
        row.counts[column] += g.documents
        row.amounts[column] += g.total
    return [rows[k] for k in sorted(rows)]
