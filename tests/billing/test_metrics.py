"""The finance metrics' definitions, on hand-computed examples and as properties."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from billbridge.billing.engine import Version
from billbridge.billing.metrics.collections import Collected, DocumentGroup, aging, collections, monthly_flows
from billbridge.billing.metrics.contracts import contract_value, customer_contracts
from billbridge.billing.metrics.forecast import PaymentHistory, Receivable, delays, forecast
from billbridge.billing.metrics.products import collected_per_line
from billbridge.billing.metrics.recurring import (
    customer_mrr,
    month_movements,
    movements,
    mrr,
    mrr_steps,
    next_month,
)
from billbridge.billing.model import Contract, ContractLine

D = Decimal


def contract(ref: str, customer: str, start: date, lines: list[dict[str, Any]], **terms: Any) -> Contract:
    return Contract.model_validate(
        {
            "contract_ref": ref,
            "customer_ref": customer,
            "entity_ref": "us",
            "currency": "USD",
            "contract_start_date": start,
            "lines": lines,
            **terms,
        }
    )


PLATFORM = {"line_ref": "platform", "product_ref": "platform", "pricing": {"model": "flat", "amount": "1200.00"}}


def seats(quantity: int) -> dict[str, Any]:
    return {
        "line_ref": "seats",
        "product_ref": "seats",
        "quantity": str(quantity),
        "pricing": {"model": "per_unit", "unit_price": "45.00"},
    }


def acme_versions() -> list[Version]:
    """Acme upgrades (10 seats from 15 March), downgrades (4 seats from May) and ends in June."""
    start = date(2026, 1, 1)
    v1 = contract("A", "acme", start, [PLATFORM])
    v2 = contract("A", "acme", start, [PLATFORM, seats(10)])
    v3 = contract("A", "acme", start, [PLATFORM, seats(4)])
    v4 = contract("A", "acme", start, [PLATFORM, seats(4)], contract_end_date=date(2026, 6, 30))
    return [
        Version(1, start, v1),
        Version(2, date(2026, 3, 15), v2),
        Version(3, date(2026, 5, 1), v3),
        Version(4, date(2026, 6, 10), v4),
    ]


def world() -> list[list[Version]]:
    """Acme as above, then back in September on a yearly 6,000 contract; Beta from February, quarterly 900."""
    back = contract(
        "B",
        "acme",
        date(2026, 9, 1),
        [{"line_ref": "x", "product_ref": "platform", "pricing": {"model": "flat", "amount": "6000.00"}}],
        cycle_unit="year",
    )
    beta = contract(
        "C",
        "beta",
        date(2026, 2, 1),
        [{"line_ref": "x", "product_ref": "platform", "pricing": {"model": "flat", "amount": "900.00"}}],
        cycle_length=3,
    )
    return [acme_versions(), [Version(1, back.contract_start_date, back)], [Version(1, beta.contract_start_date, beta)]]


def test_movements_of_a_customer_that_upgrades_downgrades_churns_and_comes_back() -> None:
    contracts = world()
    steps = mrr_steps(contracts[:2]) + mrr_steps(contracts[2:])
    found = [(m.customer_ref, m.month, m.kind, m.amount) for m in movements(steps)]
    assert found == [
        ("acme", date(2026, 1, 1), "new", D("1200.00")),
        ("acme", date(2026, 3, 1), "expansion", D("450.00")),  # 10 seats at 45
        ("acme", date(2026, 5, 1), "contraction", D("-270.00")),  # down to 4 seats
        ("acme", date(2026, 7, 1), "churn", D("-1380.00")),  # ended with June: no other contract
        ("acme", date(2026, 9, 1), "reactivation", D("500.00")),  # 6,000 a year
        ("beta", date(2026, 2, 1), "new", D("300.00")),  # 900 a quarter
    ]
    # MRR on days, under the version in effect then
    assert customer_mrr(contracts, date(2026, 3, 14)) == {
        ("us", "USD", "acme"): D("1200.00"),
        ("us", "USD", "beta"): D("300.00"),
    }
    assert customer_mrr(contracts, date(2026, 3, 15))[("us", "USD", "acme")] == D("1650.00")
    assert customer_mrr(contracts, date(2026, 8, 1)) == {("us", "USD", "beta"): D("300.00")}


def test_month_movements_follow_mrr_and_give_retention() -> None:
    moves = movements(mrr_steps(world()[:2]) + mrr_steps(world()[2:]))
    totals = {}
    for m in moves:
        key = ("us", "USD", m.month, m.kind)
        amount, count = totals.get(key, (D(0), 0))
        totals[key] = (amount + m.amount, count + 1)
    months = month_movements([(*k, a, n) for k, (a, n) in totals.items()], {}, date(2026, 1, 1), date(2026, 9, 30))
    assert [(m.month.month, m.end_mrr) for m in months] == [
        (1, D("1200.00")),
        (2, D("1500.00")),
        (3, D("1950.00")),
        (4, D("1950.00")),
        (5, D("1680.00")),
        (6, D("1680.00")),
        (7, D("300.00")),
        (8, D("300.00")),
        (9, D("800.00")),
    ]
    march, may, september = months[2], months[4], months[8]
    assert march.net_retention == D("1.3") and march.gross_retention == 1  # 1,950 / 1,500; no loss
    assert may.net_retention == may.gross_retention == D("1680.00") / D("1950.00")
    assert september.customers["reactivation"] == 1 and september.net_retention == 1  # a comeback is not retention


def test_mrr_per_currency_keeps_its_old_meaning() -> None:
    terms = [c[-1].contract for c in world()]
    assert mrr(terms, date(2026, 9, 15)) == {"USD": D("800.00")}  # acme's yearly 500 + beta's 300


def _group(status: str, due: date, total: str, paid: str = "0", doc_type: str = "invoice") -> DocumentGroup:
    return DocumentGroup("us", "USD", doc_type, status, due - timedelta(days=30), due, 1, D(total), D(paid))


AGING_DAY = date(2026, 6, 30)
AGING_GROUPS = [
    _group("sent", date(2026, 7, 5), "100.00"),  # not yet due
    _group("partially_paid", date(2026, 6, 20), "200.00", "50.00"),  # 10 days late, 150 open
    _group("sent", date(2026, 5, 31), "10.00"),  # 30 days: still 1-30
    _group("sent", date(2026, 5, 15), "300.00"),  # 46 days
    _group("sent", date(2026, 4, 1), "400.00"),  # 90 days
    _group("sent", date(2026, 3, 1), "500.00"),  # 121 days
    _group("paid", date(2026, 1, 1), "600.00", "600.00"),  # settled
    _group("void", date(2026, 2, 1), "700.00"),  # not owed
    _group("sent", date(2026, 2, 1), "-50.00", doc_type="credit_note"),  # a credit, not a receivable
]


def test_aging_on_a_fixed_day() -> None:
    [row] = aging(AGING_GROUPS, AGING_DAY)
    assert row.buckets == {
        "current": D("100.00"),
        "1-30": D("160.00"),
        "31-60": D("300.00"),
        "61-90": D("400.00"),
        "over 90": D("500.00"),
    }
    assert (row.receivable, row.late, row.late_invoices) == (D("1460.00"), D("1360.00"), 5)


def test_dso_and_collection_rate_on_a_fixed_day() -> None:
    [row] = collections(AGING_GROUPS, AGING_DAY)
    # invoiced in the 90 days to 30 June (2 April on): 100 + 200 + 10 + 300 (billed 30 days before due)
    assert row.billed_last_90 == D("610.00")
    assert row.dso == D("215.4")  # 1,460 / 610 x 90 = 215.41
    # issued and due in those 90 days: 200 (50 paid), 10 and 300 (nothing paid): 50 / 510
    assert row.collection_rate == D("0.0980")


def test_monthly_flows_count_invoices_credits_and_collections_by_month() -> None:
    flows = monthly_flows(
        AGING_GROUPS,
        [Collected("us", "USD", date(2026, 6, 3), D("50.00")), Collected("us", "USD", date(2025, 12, 30), D("600.00"))],
        date(2026, 1, 1),
        date(2026, 6, 30),
    )
    by_month = {f.month.month: (f.billed, f.credited, f.collected) for f in flows}
    assert by_month[1] == (D("500.00") + D(0), D("50.00"), D(0))  # the 500 invoice; the credit note
    assert by_month[6] == (D("100.00"), D(0), D("50.00"))
    assert by_month[2] == (D(0), D(0), D(0))  # the void invoice counts nothing
    assert len(flows) == 6


def test_forecast_from_a_fixed_history() -> None:
    history = [PaymentHistory("us", "c1", 2, 10), PaymentHistory("us", "c2", 1, -3)]
    known = delays(history)
    assert known.days_for("us", "c1") == 5 and known.days_for("us", "c2") == -3
    assert known.days_for("us", "c3") == 2  # the entity's mean, 7 / 3 days, rounded
    receivables = [
        Receivable("us", "USD", "c1", date(2026, 7, 3), D("100.00")),  # expected 8 July
        Receivable("us", "USD", "c2", date(2026, 7, 10), D("50.00")),  # expected 7 July (pays early)
        Receivable("us", "USD", "c3", date(2026, 6, 20), D("70.00")),  # overdue: expected now
        Receivable("us", "USD", "c1", date(2026, 8, 1), D("200.00"), "projected"),  # expected 6 August
        Receivable("us", "USD", "c3", date(2026, 5, 29), D("900.00")),  # expected 31 May, 31 days ago: doubtful
        Receivable("us", "USD", "c3", date(2026, 5, 30), D("80.00")),  # expected 1 June: 30 days, still expected
    ]
    [result] = forecast(date(2026, 7, 1), receivables, known, {("us", "USD"): D("10")})
    week1, week2 = result.weeks[0], result.weeks[1]
    assert (week1.start, week1.end) == (date(2026, 7, 1), date(2026, 7, 8))
    assert week1.amounts == {"invoiced": D("200.00"), "projected": D("0.00"), "usage": D("70.00")}
    assert week1.invoiced_share == D("0.7407")  # 200 / 270
    assert week2.amounts == {"invoiced": D("100.00"), "projected": D("0.00"), "usage": D("70.00")}
    assert result.weeks[5].amounts["projected"] == D("200.00")  # 5 to 11 August
    july, august = result.months[0], result.months[1]
    assert july.amounts == {"invoiced": D("300.00"), "projected": D("0.00"), "usage": D("310.00")}
    assert august.amounts == {"invoiced": D("0.00"), "projected": D("200.00"), "usage": D("310.00")}
    assert len(result.weeks) == 13 and len(result.months) == 12


def test_contract_value_is_what_the_planner_bills_over_the_term() -> None:
    versions = acme_versions()
    value = contract_value("A", versions, date(2026, 4, 20))
    # Jan, Feb: 1,200; Mar: 1,200 + 17 of 31 days of 450; Apr: 1,650; May, Jun: 1,380 (in advance)
    march_seats = (D(450) * 17 / 31).quantize(D("0.01"))
    assert value.tcv == D(1200) * 3 + march_seats + D(1650) + D(1380) * 2
    assert value.rcv == D(1380) * 2  # May and June are billed after 20 April
    assert value.acv == value.tcv  # a term under a year
    assert value.renewal_date == date(2026, 7, 1)
    [row] = customer_contracts([value], date(2026, 4, 20))
    assert row.renewals == (("A", date(2026, 7, 1)),) and row.active_contracts == 1


def test_an_evergreen_contract_is_valued_over_its_first_year() -> None:
    yearly = contract("E", "acme", date(2026, 1, 1), [PLATFORM])
    value = contract_value("E", [Version(1, yearly.contract_start_date, yearly)], date(2026, 1, 1))
    assert value.tcv == D(1200) * 12 and value.acv == value.tcv and value.renewal_date is None


def test_collected_shares_sum_to_what_the_invoice_received() -> None:
    assert collected_per_line([D("100.00"), D("50.00"), D("-15.00")], D("45.00"), "USD") == [
        D("33.33"),
        D("16.67"),
        D("-5.00"),
    ]
    assert collected_per_line([D("100.00"), D("-15.00")], D("85.00"), "USD") == [D("100.00"), D("-15.00")]


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

_days = st.integers(min_value=0, max_value=400).map(lambda n: date(2026, 1, 1) + timedelta(days=n))
_amounts = st.integers(min_value=1, max_value=10**6).map(lambda n: D(n) / 100)


@st.composite
def customer_contracts_strategy(draw: st.DrawFn) -> list[list[Version]]:
    """A few contracts per customer: monthly, quarterly or yearly fees, some ending, some amended."""
    out: list[list[Version]] = []
    for i in range(draw(st.integers(min_value=1, max_value=4))):
        customer = draw(st.sampled_from(["a", "b", "c"]))
        start = draw(_days)
        end = draw(st.none() | st.integers(min_value=0, max_value=300).map(lambda n, s=start: s + timedelta(days=n)))
        unit, length = draw(st.sampled_from([("month", 1), ("month", 3), ("year", 1), ("week", 2)]))
        line = {"line_ref": "x", "product_ref": "p", "pricing": {"model": "flat", "amount": str(draw(_amounts))}}
        first = contract(f"K{i}", customer, start, [line], contract_end_date=end, cycle_unit=unit, cycle_length=length)
        versions = [Version(1, start, first)]
        if draw(st.booleans()):
            changed = {**line, "pricing": {"model": "flat", "amount": str(draw(_amounts))}}
            when = start + timedelta(days=draw(st.integers(min_value=1, max_value=200)))
            versions.append(
                Version(2, when, first.model_copy(update={"lines": [ContractLine.model_validate(changed)]}))
            )
        out.append(versions)
    return out


@settings(max_examples=60, deadline=None)
@given(customer_contracts_strategy())
def test_movements_sum_to_the_change_in_mrr(contracts: list[list[Version]]) -> None:
    by_customer: dict[str, list[list[Version]]] = {}
    for versions in contracts:
        by_customer.setdefault(versions[0].contract.customer_ref, []).append(versions)
    steps = [step for own in by_customer.values() for step in mrr_steps(own)]
    moves = movements(steps)
    month, running = date(2026, 1, 1), D(0)
    while month <= date(2027, 12, 1):
        end_of_month = next_month(month) - timedelta(days=1)
        running += sum((m.amount for m in moves if m.month == month), D(0))
        assert running == sum(customer_mrr(contracts, end_of_month).values(), D(0))
        month = next_month(month)
    for m in moves:  # each kind has its sign
        assert (m.amount > 0) == (m.kind in ("new", "expansion", "reactivation"))


_group_strategy = st.builds(
    DocumentGroup,
    entity_ref=st.sampled_from(["us", "eu"]),
    currency=st.sampled_from(["USD", "EUR"]),
    doc_type=st.sampled_from(["invoice", "credit_note"]),
    status=st.sampled_from(["draft", "approved", "sent", "partially_paid", "paid", "void"]),
    billing_date=_days,
    due_date=_days,
    documents=st.integers(min_value=1, max_value=5),
    total=_amounts,
    paid=st.integers(min_value=0, max_value=10**5).map(lambda n: D(n) / 100),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_group_strategy, max_size=30), _days)
def test_aging_buckets_sum_to_the_receivable(groups: list[DocumentGroup], day: date) -> None:
    for row in aging(groups, day):
        owed = sum(
            (
                g.total - g.paid
                for g in groups
                if (g.entity_ref, g.currency) == (row.entity_ref, row.currency)
                and g.doc_type == "invoice"
                and g.status in ("sent", "partially_paid")
            ),
            D(0),
        )
        assert sum(row.buckets.values(), D(0)) == row.receivable == owed


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=-(10**5), max_value=10**6).map(lambda n: D(n) / 100), min_size=1, max_size=8),
    st.integers(min_value=0, max_value=100),
)
def test_collected_shares_always_sum_exactly(billed: list[Decimal], percent: int) -> None:
    total = sum(billed, D(0))
    paid = (total * percent / 100).quantize(D("0.01")) if total > 0 else D(0)
    shares = collected_per_line(billed, paid, "USD")
    assert sum(shares, D(0)) == paid
    assert all(share == share.quantize(D("0.01")) for share in shares)
