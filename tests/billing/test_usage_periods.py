"""Usage aggregation from per-day figures, and quantities as integer micro-units."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billbridge.billing.usage_periods import DailyUsage, UsageQuery, aggregate, from_micros, to_micros

D = Decimal
DAYS = {
    date(2026, 1, 30): DailyUsage(
        D("10.5"), D("7"), 3, (datetime(2026, 1, 30, 23, 0), 9, D("2")), {"user": frozenset({"a", "b"})}
    ),
    date(2026, 1, 31): DailyUsage(
        D("1"), D("1"), 1, (datetime(2026, 1, 31, 8, 0), 4, D("1")), {"user": frozenset({"b", "c"})}
    ),
    date(2026, 2, 1): DailyUsage(D("100"), D("100"), 1, (datetime(2026, 2, 1), 12, D("100")), {"user": frozenset("z")}),
}


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [("sum", D("11.5")), ("max", D("7")), ("count", D("4")), ("last", D("1")), ("distinct", D("3"))],
)
def test_a_january_period_aggregates_only_its_days(aggregation: str, expected: Decimal) -> None:
    query = UsageQuery(
        "api", aggregation, date(2026, 1, 1), date(2026, 2, 1), "user" if aggregation == "distinct" else None
    )
    assert aggregate(DAYS, query) == expected


def test_no_usage_is_zero_for_every_aggregation() -> None:
    for aggregation in ("sum", "max", "count", "last"):
        assert aggregate({}, UsageQuery("api", aggregation, date(2026, 1, 1), date(2026, 2, 1))) == 0
    assert aggregate({}, UsageQuery("api", "distinct", date(2026, 1, 1), date(2026, 2, 1), "user")) == 0


def test_distinct_without_a_property_is_an_error() -> None:
    with pytest.raises(ValueError, match="property"):
        aggregate(DAYS, UsageQuery("api", "distinct", date(2026, 1, 1), date(2026, 2, 1)))


@given(st.decimals(min_value=0, max_value=10**12, places=6, allow_nan=False, allow_infinity=False))
def test_micro_units_round_trip_exactly(quantity: Decimal) -> None:
    assert from_micros(to_micros(quantity)) == quantity
    assert "E" not in str(from_micros(to_micros(quantity)))


def test_more_than_six_decimal_places_is_refused() -> None:
    with pytest.raises(ValueError, match="more than 6 decimal places"):
        to_micros(D("0.0000001"))
    assert to_micros(D("1.000000000")) == 1_000_000  # trailing zeros are not precision


def test_huge_sums_keep_every_digit() -> None:
    micros = 10**40 + 1  # a PostgreSQL numeric sum far past 28 significant digits
    assert from_micros(micros) == D("10000000000000000000000000000000000.000001")
    assert to_micros(D("10000000000000000000000000000000000.000001")) == micros
