"""Applying payments to invoices: worked examples with known answers, and properties of the money
(nothing applied beyond the payment, every cent accounted for, undoing restores)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billbridge.billing import allocation
from billbridge.billing.allocation import Balance
from billbridge.billing.lifecycle import InvalidTransition

D = Decimal


def balance(total: str, paid: str = "0", status: str = "sent", currency: str = "USD", ident: int = 1) -> Balance:
    return Balance(ident, currency, D(total), D(paid), status)


def test_a_payment_over_two_invoices_pays_one_and_part_of_the_other() -> None:
    invoices = {"INV-1": balance("100.00", ident=1), "INV-2": balance("50.00", ident=2)}
    unapplied = allocation.apply_payment(
        "stripe:ch_1", "USD", D("130.00"), [("INV-1", D("100.00")), ("INV-2", D("20.00"))], invoices
    )
    assert unapplied == D("10.00")
    assert (invoices["INV-1"].paid, invoices["INV-1"].status) == (D("100.00"), "paid")
    assert (invoices["INV-2"].paid, invoices["INV-2"].status, invoices["INV-2"].open_amount) == (
        D("20.00"),
        "partially_paid",
        D("30.00"),
    )


def test_a_refund_takes_money_back_and_opens_the_invoice_again() -> None:
    invoices = {"INV-1": balance("100.00", "100.00", "paid")}
    assert allocation.apply_payment("stripe:re_1", "USD", D("-40.00"), [("INV-1", D("-40.00"))], invoices) == 0
    assert (invoices["INV-1"].paid, invoices["INV-1"].status) == (D("60.00"), "partially_paid")


def test_allocations_beyond_the_payment_are_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"payment p1: allocations 101.00 exceed the amount 100.00"):
        allocation.apply_payment("p1", "USD", D("100.00"), [("INV-1", D("101.00"))], {"INV-1": balance("200")})


def test_an_unknown_invoice_or_another_currency_is_refused_and_nothing_changes() -> None:
    invoices = {"INV-1": balance("100.00"), "EU-1": balance("100.00", currency="EUR", ident=2)}
    with pytest.raises(LookupError, match=r"payment p1: no invoice numbered 'NOPE'"):
        allocation.apply_payment("p1", "USD", D("50"), [("INV-1", D("10")), ("NOPE", D("10"))], invoices)
    with pytest.raises(ValueError, match="USD payment cannot settle EUR invoice EU-1"):
        allocation.apply_payment("p1", "USD", D("50"), [("INV-1", D("10")), ("EU-1", D("10"))], invoices)
    assert invoices["INV-1"].paid == 0 and invoices["INV-1"].status == "sent"


def test_an_invoice_not_sent_takes_no_payment() -> None:
    with pytest.raises(InvalidTransition, match="send it first"):
        allocation.apply_payment(
            "p1", "USD", D("10"), [("INV-1", D("10"))], {"INV-1": balance("10", status="approved")}
        )


def test_money_taken_back_from_a_voided_invoice_leaves_it_void_when_redone_only() -> None:
    voided = {"INV-1": balance("100.00", "30.00", "void")}
    allocation.apply_payment("p1", "USD", D("-30.00"), [("INV-1", D("-30.00"))], voided, redone=True)
    assert (voided["INV-1"].paid, voided["INV-1"].status) == (D("0.00"), "void")
    with pytest.raises(InvalidTransition):
        allocation.apply_payment("p2", "USD", D("-1"), [("INV-1", D("-1"))], {"INV-1": balance("1", "1", "void")})


def test_by_hand_applies_as_much_as_both_have_or_what_is_asked() -> None:
    invoice = balance("100.00", "70.00", "partially_paid")
    assert allocation.by_hand("p1", "USD", D("80.00"), D("50.00"), "INV-1", invoice) == D("30.00")
    assert allocation.by_hand("p1", "USD", D("80.00"), D("50.00"), "INV-1", invoice, D("12.34")) == D("12.34")


@pytest.mark.parametrize(
    ("amount", "unapplied", "invoice", "wanted", "message"),
    [
        ("-5", "0", balance("10"), None, "is a refund or reversal"),
        ("50", "50", balance("10", status="paid"), None, "invoice INV-1 is paid: only a sent or partly paid"),
        ("50", "50", balance("10", currency="EUR"), None, "is in USD, invoice INV-1 in EUR"),
        ("50", "50", balance("10"), "10.01", r"at most 10 \(50 unapplied, 10 open\)"),
        ("50", "50", balance("10"), "0", "cannot be applied"),
        ("50", "50", balance("10"), "1.001", "not a whole number of USD minor units"),
    ],
)
def test_by_hand_refuses_naming_payment_and_invoice(
    amount: str, unapplied: str, invoice: Balance, wanted: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        allocation.by_hand("p1", "USD", D(amount), D(unapplied), "INV-1", invoice, D(wanted) if wanted else None)


cents = st.integers(min_value=1, max_value=10**9).map(lambda c: D(c).scaleb(-2))


@given(st.lists(st.tuples(cents, st.integers(min_value=0, max_value=100)), min_size=1, max_size=8), cents)
def test_applied_money_is_accounted_for_to_the_cent(
    invoices_and_shares: list[tuple[Decimal, int]], extra: Decimal
) -> None:
    """Allocating a share of each invoice: the invoices received exactly the allocations, the payment
    keeps exactly the rest, statuses follow the balances; taking it all back restores every invoice."""
    balances = {f"INV-{i}": balance(str(total), ident=i) for i, (total, _) in enumerate(invoices_and_shares)}
    shares = [
        (f"INV-{i}", (total * percent / 100).quantize(D("0.01")))
        for i, (total, percent) in enumerate(invoices_and_shares)
    ]
    shares = [(n, s) for n, s in shares if s > 0]
    amount = sum((s for _, s in shares), D(0)) + extra
    unapplied = allocation.apply_payment("p", "USD", amount, shares, balances)
    assert unapplied == extra
    assert sum((b.paid for b in balances.values()), D(0)) + unapplied == amount
    for number, b in balances.items():
        expected = "paid" if b.paid >= b.total else ("partially_paid" if b.paid > 0 else "sent")
        assert b.status == expected, number
    for number, share in shares:
        allocation.change_paid(balances[number], -share)
    assert all(b.paid == 0 and b.status == "sent" for b in balances.values())


@given(cents, cents, cents)
def test_by_hand_never_exceeds_what_either_side_has(unapplied: Decimal, total: Decimal, paid_part: Decimal) -> None:
    paid = min(paid_part, total - D("0.01"))
    if paid <= 0:
        paid = D(0)
    invoice = balance(str(total), str(paid), "partially_paid" if paid else "sent")
    share = allocation.by_hand("p", "USD", unapplied, unapplied, "INV-1", invoice)
    assert 0 < share <= unapplied and share <= total - paid
    assert share in (unapplied, total - paid)
