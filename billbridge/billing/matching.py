"""Matching a received payment to open invoices: which invoices it pays and how much of each.

Pure. Rules, in order:
1. the invoices the payment names (Stripe metadata, QuickBooks LinkedTxn), each up to its open
   balance (or the amount the vendor says);
2. else our open invoices whose numbers are written in its reference or memo ("for US-INV-000123"),
   likewise;
3. else, for a known customer, the oldest of its open invoices whose open balance equals the
   payment exactly and whose due date is within ``window_days`` of the payment's date;
4. else unmatched, with the reason.
What is not allocated stays on the payment as unapplied. Allocations never exceed the payment nor
any invoice's open balance.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date
from decimal import ROUND_DOWN, Decimal
from typing import NamedTuple

from billbridge.billing.currency import UnknownCurrencyError, quantum
from billbridge.billing.documents import IncomingPayment

ZERO = Decimal(0)
MATCH_WINDOW_DAYS = 60
"""Default of rule 3: how far from an open invoice's due date a payment naming none may be received."""
MEMO_NUMBERS = 10  # words of a reference or memo looked up as document numbers, at most
_NUMBER_LIKE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/#-]*[0-9]")  # a word ending in a digit


class OpenInvoice(NamedTuple):
    number: str
    customer_ref: str
    currency: str
    open_amount: Decimal
    due_date: date


class PaidInvoice(NamedTuple):
    """What a refund may take back from: an invoice's money received so far."""

    number: str
    currency: str
    amount_paid: Decimal


class Match(NamedTuple):
    allocations: tuple[tuple[str, Decimal], ...]
    unapplied: Decimal
    reason: str | None = None  # why (part of) the payment is not applied

    @property
    def matched(self) -> bool:
        return bool(self.allocations)


def numbers_in(payment: IncomingPayment) -> tuple[str, ...]:
    """Words of the payment's reference and memo that could be document numbers (ending in a digit),
    in order, once each; the caller looks them up among its open invoices (rule 2)."""
    text = " ".join(t for t in (payment.reference, payment.memo) if t)
    return tuple(dict.fromkeys(_NUMBER_LIKE.findall(text)))[:MEMO_NUMBERS]


def match_payment(
    payment: IncomingPayment,
    invoices: Mapping[str, OpenInvoice],
    by_customer: Mapping[str, Sequence[OpenInvoice]],
    *,
    window_days: int = MATCH_WINDOW_DAYS,
) -> Match:
    """Allocate ``payment`` over the open ``invoices`` (by number, including those its reference and
    memo name) / ``by_customer`` (oldest first), by the rules in the module's docstring."""
    if payment.amount <= ZERO:  # (against a Decimal: faster than against the int 0)
        return Match((), payment.amount, "not a positive payment (a refund or reversal): left for a person")
    if (problem := _not_money(payment)) is not None:
        return Match((), payment.amount, problem)
    if payment.invoice_numbers:
        return _named(payment, invoices)
    written = [
        n
        for n in numbers_in(payment)
        if n in invoices and payment.customer_ref in (None, invoices[n].customer_ref)  # never another's
    ]
    if written:
        return _named(replace(payment, invoice_numbers=tuple(written), invoice_amounts=()), invoices)
    if payment.customer_ref is None:
        return Match((), payment.amount, "names no invoice (linked or written) and no customer we know")
    same = [
        i
        for i in by_customer.get(payment.customer_ref, ())
        if i.currency == payment.currency and i.open_amount == payment.amount
    ]
    for invoice in same:  # oldest first
        if abs((payment.received_on - invoice.due_date).days) <= window_days:
            return Match(((invoice.number, payment.amount),), ZERO)
    if same:
        far = ", ".join(f"{i.number} (due {i.due_date})" for i in same[:3])
        return Match(
            (),
            payment.amount,
            f"names no invoice; the open invoices of {payment.customer_ref} for {payment.amount} are due more "
            f"than {window_days} days from {payment.received_on}: {far}",
        )
    return Match(
        (), payment.amount, f"names no invoice, and no open invoice of {payment.customer_ref} is {payment.amount}"
    )


