"""Matching payments to invoices: worked examples and properties (nothing over-applied, nothing lost)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from billbridge.billing.documents import IncomingPayment
from billbridge.billing.matching import OpenInvoice, PaidInvoice, match_payment, match_refund, numbers_in

D = Decimal


def invoice(number: str, amount: str, customer: str = "globex", currency: str = "USD") -> OpenInvoice:
    return OpenInvoice(number, customer, currency, D(amount), date(2026, 11, 30))


def payment(
    amount: str, *numbers: str, amounts: tuple[str, ...] = (), customer: str | None = "globex"
) -> IncomingPayment:
    return IncomingPayment(
        "stripe", "ch_1", "USD", D(amount), date(2026, 11, 22), customer, numbers, tuple(D(a) for a in amounts)
    )


def test_named_invoices_are_paid_in_order_up_to_their_balance() -> None:
    invoices = {i.number: i for i in (invoice("US-INV-1", "100.00"), invoice("US-INV-2", "50.00"))}
    match = match_payment(payment("120.00", "US-INV-1", "US-INV-2"), invoices, {})
    assert match.allocations == (("US-INV-1", D("100.00")), ("US-INV-2", D("20.00")))
    assert match.unapplied == 0 and match.reason is None


def test_vendor_split_amounts_are_respected_and_overpayment_stays_unapplied() -> None:
    invoices = {i.number: i for i in (invoice("US-INV-1", "100.00"), invoice("US-INV-2", "50.00"))}
    match = match_payment(payment("200.00", "US-INV-1", "US-INV-2", amounts=("60.00", "50.00")), invoices, {})
    assert match.allocations == (("US-INV-1", D("60.00")), ("US-INV-2", D("50.00")))
    assert match.unapplied == D("90.00") and "more than the invoices named" in (match.reason or "")


def test_unknown_or_foreign_currency_invoices_are_reasons_not_allocations() -> None:
    invoices = {"EU-INV-1": invoice("EU-INV-1", "10.00", currency="EUR")}
    match = match_payment(payment("10.00", "EU-INV-1", "US-INV-404"), invoices, {})
    assert match.allocations == () and match.unapplied == D("10.00")
    assert "is in EUR" in (match.reason or "") and "US-INV-404: no open invoice" in (match.reason or "")


def test_without_a_named_invoice_only_an_exact_open_amount_of_the_customer_matches() -> None:
    older, newer = invoice("US-INV-1", "45.00"), invoice("US-INV-2", "45.00")
    by_customer = {"globex": [older, newer]}
    assert match_payment(payment("45.00"), {}, by_customer).allocations == (("US-INV-1", D("45.00")),)
    assert not match_payment(payment("44.99"), {}, by_customer).matched
    assert "no customer" in (match_payment(payment("45.00", customer=None), {}, by_customer).reason or "")


def due(number: str, amount: str, on: date, customer: str = "globex") -> OpenInvoice:
    return OpenInvoice(number, customer, "USD", D(amount), on)


def test_an_invoice_number_written_in_the_reference_or_memo_is_paid_when_none_is_linked() -> None:
    written, exact = invoice("US-INV-000002", "80.00"), invoice("US-INV-000001", "45.00")
    invoices = {i.number: i for i in (written, exact)}
    by_customer = {"globex": [exact, written]}
    memo = replace(payment("45.00"), memo="Remittance: US-INV-000002 (part), thanks")
    # The written number wins over the exact amount of another invoice, up to what is open.
    assert match_payment(memo, invoices, by_customer).allocations == (("US-INV-000002", D("45.00")),)
    on_check = replace(payment("100.00"), reference="CHK 77 / US-INV-000002")
    match = match_payment(on_check, invoices, by_customer)
    assert (match.allocations, match.unapplied) == ((("US-INV-000002", D("80.00")),), D("20.00"))
    # A linked invoice wins over a written one.
    linked = replace(payment("45.00", "US-INV-000001"), memo="US-INV-000002")
    assert match_payment(linked, invoices, by_customer).allocations == (("US-INV-000001", D("45.00")),)
    # Another customer's invoice is never paid from a memo: the amount rule decides.
    theirs = {"US-INV-000009": invoice("US-INV-000009", "45.00", customer="initech")} | invoices
    stray = replace(payment("45.00"), memo="for US-INV-000009")
    assert match_payment(stray, theirs, by_customer).allocations == (("US-INV-000001", D("45.00")),)
    # A payment of an unknown customer is matched by its memo alone.
    anonymous = replace(payment("80.00", customer=None), memo="inv US-INV-000002")
    assert match_payment(anonymous, invoices, {}).allocations == (("US-INV-000002", D("80.00")),)


def test_words_ending_in_a_digit_are_the_candidate_numbers_once_each_and_at_most_ten() -> None:
    p = replace(payment("1.00"), reference="visa ****4242", memo="INV-7, INV-7 and #12; see 2026-11/INV-8.")
    assert numbers_in(p) == ("4242", "INV-7", "12", "2026-11/INV-8")
    many = replace(payment("1.00"), memo=" ".join(f"N{i}" for i in range(30)))
    assert numbers_in(many) == tuple(f"N{i}" for i in range(10))
    assert numbers_in(payment("1.00")) == ()


def test_an_exact_amount_matches_only_an_invoice_due_within_the_window() -> None:
    paid_on = date(2026, 11, 22)  # payment() receives on this day
    too_old = due("US-INV-1", "45.00", date(2026, 9, 22))  # 61 days before
    in_window = due("US-INV-2", "45.00", date(2026, 9, 23))  # 60 days before
    later = due("US-INV-3", "45.00", date(2026, 12, 20))
    by_customer = {"globex": [too_old, in_window, later]}  # oldest first, as the store lists them
    assert match_payment(payment("45.00"), {}, by_customer).allocations == (("US-INV-2", D("45.00")),)
    assert match_payment(payment("45.00"), {}, by_customer, window_days=61).allocations == (("US-INV-1", D("45.00")),)
    only_old = match_payment(payment("45.00"), {}, {"globex": [too_old]})
    assert not only_old.matched and only_old.unapplied == D("45.00")
    assert only_old.reason == (
        f"names no invoice; the open invoices of globex for 45.00 are due more than 60 days from {paid_on}: "
        "US-INV-1 (due 2026-09-22)"
    )


def test_an_amount_finer_than_its_currency_or_in_an_unknown_one_is_left_for_review() -> None:
    """Found by the demo: a QuickBooks payment of 412837.50 JPY was applied to a yen invoice."""
    invoices = {"JP-INV-1": invoice("JP-INV-1", "825675", currency="JPY")}
    half = replace(payment("412837.50", "JP-INV-1"), currency="JPY")
    match = match_payment(half, invoices, {})
    assert match.allocations == () and match.unapplied == D("412837.50")
    assert match.reason == "amount: 412837.50 is not a whole number of JPY minor units (1)"
    whole = replace(payment("412837", "JP-INV-1"), currency="JPY")
    assert match_payment(whole, invoices, {}).allocations == (("JP-INV-1", D("412837")),)
    assert match_payment(replace(whole, amount=D("412837.00")), invoices, {}).matched  # same amount, written long
    odd = replace(payment("10.00", "US-INV-1"), currency="XXQ")
    assert match_payment(odd, {}, {}).reason == "amount: unknown currency 'XXQ'"


@given(
    balances=st.lists(st.decimals(min_value=D("0.01"), max_value=D("10000"), places=2), min_size=1, max_size=6),
    amount=st.decimals(min_value=D("0.01"), max_value=D("30000"), places=2),
)
def test_allocations_never_exceed_the_payment_or_a_balance_and_nothing_is_lost(
    balances: list[Decimal], amount: Decimal
) -> None:
    invoices = {f"INV-{i}": invoice(f"INV-{i}", str(b)) for i, b in enumerate(balances)}
    match = match_payment(payment(str(amount), *invoices), invoices, {})
    assert sum((a for _, a in match.allocations), D(0)) + match.unapplied == amount
    assert all(0 < a <= invoices[n].open_amount for n, a in match.allocations)
    assert match.unapplied >= 0


def refund(amount: str, *numbers: str, currency: str = "USD") -> IncomingPayment:
    return replace(payment(amount, *numbers), payment_ref="re_1", currency=currency)


def test_a_refund_takes_back_from_the_invoice_its_charge_paid_and_never_more_than_it_received() -> None:
    paid = {"US-INV-1": PaidInvoice("US-INV-1", "USD", D("135.00"))}
    part = match_refund(refund("-35.00", "US-INV-1"), paid)
    assert (part.allocations, part.unapplied, part.reason) == ((("US-INV-1", D("-35.00")),), D(0), None)
    too_much = match_refund(refund("-150.00", "US-INV-1"), paid)
    assert too_much.allocations == (("US-INV-1", D("-135.00")),) and too_much.unapplied == D("-15.00")
    assert too_much.reason == "15.00 USD more than US-INV-1 had received"
    assert match_refund(refund("-5.00", "US-INV-1"), {"US-INV-1": PaidInvoice("US-INV-1", "USD", D(0))}).reason == (
        "US-INV-1: has no payment left to refund"
    )
    assert "is in USD, the refund in EUR" in (
        match_refund(refund("-5.00", "US-INV-1", currency="EUR"), paid).reason or ""
    )
    assert match_refund(refund("-5.00"), paid).reason == "a refund of a payment that paid no invoice of ours"
    assert match_refund(refund("-5.00", "US-INV-9"), paid).reason == "US-INV-9: no invoice of ours took this payment"


@given(
    received=st.decimals(min_value=D("0"), max_value=D("10000"), places=2),
    back=st.decimals(min_value=D("0.01"), max_value=D("20000"), places=2),
)
def test_a_refund_is_all_accounted_for_and_never_leaves_an_invoice_below_zero(received: Decimal, back: Decimal) -> None:
    match = match_refund(refund(str(-back), "US-INV-1"), {"US-INV-1": PaidInvoice("US-INV-1", "USD", received)})
    taken = sum((a for _, a in match.allocations), D(0))
    assert taken + match.unapplied == -back  # nothing lost
    assert received + taken >= 0 and taken <= 0 and match.unapplied <= 0
