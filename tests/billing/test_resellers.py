"""Reseller terms: the list price less the reseller's discount (per product where it says so, on top of
a line's own percentage), the reseller's payment terms; a contract it cannot resell names the field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billbridge.billing.model import Contract, Partner
from billbridge.billing.resellers import ResellerError, combined_percent, resell

D = Decimal


def reseller(**terms: Any) -> Partner:
    base = {"partner_ref": "channel-one", "name": "Channel One", "kind": "reseller", "entity_ref": "us"}
    return Partner.model_validate(
        {**base, "currency": "USD", "payment_terms_days": 45, "discount_percent": "25", **terms}
    )


def contract(**terms: Any) -> Contract:
    lines = [
        {"line_ref": "platform", "product_ref": "platform", "pricing": {"model": "flat", "amount": "1200"}},
        {
            "line_ref": "seats",
            "product_ref": "seats",
            "quantity": "10",
            "pricing": {"model": "per_unit", "unit_price": "45"},
            "discount": {"percent": "10"},
        },
    ]
    base = {"contract_ref": "C-1", "customer_ref": "globex", "entity_ref": "us", "currency": "USD"}
    return Contract.model_validate(
        {**base, "contract_start_date": "2026-01-01", "lines": lines, "reseller_ref": "channel-one", **terms}
    )


def test_the_reseller_pays_the_list_price_less_its_discount_on_its_terms() -> None:
    sold = resell(contract(), reseller(product_discounts=[{"product_ref": "seats", "percent": "30"}]))
    assert [line.discount.percent if line.discount else None for line in sold.lines] == [D(25), D(37)]  # 10% then 30%
    assert sold.payment_terms_days == 45
    assert sold.customer_ref == "globex" and sold.reseller_ref == "channel-one"  # the end customer stays


def test_what_a_reseller_cannot_take_names_the_field() -> None:
    with pytest.raises(ResellerError) as currency:
        resell(contract(currency="EUR"), reseller())
    assert currency.value.field == "currency"
    with pytest.raises(ResellerError) as kind:
        resell(contract(), reseller(kind="referral", discount_percent=None))
    assert kind.value.field == "reseller_ref"
    amount = contract(lines=[{"line_ref": "p", "product_ref": "platform", "discount": {"amount": "5"}}])
    with pytest.raises(ResellerError) as line:
        resell(amount, reseller())
    assert line.value.field == "lines[0].discount"


percents = st.integers(min_value=0, max_value=10_000).map(lambda n: D(n).scaleb(-2))


@given(percents, percents, st.integers(min_value=0, max_value=10**9).map(lambda n: D(n).scaleb(-2)))
def test_two_discounts_in_a_row_are_one_combined_discount(first: Decimal, second: Decimal, price: Decimal) -> None:
    combined = combined_percent(first, second)
    assert D(0) <= combined <= D(100)
    stepwise = price * (100 - first) / 100 * (100 - second) / 100
    assert price * (100 - combined) / 100 == stepwise
