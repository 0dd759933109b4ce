"""``fresh_lines`` (what revenue recognition values a one-version contract's term with) against the
planner itself: for random contracts of every charge kind, with ramps, line dates, line and contract
discounts, the lines are the planner's, minimum-commitment true-ups aside."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from billbridge.billing.engine import DraftLine, Version, fresh_lines, plan_invoices
from billbridge.billing.model import Contract

from .test_engine_properties import pricings

START = date(2026, 1, 1)
money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=2)
offsets = st.integers(-20, 400)


def day(offset: int) -> str:
    return (START + timedelta(days=offset)).isoformat()


@st.composite
def discounts(draw: st.DrawFn) -> dict[str, Any] | None:
    kind = draw(st.sampled_from([None, "percent", "amount"]))
    if kind == "percent":
        return {"percent": str(draw(st.sampled_from([5, 10, 12.5, 100])))}
    if kind == "amount":
        return {"amount": str(draw(money))}
    return None


@st.composite
def lines(draw: st.DrawFn, i: int) -> dict[str, Any]:
    charge = draw(st.sampled_from(["recurring", "recurring", "usage", "one_time", "installments"]))
    line: dict[str, Any] = {
        "line_ref": f"l{i}",
        "product_ref": "p",
        "charge": charge,
        "quantity": str(draw(st.integers(0, 50))),
        "pricing": draw(pricings()),
    }
    if draw(st.booleans()):
        line["billing_timing"] = draw(st.sampled_from(["in_advance", "in_arrears"]))
    if charge == "installments":
        line["installments"] = draw(st.integers(1, 7))
    if charge == "one_time" and draw(st.booleans()):
        line["billing_date"] = day(draw(offsets))
    if draw(st.booleans()):
        a, b = sorted((draw(offsets), draw(offsets)))
        line["start_date"] = day(a)
        if draw(st.booleans()):
            line["end_date"] = day(b)
    if charge == "recurring" and draw(st.booleans()):
        steps = sorted(set(draw(st.lists(st.integers(1, 400), min_size=1, max_size=3))))
        line["ramps"] = [
            {"start_date": day(s), "quantity": str(draw(st.integers(0, 60)))}
            if draw(st.booleans())
            else {"start_date": day(s), "pricing": draw(pricings())}
            for s in steps
        ]
    found = draw(discounts())
    if found is not None:
        line["discount"] = found
    return line


@st.composite
def contracts(draw: st.DrawFn) -> Contract:
    start = START + timedelta(days=draw(st.integers(0, 40)))
    n = draw(st.integers(1, 3))
    return Contract.model_validate(
        {
            "contract_ref": "C",
            "customer_ref": "c",
            "entity_ref": "e",
            "currency": draw(st.sampled_from(["USD", "JPY", "KWD"])),
            "contract_start_date": start,
            "contract_end_date": start + timedelta(days=draw(st.integers(0, 500))),
            "cycle_length": draw(st.integers(1, 3)),
            "cycle_unit": draw(st.sampled_from(["day", "week", "month", "year"])),
            "cycle_start_date": start + timedelta(days=draw(st.integers(0, 30))),
            "billing_timing": draw(st.sampled_from(["in_advance", "in_arrears"])),
            "minimum_commitment": draw(st.none() | money.map(str)),
            "discount": draw(discounts()),
            "lines": [draw(lines(i)) for i in range(n)],
        }
    )


def per_line(lines: list[DraftLine]) -> tuple[dict[str, list[DraftLine]], Counter[DraftLine]]:
    """Each line's pieces in order, and the contract discounts (one per document) as a multiset."""
    out: dict[str, list[DraftLine]] = defaultdict(list)
    discounts: Counter[DraftLine] = Counter()
    for line in lines:
        if line.kind == "discount":
            discounts[line] += 1
        elif line.kind != "minimum":
            out[line.line_ref].append(line)
    return dict(out), discounts


@settings(max_examples=150, deadline=None)
@given(contracts())
def test_fresh_lines_are_the_planners_lines(contract: Contract) -> None:
    version = Version(1, contract.contract_start_date, contract)
    as_of = date(2100, 1, 1)
    plan = plan_invoices("C", [version], as_of)
    planned = [line for draft in plan.invoices for line in draft.lines] + plan.pending
    assert per_line(fresh_lines(version, as_of)) == per_line(planned)


def test_a_steady_monthly_line_priced_once_matches_a_worked_example() -> None:
    """100.00 a month from 2026-01-15, anchored on the 1st, to 2026-03-31, billed in advance with 10% off
    the contract: a partial January (17 of 31 days: 54.84), February and March in full; each document
    its own discount (-5.48, -10.00, -10.00)."""
    contract = Contract.model_validate(
        {
            "contract_ref": "C",
            "customer_ref": "c",
            "entity_ref": "e",
            "currency": "USD",
            "contract_start_date": "2026-01-15",
            "contract_end_date": "2026-03-31",
            "cycle_start_date": "2026-02-01",
            "discount": {"percent": "10"},
            "lines": [{"line_ref": "l", "product_ref": "p", "pricing": {"model": "flat", "amount": "100"}}],
        }
    )
    got = fresh_lines(Version(1, date(2026, 1, 15), contract), date(2100, 1, 1))
    assert [(x.span_start.isoformat(), x.billed_amount) for x in got if x.kind == "recurring"] == [
        ("2026-01-15", Decimal("54.84")),
        ("2026-02-01", Decimal("100.00")),
        ("2026-03-01", Decimal("100.00")),
    ]
    assert sorted(x.billed_amount for x in got if x.kind == "discount") == [
        Decimal("-10.00"),
        Decimal("-10.00"),
        Decimal("-5.48"),
    ]
