"""The rollforward's check: what the schedule says was billed in a month against what the invoices and
credit notes say, per contract and currency. Pure.

The schedule's billed amounts are the documents' own, so a schedule built from what the store holds
always agrees: a difference means the schedule is not built from it (not rebuilt since a document was
added or changed, or a contract that could not be recognised). The one place they legitimately part is a
closed month: a document made after its month was closed is carried, as a catch-up, in the first month
after it that was still open (``post_with_close``), and so it is counted here (``books_month``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from billbridge.billing.revenue import Position, ScheduleMove, month_positions, next_month

ZERO = Decimal(0)


def books_month(billing_month: date, created: datetime, closed: Mapping[date, datetime]) -> date:
    """The month the schedule carries a document billed in ``billing_month`` in: that month, unless it is
    closed (``closed``: month -> when it was last closed) and the document was made after its close; then
    the first month after it that was not already closed when the document was made (every close brings the
    schedules up to date first, so a later close saw the document)."""
    month = billing_month
    if month not in closed or created <= closed[month]:
        return month
    month = next_month(month)
    while month in closed and closed[month] < created:
        month = next_month(month)
    return month


@dataclass(frozen=True)
class BilledMismatch:
    """A contract whose schedule does not agree with its documents in a month: ``billed`` by the invoices
    and credit notes against ``scheduled`` by the schedule; the schedule's opening and closing net position
    (billed - recognised to date: deferred revenue when positive, a contract asset when negative) and its
    recognised amount, so ``expected_closing`` (opening + billed - recognised) can be set against ``closing``."""

    contract_id: int
    currency: str
    billed: Decimal
    scheduled: Decimal
    opening: Decimal
    recognised: Decimal
    closing: Decimal

    @property
    def expected_closing(self) -> Decimal:
        return self.opening + self.billed - self.recognised

    @property
    def difference(self) -> Decimal:
        """What the documents billed beyond what the schedule holds (negative: less)."""
        return self.expected_closing - self.closing


def billed_mismatches(
    schedule: Iterable[ScheduleMove],
    documents: Iterable[tuple[int, str, date, Decimal]],
    month: date,
) -> list[BilledMismatch]:
    """The contracts (and currencies) of ``month`` where opening + billed by the documents - recognised is
    not the schedule's closing position. ``schedule``: rows (contract id, month, currency, billed,
    recognised) through ``month``; ``documents``: lines (contract id, currency, books month, amount)."""
    positions = month_positions(schedule, month)  # as the rollforward reads the schedule
    billed: dict[tuple[int, str], Decimal] = defaultdict(lambda: ZERO)
    for contract_id, currency, m, amount in documents:
        if m == month:
            billed[(contract_id, currency)] += amount
    out = []
    for key in sorted(set(positions) | set(billed)):
        position = positions.get(key) or Position()
        found = BilledMismatch(
            key[0],
            key[1],
            billed[key],
            position.billed,
            position.opening,
            position.recognised,
            position.closing,
        )
        if found.difference:
            out.append(found)
    return out
