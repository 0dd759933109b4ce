"""The invoice lifecycle: draft -> under_review -> approved -> sent -> paid / partially_paid / void.

``late`` is not a stored status: it is derived from the due date and the open balance.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

Status = Literal["draft", "under_review", "approved", "sent", "partially_paid", "paid", "void"]
STATUSES: tuple[Status, ...] = ("draft", "under_review", "approved", "sent", "partially_paid", "paid", "void")

# Payment states are reached by recording payments, not by hand (see status_after_payment).
_MANUAL: dict[str, frozenset[str]] = {
    "draft": frozenset({"under_review", "approved", "void"}),
    "under_review": frozenset({"draft", "approved", "void"}),
    "approved": frozenset({"under_review", "sent", "void"}),
    "sent": frozenset({"void"}),
    "partially_paid": frozenset(),
    "paid": frozenset(),
    "void": frozenset(),
}


class InvalidTransition(ValueError):
    pass


def transition(current: str, target: str, *, amount_paid: Decimal = Decimal(0)) -> Status:
    """Check a manual status change; a document with money applied to it cannot be voided."""
    if target not in STATUSES:
        raise InvalidTransition(f"unknown status {target!r}; expected one of {', '.join(STATUSES)}")
    if target == current:
        return target
    if target == "void" and amount_paid != 0:
        raise InvalidTransition("cannot void a document with payments applied; issue a credit note instead")
    if target not in _MANUAL.get(current, frozenset()):
        allowed = ", ".join(sorted(_MANUAL.get(current, frozenset()))) or "none"
        raise InvalidTransition(f"cannot go from {current} to {target} (allowed: {allowed})")
    return target


def status_after_payment(current: str, total: Decimal, amount_paid: Decimal) -> Status:
    """Status once ``amount_paid`` of ``total`` is settled. Only sent (or part-paid) documents take payments."""
    if current not in ("sent", "partially_paid", "paid"):
        raise InvalidTransition(f"a {current} document cannot take payments; send it first")
    if amount_paid <= 0:
        return "sent"
    return "paid" if amount_paid >= total else "partially_paid"


def status_when_sent(total: Decimal) -> Status:
    """A document with nothing to pay is settled when it is sent (Stripe and QuickBooks mark a zero
    invoice paid too); otherwise it is sent and waits for payments."""
    return "paid" if total == 0 else "sent"


def open_balance(total: Decimal, amount_paid: Decimal, status: str) -> Decimal:
    return Decimal(0) if status == "void" else total - amount_paid


def is_late(status: str, due_date: date, total: Decimal, amount_paid: Decimal, today: date) -> bool:
    """Late: sent (or part paid), past its due date, with money still open."""
    return status in ("sent", "partially_paid") and today > due_date and open_balance(total, amount_paid, status) > 0
