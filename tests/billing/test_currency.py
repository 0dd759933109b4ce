"""Tests for billbridge.billing.currency: minor units, rounding and splitting."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billbridge.billing.currency import (
    MINOR_UNITS,
    UnknownCurrencyError,
    allocate,
    minor_unit,
    money_display,
    money_str,
    quantum,
    round_money,
    split_evenly,
)

D = Decimal


# --- minor units -----------------------------------------------------------


def test_minor_units_cover_common_and_special_currencies() -> None:
    assert {"USD", "EUR", "GBP", "CHF", "INR", "XCG", "SLE", "ZWG", "VES", "VED"} <= set(MINOR_UNITS)
    assert minor_unit("USD") == 2
    assert minor_unit("EUR") == 2
    assert minor_unit("JPY") == 0
    assert minor_unit("KRW") == 0
    assert minor_unit("XOF") == 0
    assert minor_unit("KWD") == 3
    assert minor_unit("TND") == 3
    assert minor_unit("CLF") == 4
    assert minor_unit("UYW") == 4


def test_minor_units_table_shape() -> None:
    assert all(len(code) == 3 and code.isalpha() and code.isupper() for code in MINOR_UNITS)
    assert set(MINOR_UNITS.values()) == {0, 2, 3, 4}
    assert sum(1 for unit in MINOR_UNITS.values() if unit == 0) == 17
    assert sum(1 for unit in MINOR_UNITS.values() if unit == 3) == 7
    with pytest.raises(TypeError):
        MINOR_UNITS["XYZ"] = 2  # type: ignore[index]


@pytest.mark.parametrize(
    "code",
    ["XYZ", "usd", "Usd", "", "US", "USDX", "XAU", "XXX", "BGN", "HRK", "ANG", "CUC"],
)
def test_unknown_and_withdrawn_codes_are_rejected(code: str) -> None:
    with pytest.raises(UnknownCurrencyError, match=repr(code)) as info:
        minor_unit(code)
    assert info.value.code == code
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownCurrencyError):
        round_money(D("1"), code)


def test_non_string_code_is_rejected() -> None:
    with pytest.raises(UnknownCurrencyError):
        minor_unit(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "expected"),
    [("USD", "0.01"), ("JPY", "1"), ("KWD", "0.001"), ("CLF", "0.0001")],
)
def test_quantum(code: str, expected: str) -> None:
    assert quantum(code) == D(expected)
    assert str(quantum(code)) == expected


# --- rounding --------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "code", "expected"),
    [
        ("1.005", "USD", "1.01"),
        ("1.004999", "USD", "1.00"),
        ("0.005", "USD", "0.01"),
        ("-0.005", "USD", "-0.01"),
        ("-1.005", "USD", "-1.01"),
        ("-1.0049", "USD", "-1.00"),
        ("2.675", "USD", "2.68"),  # the classic float trap
        ("5", "USD", "5.00"),
        ("2.5", "JPY", "3"),
        ("3.5", "JPY", "4"),
        ("-2.5", "JPY", "-3"),
        ("1234.4999", "JPY", "1234"),
        ("1.0005", "KWD", "1.001"),
        ("-1.0005", "KWD", "-1.001"),
        ("1.00049", "KWD", "1.000"),
        ("0.00005", "CLF", "0.0001"),
    ],
)
def test_round_money(amount: str, code: str, expected: str) -> None:
    result = round_money(D(amount), code)
    assert result == D(expected)
    assert str(result) == expected  # exponent is the currency's


def test_round_money_never_returns_negative_zero() -> None:
    assert str(round_money(D("-0.001"), "USD")) == "0.00"
    assert str(round_money(D("-0.4"), "JPY")) == "0"


def test_round_money_rejects_floats_and_non_finite() -> None:
    with pytest.raises(TypeError, match="float"):
        round_money(0.1, "USD")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        round_money(D("NaN"), "USD")
    with pytest.raises(ValueError, match="finite"):
        round_money(D("Infinity"), "USD")


def test_round_money_accepts_int() -> None:
    assert str(round_money(7, "USD")) == "7.00"  # type: ignore[arg-type]


# --- split_evenly ----------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "parts", "code", "expected"),
    [
        ("100.00", 3, "USD", ["33.33", "33.33", "33.34"]),
        ("100.00", 1, "USD", ["100.00"]),
        ("0.05", 3, "USD", ["0.01", "0.01", "0.03"]),
        ("0.02", 3, "USD", ["0.00", "0.00", "0.02"]),
        ("-100.00", 3, "USD", ["-33.33", "-33.33", "-33.34"]),
        ("1000", 3, "JPY", ["333", "333", "334"]),
        ("10.000", 3, "KWD", ["3.333", "3.333", "3.334"]),
        ("120", 12, "USD", ["10.00"] * 12),
    ],
)
def test_split_evenly(total: str, parts: int, code: str, expected: list[str]) -> None:
    result = split_evenly(D(total), parts, code)
    assert [str(x) for x in result] == expected
    assert sum(result) == D(total)


def test_split_evenly_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="minor units"):
        split_evenly(D("100.005"), 3, "USD")
    with pytest.raises(ValueError, match="minor units"):
        split_evenly(D("100.5"), 2, "JPY")
    with pytest.raises(ValueError, match="parts"):
        split_evenly(D("100"), 0, "USD")
    with pytest.raises(ValueError, match="parts"):
        split_evenly(D("100"), True, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float"):
        split_evenly(100.0, 2, "USD")  # type: ignore[arg-type]
    with pytest.raises(UnknownCurrencyError):
        split_evenly(D("100"), 2, "XYZ")


# --- allocate --------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weights", "code", "expected"),
    [
        ("100.00", ["1", "1", "1"], "USD", ["33.34", "33.33", "33.33"]),
        ("100.00", ["1", "2"], "USD", ["33.33", "66.67"]),
        ("-100.00", ["1", "2"], "USD", ["-33.33", "-66.67"]),
        ("0.05", ["1", "1"], "USD", ["0.03", "0.02"]),
        ("10.00", ["0", "1", "0"], "USD", ["0.00", "10.00", "0.00"]),
        ("100", ["0.5", "0.25", "0.25"], "JPY", ["50", "25", "25"]),
        ("100", ["1", "1", "1"], "JPY", ["34", "33", "33"]),
        ("1.000", ["3", "7"], "KWD", ["0.300", "0.700"]),
        ("0.00", ["1", "2"], "USD", ["0.00", "0.00"]),
        # shares 1.4, 4.3, 4.3 -> floors 1, 4, 4; the leftover unit goes to 0.4
        ("10", ["14", "43", "43"], "JPY", ["2", "4", "4"]),
        # shares 2.5, 2.5, 5 -> floors 2, 2, 5; tie broken by position
        ("10", ["1", "1", "2"], "JPY", ["3", "2", "5"]),
    ],
)
def test_allocate(total: str, weights: list[str], code: str, expected: list[str]) -> None:
    result = allocate(D(total), [D(w) for w in weights], code)
    assert [str(x) for x in result] == expected
    assert sum(result) == D(total)


def test_allocate_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="negative"):
        allocate(D("10.00"), [D("1"), D("-1")], "USD")
    with pytest.raises(ValueError, match="all zero"):
        allocate(D("10.00"), [D("0"), D("0")], "USD")
    with pytest.raises(ValueError, match="all zero"):
        allocate(D("10.00"), [], "USD")
    with pytest.raises(ValueError, match="minor units"):
        allocate(D("10.001"), [D("1")], "USD")
    with pytest.raises(TypeError, match="float"):
        allocate(D("10.00"), [0.5, 0.5], "USD")  # type: ignore[list-item]


# --- properties ------------------------------------------------------------

currencies = st.sampled_from(sorted(MINOR_UNITS))


@st.composite
def rounded_totals(draw: st.DrawFn) -> tuple[Decimal, str]:
    """A currency and a total that is a whole number of its minor units."""
    code = draw(currencies)
    units = draw(st.integers(min_value=-(10**12), max_value=10**12))
    return D(units).scaleb(-minor_unit(code)), code


def _is_multiple_of_quantum(amount: Decimal, code: str) -> bool:
    return amount % quantum(code) == 0 and amount.as_tuple().exponent == -minor_unit(code)


@settings(max_examples=200)
@given(rounded_totals(), st.integers(min_value=1, max_value=60))
def test_split_evenly_sums_exactly(total_code: tuple[Decimal, str], parts: int) -> None:
    total, code = total_code
    result = split_evenly(total, parts, code)
    assert len(result) == parts
    assert sum(result) == total
    assert all(_is_multiple_of_quantum(x, code) for x in result)
    # the first parts are equal, rounded toward zero; the last takes the rest
    assert len(set(result[:-1])) <= 1
    if parts > 1:
        assert abs(Fraction(result[0])) <= abs(Fraction(total)) / parts
        assert abs(result[-1] - result[0]) < parts * quantum(code)


@settings(max_examples=200)
@given(
    rounded_totals(),
    st.lists(
        st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=12,
    ).filter(lambda ws: any(w > 0 for w in ws)),
)
def test_allocate_sums_exactly(total_code: tuple[Decimal, str], weights: list[Decimal]) -> None:
    total, code = total_code
    result = allocate(total, weights, code)
    assert len(result) == len(weights)
    assert sum(result) == total
    assert all(_is_multiple_of_quantum(x, code) for x in result)
    weight_sum = sum(Fraction(w) for w in weights)
    for part, weight in zip(result, weights, strict=False):
        if weight == 0:
            assert part == 0
        # every part is within one minor unit of its exact share
        exact = Fraction(total) * Fraction(weight) / weight_sum
        assert abs(Fraction(part) - exact) < Fraction(quantum(code))


@given(st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, allow_infinity=False), currencies)
def test_round_money_is_nearest_and_idempotent(amount: Decimal, code: str) -> None:
    rounded = round_money(amount, code)
    assert _is_multiple_of_quantum(rounded, code)
    assert abs(Fraction(rounded) - Fraction(amount)) <= Fraction(quantum(code)) / 2
    assert round_money(rounded, code) == rounded
    assert round_money(-amount, code) == -rounded  # symmetric: ties away from zero


@pytest.mark.parametrize(
    ("amount", "currency", "text", "shown"),
    [
        ("240.000", "USD", "240.00", "240.00 USD"),
        ("12.0000", "EUR", "12.00", "12.00 EUR"),
        ("1234567.005", "USD", "1234567.01", "1,234,567.01 USD"),
        ("1200.4", "JPY", "1200", "1,200 JPY"),
        ("-3000", "KWD", "-3000.000", "-3,000.000 KWD"),
        ("-0.001", "USD", "0.00", "0.00 USD"),
    ],
)
def test_money_is_shown_in_minor_units(amount: str, currency: str, text: str, shown: str) -> None:
    assert money_str(Decimal(amount), currency) == text
    assert money_display(Decimal(amount), currency) == shown
