"""The invoice lifecycle: draft -> under_review -> approved -> sent -> paid / partially_paid, or void
before the document is issued.

A void takes a document that never reached the customer out of billing: it keeps its number, and
its period is billed again (on a new number) by the next run. An issued document (sent, or paid
in part or in full) is never voided: what it billed wrongly is corrected by a credit note, which
an amendment of its contract produces on the next run. ``late`` is not a stored status: it is
derived from the due date and the open balance.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal, cast

Status = Literal["draft", "under_review", "approved", "sent", "partially_paid", "paid", "void"]
STATUSES: tuple[Status, ...] = ("draft", "under_review", "approved", "sent", "partially_paid", "paid", "void")

# Payment states are reached by recording payments, not by hand (see status_after_payment).
_MANUAL: dict[str, frozenset[str]] = {
    "draft": frozenset({"under_review", "approved", "void"}),
    "under_review": frozenset({"draft", "approved", "void"}),
    "approved": frozenset({"under_review", "sent", "void"}),
    "sent": frozenset(),
    "partially_paid": frozenset(),
    "paid": frozenset(),
    "void": frozenset(),
}


ISSUED: frozenset[str] = frozenset({"sent", "partially_paid", "paid"})
"""Statuses of a document the customer has (or its books hold): corrected by credit notes only."""
CORRECT_BY_CREDIT_NOTE = (
    "an issued document is corrected by a credit note, not voided: amend its contract "
    "(effective_date) and the next billing run credits the difference"
)


class InvalidTransition(ValueError):
    pass


def check_status(status: str) -> Status:
    """``status`` if it is one of the lifecycle's, else InvalidTransition listing them."""
    if status not in STATUSES:
        raise InvalidTransition(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    return cast(Status, status)


def allowed_from(current: str) -> list[str]:
    """The statuses a person may move a document in ``current`` to, in lifecycle order."""
    return [s for s in STATUSES if s in _MANUAL.get(current, frozenset())]


def transition(current: str, target: str, *, amount_paid: Decimal = Decimal(0)) -> Status:
    """Check a manual status change; the message of a refusal lists the statuses allowed."""
    target_status = check_status(target)
    if target == current:
        return target_status
    if target not in _MANUAL.get(current, frozenset()):
        allowed = ", ".join(allowed_from(current)) or "none"
        hint = f"; {CORRECT_BY_CREDIT_NOTE}" if target == "void" and current in ISSUED else ""
        raise InvalidTransition(f"cannot go from {current} to {target} (allowed: {allowed}){hint}")
    if target == "void" and amount_paid != 0:
        raise InvalidTransition(f"cannot void a document with payments applied; {CORRECT_BY_CREDIT_NOTE}")
    return target_status


def status_after_payment(current: str, total: Decimal, amount_paid: Decimal) -> Status:
    """Status once ``amount_paid`` of ``total`` is settled. Only sent (or part-paid) documents take payments."""
    if current not in ("sent", "partially_paid", "paid"):
        raise InvalidTransition(f"a {current} document cannot take payments; send it first")
    if amount_paid <= 0:
        return "sent"
    return "paid" if amount_paid >= total else "partially_paid"


def approval(current: str) -> Status | None:
    """``approved`` if a document in ``current`` may be approved, else None (approved already, sent,
    void: a route to approval leaves it as it is, so nothing is ever queued twice)."""
    return "approved" if "approved" in _MANUAL.get(current, frozenset()) else None


def releases_period(status: str) -> bool:
    """A document moved to ``status`` gives its period back, to be billed again (on a new number) by
    the next run: a void (the lifecycle voids only documents never issued)."""
    return status == "void"


def status_when_sent(total: Decimal) -> Status:
    """A document with nothing to pay is settled when it is sent (Stripe and QuickBooks mark a zero
    invoice paid too); otherwise it is sent and waits for payments."""
    return "paid" if total == 0 else "sent"


def open_balance(total: Decimal, amount_paid: Decimal, status: str) -> Decimal:
    return Decimal(0) if status == "void" else total - amount_paid


def is_late(status: str, due_date: date, total: Decimal, amount_paid: Decimal, today: date) -> bool:
    """Late: sent (or part paid), past its due date, with money still open."""
    return status in ("sent", "partially_paid") and today > due_date and open_balance(total, amount_paid, status) > 0
