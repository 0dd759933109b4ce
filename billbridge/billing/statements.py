"""Statements of account, the pure part: what a customer owes as of a day, item by item, and how old
it is (aging buckets current / 1-30 / 31-60 / 61-90 / 90+ days past due).

The store hands in the customer's open items as of the day (invoices with what is still open after
partial payments, credit notes and payments not applied yet as negative amounts) and its recent
payments; :func:`statement` groups them per currency and ages them. Credits are taken off the
oldest owed amounts first, as a customer would apply them, so the buckets sum exactly to the open
balance and none is negative unless the customer is in credit overall (the rest of the credit then
shows in ``current``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from billbridge.billing.currency import round_money

BUCKETS: tuple[str, ...] = ("current", "1-30", "31-60", "61-90", "90+")
ZERO = Decimal(0)
ItemKind = Literal["invoice", "credit_note", "payment"]


@dataclass(frozen=True)
class OpenItem:
    """One document or payment with money open as of the statement's day: positive what the customer
    owes (an invoice), negative what it has in credit (a credit note, a payment not applied yet)."""

    kind: ItemKind
    ref: str  # the document's number, or the payment's ref
    currency: str
    issued: date
    due: date  # a credit's own date
    total: Decimal
    open: Decimal

    def days_overdue(self, as_of: date) -> int:
        return max((as_of - self.due).days, 0)


@dataclass(frozen=True)
class RecentPayment:
    """A payment received within the statement's window, and the documents it paid."""

    ref: str
    currency: str
    received_on: date
    amount: Decimal
    applied_to: tuple[str, ...]


@dataclass(frozen=True)
class Aging:
    """Open money of one currency by age; ``buckets`` in :data:`BUCKETS` order sum to ``balance``."""

    currency: str
    buckets: dict[str, Decimal]
    balance: Decimal


@dataclass(frozen=True)
class Section:
    """The statement of one currency."""

    currency: str
    invoices: tuple[OpenItem, ...]  # owed, oldest due first
    credits: tuple[OpenItem, ...]
    payments: tuple[RecentPayment, ...]
    aging: Aging


@dataclass(frozen=True)
class Statement:
    as_of: date
    payment_days: int  # the window of recent payments
    sections: tuple[Section, ...]

    @property
    def has_open(self) -> bool:
        """Whether anything is open (owed or in credit): a statement worth sending with ``--all``."""
        return any(s.invoices or s.credits for s in self.sections)

    def as_details(self) -> dict[str, Any]:
        """Plain JSON data (money as exact strings, days ISO), kept with the message: what it says is
        fixed when it is requested."""
        return {
            "as_of": self.as_of.isoformat(),
            "payment_days": self.payment_days,
            "sections": [
                {
                    "currency": s.currency,
                    "invoices": [_item(i, self.as_of) for i in s.invoices],
                    "credits": [_item(i, self.as_of) for i in s.credits],
                    "payments": [
                        {
                            "ref": p.ref,
                            "received_on": p.received_on.isoformat(),
                            "amount": _money(p.amount, s.currency),
                            "applied_to": list(p.applied_to),
                        }
                        for p in s.payments
                    ],
                    "aging": [{"bucket": b, "amount": _money(s.aging.buckets[b], s.currency)} for b in BUCKETS],
                    "balance": _money(s.aging.balance, s.currency),
                }
                for s in self.sections
            ],
        }


def _item(item: OpenItem, as_of: date) -> dict[str, Any]:
    return {
        "kind": item.kind,
        "number": item.ref,
        "billing_date": item.issued.isoformat(),
        "due_date": item.due.isoformat(),
        "total": _money(item.total, item.currency),
        "open": _money(item.open, item.currency),
        "days_overdue": item.days_overdue(as_of),
    }


def _money(value: Decimal, currency: str) -> str:
    """Money as exact text in the currency's minor units ("0.00", not "0", for an empty USD bucket)."""
    return format(round_money(value, currency), "f")


def bucket_of(due: date, as_of: date) -> str:
    """The aging bucket of an amount due on ``due``: ``current`` until and on the due day, then by
    days past due (1-30, 31-60, 61-90, 90+)."""
    days = (as_of - due).days
    if days <= 0:
        return "current"
    if days <= 30:
        return "1-30"
    if days <= 60:
        return "31-60"
    if days <= 90:
        return "61-90"
    return "90+"


def aging(items: Iterable[OpenItem], as_of: date, currency: str) -> Aging:
    """Age the open items of one currency as of ``as_of``. Owed amounts go to their bucket by due
    date; credits are taken off the oldest bucket first; a credit larger than all that is owed
    leaves ``current`` negative. Raises ValueError naming an item of another currency."""
    owed = dict.fromkeys(BUCKETS, ZERO)
    credit = ZERO
    for item in items:
        if item.currency != currency:
            raise ValueError(f"{item.kind} {item.ref}: currency {item.currency}, not the section's {currency}")
        amount = round_money(item.open, currency)
        if amount > 0:
            owed[bucket_of(item.due, as_of)] += amount
        else:
            credit -= amount
    for bucket in reversed(BUCKETS):
        taken = min(credit, owed[bucket])
        owed[bucket] -= taken
        credit -= taken
    owed["current"] -= credit
    return Aging(currency, owed, sum(owed.values(), ZERO))


def statement(
    items: Sequence[OpenItem], payments: Sequence[RecentPayment], as_of: date, *, payment_days: int
) -> Statement:
    """The statement of account as of ``as_of``: one section per currency (sorted), its owed invoices
    oldest due first, its credits, its recent payments newest first, its aging. Items with nothing
    open are left out."""
    currencies = sorted({i.currency for i in items if i.open != 0} | {p.currency for p in payments})
    sections = []
    for currency in currencies:
        mine = [i for i in items if i.currency == currency and round_money(i.open, currency) != 0]
        invoices = sorted((i for i in mine if i.open > 0), key=lambda i: (i.due, i.ref))
        credits = sorted((i for i in mine if i.open < 0), key=lambda i: (i.due, i.ref))
        paid = sorted((p for p in payments if p.currency == currency), key=lambda p: (p.received_on, p.ref))
        sections.append(
            Section(currency, tuple(invoices), tuple(credits), tuple(reversed(paid)), aging(mine, as_of, currency))
        )
    return Statement(as_of, payment_days, tuple(sections))
