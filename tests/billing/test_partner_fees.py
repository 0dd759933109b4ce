"""Referral fees: worked examples with known answers (a 20% fee for 12 months through an upgrade, a
refund and a credit note; a flat fee, on payments and on invoices; a tiered partner; per product; another currency), and properties
of the money (a period's fees are its rounded fee, accruing in pieces equals accruing at once, undoing
every event undoes every fee)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billbridge.billing.currency import round_money
from billbridge.billing.model import ReferralAgreement
from billbridge.billing.partner_fees import Booked, FeeEvent, accrue, fee_on, statement, vanished

D = Decimal


def agreement(**terms: Any) -> ReferralAgreement:
    base: dict[str, Any] = {
        "agreement_ref": "nw",
        "partner_ref": "northwind",
        "currency": "USD",
        "percent": "20",
        "referrals": [{"customer_ref": "hooli", "referred_on": "2026-01-15"}],
    }
    base.update(terms)
    return ReferralAgreement.model_validate({k: v for k, v in base.items() if v is not None})


def paid(ref: str, day: date, amount: str, customer: str = "hooli", **extra: Any) -> FeeEvent:
    return FeeEvent(
        ref, customer, extra.pop("contract", "C-1"), day, "collected", extra.pop("currency", "USD"), D(amount), **extra
    )


def billed(ref: str, day: date, amount: str, customer: str = "hooli") -> FeeEvent:
    return FeeEvent(ref, customer, "C-1", day, "billed", "USD", D(amount))


def monthly_payments() -> list[FeeEvent]:
    """Feb 2026 to Feb 2027 on the 20th: 1,000 a month, 1,500 from May (an upgrade)."""
    events = []
    for n in range(13):
        day = date(2026 + (1 + n) // 12, (1 + n) % 12 + 1, 20)
        events.append(paid(f"pay-{n:02d}", day, "1000.00" if n < 3 else "1500.00"))
    return events


def totals(accruals: list[Any]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for accrual in accruals:
        out[accrual.period] += accrual.fee
    return dict(out)


def test_twenty_percent_for_twelve_months_through_an_upgrade_a_refund_and_a_credit_note() -> None:
    refund = paid("refund-1", date(2026, 6, 25), "-500.00")
    credit_note = billed("US-CN-1", date(2026, 7, 3), "-750.00")  # collected basis: no fee until money moves
    run = accrue(agreement(months=12), [*monthly_payments(), refund, credit_note])
    assert not run.problems
    assert all(a.event_ref != "US-CN-1" for a in run.accruals)
    assert totals(run.accruals)["2026-07"] == D("300.00")  # July's payment only
    fees = totals(run.accruals)
    assert fees["2026-02"] == fees["2026-03"] == fees["2026-04"] == D("200.00")
    assert fees["2026-05"] == D("300.00")
    assert fees["2026-06"] == D("200.00")  # 300 on the payment, -100 on the refund
    assert fees["2026-12"] == D("300.00")
    assert "2027-01" not in fees  # paid on 2027-01-20, past the 12 months from 2026-01-15
    assert sum(fees.values()) == D("2900.00")
    # Accruing again with what was booked adds nothing.
    assert accrue(agreement(months=12), [*monthly_payments(), refund], Booked.of(run.accruals)).accruals == []
    # The credit note paid back (a refund of 750.00 in August): now the fee moves, -150.00 on August.
    repaid = paid("refund-cn-1", date(2026, 8, 5), "-750.00")
    later = accrue(agreement(months=12), [*monthly_payments(), refund, credit_note, repaid], Booked.of(run.accruals))
    assert [(a.event_ref, a.period, a.fee) for a in later.accruals] == [("refund-cn-1", "2026-08", D("-150.00"))]


def test_for_the_contract_life_the_fee_goes_on() -> None:
    run = accrue(agreement(), monthly_payments())
    assert totals(run.accruals)["2027-01"] == D("300.00")


def test_a_refund_after_the_statement_closed_reverses_the_fee_on_the_next_statement() -> None:
    first = accrue(agreement(), monthly_payments()[:5])  # Feb to June
    june = statement("northwind", "2026-06", "USD", first.accruals)
    assert june.total == D("300.00")
    refund = paid("refund-1", date(2026, 6, 28), "-1500.00")
    later = accrue(agreement(), [*monthly_payments()[:5], refund], Booked.of(first.accruals), closed_through="2026-06")
    assert [(a.event_ref, a.period, a.fee) for a in later.accruals] == [("refund-1", "2026-07", D("-300.00"))]


def on_invoice(event: FeeEvent, number: str) -> FeeEvent:
    """The event as the store hands it in: naming the invoice its money is on."""
    return event._replace(against=f"inv:{number}")


@pytest.mark.parametrize("basis", ["collected", "billed"])
def test_a_refund_after_the_window_reverses_what_its_payment_earned(basis: str) -> None:
    """20% for 12 months from 2026-01-15: 1,000 on 2027-01-10 (in the window) earns 200.00; undone on
    2027-01-20, after the window, it still reverses that 200.00 (refund, or credit note on billed)."""
    make = paid if basis == "collected" else billed
    earned = on_invoice(make("e-1", date(2027, 1, 10), "1000.00"), "US-INV-12")
    undone = on_invoice(make("e-2", date(2027, 1, 20), "-1000.00"), "US-INV-12")
    terms = agreement(months=12, basis=basis)
    first = accrue(terms, [earned])
    assert [(a.event_ref, a.fee) for a in first.accruals] == [("e-1", D("200.00"))]
    later = accrue(terms, [earned, undone], Booked.of(first.accruals))
    assert [(a.event_ref, a.period, a.fee) for a in later.accruals] == [("e-2", "2027-01", D("-200.00"))]
    assert accrue(terms, [earned, undone], Booked.of([*first.accruals, *later.accruals])).accruals == []


@pytest.mark.parametrize("basis", ["collected", "billed"])
def test_undoing_money_from_before_the_referral_charges_the_partner_nothing(basis: str) -> None:
    """1,000 paid (invoiced) on 2026-01-05, before the referral of 2026-01-15, earned nothing; refunded
    (credited) on 2026-02-01, inside the window, it reverses nothing (it used to charge -200.00). A part
    refund of an invoice that earned reverses its part, and never more than the invoice earned."""
    make = paid if basis == "collected" else billed
    events = [
        on_invoice(make("e-1", date(2026, 1, 5), "1000.00"), "US-INV-1"),
        on_invoice(make("e-2", date(2026, 2, 1), "-1000.00"), "US-INV-1"),
        on_invoice(make("e-3", date(2026, 2, 10), "500.00"), "US-INV-2"),
        on_invoice(make("e-4", date(2026, 3, 1), "-300.00"), "US-INV-2"),
        on_invoice(make("e-5", date(2026, 3, 2), "-300.00"), "US-INV-2"),  # 200.00 of it left to undo
    ]
    run = accrue(agreement(months=12, basis=basis), events)
    assert [(a.event_ref, a.base, a.fee) for a in run.accruals] == [
        ("e-3", D("500.00"), D("100.00")),
        ("e-4", D("-300.00"), D("-60.00")),
        ("e-5", D("-200.00"), D("-40.00")),
    ]


def test_a_refund_on_the_day_of_its_payment_finds_it_whatever_the_refs() -> None:
    """Same day, a refund whose ref sorts first still undoes the payment (money comes before its undoing)."""
    events = [
        on_invoice(paid("b-pay", date(2026, 3, 1), "1000.00"), "US-INV-1"),
        on_invoice(paid("a-refund", date(2026, 3, 1), "-1000.00"), "US-INV-1"),
    ]
    run = accrue(agreement(), events)
    assert [(a.event_ref, a.fee) for a in run.accruals] == [("b-pay", D("200.00")), ("a-refund", D("-200.00"))]


def test_a_payment_edited_at_its_source_accrues_the_difference_once() -> None:
    first = accrue(agreement(), [paid("qb-7", date(2026, 3, 1), "800.00")])
    edited = accrue(agreement(), [paid("qb-7", date(2026, 3, 1), "500.00")], Booked.of(first.accruals))
    assert [(a.event_ref, a.base, a.fee) for a in edited.accruals] == [("qb-7@2", D("-300.00"), D("-60.00"))]
    deleted = accrue(agreement(), [paid("qb-7", date(2026, 3, 1), "0")], Booked.of([*first.accruals, *edited.accruals]))
    assert [(a.event_ref, a.fee) for a in deleted.accruals] == [("qb-7@3", D("-100.00"))]


def test_billed_basis_follows_invoices_and_a_credit_note_reverses() -> None:
    events = [
        billed("US-INV-1", date(2026, 2, 1), "1000.00"),
        billed("US-CN-1", date(2026, 2, 10), "-250.00"),
        paid("pay-1", date(2026, 2, 20), "750.00"),  # not the basis: no percentage on it
    ]
    run = accrue(agreement(basis="billed"), events)
    assert [(a.event_ref, a.fee) for a in run.accruals] == [("US-INV-1", D("200.00")), ("US-CN-1", D("-50.00"))]


def test_a_flat_fee_is_earned_once_on_the_first_payment_of_a_new_referred_customer() -> None:
    """Hooli first pays after its referral: 250.00 on its first payment. Initech paid before its referral
    (a customer already, not a new one): no flat fee, neither then nor on its payments after it. Umbrella,
    referred before it ever paid, earns it on its first payment."""
    terms = {
        "percent": None,
        "flat_fee": "250.00",
        "referrals": [
            {"customer_ref": "hooli", "referred_on": "2026-01-15"},
            {"customer_ref": "initech", "referred_on": "2026-03-01"},
            {"customer_ref": "umbrella", "referred_on": "2026-03-01"},
        ],
    }
    events = [
        paid("early", date(2026, 2, 1), "100.00", customer="initech"),  # before its referral: not new
        *monthly_payments()[:3],
        paid("other", date(2026, 2, 5), "900.00", customer="globex"),  # not referred
        paid("late", date(2026, 3, 2), "100.00", customer="initech"),
        paid("first", date(2026, 3, 1), "100.00", customer="umbrella"),  # on its referral day: new
    ]
    run = accrue(agreement(**terms), events)
    assert [(a.event_ref, a.kind, a.period, a.fee) for a in run.accruals] == [
        ("flat:hooli", "flat_fee", "2026-02", D("250.00")),
        ("flat:umbrella", "flat_fee", "2026-03", D("250.00")),
    ]
    assert accrue(agreement(**terms), events, Booked.of(run.accruals)).accruals == []


def test_a_customer_that_paid_before_its_referral_still_earns_the_percentage() -> None:
    """Not new, so no flat fee; the percentage applies to what it pays from its referral on."""
    terms = {"flat_fee": "250.00", "referrals": [{"customer_ref": "initech", "referred_on": "2026-03-01"}]}
    events = [
        paid("early", date(2026, 2, 1), "100.00", customer="initech"),
        paid("late", date(2026, 3, 2), "100.00", customer="initech"),
    ]
    run = accrue(agreement(**terms), events)
    assert [(a.event_ref, a.kind, a.fee) for a in run.accruals] == [("late", "fee", D("20.00"))]


def test_a_flat_fee_is_reversed_when_the_first_payment_is_refunded_or_deleted_and_earned_again_on_paying() -> None:
    terms = {"percent": None, "flat_fee": "250.00"}
    first = paid("pay-1", date(2026, 2, 20), "1000.00")
    earned = accrue(agreement(**terms), [first]).accruals
    assert [(a.event_ref, a.period, a.fee) for a in earned] == [("flat:hooli", "2026-02", D("250.00"))]
    booked = Booked.of(earned)

    # Refunded in full in March, February's statement closed: the reversal lands on March, once.
    refund = paid("re-1", date(2026, 3, 5), "-1000.00")
    reversed_ = accrue(agreement(**terms), [first, refund], booked, closed_through="2026-02").accruals
    assert [(a.event_ref, a.period, a.fee) for a in reversed_] == [("flat:hooli@2", "2026-03", D("-250.00"))]
    booked = Booked.of([*earned, *reversed_])
    assert accrue(agreement(**terms), [first, refund], booked, closed_through="2026-02").accruals == []

    # A part refund leaves it standing; paying again after a full refund earns it again, on that payment.
    assert (
        accrue(agreement(**terms), [first, paid("re-2", date(2026, 3, 5), "-10.00")], Booked.of(earned)).accruals == []
    )
    again = paid("pay-2", date(2026, 4, 20), "1000.00")
    earned_again = accrue(agreement(**terms), [first, refund, again], booked).accruals
    assert [(a.event_ref, a.period, a.fee) for a in earned_again] == [("flat:hooli@3", "2026-04", D("250.00"))]

    # Deleted at its source (no event left): reversed on its own month while open, else on the next one.
    gone = accrue(agreement(**terms), [], Booked.of(earned)).accruals
    assert [(a.event_ref, a.period, a.fee) for a in gone] == [("flat:hooli@2", "2026-02", D("-250.00"))]
    gone = accrue(agreement(**terms), [], Booked.of(earned), closed_through="2026-04").accruals
    assert [(a.event_ref, a.period, a.fee) for a in gone] == [("flat:hooli@2", "2026-05", D("-250.00"))]
    # Paid and refunded on the same day: nothing earned.
    same_day = [first, paid("re-0", date(2026, 2, 20), "-1000.00")]
    assert accrue(agreement(**terms), same_day).accruals == []


def test_a_flat_fee_on_basis_billed_is_earned_on_the_first_invoice_issued_and_reversed_by_a_full_credit() -> None:
    """Basis ``billed``: the flat fee follows what the customer is invoiced, as the percentage does: earned
    on its first invoice issued (before anything is paid), reversed when a credit note cancels all of
    it, earned again on the next invoice; payments play no part."""
    events = [
        billed("US-INV-1", date(2026, 2, 1), "1000.00"),
        paid("pay-1", date(2026, 2, 20), "1000.00"),  # not the basis
        billed("US-CN-1", date(2026, 3, 5), "-1000.00"),  # all it was invoiced, credited
        billed("US-INV-2", date(2026, 4, 1), "500.00"),
    ]
    terms = {"basis": "billed", "flat_fee": "250.00"}
    run = accrue(agreement(**terms), events)
    assert [(a.event_ref, a.kind, a.occurred_on, a.period, a.fee) for a in run.accruals] == [
        ("US-INV-1", "fee", date(2026, 2, 1), "2026-02", D("200.00")),
        ("US-CN-1", "fee", date(2026, 3, 5), "2026-03", D("-200.00")),
        ("US-INV-2", "fee", date(2026, 4, 1), "2026-04", D("100.00")),
        ("flat:hooli", "flat_fee", date(2026, 2, 1), "2026-02", D("250.00")),
        ("flat:hooli@2", "flat_fee", date(2026, 3, 5), "2026-03", D("-250.00")),
        ("flat:hooli@3", "flat_fee", date(2026, 4, 1), "2026-04", D("250.00")),
    ]
    assert accrue(agreement(**terms), events, Booked.of(run.accruals)).accruals == []
    # Invoiced and not yet paid: the billed agreement's flat fee stands, a collected one's waits for a payment.
    issued = events[:1]
    assert [
        (a.kind, a.fee) for a in accrue(agreement(basis="billed", percent=None, flat_fee="250.00"), issued).accruals
    ] == [("flat_fee", D("250.00"))]
    assert accrue(agreement(percent=None, flat_fee="250.00"), issued).accruals == []
    # Paid without an invoice issued (a prepayment): nothing on basis billed.
    assert accrue(agreement(basis="billed", percent=None, flat_fee="250.00"), [events[1]]).accruals == []


def test_a_tiered_partner_earns_by_its_referred_revenue_in_the_period() -> None:
    tiers = {
        "model": "graduated",
        "tiers": [{"up_to": "10000", "unit_price": "0.10"}, {"up_to": None, "unit_price": "0.15"}],
    }
    referrals = [
        {"customer_ref": "hooli", "referred_on": "2026-01-01"},
        {"customer_ref": "initech", "referred_on": "2026-01-01"},
    ]
    events = [
        paid("a", date(2026, 2, 3), "6000.00"),
        paid("b", date(2026, 2, 9), "6000.00", customer="initech"),
        paid("c", date(2026, 3, 3), "6000.00"),  # a new period starts at the first tier again
    ]
    run = accrue(agreement(percent=None, tiers=tiers, referrals=referrals), events)
    assert [(a.event_ref, a.fee) for a in run.accruals] == [("a", D("600.00")), ("b", D("700.00")), ("c", D("600.00"))]
    february = statement("northwind", "2026-02", "USD", run.accruals)
    assert february.total == D("1300.00")
    assert [(line.customer_ref, line.fees) for line in february.lines] == [
        ("hooli", D("600.00")),
        ("initech", D("700.00")),
    ]


def test_a_volume_tiered_partner_moves_the_whole_month_to_the_tier_its_total_reaches() -> None:
    """Volume tiers (10% up to 10,000, 15% above): 6,000 and 6,000 in February make 12,000, all at 15%:
    1,800.00 (600.00, then 1,200.00 as the second payment lifts the whole month); 3,000 of the second
    refunded in February brings it to 9,000, all at 10%: 900.00 (the refund reverses 900.00)."""
    tiers = {
        "model": "volume",
        "tiers": [{"up_to": "10000", "unit_price": "0.10"}, {"up_to": None, "unit_price": "0.15"}],
    }
    referrals = [
        {"customer_ref": "hooli", "referred_on": "2026-01-01"},
        {"customer_ref": "initech", "referred_on": "2026-01-01"},
    ]
    terms = agreement(percent=None, tiers=tiers, referrals=referrals)
    events = [
        on_invoice(paid("a", date(2026, 2, 3), "6000.00"), "US-INV-1"),
        on_invoice(paid("b", date(2026, 2, 9), "6000.00", customer="initech"), "US-INV-2"),
    ]
    first = accrue(terms, events)
    assert [(a.event_ref, a.fee) for a in first.accruals] == [("a", D("600.00")), ("b", D("1200.00"))]
    assert statement("northwind", "2026-02", "USD", first.accruals).total == D("1800.00")
    refund = on_invoice(paid("r", date(2026, 2, 20), "-3000.00", customer="initech"), "US-INV-2")
    later = accrue(terms, [*events, refund], Booked.of(first.accruals))
    assert [(a.event_ref, a.fee) for a in later.accruals] == [("r", D("-900.00"))]
    assert statement("northwind", "2026-02", "USD", [*first.accruals, *later.accruals]).total == D("900.00")


def test_tiers_count_the_partners_revenue_across_its_agreements() -> None:
    """Graduated 10% to 10,000 then 15%: hooli's 6,000 under the tiered agreement and initech's 6,000 under
    another of the partner's make 12,000, whose tiered fee is 1,000 + 300 = 1,300; the tiered agreement
    earns its half, 650 (600 alone). Revenue of the other agreement arriving later re-rates the period."""
    tiers = {
        "model": "graduated",
        "tiers": [{"up_to": "10000", "unit_price": "0.10"}, {"up_to": None, "unit_price": "0.15"}],
    }
    tiered = agreement(percent=None, tiers=tiers)
    events = [paid("a", date(2026, 2, 3), "6000.00")]
    alone = accrue(tiered, events)
    assert [(a.event_ref, a.fee) for a in alone.accruals] == [("a", D("600.00"))]
    pooled = accrue(tiered, events, others={"2026-02": D("6000.00")})
    assert [(a.event_ref, a.fee) for a in pooled.accruals] == [("a", D("650.00"))]

    # Booked alone first; then the other agreement's 6,000 arrives: a re-rating of February, once.
    rerated = accrue(tiered, events, Booked.of(alone.accruals), others={"2026-02": D("6000.00")})
    assert [(a.event_ref, a.customer_ref, a.period, a.fee) for a in rerated.accruals] == [
        ("tier:2026-02", "(partner tiers)", "2026-02", D("50.00"))
    ]
    booked = Booked.of([*alone.accruals, *rerated.accruals])
    assert accrue(tiered, events, booked, others={"2026-02": D("6000.00")}).accruals == []
    # A closed period is never re-rated.
    assert (
        accrue(tiered, events, Booked.of(alone.accruals), closed_through="2026-02", others={"2026-02": D("1")}).accruals
        == []
    )


def test_per_product_fees_count_only_those_products() -> None:
    event = paid("p", date(2026, 2, 1), "1450.00", product_amounts={"platform": D("1200.00"), "seats": D("250.00")})
    run = accrue(agreement(products=["seats"]), [event])
    assert [(a.base, a.fee) for a in run.accruals] == [(D("250.00"), D("50.00"))]
    missing = accrue(agreement(products=["seats"]), [paid("q", date(2026, 2, 1), "10.00")])
    assert missing.accruals == [] and [p.field for p in missing.problems] == ["products"]


def test_a_customer_paying_in_another_currency_is_a_problem_unless_a_rate_is_given() -> None:
    events = [paid("eur-1", date(2026, 2, 1), "100.00", currency="EUR"), paid("usd-1", date(2026, 2, 2), "100.00")]
    run = accrue(agreement(), events)
    assert [str(p) for p in run.problems] == [
        "nw: event eur-1: currency: the customer pays in EUR but the agreement accrues in USD, and no exchange "
        "rate EUR->USD is configured"
    ]
    assert [a.event_ref for a in run.accruals] == ["usd-1"]  # the others go on
    converted = accrue(agreement(), events, rates={("EUR", "USD"): D("1.08")})
    assert [a.fee for a in converted.accruals] == [D("21.60"), D("20.00")]


def test_jpy_fees_round_to_whole_yen() -> None:
    run = accrue(agreement(currency="JPY", percent="7.5"), [paid("y", date(2026, 2, 1), "12345", currency="JPY")])
    assert [a.fee for a in run.accruals] == [D("926")]


# -- properties --------------------------------------------------------------------------------------

cents = st.integers(min_value=-500_000, max_value=2_000_000).map(lambda n: D(n).scaleb(-2))
days = st.integers(min_value=0, max_value=120).map(lambda n: date(2026, 2, 1) + timedelta(days=n))
percents = st.integers(min_value=0, max_value=10_000).map(lambda n: D(n).scaleb(-2))
event_lists = st.lists(st.tuples(days, cents), min_size=1, max_size=30)


def _events(pairs: list[tuple[date, Decimal]]) -> list[FeeEvent]:
    return [
        FeeEvent(f"e{i:03d}", "hooli", "C-1", day, "collected", "USD", amount) for i, (day, amount) in enumerate(pairs)
    ]


@settings(max_examples=150, deadline=None)
@given(event_lists, percents)
def test_a_periods_fees_are_exactly_its_rounded_fee(pairs: list[tuple[date, Decimal]], percent: Decimal) -> None:
    terms = agreement(percent=percent)
    run = accrue(terms, _events(pairs))
    base: dict[str, Decimal] = defaultdict(Decimal)
    for day, amount in pairs:
        base[f"{day:%Y-%m}"] += amount
    for period, fee in totals(run.accruals).items():
        assert fee == round_money(fee_on(terms, base[period]), "USD")
        assert fee == fee.quantize(D("0.01"))


@settings(max_examples=150, deadline=None)
@given(event_lists, st.integers(min_value=0, max_value=30), percents)
def test_accruing_in_two_runs_equals_accruing_at_once(
    pairs: list[tuple[date, Decimal]], cut: int, percent: Decimal
) -> None:
    terms = agreement(percent=percent, flat_fee="99.00")
    events = _events(sorted(pairs, key=lambda pair: pair[0]))  # the first run saw the earlier events
    once = accrue(terms, events)
    first = accrue(terms, events[:cut])
    second = accrue(terms, events, Booked.of(first.accruals))
    assert totals(first.accruals + second.accruals) == totals(once.accruals)


@settings(max_examples=100, deadline=None)
@given(event_lists, percents)
def test_undoing_every_event_undoes_every_percentage_fee(pairs: list[tuple[date, Decimal]], percent: Decimal) -> None:
    terms = agreement(percent=percent)
    events = _events(pairs)
    undo = [
        FeeEvent(f"u{e.event_ref}", e.customer_ref, e.contract_ref, e.occurred_on, e.basis, e.currency, -e.amount)
        for e in events
    ]
    run = accrue(terms, [*events, *undo])
    assert all(fee == 0 for fee in totals(run.accruals).values())


def test_a_payment_deleted_at_its_source_reverses_its_fee_even_after_the_window() -> None:
    from billbridge.billing.partner_fees import vanished

    first = accrue(agreement(months=1), [paid("qb-9", date(2026, 1, 20), "400.00")])
    gone = vanished(first.accruals, present=set(), on=date(2026, 5, 2), basis="collected")
    run = accrue(agreement(months=1), gone, Booked.of(first.accruals))
    assert [(a.event_ref, a.period, a.fee) for a in run.accruals] == [("qb-9@2", "2026-05", D("-80.00"))]


def test_a_rate_change_moves_only_new_events_and_a_change_of_an_event_converts_at_its_first_rate() -> None:
    """A USD agreement (10%), a customer paying in KWD. 100.000 KWD at 3.25 earns 32.50; the rate becomes
    3.30: rerunning (before or after January closes, or with no rate configured at all) re-rates nothing;
    a new payment of 100.000 accrues at 3.30 (33.00); the first payment edited to 50.000 takes off
    50.000 x 3.25 x 10% = 16.25; deleted, its remaining 16.25 is reversed: what it earned, to the cent."""
    terms = {"percent": "10", "referrals": [{"customer_ref": "gulf", "referred_on": "2026-01-01"}]}
    first = paid("pay:1:INV", date(2026, 1, 10), "100.000", customer="gulf", currency="KWD")
    run = accrue(agreement(**terms), [first], rates={("KWD", "USD"): D("3.25")})
    assert [(a.base, a.fee, a.source_currency, a.source_amount, a.rate) for a in run.accruals] == [
        (D("325.000"), D("32.50"), "KWD", D("100.000"), D("3.25"))
    ]
    booked = Booked.of(run.accruals)
    for closed, rates in (
        (None, {("KWD", "USD"): D("3.30")}),
        ("2026-01", {("KWD", "USD"): D("3.30")}),
        ("2026-01", {}),
    ):
        again = accrue(agreement(**terms), [first], booked, closed_through=closed, rates=rates)
        assert (again.accruals, again.problems) == ([], [])

    second = paid("pay:2:INV", date(2026, 2, 10), "100.000", customer="gulf", currency="KWD")
    edited = first._replace(amount=D("50.000"))
    later = accrue(
        agreement(**terms), [edited, second], booked, closed_through="2026-01", rates={("KWD", "USD"): D("3.30")}
    )
    assert [(a.event_ref, a.period, a.fee, a.source_amount, a.rate) for a in later.accruals] == [
        ("pay:1:INV@2", "2026-02", D("-16.25"), D("-50.000"), D("3.25")),
        ("pay:2:INV", "2026-02", D("33.00"), D("100.000"), D("3.30")),
    ]
    booked = Booked.of([*run.accruals, *later.accruals])
    gone = vanished([*run.accruals, *later.accruals], {"pay:2:INV"}, date(2026, 3, 1), "collected")
    deleted = accrue(agreement(**terms), [second, *gone], booked, closed_through="2026-02", rates={})
    assert [(a.event_ref, a.fee) for a in deleted.accruals] == [("pay:1:INV@3", D("-16.25"))]
    assert sum(a.fee for a in [*run.accruals, *later.accruals, *deleted.accruals]) == D("33.00")


def test_a_deleted_payment_reverses_its_fee_on_a_per_product_agreement_too() -> None:
    """10% on seats only: a payment of which 450.00 was seats earned 45.00; deleted at its source, it comes
    back with nothing on any product and reverses the 45.00 (it was a problem "no amounts per product")."""
    terms = {"percent": "10", "products": ["seats"]}
    payment = paid("pay-1", date(2026, 2, 1), "1650.00", product_amounts={"platform": D("1200"), "seats": D("450")})
    run = accrue(agreement(**terms), [payment])
    assert [a.fee for a in run.accruals] == [D("45.00")]
    gone = vanished(run.accruals, set(), date(2026, 3, 1), "collected")
    undone = accrue(agreement(**terms), gone, Booked.of(run.accruals))
    assert undone.problems == [] and [(a.period, a.fee) for a in undone.accruals] == [("2026-03", D("-45.00"))]


class CountingRef(str):
    """A customer ref that counts how often it is compared or hashed: the work of attributing events."""

    seen = 0

    def __eq__(self, other: object) -> bool:
        CountingRef.seen += 1
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        CountingRef.seen += 1
        return str.__ne__(self, other)

    def __hash__(self) -> int:
        CountingRef.seen += 1
        return str.__hash__(self)


def test_referral_revenue_attributes_each_event_once_in_linear_work() -> None:
    """300 referred customers x 24 monthly payments of 100.00: each referral's revenue is 2,400.00, and the
    customer refs are compared or hashed a few times per event and referral (the report's loop per
    referral over every event, with ``referral_for`` looping the referrals again, was cubic: ~10^9)."""
    from billbridge.billing.partner_fees import referral_revenue

    customers = [CountingRef(f"c{i:03d}") for i in range(300)]
    terms = agreement(referrals=[{"customer_ref": c, "referred_on": "2026-01-01"} for c in customers])
    events = [
        FeeEvent(f"e{i}-{m}", CountingRef(str(c)), "C", date(2026 + m // 12, m % 12 + 1, 5), "collected", "USD", D(100))
        for i, c in enumerate(customers)
        for m in range(24)
    ]
    CountingRef.seen = 0
    revenue = referral_revenue(terms, events)
    assert revenue == [D("2400")] * 300
    assert CountingRef.seen <= 3 * (len(events) + len(customers))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from([None, "C-1", "C-2"]),
            st.integers(min_value=0, max_value=60),
        ),
        max_size=5,
        unique_by=lambda r: (r[0], r[1]),
    ),
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "d"]),
            st.sampled_from(["C-1", "C-2"]),
            st.integers(min_value=0, max_value=90),
            st.integers(min_value=-500, max_value=500),
            st.sampled_from(["USD", "EUR"]),
        ),
        max_size=30,
    ),
)
def test_referral_revenue_is_what_referral_for_attributes(
    referrals: list[tuple[str, str | None, int]], moves: list[tuple[str, str, int, int, str]]
) -> None:
    """The linear attribution gives each referral exactly the events ``referral_for`` gives it."""
    from billbridge.billing.partner_fees import referral_for, referral_revenue

    start = date(2026, 1, 1)
    terms = agreement(
        referrals=[
            {"customer_ref": c, "contract_ref": k, "referred_on": (start + timedelta(days=d)).isoformat()}
            for c, k, d in referrals
        ]
    )
    events = [
        FeeEvent(f"e{n}", c, k, start + timedelta(days=d), "collected", cur, D(a))
        for n, (c, k, d, a, cur) in enumerate(moves)
    ]
    expected = [D(0)] * len(terms.referrals)
    for event in events:
        found = referral_for(terms, event)
        if event.currency == "USD" and found is not None:
            expected[next(i for i, r in enumerate(terms.referrals) if r is found)] += event.amount
    assert referral_revenue(terms, events) == expected
