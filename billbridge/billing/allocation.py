"""Applying a payment's money to invoices: what may be applied where, and what an invoice owes after.

Pure. The store records what these rules decide (store/payments.py); matching (billing/matching.py)
decides *which* invoices a payment pays, this module checks that an allocation can be applied and
keeps each invoice's amount paid and status in step:

- a payment's allocations never add up to more than the payment;
- an allocation goes to an invoice we have, in the payment's currency;
- an invoice's status follows its amount paid (``lifecycle.status_after_payment``): only a sent or
  part-paid invoice takes a payment; money taken back (a refund, an undone payment) opens it again,
  but a voided invoice given money back stays void;
- money applied by hand is a positive whole number of minor units, at most what both the payment
  has unapplied and the invoice has open.

Errors name the payment and the invoice: ``LookupError`` for an invoice we do not have,
``ValueError`` for money that cannot go there, ``lifecycle.InvalidTransition`` for an invoice whose
status takes no payment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from billbridge.billing import lifecycle
from billbridge.billing.currency import quantum

ZERO = Decimal(0)
OPEN = frozenset({"sent", "partially_paid"})
"""Statuses of an invoice that takes payments (sent, or paid in part)."""

Allocations = Sequence[tuple[str, Decimal]]
"""(invoice number, amount) pairs: positive pays, negative takes back (a refund)."""


@dataclass(slots=True)
class Balance:
    """One invoice's running balance while payments are applied to it (changed in place, so the
    batch's later payments see what the earlier ones paid)."""

    invoice_id: int
    currency: str
    total: Decimal
    paid: Decimal
    status: str

    @property
    def open_amount(self) -> Decimal:
        return self.total - self.paid


def allocated(payment_ref: str, amount: Decimal, allocations: Allocations) -> Decimal:
    """The sum of the allocations; ValueError if it exceeds the payment's amount."""
    total = ZERO
    for _, share in allocations:  # a loop: most payments have one allocation, sum() of a generator costs more
        total += share
    if total > amount:
        raise ValueError(f"payment {payment_ref}: allocations {total} exceed the amount {amount}")
    return total


def check_currency(payment_ref: str, currency: str, number: str, invoice_currency: str) -> None:
    """ValueError unless the invoice is in the payment's currency."""
    if invoice_currency != currency:
        raise ValueError(f"payment {payment_ref}: {currency} payment cannot settle {invoice_currency} invoice {number}")


def change_paid(balance: Balance, change: Decimal) -> None:
    """``change`` more (or, negative, less) received by the invoice, and its status after it. Money
    taken back from a voided invoice leaves it void (nothing is owed on it); money paid to one that
    takes no payment is InvalidTransition."""
    balance.paid += change
    if change > 0 or balance.status in lifecycle.ISSUED:
        balance.status = lifecycle.status_after_payment(balance.status, balance.total, balance.paid)


def apply_payment(
    payment_ref: str,
    currency: str,
    amount: Decimal,
    allocations: Allocations,
    balances: Mapping[str, Balance],
    *,
    redone: bool = False,
) -> Decimal:
    """Apply a payment's allocations to the invoices' ``balances`` (by number, changed in place);
    returns what stays unapplied on the payment. Checks every allocation before changing anything.
    ``redone``: the payment is applied again after its source changed it, so money it takes back
    from a voided invoice leaves that invoice void (:func:`change_paid`); a new payment may take
    money only from an invoice that holds it (sent, part paid or paid)."""
    total = allocated(payment_ref, amount, allocations)
    for number, _ in allocations:
        balance = balances.get(number)
        if balance is None:
            raise LookupError(f"payment {payment_ref}: no invoice numbered {number!r}")
        check_currency(payment_ref, currency, number, balance.currency)
    for number, share in allocations:
        balance = balances[number]
        if redone:
            change_paid(balance, share)
        else:
            balance.paid += share
            balance.status = lifecycle.status_after_payment(balance.status, balance.total, balance.paid)
    return amount - total


def by_hand(
    payment_ref: str,
    currency: str,
    amount: Decimal,
    unapplied: Decimal,
    number: str,
    invoice: Balance,
    wanted: Decimal | None = None,
) -> Decimal:
    """How much of a recorded payment's unapplied money a person applies to invoice ``number``:
    ``wanted``, or as much as both have. ValueError, naming payment and invoice, for what cannot be."""
    if amount <= 0:
        raise ValueError(f"payment {payment_ref} is a refund or reversal ({amount}): nothing to apply")
    if invoice.status not in OPEN:
        raise ValueError(f"invoice {number} is {invoice.status}: only a sent or partly paid invoice takes payments")
    if invoice.currency != currency:
        raise ValueError(f"payment {payment_ref} is in {currency}, invoice {number} in {invoice.currency}")
    most = min(unapplied, invoice.open_amount)
    share = most if wanted is None else wanted
    if share <= 0 or share > most:
        raise ValueError(
            f"payment {payment_ref}: {share} cannot be applied to {number}; at most {most} "
            f"({unapplied} unapplied, {invoice.open_amount} open)"
        )
    if share != share.quantize(quantum(currency)):
        raise ValueError(f"amount: {share} is not a whole number of {currency} minor units")
    return share