def _not_money(payment: IncomingPayment) -> str | None:
    """Why the payment's amount is no amount of its currency (unknown, or finer than its minor unit)."""
    try:
        step = quantum(payment.currency)
    except UnknownCurrencyError:
        return f"amount: unknown currency {payment.currency!r}"
    if payment.amount != payment.amount.quantize(step, ROUND_DOWN):
        return f"amount: {payment.amount} is not a whole number of {payment.currency} minor units ({step})"
    return None


def _named(payment: IncomingPayment, invoices: Mapping[str, OpenInvoice]) -> Match:
    numbers, said_amounts = payment.invoice_numbers, payment.invoice_amounts
    if len(said_amounts) > len(numbers):
        raise ValueError(f"{payment.payment_ref}: {len(said_amounts)} amounts for {len(numbers)} invoices")
    left, currency, said = payment.amount, payment.currency, len(said_amounts)
    allocations: list[tuple[str, Decimal]] = []
    problems: list[str] = []
    for i, number in enumerate(numbers):
        invoice = invoices.get(number)
        if invoice is None:
            problems.append(f"{number}: no open invoice of ours")
            continue
        if invoice.currency != currency:
            problems.append(f"{number}: is in {invoice.currency}, the payment in {currency}")
            continue
        # min(left, open balance, amount said), the first of equal ones (as min() picks)
        share = invoice.open_amount if invoice.open_amount < left else left
        if i < said and said_amounts[i] < share:
            share = said_amounts[i]
        if share <= ZERO:
            problems.append(f"{number}: nothing left to apply" if left <= ZERO else f"{number}: already paid")
            continue
        allocations.append((number, share))
        left -= share
    if left > ZERO and not problems:
        problems.append(f"{left} {payment.currency} more than the invoices named were open for")
    return Match(tuple(allocations), left, "; ".join(problems) if problems else None)


def match_refund(refund: IncomingPayment, invoices: Mapping[str, PaidInvoice]) -> Match:
    """A refund (a negative payment) takes its money back from the invoice its charge paid: a
    negative allocation, never more than that invoice received. What it cannot take back stays on
    the customer (a negative unapplied amount) with the reason, for a person."""
    if refund.amount >= 0:
        raise ValueError(f"{refund.payment_ref}: a refund is negative, got {refund.amount}")
    if (problem := _not_money(replace(refund, amount=-refund.amount))) is not None:
        return Match((), refund.amount, problem)
    if not refund.invoice_numbers:
        return Match((), refund.amount, "a refund of a payment that paid no invoice of ours")
    number = refund.invoice_numbers[0]
    invoice = invoices.get(number)
    if invoice is None:
        return Match((), refund.amount, f"{number}: no invoice of ours took this payment")
    if invoice.currency != refund.currency:
        return Match((), refund.amount, f"{number}: is in {invoice.currency}, the refund in {refund.currency}")
    back = min(-refund.amount, invoice.amount_paid)
    if back <= 0:
        return Match((), refund.amount, f"{number}: has no payment left to refund")
    left = refund.amount + back
    reason = f"{-left} {refund.currency} more than {number} had received" if left < 0 else None
    return Match(((number, -back),), left, reason)


def settle(
    payment: IncomingPayment,
    invoices: Mapping[str, OpenInvoice],
    by_customer: Mapping[str, Sequence[OpenInvoice]],
    paid: Mapping[str, PaidInvoice],
    *,
    window_days: int = MATCH_WINDOW_DAYS,
) -> tuple[Match, str]:
    """How one payment is applied, and the outcome to report: matched, refunded, disputed (a refund or
    a dispute taking money back), billed_by_stripe (a payment of an invoice Stripe made for a
    subscription: ours to record, not to match), partly_matched or unmatched (with the reason)."""
    if payment.amount < ZERO:
        match, label = match_refund(payment, paid), ("disputed" if payment.method == "dispute" else "refunded")
    elif not payment.invoice_numbers and payment.subscription:
        return Match((), payment.amount), "billed_by_stripe"
    else:
        match, label = match_payment(payment, invoices, by_customer, window_days=window_days), "matched"
    if not match.allocations:
        return match, "unmatched"
    return match, label if match.reason is None else "partly_matched"
