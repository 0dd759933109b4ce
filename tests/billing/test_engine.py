"""Worked examples of invoice planning, each with an answer computed by hand in its comment."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from billbridge.billing.engine import Plan, Version, as_billed, plan_invoices
from billbridge.billing.model import Contract
from billbridge.billing.usage_periods import UsageQuery

D = Decimal


def make(lines: list[dict[str, Any]], **terms: Any) -> Contract:
    base: dict[str, Any] = {
        "contract_ref": "C-1",
        "customer_ref": "cust",
        "entity_ref": "us",
        "currency": "USD",
        "contract_start_date": date(2026, 1, 1),
    }
    return Contract.model_validate({**base, **terms, "lines": lines})


def flat(amount: str, **line: Any) -> dict[str, Any]:
    return {"line_ref": "fee", "product_ref": "platform", "pricing": {"model": "flat", "amount": amount}, **line}


def seats(quantity: str, unit_price: str = "45.00", **line: Any) -> dict[str, Any]:
    return {
        "line_ref": "seats",
        "product_ref": "seats",
        "quantity": quantity,
        "pricing": {"model": "per_unit", "unit_price": unit_price},
        **line,
    }


class Ledger:
    """Plays the store: keeps what was billed and plans the next run against it."""

    def __init__(self, *contracts: tuple[date, Contract]) -> None:
        self.versions = [Version(i + 1, eff, c) for i, (eff, c) in enumerate(contracts)]
        self.billed: list = []
        self.dates: set[date] = set()

    def amend(self, effective: date, contract: Contract) -> None:
        self.versions.append(Version(len(self.versions) + 1, effective, contract))

    def plan(self, as_of: date, usage=None) -> Plan:
        return plan_invoices("C-1", self.versions, as_of, self.billed, self.dates, usage)

    def bill(self, as_of: date, usage=None) -> Plan:
        plan = self.plan(as_of, usage)
        for draft in plan.invoices:
            self.billed += as_billed(draft)
            self.dates.add(draft.billing_date)
        return plan


def totals(plan: Plan) -> list[tuple[date, Decimal]]:
    return [(d.billing_date, d.invoice_total) for d in plan.invoices]


def test_flat_fee_in_advance_monthly_and_rerun_creates_nothing() -> None:
    ledger = Ledger((date(2026, 1, 1), make([flat("1200.00")], payment_terms_days=30)))
    plan = ledger.bill(date(2026, 3, 15))
    assert totals(plan) == [
        (date(2026, 1, 1), D("1200.00")),
        (date(2026, 2, 1), D("1200.00")),
        (date(2026, 3, 1), D("1200.00")),
    ]
    assert [d.due_date for d in plan.invoices] == [date(2026, 1, 31), date(2026, 3, 3), date(2026, 3, 31)]
    line = plan.invoices[1].lines[0]
    assert (line.span_start, line.span_end, line.billed_days) == (date(2026, 2, 1), date(2026, 3, 1), 28)
    assert ledger.plan(date(2026, 3, 15)).invoices == []


def test_in_arrears_bills_a_period_once_it_has_ended() -> None:
    ledger = Ledger((date(2026, 1, 1), make([seats("10")], billing_timing="in_arrears")))
    assert ledger.plan(date(2026, 1, 31)).invoices == []
    plan = ledger.bill(date(2026, 2, 1))
    assert totals(plan) == [(date(2026, 2, 1), D("450.00"))]  # 10 seats x 45.00 for January


def test_partial_first_period_is_prorated_by_day() -> None:
    # Service from Jan 15, cycles anchored on the 1st: Jan 15-31 is 17 of January's 31 days.
    contract = make([flat("310.00")], contract_start_date=date(2026, 1, 15), cycle_start_date=date(2026, 2, 1))
    plan = Ledger((date(2026, 1, 15), contract)).bill(date(2026, 2, 1))
    assert totals(plan) == [(date(2026, 1, 15), D("170.00")), (date(2026, 2, 1), D("310.00"))]
    first = plan.invoices[0].lines[0]
    assert (first.billed_days, first.slot_days, first.amount) == (17, 31, D("310.00"))


def test_partial_last_period_when_the_contract_ends_mid_cycle() -> None:
    # Ends Mar 10 (inclusive): March bills 10 of 31 days of 310.00 = 100.00.
    contract = make([flat("310.00")], contract_end_date=date(2026, 3, 10))
    plan = Ledger((date(2026, 1, 1), contract)).bill(date(2026, 12, 31))
    assert totals(plan) == [
        (date(2026, 1, 1), D("310.00")),
        (date(2026, 2, 1), D("310.00")),
        (date(2026, 3, 1), D("100.00")),
    ]


def test_anchor_on_the_31st_bills_on_the_last_day_of_shorter_months() -> None:
    contract = make([seats("1", "100.00")], contract_start_date=date(2026, 1, 31), billing_timing="in_arrears")
    plan = Ledger((date(2026, 1, 31), contract)).bill(date(2026, 5, 31))
    assert [d.billing_date for d in plan.invoices] == [
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
        date(2026, 5, 31),
    ]
    assert {d.invoice_total for d in plan.invoices} == {D("100.00")}


@pytest.mark.parametrize(
    ("length", "unit", "as_of", "dates"),
    [
        (2, "week", date(2026, 1, 29), [date(2026, 1, 1), date(2026, 1, 15), date(2026, 1, 29)]),
        (10, "day", date(2026, 1, 21), [date(2026, 1, 1), date(2026, 1, 11), date(2026, 1, 21)]),
        (3, "month", date(2026, 7, 1), [date(2026, 1, 1), date(2026, 4, 1), date(2026, 7, 1)]),
        (1, "year", date(2028, 1, 1), [date(2026, 1, 1), date(2027, 1, 1), date(2028, 1, 1)]),
    ],
)
def test_cycles_of_days_weeks_months_years(length: int, unit: str, as_of: date, dates: list[date]) -> None:
    plan = Ledger((date(2026, 1, 1), make([flat("70.00")], cycle_length=length, cycle_unit=unit))).bill(as_of)
    assert [d.billing_date for d in plan.invoices] == dates


def test_upgrade_mid_period_credits_unused_days_and_charges_new_terms_on_the_next_invoice() -> None:
    ledger = Ledger((date(2026, 6, 1), make([seats("20")], contract_start_date=date(2026, 6, 1))))
    ledger.bill(date(2026, 8, 1))  # June, July, August at 20 x 45.00 = 900.00
    ledger.amend(
        date(2026, 8, 16), make([seats("35")], contract_start_date=date(2026, 6, 1), effective_date=date(2026, 8, 16))
    )

    waiting = ledger.plan(date(2026, 8, 20))
    assert waiting.invoices == [] and len(waiting.pending) == 2  # held for the next billing date

    plan = ledger.bill(date(2026, 9, 1))
    [invoice] = plan.invoices
    lines = {(line.description, line.span_start, line.span_end): line.billed_amount for line in invoice.lines}
    # Aug 16-31 is 16 of 31 days: credit 900 x 16/31 = 464.516.. -> 464.52, charge 1575 x 16/31 = 812.903.. -> 812.90
    assert lines == {
        ("Credit: seats", date(2026, 8, 16), date(2026, 9, 1)): D("-464.52"),
        ("seats", date(2026, 8, 16), date(2026, 9, 1)): D("812.90"),
        ("seats", date(2026, 9, 1), date(2026, 10, 1)): D("1575.00"),
    }
    assert invoice.invoice_total == D("1923.38")
    assert ledger.plan(date(2026, 9, 1)).invoices == []


def test_downgrade_credit_larger_than_new_charges_is_netted_on_the_next_invoice() -> None:
    ledger = Ledger((date(2026, 1, 1), make([flat("3000.00")])))
    ledger.bill(date(2026, 1, 1))
    ledger.amend(date(2026, 1, 2), make([flat("300.00")], effective_date=date(2026, 1, 2)))
    [invoice] = ledger.bill(date(2026, 2, 1)).invoices
    # Jan 2-31 = 30 of 31 days: credit 3000 x 30/31 = 2903.23, charge 300 x 30/31 = 290.32, Feb 300.00
    assert invoice.invoice_total == D("-2903.23") + D("290.32") + D("300.00")
    assert invoice.doc_type == "credit_note"
    assert invoice.credits == date(2026, 1, 1)  # its credit takes back what January's invoice billed


def test_cancellation_mid_period_gives_a_credit_note_on_the_end_date() -> None:
    ledger = Ledger((date(2026, 6, 1), make([seats("20")], contract_start_date=date(2026, 6, 1))))
    ledger.bill(date(2026, 8, 1))
    ledger.amend(
        date(2026, 8, 16),
        make(
            [seats("20")],
            contract_start_date=date(2026, 6, 1),
            contract_end_date=date(2026, 8, 15),
            effective_date=date(2026, 8, 16),
        ),
    )
    plan = ledger.bill(date(2026, 12, 31))
    [credit] = plan.invoices
    assert (credit.doc_type, credit.billing_date, credit.invoice_total) == (
        "credit_note",
        date(2026, 8, 16),
        D("-464.52"),
    )
    assert credit.credits == date(2026, 8, 1)  # the invoice it credits: August's
    assert ledger.plan(date(2027, 6, 1)).invoices == []


def test_a_credit_note_taking_back_from_two_invoices_names_neither() -> None:
    ledger = Ledger((date(2026, 6, 1), make([seats("20")], contract_start_date=date(2026, 6, 1))))
    first = ledger.bill(date(2026, 8, 1))
    assert {d.credits for d in first.invoices} == {None}  # invoices credit nothing
    ledger.amend(
        date(2026, 7, 16),
        make(
            [seats("20")],
            contract_start_date=date(2026, 6, 1),
            contract_end_date=date(2026, 7, 15),
            effective_date=date(2026, 7, 16),
        ),
    )
    [credit] = ledger.bill(date(2026, 12, 31)).invoices
    # July 16-31 (16 of 31 days of 900.00: 464.52) and all of August: two invoices' charges
    assert (credit.doc_type, credit.invoice_total) == ("credit_note", D("-464.52") - D("900.00"))
    assert credit.credits is None


def test_removed_line_is_credited_for_the_rest_of_its_paid_period() -> None:
    ledger = Ledger((date(2026, 1, 1), make([flat("310.00"), seats("2", "31.00")])))
    ledger.bill(date(2026, 1, 1))
    ledger.amend(date(2026, 1, 11), make([flat("310.00")], effective_date=date(2026, 1, 11)))
    [invoice] = ledger.bill(date(2026, 2, 1)).invoices
    # seats were 62.00 for January; Jan 11-31 is 21 days: credit 62 x 21/31 = 42.00
    assert sorted(line.billed_amount for line in invoice.lines) == [D("-42.00"), D("310.00")]


def test_graduated_with_tier_flat_fee_and_line_percent_discount() -> None:
    tiers = [
        {"up_to": "10", "unit_price": "50.00", "flat_fee": "100.00"},
        {"up_to": "50", "unit_price": "40.00"},
        {"up_to": None, "unit_price": "30.00"},
    ]
    line = {
        "line_ref": "s",
        "product_ref": "seats",
        "quantity": "60",
        "pricing": {"model": "graduated", "tiers": tiers},
        "discount": {"percent": "10"},
    }
    [invoice] = Ledger((date(2026, 1, 1), make([line]))).bill(date(2026, 1, 1)).invoices
    # 10 x 50 + 100 + 40 x 40 + 10 x 30 = 2500.00, less 10% = 2250.00
    [billed] = invoice.lines
    assert (billed.amount, billed.discount, billed.billed_amount) == (D("2500.00"), D("250.000"), D("2250.00"))


def test_volume_and_package_pricing_on_quantities() -> None:
    volume = {
        "model": "volume",
        "tiers": [
            {"up_to": "25", "unit_price": "20"},
            {"up_to": "100", "unit_price": "15", "flat_fee": "50"},
            {"up_to": None, "unit_price": "12"},
        ],
    }
    package = {"model": "package", "package_size": "10", "package_price": "99.00", "free_units": "5"}
    lines = [
        {"line_ref": "v", "product_ref": "seats", "quantity": "40", "pricing": volume},  # 40 x 15 + 50 = 650
        {"line_ref": "p", "product_ref": "seats", "quantity": "26", "pricing": package},  # 21 paid -> 3 packs = 297
    ]
    [invoice] = Ledger((date(2026, 1, 1), make(lines, currency="EUR"))).bill(date(2026, 1, 1)).invoices
    assert [line.billed_amount for line in invoice.lines] == [D("650.00"), D("297.00")]


def test_usage_is_rated_in_arrears_on_the_period_aggregate() -> None:
    line = {
        "line_ref": "api",
        "product_ref": "api",
        "charge": "usage",
        "pricing": {"model": "package", "package_size": "1000", "package_price": "2.50", "free_units": "10000"},
    }
    asked = []

    def usage(query: UsageQuery) -> Decimal:
        asked.append(query)
        return D("25500")

    [invoice] = Ledger((date(2026, 1, 1), make([line]))).bill(date(2026, 2, 1), usage).invoices
    assert asked == [UsageQuery("api", "sum", date(2026, 1, 1), date(2026, 2, 1))]
    [billed] = invoice.lines
    assert billed.description == "api: sum of quantities 25500"
    # 25,500 - 10,000 free = 15,500 -> 16 packages x 2.50
    assert (billed.quantity, billed.billed_amount, invoice.billing_date) == (D("25500"), D("40.00"), date(2026, 2, 1))


def test_late_usage_is_corrected_on_the_next_invoice() -> None:
    line = {
        "line_ref": "api",
        "product_ref": "api",
        "charge": "usage",
        "pricing": {"model": "per_unit", "unit_price": "0.10"},
    }
    ledger = Ledger((date(2026, 1, 1), make([line])))
    counts = {date(2026, 1, 1): D("1000")}

    def usage(query: UsageQuery) -> Decimal:
        return counts.get(query.start, D(0))

    ledger.bill(date(2026, 2, 1), usage)
    counts[date(2026, 1, 1)] = D("1200")  # 200 January events arrive late
    [invoice] = ledger.bill(date(2026, 3, 1), usage).invoices
    assert sorted((line.slot_start, line.billed_amount) for line in invoice.lines) == [
        (date(2026, 1, 1), D("-100.00")),
        (date(2026, 1, 1), D("120.00")),
        (date(2026, 2, 1), D("0.00")),
    ]


def test_one_time_fee_lands_on_the_invoice_of_its_day() -> None:
    lines = [
        flat("1200.00"),
        {
            "line_ref": "setup",
            "product_ref": "onboarding",
            "charge": "one_time",
            "billing_date": date(2026, 2, 10),
            "pricing": {"model": "flat", "amount": "5000.00"},
        },
    ]
    plan = Ledger((date(2026, 1, 1), make(lines))).bill(date(2026, 3, 1))
    assert totals(plan) == [
        (date(2026, 1, 1), D("1200.00")),
        (date(2026, 2, 1), D("1200.00")),
        (date(2026, 2, 10), D("5000.00")),
        (date(2026, 3, 1), D("1200.00")),
    ]


def test_installments_split_with_the_remainder_on_the_last() -> None:
    line = {
        "line_ref": "hw",
        "product_ref": "hardware",
        "charge": "installments",
        "installments": 3,
        "pricing": {"model": "flat", "amount": "5000.00"},
    }
    plan = Ledger((date(2026, 1, 1), make([line]))).bill(date(2026, 12, 31))
    # 5000 / 3 = 1666.666..: 1666.66, 1666.66 and the remainder 1666.68
    assert totals(plan) == [
        (date(2026, 1, 1), D("1666.66")),
        (date(2026, 2, 1), D("1666.66")),
        (date(2026, 3, 1), D("1666.68")),
    ]


def test_minimum_commitment_true_up_when_the_period_falls_short() -> None:
    line = {
        "line_ref": "api",
        "product_ref": "api",
        "charge": "usage",
        "pricing": {"model": "per_unit", "unit_price": "0.10"},
    }
    ledger = Ledger((date(2026, 1, 1), make([line], minimum_commitment="250.00")))
    usage = {date(2026, 1, 1): D("1000"), date(2026, 2, 1): D("3000")}
    plan = ledger.bill(date(2026, 3, 1), lambda q: usage[q.start])
    # January: 100.00 of usage, true-up 150.00; February: 300.00, above the minimum
    jan, feb = plan.invoices
    assert sorted(line.billed_amount for line in jan.lines) == [D("100.00"), D("150.00")]
    assert [line.billed_amount for line in feb.lines] == [D("300.00")]


def test_contract_discounts_percent_and_amount() -> None:
    percent = Ledger((date(2026, 1, 1), make([flat("999.99")], discount={"percent": "15"}))).bill(date(2026, 1, 1))
    # 15% of 999.99 = 149.9985 -> 150.00 off
    assert [line.billed_amount for line in percent.invoices[0].lines] == [D("999.99"), D("-150.00")]
    assert percent.invoices[0].invoice_total == D("849.99")
    capped = Ledger((date(2026, 1, 1), make([flat("40.00")], discount={"amount": "50.00"}))).bill(date(2026, 1, 1))
    assert capped.invoices[0].invoice_total == D("0.00")  # an amount discount never makes an invoice negative


def test_price_ramp_changes_price_on_its_date_and_prorates_a_step_inside_a_period() -> None:
    line = flat(
        "100.00",
        ramps=[
            {"start_date": "2026-03-01", "pricing": {"model": "flat", "amount": "200.00"}},
            {"start_date": "2026-04-16", "quantity": "1", "pricing": {"model": "flat", "amount": "300.00"}},
        ],
    )
    plan = Ledger((date(2026, 1, 1), make([line]))).bill(date(2026, 4, 1))
    # April: 15 days at 200 of 30 (100.00) + 15 days at 300 of 30 (150.00)
    assert totals(plan) == [
        (date(2026, 1, 1), D("100.00")),
        (date(2026, 2, 1), D("100.00")),
        (date(2026, 3, 1), D("200.00")),
        (date(2026, 4, 1), D("250.00")),
    ]


@pytest.mark.parametrize(
    ("currency", "expected"), [("JPY", D("48387")), ("USD", D("48387.10")), ("KWD", D("48387.097"))]
)
def test_each_currency_rounds_to_its_minor_unit(currency: str, expected: Decimal) -> None:
    # 100,000 x 15/31 = 48387.0967..
    contract = make(
        [flat("100000")], currency=currency, contract_start_date=date(2026, 1, 17), cycle_start_date=date(2026, 1, 1)
    )
    [invoice, _] = Ledger((date(2026, 1, 17), contract)).bill(date(2026, 2, 1)).invoices
    assert invoice.invoice_total == expected


def test_contract_amount_discount_is_prorated_like_the_recurring_charges() -> None:
    # Jan 22-31 is 10 of 31 days: 310.00 x 10/31 = 100.00, discount 62.00 x 10/31 = 20.00
    contract = make(
        [flat("310.00")],
        contract_start_date=date(2026, 1, 22),
        cycle_start_date=date(2026, 2, 1),
        discount={"amount": "62.00"},
    )
    first, second = Ledger((date(2026, 1, 22), contract)).bill(date(2026, 2, 1)).invoices
    assert [line.billed_amount for line in first.lines] == [D("100.00"), D("-20.00")]
    assert second.invoice_total == D("248.00")


def test_minimum_commitment_true_up_is_not_discounted() -> None:
    line = {
        "line_ref": "api",
        "product_ref": "api",
        "charge": "usage",
        "pricing": {"model": "per_unit", "unit_price": "0.10"},
    }
    contract = make([line], minimum_commitment="250.00", discount={"percent": "10"})
    [jan] = Ledger((date(2026, 1, 1), contract)).bill(date(2026, 2, 1), lambda _q: D("1000")).invoices
    # usage 100.00, 10% off it = -10.00, true-up 150.00 (measured before discounts, not discounted)
    assert sorted(line.billed_amount for line in jan.lines) == [D("-10.00"), D("100.00"), D("150.00")]


def test_a_prepaid_usage_amount_is_taken_off_the_rated_amount_and_never_below_zero() -> None:
    line = {
        "line_ref": "api",
        "product_ref": "api",
        "charge": "usage",
        "description": "API calls",
        "prepaid_amount": "100.00",
        "pricing": {"model": "per_unit", "unit_price": "0.10"},
    }
    used = {date(2026, 1, 1): D("1500"), date(2026, 2, 1): D("600")}
    plan = Ledger((date(2026, 1, 1), make([line]))).bill(date(2026, 3, 1), lambda q: used[q.start])
    [january, february] = [invoice.lines[0] for invoice in plan.invoices]
    # January: 1,500 x 0.10 = 150.00, of which 100.00 prepaid; February: 60.00, all prepaid
    assert (january.amount, january.discount, january.billed_amount) == (D("150.00"), D("100.00"), D("50.00"))
    assert january.description == "API calls: sum of quantities 1500, less 100.00 prepaid"
    assert (february.amount, february.billed_amount) == (D("60.00"), D("0.00"))


def test_distinct_and_last_usage_lines_say_what_they_measured() -> None:
    lines = [
        {
            "line_ref": "users",
            "product_ref": "api",
            "charge": "usage",
            "usage_aggregation": "distinct",
            "usage_property": "user_id",
            "pricing": {"model": "per_unit", "unit_price": "5.00"},
        },
        {
            "line_ref": "storage",
            "product_ref": "storage",
            "charge": "usage",
            "usage_aggregation": "last",
            "pricing": {"model": "per_unit", "unit_price": "0.02"},
        },
    ]
    figures = {"distinct": D("12"), "last": D("512.5")}
    asked: list[UsageQuery] = []

    def usage(query: UsageQuery) -> Decimal:
        asked.append(query)
        return figures[query.aggregation]

    [invoice] = Ledger((date(2026, 1, 1), make(lines))).bill(date(2026, 2, 1), usage).invoices
    assert [q.usage_property for q in asked] == ["user_id", None]
    assert [(line.description, line.billed_amount) for line in invoice.lines] == [
        ("api: distinct user_id 12", D("60.00")),
        ("storage: last quantity 512.5", D("10.25")),
    ]


def test_a_contract_stripe_bills_plans_nothing_and_a_switch_between_billers_is_refused() -> None:
    ours = make([seats("2", "49.00")])
    stripes = make([seats("2", "49.00")], billed_by="stripe")
    assert totals(Ledger((ours.contract_start_date, ours)).plan(date(2026, 2, 1))) == [
        (date(2026, 1, 1), D("98.00")),
        (date(2026, 2, 1), D("98.00")),
    ]
    ledger = Ledger((stripes.contract_start_date, stripes))
    assert ledger.plan(date(2026, 2, 1)) == Plan()
    ledger.amend(date(2026, 1, 20), make([seats("5", "49.00")], billed_by="stripe"))
    assert ledger.plan(date(2026, 2, 1)) == Plan()
    ledger.amend(date(2026, 1, 25), make([seats("5", "49.00")]))
    with pytest.raises(ValueError, match="billed by different systems"):
        ledger.plan(date(2026, 2, 1))
