"""Reconciling a page of received payments: what to look up, and what becomes of each payment.

Pure. ``flows/reconcile.py`` reads what :func:`lookups` asks for, hands it to :func:`decide`, and
has the store record what it decided. For each payment of a page, in order:

- deleted at its source and never recorded here: nothing to do (nothing to undo);
- recorded before (by an earlier run or earlier in the page): never recorded twice. Recorded at
  another version at its source (QuickBooks' SyncToken), it was edited, voided or deleted since:
  it is *changed* (the page's latest version wins) and applied again (:func:`rematch`); else it is
  ``seen_before``. Our own entry of a payment recorded from another source is never a change;
- our own entry of a payment recorded from its source (``mirrored_from``): ``mirrored``, not recorded;
- else it is matched (``billing.matching.settle``) and recorded with the outcome; the page's later
  payments see what it took from each invoice (a refund allocates to what was paid, and takes nothing).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from billbridge.billing.documents import IncomingPayment
from billbridge.billing.matching import MATCH_WINDOW_DAYS, Match, OpenInvoice, PaidInvoice, numbers_in, settle


@dataclass(frozen=True)
class Lookups:
    """What deciding a page needs read: open invoices by number and by customer, and the money
    received by the invoices its refunds name."""

    numbers: Counter[str]  # invoice numbers named (linked, or written in a reference or memo), with how often
    customer_refs: list[str]  # customers of payments naming no invoice: their other open invoices matter
    refunded: list[str]  # invoices refunds take money back from
    unlinked: bool  # some payment names no invoice: open invoices are also looked at by customer


def lookups(payments: Sequence[IncomingPayment]) -> Lookups:
    named = Counter(n for p in payments for n in p.invoice_numbers)
    unlinked = [p for p in payments if not p.invoice_numbers]
    # Numbers written in a reference or memo are looked up too (matching's rule 2).
    named.update(n for p in unlinked if p.amount > 0 for n in numbers_in(p))
    return Lookups(
        numbers=named,
        customer_refs=[p.customer_ref for p in unlinked if p.customer_ref],
        refunded=[n for p in payments if p.amount < 0 for n in p.invoice_numbers],
        unlinked=bool(unlinked),
    )


class ToRecord(NamedTuple):
    """A new payment, as matched: what the store records."""

    ref: str
    payment: IncomingPayment
    match: Match


@dataclass
class PageDecision:
    to_record: list[ToRecord] = field(default_factory=list)
    changed: dict[str, IncomingPayment] = field(default_factory=dict)  # ref -> the payment as it now is
    outcomes: Counter[str] = field(default_factory=Counter)  # see billing.matching.settle; seen_before, mirrored
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (ref, reason)


def needs_version(refs: Sequence[str], payments: Sequence[IncomingPayment], seen: set[str]) -> list[str]:
    """Refs recorded before whose recorded version must be read: the payment carries one now."""
    return [r for r, p in zip(refs, payments, strict=True) if r in seen and p.source_version]


def decide(
    refs: Sequence[str],
    payments: Sequence[IncomingPayment],
    seen: set[str],
    versions: Mapping[str, str | None],
    open_invoices: Sequence[OpenInvoice],
    paid: Mapping[str, PaidInvoice],
    wanted: Lookups,
    *,
    window_days: int = MATCH_WINDOW_DAYS,
) -> PageDecision:
    """What becomes of each of the page's payments (``refs``: our refs of them): the rules of the
    module's docstring. ``seen``: refs recorded before (added to as payments are taken as new);
    ``versions``: the version each was recorded at (of :func:`needs_version`'s refs)."""
    invoices = {i.number: i for i in open_invoices}
    # Only a payment naming no invoice looks among its customer's open invoices.
    by_customer: dict[str, list[OpenInvoice]] = defaultdict(list)
    if wanted.unlinked:
        for invoice in invoices.values():
            by_customer[invoice.customer_ref].append(invoice)
    out = PageDecision()
    outcomes, to_record, numbers = out.outcomes, out.to_record, wanted.numbers
    for ref, payment in zip(refs, payments, strict=True):
        if ref in seen:  # recorded by an earlier run (or earlier in this page): never twice
            if versions.get(ref) not in (None, payment.source_version) and not payment.mirrored_from:
                out.changed[ref] = payment  # the latest version in the page wins
            else:
                outcomes["seen_before"] += 1
            continue
        if payment.deleted:  # deleted at its source, never recorded here: nothing to undo
            continue
        if payment.mirrored_from:  # our own entry of a payment recorded from its source
            outcomes["mirrored"] += 1
            continue
        seen.add(ref)
        match, outcome = settle(payment, invoices, by_customer, paid, window_days=window_days)
        to_record.append(ToRecord(ref, payment, match))
        if payment.amount >= 0:  # later payments see what is left (a refund allocates to paid)
            for number, share in match.allocations:
                if by_customer or numbers[number] > 1:  # else no later payment of the page looks
                    _take(invoices, by_customer, number, share)
        outcomes[outcome] += 1
        if match.reason:
            out.unmatched.append((ref, match.reason))
    return out


def rematch_numbers(payment: IncomingPayment) -> tuple[str, ...]:
    """The open invoices to read to match a changed payment again."""
    return payment.invoice_numbers + numbers_in(payment)


def rematch(
    payment: IncomingPayment, open_invoices: Sequence[OpenInvoice], *, window_days: int = MATCH_WINDOW_DAYS
) -> Match | None:
    """How a payment changed at its source since it was recorded applies now (what it applied is
    taken back first); None: it was deleted there, nothing was received."""
    if payment.deleted:
        return None
    if payment.amount == 0:  # voided: nothing to apply, nothing for a person to do
        return Match((), payment.amount)
    invoices = {i.number: i for i in open_invoices}
    match, _ = settle(payment, invoices, {}, {}, window_days=window_days)
    return match


def _take(
    invoices: dict[str, OpenInvoice], by_customer: dict[str, list[OpenInvoice]], number: str, share: Decimal
) -> None:
    """What is left open of invoice ``number`` once ``share`` of it is allocated, seen by the page's later payments."""
    was = invoices[number]
    left = invoices[number] = OpenInvoice(
        was.number, was.customer_ref, was.currency, was.open_amount - share, was.due_date
    )
    if by_customer:
        mine = by_customer[left.customer_ref]
        mine[mine.index(was)] = left
