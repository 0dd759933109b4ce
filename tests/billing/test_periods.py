"""Tests for billbridge.billing.periods: cycle arithmetic, periods, proration."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billbridge.billing.periods import (
    CycleUnit,
    Period,
    add_cycles,
    cycle_index,
    periods,
    prorate,
)

D = Decimal
UNITS: list[CycleUnit] = ["day", "week", "month", "year"]


# --- add_cycles ------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "n", "length", "unit", "expected"),
    [
        # month-end anchor: clamp, then go back to the 31st when possible
        (date(2023, 1, 31), 1, 1, "month", date(2023, 2, 28)),
        (date(2023, 1, 31), 2, 1, "month", date(2023, 3, 31)),
        (date(2023, 1, 31), 3, 1, "month", date(2023, 4, 30)),
        (date(2023, 1, 31), 13, 1, "month", date(2024, 2, 29)),
        (date(2024, 1, 31), 1, 1, "month", date(2024, 2, 29)),
        (date(2023, 1, 31), -1, 1, "month", date(2022, 12, 31)),
        (date(2023, 1, 31), -2, 1, "month", date(2022, 11, 30)),
        (date(2023, 1, 31), 0, 1, "month", date(2023, 1, 31)),
        # quarterly from the 30th of November
        (date(2023, 11, 30), 1, 3, "month", date(2024, 2, 29)),
        (date(2023, 11, 30), 2, 3, "month", date(2024, 5, 30)),
        (date(2023, 11, 30), -1, 3, "month", date(2023, 8, 30)),
        # leap day anchor, yearly
        (date(2024, 2, 29), 1, 1, "year", date(2025, 2, 28)),
        (date(2024, 2, 29), 4, 1, "year", date(2028, 2, 29)),
        (date(2024, 2, 29), -1, 1, "year", date(2023, 2, 28)),
        (date(2024, 2, 29), 1, 2, "year", date(2026, 2, 28)),
        # weeks and days
        (date(2024, 1, 1), 2, 1, "week", date(2024, 1, 15)),
        (date(2024, 1, 1), -1, 2, "week", date(2023, 12, 18)),
        (date(2024, 2, 28), 2, 1, "day", date(2024, 3, 1)),
        (date(2024, 2, 28), -3, 10, "day", date(2024, 1, 29)),
    ],
)
def test_add_cycles(anchor: date, n: int, length: int, unit: CycleUnit, expected: date) -> None:
    assert add_cycles(anchor, n, length, unit) == expected


def test_add_cycles_is_computed_from_the_anchor_not_iteratively() -> None:
    anchor = date(2023, 1, 31)
    months = [add_cycles(anchor, k, 1, "month") for k in range(12)]
    assert [d.day for d in months] == [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


@pytest.mark.parametrize(("length", "unit"), [(0, "month"), (-1, "day"), (True, "day"), (1, "quarter")])
def test_add_cycles_rejects_bad_cycles(length: int, unit: str) -> None:
    with pytest.raises(ValueError, match="cycle_"):
        add_cycles(date(2024, 1, 1), 1, length, unit)  # type: ignore[arg-type]


# --- cycle_index -----------------------------------------------------------


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        (date(2023, 1, 31), 0),
        (date(2023, 2, 27), 0),
        (date(2023, 2, 28), 1),
        (date(2023, 3, 30), 1),
        (date(2023, 3, 31), 2),
        (date(2023, 1, 30), -1),
        (date(2022, 12, 31), -1),
        (date(2022, 12, 30), -2),
    ],
)
def test_cycle_index_month_end_anchor(d: date, expected: int) -> None:
    assert cycle_index(date(2023, 1, 31), 1, "month", d) == expected


def test_cycle_index_weeks_days_years() -> None:
    assert cycle_index(date(2024, 1, 1), 1, "week", date(2024, 1, 7)) == 0
    assert cycle_index(date(2024, 1, 1), 1, "week", date(2024, 1, 8)) == 1
    assert cycle_index(date(2024, 1, 1), 2, "week", date(2023, 12, 31)) == -1
    assert cycle_index(date(2024, 1, 1), 1, "day", date(2023, 12, 1)) == -31
    assert cycle_index(date(2024, 2, 29), 1, "year", date(2025, 2, 27)) == 0
    assert cycle_index(date(2024, 2, 29), 1, "year", date(2025, 2, 28)) == 1
    assert cycle_index(date(2024, 2, 29), 1, "year", date(2024, 2, 28)) == -1


def test_cycle_index_is_fast_far_from_the_anchor() -> None:
    assert cycle_index(date(1, 1, 1), 1, "day", date(9999, 12, 31)) == 3_652_058
    assert cycle_index(date(1, 1, 31), 1, "month", date(9999, 11, 29)) == 119_985
    assert cycle_index(date(1, 1, 31), 1, "month", date(9999, 11, 30)) == 119_986
    assert cycle_index(date(9999, 12, 15), 1, "month", date(1, 1, 20)) == -119_987


# --- periods ---------------------------------------------------------------


def test_open_ended_monthly_full_cycles() -> None:
    result = periods(date(2024, 1, 1), 1, "month", date(2024, 1, 1), None, date(2024, 4, 1))
    assert result == [
        Period(date(2024, 1, 1), date(2024, 2, 1), date(2024, 1, 1), date(2024, 2, 1)),
        Period(date(2024, 2, 1), date(2024, 3, 1), date(2024, 2, 1), date(2024, 3, 1)),
        Period(date(2024, 3, 1), date(2024, 4, 1), date(2024, 3, 1), date(2024, 4, 1)),
    ]
    assert [p.days for p in result] == [31, 29, 31]
    assert not any(p.is_partial for p in result)


def test_anchor_after_start_gives_partial_first_period() -> None:
    result = periods(date(2024, 2, 1), 1, "month", date(2024, 1, 15), None, date(2024, 3, 1))
    assert result == [
        Period(date(2024, 1, 15), date(2024, 2, 1), date(2024, 1, 1), date(2024, 2, 1)),
        Period(date(2024, 2, 1), date(2024, 3, 1), date(2024, 2, 1), date(2024, 3, 1)),
    ]
    first = result[0]
    assert (first.days, first.full_days, first.is_partial) == (17, 31, True)


def test_until_is_exclusive_on_period_start() -> None:
    result = periods(date(2024, 1, 1), 1, "month", date(2024, 1, 1), None, date(2024, 2, 2))
    assert [p.start for p in result] == [date(2024, 1, 1), date(2024, 2, 1)]
    # a period that starts before until is listed whole, not cut at until
    assert result[-1].end == date(2024, 3, 1)


def test_ended_contract_has_partial_last_period() -> None:
    result = periods(date(2024, 1, 1), 1, "month", date(2024, 1, 1), date(2024, 3, 15), date(2030, 1, 1))
    assert result[-1] == Period(date(2024, 3, 1), date(2024, 3, 15), date(2024, 3, 1), date(2024, 4, 1))
    assert len(result) == 3
    assert (result[-1].days, result[-1].full_days) == (14, 31)


def test_month_end_anchor_before_start_mid_cycle() -> None:
    result = periods(date(2023, 1, 31), 1, "month", date(2023, 3, 10), date(2023, 5, 5), date(2030, 1, 1))
    assert result == [
        Period(date(2023, 3, 10), date(2023, 3, 31), date(2023, 2, 28), date(2023, 3, 31)),
        Period(date(2023, 3, 31), date(2023, 4, 30), date(2023, 3, 31), date(2023, 4, 30)),
        Period(date(2023, 4, 30), date(2023, 5, 5), date(2023, 4, 30), date(2023, 5, 31)),
    ]
    assert [(p.days, p.full_days) for p in result] == [(21, 31), (30, 30), (5, 31)]


def test_service_inside_one_cycle() -> None:
    result = periods(date(2024, 1, 1), 1, "month", date(2024, 1, 10), date(2024, 1, 20), date(2030, 1, 1))
    assert result == [Period(date(2024, 1, 10), date(2024, 1, 20), date(2024, 1, 1), date(2024, 2, 1))]


def test_yearly_leap_day_anchor() -> None:
    result = periods(date(2024, 2, 29), 1, "year", date(2024, 2, 29), None, date(2027, 3, 1))
    assert [(p.start, p.end) for p in result] == [
        (date(2024, 2, 29), date(2025, 2, 28)),
        (date(2025, 2, 28), date(2026, 2, 28)),
        (date(2026, 2, 28), date(2027, 2, 28)),
        (date(2027, 2, 28), date(2028, 2, 29)),
    ]
    assert [p.days for p in result] == [365, 365, 365, 366]


def test_weekly_periods() -> None:
    # 2024-01-01 is a Monday; service starts on Wednesday the 3rd
    result = periods(date(2024, 1, 1), 1, "week", date(2024, 1, 3), None, date(2024, 1, 20))
    assert result == [
        Period(date(2024, 1, 3), date(2024, 1, 8), date(2024, 1, 1), date(2024, 1, 8)),
        Period(date(2024, 1, 8), date(2024, 1, 15), date(2024, 1, 8), date(2024, 1, 15)),
        Period(date(2024, 1, 15), date(2024, 1, 22), date(2024, 1, 15), date(2024, 1, 22)),
    ]
    assert (result[0].days, result[0].full_days) == (5, 7)


def test_daily_periods() -> None:
    result = periods(date(2024, 1, 1), 1, "day", date(2024, 2, 28), date(2024, 3, 2), date(2030, 1, 1))
    assert [p.start for p in result] == [date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1)]
    assert all(p.days == p.full_days == 1 and not p.is_partial for p in result)


def test_empty_and_invalid_services() -> None:
    jan1 = date(2024, 1, 1)
    assert periods(jan1, 1, "month", jan1, jan1, date(2030, 1, 1)) == []
    assert periods(jan1, 1, "month", jan1, None, jan1) == []
    assert periods(jan1, 1, "month", date(2024, 5, 1), None, date(2024, 2, 1)) == []
    with pytest.raises(ValueError, match="before its start"):
        periods(jan1, 1, "month", date(2024, 2, 1), jan1, date(2030, 1, 1))


def test_period_is_frozen() -> None:
    period = Period(date(2024, 1, 1), date(2024, 2, 1), date(2024, 1, 1), date(2024, 2, 1))
    with pytest.raises(AttributeError):
        period.start = date(2024, 1, 2)  # type: ignore[misc]


# --- prorate ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "days", "full_days", "expected"),
    [
        ("300.00", 10, 30, "100.00"),
        ("300.00", 30, 30, "300.00"),
        ("300.00", 0, 30, "0.00"),
        ("310.00", 17, 31, "170.00"),
        ("100.00", 10, 30, "33.33333333333333333333333333333333"),  # 34 digits, unrounded
        ("-90.00", 1, 3, "-30.00"),
        ("1000", 1, 7, "142.8571428571428571428571428571429"),
    ],
)
def test_prorate(amount: str, days: int, full_days: int, expected: str) -> None:
    assert str(prorate(D(amount), days, full_days)) == expected


def test_prorate_full_period_returns_amount_unchanged() -> None:
    for amount in [D("99.99"), D("1E+2"), D("0.1000"), D("-12.345678901234567890123456789012345678")]:
        result = prorate(amount, 31, 31)
        assert result == amount and str(result) == str(amount)


def test_prorate_ignores_the_global_context() -> None:
    with localcontext() as ctx:
        ctx.prec = 5
        assert prorate(D("100.00"), 10, 30) == D("33.33333333333333333333333333333333")


@pytest.mark.parametrize(
    ("amount", "days", "full_days", "error"),
    [
        (D("1"), 31, 30, ValueError),
        (D("1"), -1, 30, ValueError),
        (D("1"), 0, 0, ValueError),
        (1.0, 1, 30, TypeError),
        (D("1"), 1.0, 30, TypeError),
        (D("1"), 1, 30.0, TypeError),
    ],
)
def test_prorate_rejects_bad_input(amount: object, days: object, full_days: object, error: type) -> None:
    with pytest.raises(error):
        prorate(amount, days, full_days)  # type: ignore[arg-type]


# --- properties ------------------------------------------------------------

dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31))
units = st.sampled_from(UNITS)
lengths = st.integers(min_value=1, max_value=24)
amounts = st.decimals(min_value=-(10**9), max_value=10**9, places=4, allow_nan=False, allow_infinity=False)


@given(dates, st.integers(min_value=-60, max_value=60), lengths, units)
def test_add_cycles_strictly_increasing(anchor: date, k: int, length: int, unit: CycleUnit) -> None:
    assert add_cycles(anchor, k, length, unit) < add_cycles(anchor, k + 1, length, unit)


@given(dates, st.integers(min_value=-300, max_value=300), st.integers(min_value=1, max_value=3))
def test_add_months_clamps_only_when_needed(anchor: date, k: int, length: int) -> None:
    shifted = add_cycles(anchor, k, length, "month")
    months = (shifted.year - anchor.year) * 12 + shifted.month - anchor.month
    assert months == k * length
    next_day = shifted + timedelta(days=1)
    assert shifted.day == anchor.day or (shifted.day < anchor.day and next_day.day == 1)


@settings(max_examples=200)
@given(dates, dates, lengths, units)
def test_cycle_index_agrees_with_add_cycles(anchor: date, d: date, length: int, unit: CycleUnit) -> None:
    k = cycle_index(anchor, length, unit, d)
    assert add_cycles(anchor, k, length, unit) <= d < add_cycles(anchor, k + 1, length, unit)


@settings(max_examples=200)
@given(
    dates,
    dates,
    st.one_of(st.none(), st.integers(min_value=0, max_value=1000)),
    st.integers(min_value=-30, max_value=1000),
    st.integers(min_value=1, max_value=3),
    units,
)
def test_periods_tile_the_service(
    anchor: date,
    start: date,
    service_days: int | None,
    until_offset: int,
    length: int,
    unit: CycleUnit,
) -> None:
    end = None if service_days is None else start + timedelta(days=service_days)
    until = start + timedelta(days=until_offset)
    result = periods(anchor, length, unit, start, end, until)

    if until <= start or end == start:
        assert result == []
        return
    assert result[0].start == start
    for before, after in zip(result, result[1:], strict=False):
        assert before.end == after.start  # no gap, no overlap
        assert before.full_end == after.full_start
    for p in result:
        assert p.full_start <= p.start < p.end <= p.full_end
        assert p.start < until
        k = cycle_index(anchor, length, unit, p.full_start)
        assert add_cycles(anchor, k, length, unit) == p.full_start
        assert add_cycles(anchor, k + 1, length, unit) == p.full_end
        assert p.is_partial == (p.days != p.full_days)
    last = result[-1]
    if end is not None and last.end == end:
        return
    # otherwise the listing stopped because the next period starts at/after until
    assert end is None or last.end < end
    assert last.end >= until
    assert not last.is_partial or last.start == start


@given(amounts, st.integers(min_value=1, max_value=366))
def test_prorate_full_period_is_identity(amount: Decimal, full_days: int) -> None:
    assert prorate(amount, full_days, full_days) == amount


@given(amounts, st.integers(min_value=1, max_value=366), st.data())
def test_prorate_is_accurate_and_additive(amount: Decimal, full_days: int, data: st.DataObject) -> None:
    d1 = data.draw(st.integers(min_value=0, max_value=full_days))
    d2 = data.draw(st.integers(min_value=0, max_value=full_days - d1))

    def exact(days: int) -> Fraction:
        return Fraction(amount) * days / full_days

    # each result is the exact value to 34 significant digits
    tolerance = abs(Fraction(amount)) / 10**33
    for days in (d1, d2, d1 + d2):
        assert abs(Fraction(prorate(amount, days, full_days)) - exact(days)) <= tolerance
    # so sub-spans add up to the whole span, up to that last digit
    pieces = Fraction(prorate(amount, d1, full_days)) + Fraction(prorate(amount, d2, full_days))
    assert abs(pieces - Fraction(prorate(amount, d1 + d2, full_days))) <= 3 * tolerance
    # and exactly when every division is exact (amounts have 4 places)
    if all(Fraction(amount) * 10**4 * d % full_days == 0 for d in (d1, d2)):
        assert pieces == Fraction(prorate(amount, d1 + d2, full_days))
