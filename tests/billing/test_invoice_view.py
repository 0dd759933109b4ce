"""How documents read: every line's amount - discount = billed, in minor units; quantities as written."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billbridge.billing.invoice_view import LineMoney, line_money, quantity_str

D = Decimal


def test_a_credit_line_credits_its_discount_too() -> None:
    """A credit of 14 of 31 days of 135.00 less 10%: -round(121.50 x 14/31) = -54.87 billed,
    -round(135.00 x 14/31) = -60.97 before discount, so -6.10 of discount taken back."""
    money = line_money(
        kind="recurring",
        amount=D("135.000"),
        discount=D("13.5000"),
        billed_amount=D("-54.87"),
        billed_days=14,
        period_days=31,
        sign=-1,
        currency="USD",
    )
    assert money == LineMoney(D("-60.97"), D("-6.10"), D("-54.87"))


def test_a_contract_discount_line_is_all_discount_in_the_currency_s_minor_units() -> None:
    money = line_money(
        kind="discount",
        amount=D("-7.5"),
        discount=D(0),
        billed_amount=D("-7.500"),
        billed_days=1,
        period_days=1,
        sign=-1,
        currency="KWD",
    )
    assert (str(money.amount), str(money.discount), str(money.billed)) == ("0", "7.500", "-7.500")


@pytest.mark.parametrize(
    ("quantity", "shown"),
    [("1.0", "1"), ("60", "60"), ("0.250", "0.25"), ("1E+3", "1000"), ("0.000", "0"), ("2.5E-7", "0.00000025")],
)
def test_quantities_read_as_written_without_trailing_zeros(quantity: str, shown: str) -> None:
    assert quantity_str(D(quantity)) == shown
