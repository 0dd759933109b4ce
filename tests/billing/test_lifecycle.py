"""The invoice lifecycle and price-book resolution."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billbridge.billing.lifecycle import InvalidTransition, is_late, status_after_payment, transition
from billbridge.billing.model import Contract, Product
from billbridge.billing.pricebook import PriceBookError, resolve_prices

D = Decimal


@pytest.mark.parametrize(
    ("path"),
    [
        ["draft", "under_review", "approved", "sent"],
        ["draft", "approved", "void"],
        ["draft", "under_review", "draft", "void"],
    ],
)
def test_allowed_paths(path: list[str]) -> None:
    for current, target in zip(path, path[1:], strict=False):
        assert transition(current, target) == target


@pytest.mark.parametrize(
    ("current", "target", "message"),
    [
        ("draft", "sent", "cannot go from draft to sent"),
        ("sent", "approved", "cannot go from sent to approved"),
        ("paid", "void", "cannot go from paid to void"),
        (
            "sent",
            "void",
            r"cannot go from sent to void \(allowed: none\); an issued document is corrected by a credit note",
        ),
        ("void", "draft", "cannot go from void to draft"),
        ("draft", "late", "unknown status 'late'"),
        ("draft", "paid", "cannot go from draft to paid"),
    ],
)
def test_refused_transitions(current: str, target: str, message: str) -> None:
    with pytest.raises(InvalidTransition, match=message):
        transition(current, target)


def test_payments_drive_paid_and_partially_paid() -> None:
    assert status_after_payment("sent", D("100.00"), D("40.00")) == "partially_paid"
    assert status_after_payment("partially_paid", D("100.00"), D("100.00")) == "paid"
    assert status_after_payment("sent", D("100.00"), D("120.00")) == "paid"
    with pytest.raises(InvalidTransition):
        status_after_payment("approved", D("100.00"), D("1.00"))


def test_late_is_derived_from_due_date_and_open_balance() -> None:
    due = date(2026, 2, 1)
    assert is_late("sent", due, D("10.00"), D("0"), date(2026, 2, 2))
    assert not is_late("sent", due, D("10.00"), D("0"), due)
    assert not is_late("paid", due, D("10.00"), D("10.00"), date(2026, 3, 1))
    assert not is_late("approved", due, D("10.00"), D("0"), date(2026, 3, 1))  # not sent: not late


def _contract(**line: object) -> Contract:
    return Contract.model_validate(
        {
            "contract_ref": "C",
            "customer_ref": "c",
            "entity_ref": "e",
            "currency": "EUR",
            "contract_start_date": "2026-01-01",
            "lines": [{"line_ref": "l", "product_ref": "seats", **line}],
        }
    )


PRODUCTS = {
    "seats": Product.model_validate(
        {
            "product_ref": "seats",
            "name": "User seats",
            "prices": [
                {"price_ref": "usd", "currency": "USD", "pricing": {"model": "per_unit", "unit_price": "45"}},
                {"price_ref": "eur", "currency": "EUR", "pricing": {"model": "per_unit", "unit_price": "40"}},
            ],
        }
    )
}


def test_price_book_default_named_price_and_line_override() -> None:
    assert resolve_prices(_contract(), PRODUCTS).lines[0].pricing.unit_price == D("40")
    assert resolve_prices(_contract(), PRODUCTS).lines[0].description == "User seats"
    override = resolve_prices(
        _contract(pricing={"model": "flat", "amount": "5"}, description="Custom"), PRODUCTS
    ).lines[0]
    assert (override.pricing.amount, override.description) == (D("5"), "Custom")
    with pytest.raises(PriceBookError, match="'usd' is in USD, the contract in EUR") as caught:
        resolve_prices(_contract(price_ref="usd"), PRODUCTS)
    assert caught.value.field == "lines[0].price_ref"
    with pytest.raises(PriceBookError, match="unknown product 'nope'"):
        resolve_prices(_contract(product_ref="nope"), PRODUCTS)


def test_approval_and_released_periods() -> None:
    from billbridge.billing import lifecycle

    assert [s for s in lifecycle.STATUSES if lifecycle.approval(s)] == ["draft", "under_review"]
    assert lifecycle.approval("approved") is None and lifecycle.approval("void") is None
    assert [s for s in lifecycle.STATUSES if lifecycle.releases_period(s)] == ["void"]
    assert lifecycle.transition("approved", "sent") == "sent"  # mark_sent's move, allowed
