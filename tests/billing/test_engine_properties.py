"""Properties of invoice planning over random contracts, amendments and billing dates."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from billbridge.billing.currency import quantum
from billbridge.billing.engine import Version, as_billed, plan_invoices
from billbridge.billing.model import Contract

START = date(2026, 1, 1)
currencies = st.sampled_from(["USD", "JPY", "KWD"])
money = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("100000"), places=3)
quantity = st.integers(min_value=0, max_value=500).map(Decimal)


@st.composite
def pricings(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(["flat", "per_unit", "graduated", "volume", "package"]))
    if kind == "flat":
        return {"model": "flat", "amount": str(draw(money))}
    if kind == "per_unit":
        return {"model": "per_unit", "unit_price": str(draw(money))}
    if kind == "package":
        return {"model": "package", "package_size": str(draw(st.integers(1, 50))), "package_price": str(draw(money))}
    bounds = sorted(draw(st.sets(st.integers(1, 400), min_size=1, max_size=3)))
    tiers = [{"up_to": str(b), "unit_price": str(draw(money)), "flat_fee": str(draw(money))} for b in bounds]
    tiers.append({"up_to": None, "unit_price": str(draw(money))})
    return {"model": kind, "tiers": tiers}


@st.composite
def contracts(draw: st.DrawFn, currency: str, effective: date | None = None) -> Contract:
    start = START + timedelta(days=draw(st.integers(0, 40)))
    n_lines = draw(st.integers(1, 3))
    lines = []
    for i in range(n_lines):
        line = {"line_ref": f"l{i}", "product_ref": "p", "quantity": str(draw(quantity)), "pricing": draw(pricings())}
        if draw(st.booleans()):
            line["billing_timing"] = draw(st.sampled_from(["in_advance", "in_arrears"]))
        lines.append(line)
    end = draw(st.none() | st.integers(20, 500).map(lambda d: start + timedelta(days=d)))
    return Contract.model_validate(
        {
            "contract_ref": "C",
            "customer_ref": "c",
            "entity_ref": "e",
            "currency": currency,
            "contract_start_date": START,
            "contract_end_date": end,
            "cycle_length": draw(st.integers(1, 3)),
            "cycle_unit": draw(st.sampled_from(["day", "week", "month"])),
            "cycle_start_date": start,
            "effective_date": effective,
            "lines": lines,
        }
    )


@settings(max_examples=60, deadline=None)
@given(data=st.data(), currency=currencies, days=st.integers(0, 200))
def test_totals_are_the_sum_of_rounded_lines_and_a_rerun_creates_nothing(
    data: st.DataObject, currency: str, days: int
) -> None:
    contract = data.draw(contracts(currency))
    versions = [Version(1, START, contract)]
    as_of = START + timedelta(days=days)
    plan = plan_invoices("C", versions, as_of)
    unit = quantum(currency)
    billed, dates = [], set()
    for invoice in plan.invoices:
        assert invoice.invoice_total == sum((line.billed_amount for line in invoice.lines), Decimal(0))
        assert all(line.billed_amount % unit == 0 for line in invoice.lines)
        assert (invoice.doc_type == "credit_note") == (invoice.invoice_total < 0)
        billed += as_billed(invoice)
        dates.add(invoice.billing_date)
    again = plan_invoices("C", versions, as_of, billed, dates)
    assert again.invoices == [] and again.pending == []


@settings(max_examples=60, deadline=None)
@given(data=st.data(), currency=currencies)
def test_amending_between_runs_ends_with_the_money_of_the_final_terms(data: st.DataObject, currency: str) -> None:
    """Bill, amend, bill again...: per line and period the net billed (with adjustments still
    waiting for a billing date) equals billing the final timeline at once, up to one rounding
    per line written."""
    versions = [Version(1, START, data.draw(contracts(currency)))]
    billed: list = []
    dates: set[date] = set()
    as_of = START
    for number in range(2, data.draw(st.integers(2, 4)) + 1):
        as_of += timedelta(days=data.draw(st.integers(1, 90)))
        for invoice in plan_invoices("C", versions, as_of, billed, dates).invoices:
            billed += as_billed(invoice)
            dates.add(invoice.billing_date)
        effective = START + timedelta(days=data.draw(st.integers(0, (as_of - START).days + 30)))
        versions.append(Version(number, effective, data.draw(contracts(currency, effective))))
    as_of += timedelta(days=data.draw(st.integers(0, 60)))
    final = plan_invoices("C", versions, as_of, billed, dates)
    incremental = billed + [item for invoice in final.invoices for item in as_billed(invoice)] + list(final.pending)

    fresh = [item for invoice in plan_invoices("C", versions, as_of).invoices for item in as_billed(invoice)]

    def per_slot(items: list) -> tuple[dict, dict]:
        sums: dict = defaultdict(Decimal)
        counts: dict = defaultdict(int)
        for item in items:
            if item.kind != "discount":
                sums[(item.line_ref, item.slot_start)] += item.billed_amount
                counts[(item.line_ref, item.slot_start)] += 1
        return sums, counts

    got, got_n = per_slot(incremental)
    want, want_n = per_slot(fresh)
    half_unit = quantum(currency) / 2
    for key in set(got) | set(want):
        tolerance = half_unit * (got_n[key] + want_n[key])
        assert abs(got[key] - want[key]) <= tolerance, key
