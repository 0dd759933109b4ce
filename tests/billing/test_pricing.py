"""Tests for billbridge.billing.pricing: validation and amounts of each model."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from math import ceil
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from billbridge.billing.pricing import (
    FlatPrice,
    GraduatedPrice,
    PackagePrice,
    PerUnitPrice,
    Pricing,
    Tier,
    VolumePrice,
)

D = Decimal
PRICING = TypeAdapter(Pricing)

THREE_TIERS: list[dict[str, Any]] = [
    {"up_to": 10, "unit_price": "5"},
    {"up_to": 20, "unit_price": "4"},
    {"up_to": None, "unit_price": "3"},
]
TIERS_WITH_FEES: list[dict[str, Any]] = [
    {"up_to": 10, "unit_price": "5", "flat_fee": "20"},
    {"up_to": 20, "unit_price": "4", "flat_fee": "10"},
    {"up_to": None, "unit_price": "3"},
]


# --- worked examples -------------------------------------------------------


def test_flat_price() -> None:
    price = FlatPrice(amount="49.99")
    assert price.model == "flat"
    assert price.amount_for(D(0)) == D("49.99")
    assert price.amount_for(D(1000)) == D("49.99")


def test_per_unit_price() -> None:
    price = PerUnitPrice(unit_price="12.50")
    assert price.amount_for(D(7)) == D("87.50")
    assert price.amount_for(D("2.5")) == D("31.250")
    assert price.amount_for(D(0)) == 0
    assert price.amount_for(3) == D("37.50")  # type: ignore[arg-type]


def test_per_unit_price_keeps_full_precision() -> None:
    price = PerUnitPrice(unit_price="0.0012345")
    assert price.amount_for(D(3)) == D("0.0037035")


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("0", "0"), ("1", "5"), ("10", "50"), ("11", "54"), ("20", "90"), ("25", "105"), ("10.5", "52.0")],
)
def test_graduated_price(quantity: str, expected: str) -> None:
    assert GraduatedPrice(tiers=THREE_TIERS).amount_for(D(quantity)) == D(expected)


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("0", "0"),  # no unit, no fee
        ("1", "25"),  # 1*5 + 20
        ("10", "70"),  # 10*5 + 20: up_to is inclusive, tier 2 untouched
        ("11", "84"),  # 70 + 1*4 + 10
        ("20", "120"),  # 70 + 10*4 + 10
        ("25", "135"),  # 120 + 5*3
        ("10.5", "82.0"),  # part of a unit in tier 2 triggers its fee
    ],
)
def test_graduated_price_with_flat_fees(quantity: str, expected: str) -> None:
    assert GraduatedPrice(tiers=TIERS_WITH_FEES).amount_for(D(quantity)) == D(expected)


def test_graduated_single_unbounded_tier_is_per_unit() -> None:
    price = GraduatedPrice(tiers=[{"up_to": None, "unit_price": "2", "flat_fee": "1"}])
    assert price.amount_for(D(0)) == 0
    assert price.amount_for(D(4)) == 9


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("0", "0"), ("1", "5"), ("10", "50"), ("11", "44"), ("20", "80"), ("21", "63"), ("10.5", "42.0")],
)
def test_volume_price_tier_boundaries(quantity: str, expected: str) -> None:
    assert VolumePrice(tiers=THREE_TIERS).amount_for(D(quantity)) == D(expected)


def test_volume_price_with_flat_fees() -> None:
    price = VolumePrice(
        tiers=[
            {"up_to": 100, "flat_fee": "99"},
            {"up_to": None, "unit_price": "0.50", "flat_fee": "10"},
        ]
    )
    assert price.amount_for(D(0)) == 0
    assert price.amount_for(D(1)) == 99
    assert price.amount_for(D(100)) == 99
    assert price.amount_for(D(101)) == D("60.50")


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("0", "0"), ("3", "0"), ("4", "5"), ("13", "5"), ("14", "10"), ("13.5", "10"), ("100", "50")],
)
def test_package_price_with_free_units(quantity: str, expected: str) -> None:
    price = PackagePrice(package_size=10, package_price="5", free_units=3)
    assert price.amount_for(D(quantity)) == D(expected)


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("0", "0"), ("0.01", "2.50"), ("1000", "2.50"), ("1000.01", "5.00"), ("2000", "5.00")],
)
def test_package_price_rounds_up_to_whole_packages(quantity: str, expected: str) -> None:
    price = PackagePrice(package_size="1000", package_price="2.50")
    assert price.amount_for(D(quantity)) == D(expected)


# --- parsing the contract format -------------------------------------------


@pytest.mark.parametrize(
    ("data", "cls"),
    [
        ({"model": "flat", "amount": "10"}, FlatPrice),
        ({"model": "per_unit", "unit_price": 3}, PerUnitPrice),
        ({"model": "graduated", "tiers": THREE_TIERS}, GraduatedPrice),
        ({"model": "volume", "tiers": THREE_TIERS}, VolumePrice),
        ({"model": "package", "package_size": "10", "package_price": "5"}, PackagePrice),
    ],
)
def test_discriminated_union_round_trips(data: dict[str, Any], cls: type) -> None:
    price = PRICING.validate_python(data)
    assert type(price) is cls
    assert PRICING.validate_json(PRICING.dump_json(price)) == price


def test_json_with_strings_and_ints_is_accepted() -> None:
    price = PRICING.validate_json(
        '{"model": "graduated", "tiers": [{"up_to": 100, "unit_price": "0.10"},'
        ' {"up_to": null, "unit_price": "0.05", "flat_fee": 1}]}'
    )
    assert isinstance(price, GraduatedPrice)
    assert price.amount_for(D(150)) == D("13.50")


def test_dump_keeps_decimals_as_strings() -> None:
    assert PRICING.dump_json(FlatPrice(amount="0.10")) == b'{"model":"flat","amount":"0.10"}'


@pytest.mark.parametrize(
    "data",
    [
        {"model": "flat", "amount": 0.1},
        {"model": "per_unit", "unit_price": 9.99},
        {"model": "package", "package_size": 10.0, "package_price": "1"},
        {"model": "package", "package_size": 10, "package_price": "1", "free_units": 1.5},
        {"model": "volume", "tiers": [{"up_to": 10.0, "unit_price": "1"}, {"up_to": None}]},
        {"model": "graduated", "tiers": [{"up_to": None, "unit_price": 0.5}]},
        {"model": "graduated", "tiers": [{"up_to": None, "flat_fee": 2.0}]},
    ],
)
def test_floats_are_rejected(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="use a string or integer for .*, not a float"):
        PRICING.validate_python(data)


def test_floats_are_rejected_from_json_too() -> None:
    with pytest.raises(ValidationError, match="use a string or integer for money, not a float"):
        PRICING.validate_json('{"model": "flat", "amount": 0.1}')


def test_floats_are_rejected_by_constructors() -> None:
    with pytest.raises(ValidationError, match="use a string or integer for money, not a float"):
        FlatPrice(amount=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not a float"):
        Tier(up_to=1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": "flat", "amount": "-1"}, "greater than or equal to 0"),
        ({"model": "per_unit", "unit_price": "-0.01"}, "greater than or equal to 0"),
        ({"model": "package", "package_size": "0", "package_price": "1"}, "greater than 0"),
        ({"model": "package", "package_size": "1", "package_price": "-1"}, "greater than or equal"),
        ({"model": "package", "package_size": "1", "package_price": "1", "free_units": "-1"}, "greater"),
        ({"model": "graduated", "tiers": [{"up_to": None, "unit_price": "-1"}]}, "greater than or equal"),
        ({"model": "graduated", "tiers": [{"up_to": None, "flat_fee": "-1"}]}, "greater than or equal"),
        ({"model": "graduated", "tiers": []}, "at least one tier"),
        ({"model": "graduated", "tiers": [{"up_to": 10}]}, "last tier must have up_to: null"),
        ({"model": "volume", "tiers": [{"up_to": None}, {"up_to": None}]}, "only the last tier"),
        ({"model": "volume", "tiers": [{"up_to": 10}, {"up_to": 10}, {"up_to": None}]}, "strictly ascending"),
        ({"model": "volume", "tiers": [{"up_to": 20}, {"up_to": 10}, {"up_to": None}]}, "strictly ascending"),
        ({"model": "volume", "tiers": [{"up_to": 0}, {"up_to": None}]}, "greater than 0"),
        ({"model": "graduated", "tiers": [{"unit_price": "1"}]}, "up_to"),  # up_to is required
        ({"model": "flat", "amount": "1", "currency": "USD"}, "Extra inputs are not permitted"),
        ({"model": "volume", "tiers": [{"up_to": None, "price": "1"}]}, "Extra inputs"),
        ({"model": "flat", "amount": "NaN"}, "finite number"),
        ({"model": "flat", "amount": "abc"}, "valid decimal"),
        ({"model": "tiered", "amount": "1"}, "does not match any of the expected tags"),
        ({"amount": "1"}, "Unable to extract tag"),
    ],
)
def test_invalid_pricing_is_rejected(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PRICING.validate_python(data)


def test_models_are_immutable() -> None:
    price = FlatPrice(amount="1")
    with pytest.raises(ValidationError):
        price.amount = D(2)  # type: ignore[misc]


ALL_MODELS = [
    FlatPrice(amount="1"),
    PerUnitPrice(unit_price="1"),
    GraduatedPrice(tiers=THREE_TIERS),
    VolumePrice(tiers=THREE_TIERS),
    PackagePrice(package_size=1, package_price="1"),
]


@pytest.mark.parametrize("price", ALL_MODELS, ids=lambda p: p.model)
def test_amount_for_rejects_bad_quantities(price: Any) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        price.amount_for(D("-1"))
    with pytest.raises(ValueError, match="finite"):
        price.amount_for(D("NaN"))
    with pytest.raises(TypeError, match="float"):
        price.amount_for(1.5)
    with pytest.raises(TypeError):
        price.amount_for("3")


# --- properties ------------------------------------------------------------

money = st.decimals(min_value=0, max_value=10_000, places=4, allow_nan=False, allow_infinity=False)
quantities = st.decimals(min_value=0, max_value=100_000, places=3, allow_nan=False, allow_infinity=False)


@st.composite
def tier_lists(draw: st.DrawFn) -> list[Tier]:
    """1 to 5 tiers with strictly ascending bounds, the last one unbounded."""
    bounds = sorted(draw(st.sets(st.integers(min_value=1, max_value=5_000), max_size=4)))
    return [Tier(up_to=bound, unit_price=draw(money), flat_fee=draw(money)) for bound in [*bounds, None]]


@settings(max_examples=200)
@given(tier_lists(), quantities, quantities)
def test_graduated_never_decreases(tiers: list[Tier], q1: Decimal, q2: Decimal) -> None:
    price = GraduatedPrice(tiers=tiers)
    low, high = sorted([q1, q2])
    assert 0 <= price.amount_for(low) <= price.amount_for(high)


@given(tier_lists(), st.integers(min_value=0, max_value=300))
def test_graduated_matches_unit_by_unit_sum(tiers: list[Tier], quantity: int) -> None:
    """For whole units, pricing each unit by its tier gives the same total."""
    expected = D(0)
    touched: set[int] = set()
    for unit in range(1, quantity + 1):
        index = next(i for i, t in enumerate(tiers) if t.up_to is None or unit <= t.up_to)
        expected += tiers[index].unit_price
        touched.add(index)
    expected += sum((tiers[i].flat_fee for i in touched), D(0))
    assert GraduatedPrice(tiers=tiers).amount_for(D(quantity)) == expected


@given(tier_lists(), quantities)
def test_volume_is_non_negative_and_uses_one_tier(tiers: list[Tier], quantity: Decimal) -> None:
    amount = VolumePrice(tiers=tiers).amount_for(quantity)
    assert amount >= 0
    if quantity > 0:
        assert any(amount == quantity * t.unit_price + t.flat_fee for t in tiers)


@given(money, quantities)
def test_per_unit_is_non_negative(unit_price: Decimal, quantity: Decimal) -> None:
    assert PerUnitPrice(unit_price=unit_price).amount_for(quantity) >= 0


@given(
    st.decimals(min_value="0.001", max_value=1_000, places=3, allow_nan=False, allow_infinity=False),
    money,
    quantities,
    quantities,
)
def test_package_is_whole_packages(
    size: Decimal, package_price: Decimal, free_units: Decimal, quantity: Decimal
) -> None:
    price = PackagePrice(package_size=size, package_price=package_price, free_units=free_units)
    amount = price.amount_for(quantity)
    assert amount >= 0
    billable = max(D(0), quantity - free_units)
    packages = ceil(Fraction(billable) / Fraction(size))
    assert amount == packages * package_price
    assert (packages - 1) * size < billable <= packages * size or billable == 0
