"""``planned_lines`` (what revenue recognition values an amended contract's term with) against the
planner itself: random contracts of every charge kind, amended once or twice from random days (lines repriced,
requantified, dropped or added, the term cut or extended, the contract discount changed), after
billing under the first version and possibly again under all (credits, corrections, usage billed at
a quantity the plan does not expect): the lines are the planner's, minimum-commitment true-ups aside."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from billbridge.billing.engine import BilledItem, DraftLine, Version, as_billed, plan_invoices, planned_lines
from billbridge.billing.model import Contract

from .test_engine_properties import pricings
from .test_fresh_lines import contracts, discounts, lines

FAR = date(2100, 1, 1)


@st.composite
def amendments(draw: st.DrawFn, contract: Contract) -> Contract:
    """The contract with its lines changed, maybe its end and its discount: a later version's terms."""
    data: dict[str, Any] = contract.model_dump(mode="json", exclude={"effective_date"})
    changed = []
    for line in data["lines"]:
        action = draw(st.sampled_from(["keep", "keep", "quantity", "price", "drop"]))
        if action == "quantity":
            line = dict(line, quantity=str(Decimal(line["quantity"]) + draw(st.integers(1, 9))))
        elif action == "price":
            line = dict(line, pricing=draw(pricings()))
        if action != "drop":
            changed.append(line)
    if draw(st.booleans()) or not changed:
        changed.append(draw(lines(1 + max(int(line["line_ref"][1:]) for line in data["lines"]))))  # a new ref
    data["lines"] = changed
    if draw(st.booleans()):
        start = date.fromisoformat(data["contract_start_date"])
        data["contract_end_date"] = (start + timedelta(days=draw(st.integers(0, 450)))).isoformat()
    if draw(st.booleans()):
        data["discount"] = draw(discounts())
    return Contract.model_validate(data)


def billed_by(plan_docs: Any) -> list[BilledItem]:
    return [item for draft in plan_docs for item in as_billed(draft)]


def planner_lines(versions: list[Version], billed: list[BilledItem]) -> Counter[DraftLine]:
    plan = plan_invoices("C", versions, FAR, billed)
    return Counter(
        line for line in [*(x for d in plan.invoices for x in d.lines), *plan.pending] if line.kind != "minimum"
    )


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_planned_lines_are_the_planners_lines_for_amended_and_billed_contracts(data: st.DataObject) -> None:
    first = data.draw(contracts())
    start = first.contract_start_date
    second = data.draw(amendments(first))
    effective = start + timedelta(days=data.draw(st.integers(0, 400)))
    versions = [Version(1, start, first), Version(2, effective, second)]
    if data.draw(st.booleans()):  # and amended again, on the same day or later
        third = data.draw(amendments(second))
        versions.append(Version(3, effective + timedelta(days=data.draw(st.integers(0, 200))), third))
    used = Decimal(data.draw(st.integers(0, 30)))  # usage billed at this quantity (the plan expects none)

    def usage(_query: object) -> Decimal:
        return used

    billed: list[BilledItem] = []
    if data.draw(st.integers(0, 3)):  # billed under the first version (mostly)
        day = start + timedelta(days=data.draw(st.integers(0, 400)))
        plan = plan_invoices("C", versions[:1], day, usage=usage)
        billed += billed_by(plan.invoices)
        if data.draw(st.booleans()):  # and again under all: credits and corrections
            later = day + timedelta(days=data.draw(st.integers(0, 300)))
            dates = {d.billing_date for d in plan.invoices}
            billed += billed_by(plan_invoices("C", versions, later, billed, dates, usage=usage).invoices)
    found = Counter(planned_lines(versions, FAR, billed))
    assert found == planner_lines(versions, billed)


@settings(max_examples=60, deadline=None)
@given(contracts())
def test_planned_lines_of_one_version_with_nothing_billed_are_the_planners(contract: Contract) -> None:
    versions = [Version(1, contract.contract_start_date, contract)]
    assert Counter(planned_lines(versions, FAR)) == planner_lines(versions, [])
