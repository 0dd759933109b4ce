"""Monitor evaluation: worked examples with answers computed by hand, and a property: evaluating every
day as it comes (knowing only the versions effective by then) equals a later backfill."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from billbridge.billing.engine import Version
from billbridge.billing.monitors import (
    Condition,
    ContractSeries,
    ContractWatch,
    InvoiceFact,
    MonitorDefinition,
    UsageWatch,
    check_against_lines,
    contract_value,
    crossings,
    current_period,
    holds,
    increment,
    usage_value,
)
from billbridge.billing.usage_periods import DailyUsage, UsageQuery, aggregate
from tests.billing.test_engine import flat, make, seats

D = Decimal


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def watch(item: str, **more: Any) -> ContractWatch:
    return ContractWatch(item=item, **more)


def test_flat_fee_amended_mid_period_amount_billed_amount_billed_days_net_and_increment() -> None:
    # 310.00 a month from Jan 1; from Jan 17 (amendment) 620.00. January has 31 days.
    v1 = Version(1, date(2026, 1, 1), make([flat("310.00")]))
    v2 = Version(2, date(2026, 1, 17), make([flat("620.00")], effective_date=date(2026, 1, 17)))
    versions = [v1, v2]

    def on(item: str, day: date) -> Any:
        line = {"line_ref": "fee"} if item in ("amount", "billed_amount", "billed_days") else {}
        return contract_value(versions, watch(item, **line), day)

    assert (on("amount", date(2026, 1, 16)), on("amount", date(2026, 1, 17))) == (D("310.00"), D("620.00"))
    # Jan 16 knows only v1: the whole month at 310. Jan 17: 16 days at 310 + 15 days at 620 = 160 + 300.
    assert on("billed_amount", date(2026, 1, 16)) == D("310.00")
    assert on("billed_amount", date(2026, 1, 17)) == D("460.00")
    assert on("billed_days", date(2026, 1, 17)) == D(31)
    assert increment("number", on("billed_amount", date(2026, 1, 17)), on("billed_amount", date(2026, 1, 16))) == D(
        "150.00"
    )
    # February: a whole month at 620, no increment from Feb 1 to Feb 2
    assert on("billed_amount", date(2026, 2, 1)) == on("billed_amount", date(2026, 2, 2)) == D("620.00")
    assert on("end_date", date(2026, 2, 10)) == date(2026, 2, 28)
    assert on("start_date", date(2026, 2, 10)) == date(2026, 2, 1)
    assert on("cycle_unit", date(2026, 2, 10)) == "month"
    assert on("cycle_length", date(2026, 2, 10)) == D(1)
    assert on("contract_start_date", date(2026, 2, 10)) == date(2026, 1, 1)


def test_a_contract_ended_by_an_amendment_bills_fewer_days() -> None:
    # 300.00 a month in April (30 days); amended on Apr 5 to end on Apr 10: 10 days = 100.00
    v1 = Version(1, date(2026, 1, 1), make([flat("300.00")]))
    v2 = Version(
        2,
        date(2026, 4, 5),
        make([flat("300.00")], effective_date=date(2026, 4, 5), contract_end_date=date(2026, 4, 10)),
    )
    got = {
        d: contract_value([v1, v2], watch("billed_days", line_ref="fee"), d)
        for d in days(date(2026, 4, 4), date(2026, 4, 11))
    }
    assert got[date(2026, 4, 4)] == D(30)
    assert got[date(2026, 4, 5)] == got[date(2026, 4, 10)] == D(10)
    assert got[date(2026, 4, 11)] is None  # the contract no longer serves that day
    billed = contract_value([v1, v2], watch("billed_amount", line_ref="fee"), date(2026, 4, 6))
    assert billed == D("100.00")


def test_per_unit_items_and_the_invoice_total_of_the_current_period() -> None:
    versions = [Version(1, date(2026, 1, 1), make([seats("10", "45.00")]))]
    on = date(2026, 3, 15)
    assert contract_value(versions, watch("quantity", product_ref="seats"), on) == D(10)
    assert contract_value(versions, watch("unit_price", product_ref="seats"), on) == D("45.00")
    assert contract_value(versions, watch("amount", product_ref="seats"), on) == D("450.00")
    invoices = [InvoiceFact(date(2026, 2, 1), D("450.00")), InvoiceFact(date(2026, 3, 1), D("450.00"))]
    invoices.append(InvoiceFact(date(2026, 3, 20), D("-45.00")))  # a credit note after the day: not yet
    assert contract_value(versions, watch("invoice_total"), on, invoices) == D("450.00")
    assert contract_value(versions, watch("invoice_total"), date(2026, 3, 20), invoices) == D("405.00")


def test_an_item_the_lines_pricing_model_lacks_is_refused_listing_the_ones_it_has() -> None:
    contract = make([flat("10.00")])
    problem = check_against_lines(watch("quantity", line_ref="fee"), contract.lines, "contract C-1")
    assert problem == (
        "item 'quantity' is not an item of recurring line fee priced flat (of contract C-1); "
        "its items are amount, billed_amount, billed_days"
    )
    volume = {"model": "volume", "tiers": [{"up_to": None, "unit_price": "1"}]}
    usage = make([{"line_ref": "api", "product_ref": "api", "charge": "usage", "pricing": volume}])
    assert check_against_lines(watch("amount", line_ref="api"), usage.lines, "contract C-1") is None
    assert "its items are amount, usage_quantity, billed_amount" in (
        check_against_lines(watch("billed_days", line_ref="api"), usage.lines, "contract C-1") or ""
    )
    assert check_against_lines(watch("amount", line_ref="nope"), usage.lines, "contract C-1") == (
        "contract C-1 has no line nope"
    )


def test_definitions_refuse_what_does_not_fit_naming_the_field() -> None:
    base = {"name": "m", "source": "contract", "entity_ref": "us"}
    with pytest.raises(ValidationError) as caught:
        MonitorDefinition.model_validate({**base, "contract": {"item": "colour"}})
    assert caught.value.errors()[0]["loc"] == ("contract", "item")
    with pytest.raises(ValidationError, match="does not apply to a date"):
        MonitorDefinition.model_validate(
            {**base, "contract": {"item": "end_date"}, "conditions": [{"when": "above", "value": "1"}]}
        )
    with pytest.raises(ValidationError, match="float"):
        Condition.model_validate({"when": "above", "value": 1.5})
    with pytest.raises(ValidationError, match="window_days"):
        UsageWatch.model_validate({"product_ref": "api", "window": "rolling"})


def _per_day(quantities: dict[date, list[str]]) -> dict[date, DailyUsage]:
    out = {}
    for day, qs in quantities.items():
        values = [D(q) for q in qs]
        out[day] = DailyUsage(sum(values, D(0)), max(values), len(values))
    return out


def test_usage_monitor_across_a_period_boundary_and_a_late_event() -> None:
    # Monthly contract billing api usage; 5 + 7 on Jan 30-31, 2 on Feb 1.
    usage_line = {
        "line_ref": "api",
        "product_ref": "api",
        "charge": "usage",
        "pricing": {"model": "per_unit", "unit_price": "0.10"},
    }
    contract = make([usage_line])
    versions = [Version(1, date(2026, 1, 1), contract)]
    per_day = _per_day({date(2026, 1, 30): ["5"], date(2026, 1, 31): ["7"], date(2026, 2, 1): ["2"]})
    w = UsageWatch(product_ref="api")
    jan31 = usage_value(w, date(2026, 1, 31), per_day, period=current_period(contract, date(2026, 1, 31)))
    feb1 = usage_value(w, date(2026, 2, 1), per_day, period=current_period(contract, date(2026, 2, 1)))
    assert (jan31, feb1) == (D(12), D(2))  # the period restarts on Feb 1
    assert increment("number", feb1, jan31) == D(-10)
    rolling = UsageWatch(product_ref="api", window="rolling", window_days=2, aggregation="max")
    assert usage_value(rolling, date(2026, 2, 1), per_day) == D(7)  # Jan 31 and Feb 1
    # the contract line's own item over the same data
    lookup = lambda q: aggregate(per_day, q)  # noqa: E731
    assert contract_value(versions, watch("usage_quantity", line_ref="api"), date(2026, 1, 31), usage=lookup) == D(12)
    assert contract_value(versions, watch("billed_amount", line_ref="api"), date(2026, 1, 31), usage=lookup) == D(
        "1.20"
    )
    # a late event for Jan 31 arrives: recomputing Jan 31 shows it
    per_day[date(2026, 1, 31)] = _per_day({date(2026, 1, 31): ["7", "3"]})[date(2026, 1, 31)]
    assert usage_value(w, date(2026, 1, 31), per_day, period=current_period(contract, date(2026, 1, 31))) == D(15)


def test_a_renewal_alert_fires_once_per_crossing() -> None:
    # A yearly contract ending 2026-12-31; end_date within 30 days starts to hold on Dec 1.
    versions = [
        Version(1, date(2026, 1, 1), make([flat("1200.00")], cycle_unit="year", contract_end_date=date(2026, 12, 31)))
    ]
    renewal = Condition(when="within_days", value=D(30))
    values = {d: contract_value(versions, watch("end_date"), d) for d in days(date(2026, 11, 1), date(2026, 12, 31))}
    fired = [d for d in days(date(2026, 11, 3), date(2026, 12, 31)) if crossings([renewal], d, values)]
    assert fired == [date(2026, 12, 1)]


def test_conditions_on_values_and_increments() -> None:
    day = date(2026, 5, 2)
    assert holds(Condition(when="above", value=D(100)), day, D("100.01"), None)
    assert not holds(Condition(when="above", value=D(100)), day, D(100), None)
    assert holds(Condition(when="increment_above", value=D(10)), day, D(25), D(14))
    assert holds(Condition(when="increment_percent_above", value=D(50)), day, D(151), D(100))
    assert holds(Condition(when="increment_percent_below", value=D(-20)), day, D(79), D(100))
    assert not holds(Condition(when="increment_percent_below", value=D(-20)), day, D(80), D(100))
    assert not holds(Condition(when="increment_above", value=D(0)), day, D(5), None)  # no previous day


amounts = st.integers(min_value=0, max_value=10**7).map(lambda cents: D(cents) / 100)


@st.composite
def amended_contracts(draw: st.DrawFn) -> list[Version]:
    start = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 60)))
    unit = draw(st.sampled_from(["day", "week", "month", "year"]))
    length = draw(st.integers(1, 3))
    terms: dict[str, Any] = {"contract_start_date": start, "cycle_unit": unit, "cycle_length": length}
    versions = [Version(1, start, make([flat(str(draw(amounts))), seats(str(draw(st.integers(0, 50))))], **terms))]
    for n in range(draw(st.integers(0, 3))):
        effective = start + timedelta(days=draw(st.integers(1, 80)))
        ends = draw(st.one_of(st.none(), st.integers(0, 120).map(lambda k, e=effective: e + timedelta(days=k))))
        contract = make(
            [flat(str(draw(amounts))), seats(str(draw(st.integers(0, 50))))],
            **terms,
            effective_date=effective,
            contract_end_date=ends,
        )
        versions.append(Version(n + 2, effective, contract))
    return versions


@settings(max_examples=60, deadline=None)
@given(amended_contracts(), st.sampled_from(["billed_amount", "billed_days", "amount", "end_date", "quantity"]))
def test_backfill_equals_day_by_day_evaluation(versions: list[Version], item: str) -> None:
    """Day by day, only the versions effective by then exist (each imported on its effective day);
    the backfill knows them all. Their values agree on every day."""
    w = watch(item, product_ref="seats" if item == "quantity" else "platform") if item != "end_date" else watch(item)
    first = versions[0].effective_date
    series = ContractSeries(versions)  # the backfill's way: one contract's days in a row, cached
    for day in days(first, first + timedelta(days=150)):
        seen = [v for v in versions if v.version_no == 1 or v.effective_date <= day]
        assert contract_value(seen, w, day) == series.value(w, day), day


def test_usage_query_is_the_billing_aggregate() -> None:
    per_day = _per_day({date(2026, 1, 1): ["1", "4"], date(2026, 1, 2): ["2"]})
    q = UsageQuery("api", "max", date(2026, 1, 1), date(2026, 1, 3))
    assert aggregate(per_day, q) == usage_value(
        UsageWatch(product_ref="api", aggregation="max"), date(2026, 1, 2), per_day
    )
