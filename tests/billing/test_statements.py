"""Statements of account: aging buckets by days past due, credits taken off the oldest first, one
section per currency in its minor units; the buckets always sum to the open balance."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billbridge.billing.currency import round_money
from billbridge.billing.statements import BUCKETS, OpenItem, RecentPayment, aging, bucket_of, statement

AS_OF = date(2026, 6, 30)


def invoice(ref: str, due: date, open_: str, total: str | None = None, currency: str = "USD") -> OpenItem:
    return OpenItem("invoice", ref, currency, due - timedelta(days=30), due, Decimal(total or open_), Decimal(open_))


def credit(ref: str, day: date, open_: str, currency: str = "USD") -> OpenItem:
    return OpenItem("credit_note", ref, currency, day, day, Decimal(open_), Decimal(open_))


def test_bucket_edges() -> None:
    assert [bucket_of(AS_OF - timedelta(days=d), AS_OF) for d in (-5, 0, 1, 30, 31, 60, 61, 90, 91, 400)] == [
        "current",
        "current",
        "1-30",
        "1-30",
        "31-60",
        "31-60",
        "61-90",
        "61-90",
        "90+",
        "90+",
    ]


def test_worked_example_with_a_partial_payment_and_a_credit_note() -> None:
    # INV-1 1,000.00 due 2026-03-15 (107 days late), 400.00 paid: 600.00 open -> 90+
    # INV-2 250.00 due 2026-05-20 (41 days late) -> 31-60
    # INV-3 1,200.00 due 2026-07-15 (not due yet) -> current
    # CN-1 -150.00: taken off the oldest bucket first: 90+ 600.00 -> 450.00
    # balance 600 + 250 + 1200 - 150 = 1,900.00
    items = [
        invoice("INV-1", date(2026, 3, 15), "600.00", "1000.00"),
        invoice("INV-2", date(2026, 5, 20), "250.00"),
        invoice("INV-3", date(2026, 7, 15), "1200.00"),
        credit("CN-1", date(2026, 6, 1), "-150.00"),
    ]
    aged = aging(items, AS_OF, "USD")
    assert aged.buckets == {
        "current": Decimal("1200.00"),
        "1-30": Decimal(0),
        "31-60": Decimal("250.00"),
        "61-90": Decimal(0),
        "90+": Decimal("450.00"),
    }
    assert aged.balance == Decimal("1900.00")


def test_a_credit_larger_than_the_oldest_bucket_moves_on_and_one_larger_than_all_leaves_current_negative() -> None:
    items = [invoice("A", date(2026, 3, 1), "100.00"), invoice("B", date(2026, 6, 10), "50.00")]
    assert aging([*items, credit("P", AS_OF, "-120.00")], AS_OF, "USD").buckets["1-30"] == Decimal("30.00")
    aged = aging([*items, credit("P", AS_OF, "-200.00")], AS_OF, "USD")
    assert aged.buckets == {"current": Decimal("-50.00"), "1-30": 0, "31-60": 0, "61-90": 0, "90+": 0}
    assert aged.balance == Decimal("-50.00")


def test_minor_units_per_currency_and_a_stray_currency_is_named() -> None:
    aged = aging([invoice("J-1", date(2026, 6, 1), "1234.6", currency="JPY")], AS_OF, "JPY")
    assert aged.buckets["1-30"] == Decimal("1235") and aged.balance == Decimal("1235")
    kwd = aging([invoice("K-1", date(2026, 7, 1), "10.1235", currency="KWD")], AS_OF, "KWD")
    assert kwd.balance == Decimal("10.124")
    with pytest.raises(ValueError, match=r"invoice E-1: currency EUR, not the section's USD"):
        aging([invoice("E-1", AS_OF, "1.00", currency="EUR")], AS_OF, "USD")


def test_statement_sections_per_currency_oldest_first_and_details_are_exact_strings() -> None:
    items = [
        invoice("INV-2", date(2026, 5, 20), "250.00"),
        invoice("INV-1", date(2026, 3, 15), "600.00", "1000.00"),
        invoice("EU-1", date(2026, 6, 15), "99.90", currency="EUR"),
        invoice("PAID", date(2026, 6, 1), "0.00", "80.00"),
        OpenItem("payment", "stripe:ch_1", "USD", date(2026, 6, 25), date(2026, 6, 25), Decimal("75"), Decimal("-75")),
    ]
    payments = [
        RecentPayment("qb:1", "USD", date(2026, 6, 2), Decimal("80.00"), ("PAID",)),
        RecentPayment("stripe:ch_1", "USD", date(2026, 6, 25), Decimal("75.00"), ()),
    ]
    made = statement(items, payments, AS_OF, payment_days=30)
    assert [s.currency for s in made.sections] == ["EUR", "USD"]
    usd = made.sections[1]
    assert [i.ref for i in usd.invoices] == ["INV-1", "INV-2"]  # PAID has nothing open: left out
    assert [c.ref for c in usd.credits] == ["stripe:ch_1"]
    assert [p.ref for p in usd.payments] == ["stripe:ch_1", "qb:1"]
    assert usd.aging.balance == Decimal("775.00")
    details = made.as_details()["sections"][1]
    assert details["invoices"][0] == {
        "kind": "invoice",
        "number": "INV-1",
        "billing_date": "2026-02-13",
        "due_date": "2026-03-15",
        "total": "1000.00",
        "open": "600.00",
        "days_overdue": 107,
    }
    assert details["aging"] == [
        {"bucket": "current", "amount": "0.00"},
        {"bucket": "1-30", "amount": "0.00"},
        {"bucket": "31-60", "amount": "250.00"},
        {"bucket": "61-90", "amount": "0.00"},
        {"bucket": "90+", "amount": "525.00"},
    ]
    assert details["balance"] == "775.00"
    assert made.has_open
    assert not statement([invoice("PAID", AS_OF, "0.00")], [], AS_OF, payment_days=30).has_open


def test_details_write_every_amount_in_the_currency_minor_units() -> None:
    # No credit: the empty buckets are the starting zero, which must read as money too ("0.00", not "0").
    items = [invoice("INV-1", date(2026, 6, 15), "120.5"), invoice("JP-1", AS_OF, "1235", currency="JPY")]
    items.append(invoice("KW-1", date(2026, 1, 1), "12.5", currency="KWD"))
    paid = [RecentPayment("qb:1", "USD", date(2026, 6, 2), Decimal("80"), ("INV-0",))]
    sections = {s["currency"]: s for s in statement(items, paid, AS_OF, payment_days=30).as_details()["sections"]}
    usd, jpy, kwd = sections["USD"], sections["JPY"], sections["KWD"]
    assert [b["amount"] for b in usd["aging"]] == ["0.00", "120.50", "0.00", "0.00", "0.00"]
    assert usd["invoices"][0]["open"] == "120.50" and usd["payments"][0]["amount"] == "80.00"
    assert usd["balance"] == "120.50"
    assert [b["amount"] for b in jpy["aging"]] == ["1235", "0", "0", "0", "0"]
    assert [b["amount"] for b in kwd["aging"]] == ["0.000", "0.000", "0.000", "0.000", "12.500"]


amounts = st.decimals(min_value=Decimal("-5000"), max_value=Decimal("5000"), places=3, allow_nan=False)
currencies = st.sampled_from(["USD", "JPY", "KWD", "EUR"])


@given(
    st.lists(st.tuples(st.integers(min_value=-60, max_value=400), amounts), max_size=25),
    currencies,
)
def test_buckets_sum_to_the_open_balance(rows: list[tuple[int, Decimal]], currency: str) -> None:
    items = [
        OpenItem(
            "invoice" if amount > 0 else "credit_note",
            f"D-{n}",
            currency,
            AS_OF,
            AS_OF - timedelta(days=late),
            amount,
            amount,
        )
        for n, (late, amount) in enumerate(rows)
    ]
    aged = aging(items, AS_OF, currency)
    expected = sum((round_money(i.open, currency) for i in items), Decimal(0))
    assert sum(aged.buckets.values(), Decimal(0)) == aged.balance == expected
    assert list(aged.buckets) == list(BUCKETS)
    if expected >= 0:  # credits only ever reduce owed buckets: none goes negative
        assert all(v >= 0 for v in aged.buckets.values())
    for value in aged.buckets.values():
        assert value == round_money(value, currency)
