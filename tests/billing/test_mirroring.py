"""Entering payments in the books of another system: the decisions (worked examples)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from billbridge.billing import mirroring
from billbridge.billing.documents import IncomingPayment

D = Decimal


def payment(ref: str, *lines: tuple[str, str]) -> IncomingPayment:
    numbers = tuple(n for n, _ in lines)
    amounts = tuple(D(a) for _, a in lines)
    return IncomingPayment("stripe", ref, "USD", sum(amounts, D(0)), date(2026, 11, 22), "globex", numbers, amounts)


def test_a_payment_waits_for_every_invoice_it_pays() -> None:
    p = payment("ch_1", ("INV-1", "10"), ("INV-2", "5"))
    assert mirroring.waiting_for_invoices(p, {"INV-1": "101", "INV-2": "102"}) is None
    assert mirroring.waiting_for_invoices(p, {"INV-1": "101", "INV-2": None}) == mirroring.Waiting(
        "invoice INV-2 is not in QuickBooks yet"
    )


def test_a_refund_takes_its_total_off_the_entry_once_by_its_own_ref() -> None:
    refund = payment("re_1", ("INV-1", "-4.00"))
    planned = mirroring.change(
        7, refund, "stripe:ch_1", refund=True, entered={"stripe:ch_1": "55"}, in_books={"INV-1": "101"}
    )
    assert planned == mirroring.Change("re_1", "55", {"101": D("-4.00")}, D("-4.00"), "refunded")


def test_an_application_by_hand_moves_unapplied_money_once_by_its_message() -> None:
    applied = payment("ch_1", ("INV-2", "3.00"))
    planned = mirroring.change(
        8, applied, "stripe:ch_1", refund=False, entered={"stripe:ch_1": "55"}, in_books={"INV-2": "102"}
    )
    assert planned == mirroring.Change("m8", "55", {"102": D("3.00")}, D(0), "applied")


def test_a_change_waits_for_the_entry_it_changes() -> None:
    planned = mirroring.change(9, payment("re_2", ("INV-1", "-1")), "stripe:ch_2", refund=True, entered={}, in_books={})
    assert planned == mirroring.Waiting("the payment stripe:ch_2 is not in QuickBooks yet")


def test_outcomes_and_order() -> None:
    assert mirroring.change_outcome("refunded", "failed", True, "busy") == ("retriable", "busy")
    assert mirroring.change_outcome("refunded", "failed", False, None) == ("fatal", "refused")
    assert mirroring.change_outcome("applied", "existing", False, None) == ("existing", "existing")
    assert mirroring.change_outcome("applied", "created", False, None) == ("done", "applied")
    assert mirroring.entries_first([3, 1, 2, 5], {1: "stripe:ch_1", 5: "stripe:ch_9"}) == ([3, 2], [1, 5])


def test_what_is_entered_in_the_other_books() -> None:
    assert mirroring.to_enter(D(10), applied=True, refunds_a_payment=False)
    assert not mirroring.to_enter(D(10), applied=False, refunds_a_payment=False)  # unapplied: stays here
    assert mirroring.to_enter(D(-5), applied=True, refunds_a_payment=True)
    assert not mirroring.to_enter(D(-5), applied=True, refunds_a_payment=False)  # a refund of nothing we know
