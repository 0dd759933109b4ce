"""Worked examples of the Stripe mapping: minor units (incl. JPY, KWD and Stripe's own exceptions to
ISO 4217), invoice params, charges as payments and subscriptions as contracts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billbridge.billing.documents import DocumentLine, OutboundDocument
from billbridge.mapping.crm import MappingError
from billbridge.mapping.stripe import (
    StripeSubscriptionMapping,
    from_minor,
    invoice_lines,
    invoice_params,
    map_subscription,
    payment_from_charge,
    stripe_exponent,
    to_minor,
)

CONFIG = StripeSubscriptionMapping()


def _ts(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("amount", "currency", "units"),
    [
        ("135.00", "USD", 13500),
        ("0.01", "EUR", 1),
        ("15000", "JPY", 15000),
        ("1.230", "KWD", 1230),
        ("-2.50", "GBP", -250),
        ("100", "MGA", 100),  # zero-decimal at Stripe, two decimals in ISO 4217
        ("100", "ISK", 10000),  # two decimals in Stripe's API, zero in ISO 4217
    ],
)
def test_to_minor_worked_examples(amount: str, currency: str, units: int) -> None:
    assert to_minor(Decimal(amount), currency) == units
    assert from_minor(units, currency) == Decimal(amount)


@pytest.mark.parametrize(
    ("amount", "currency", "why"),
    [
        ("1.005", "USD", "whole number"),
        ("10.5", "JPY", "whole number"),
        ("1.234", "KWD", "only to 0.01"),  # Stripe wants the last of three digits to be 0
    ],
)
def test_to_minor_refuses_what_stripe_would_round(amount: str, currency: str, why: str) -> None:
    with pytest.raises(MappingError, match=why):
        to_minor(Decimal(amount), currency)


def test_unknown_currency_is_an_error() -> None:
    with pytest.raises(MappingError, match="unknown currency"):
        stripe_exponent("XYZ")


_CURRENCIES = st.sampled_from(["USD", "EUR", "JPY", "KWD", "BHD", "GBP", "KRW", "ISK"])


@given(currency=_CURRENCIES, units=st.integers(min_value=-(10**12), max_value=10**12))
def test_minor_units_round_trip(currency: str, units: int) -> None:
    if stripe_exponent(currency) == 3:
        units -= units % 10
    amount = from_minor(units, currency)
    assert to_minor(amount, currency) == units
    assert amount.as_tuple().exponent >= -stripe_exponent(currency)


@given(currency=_CURRENCIES, cents=st.integers(min_value=0, max_value=10**10))
def test_amounts_round_trip_through_stripe(currency: str, cents: int) -> None:
    amount = Decimal(cents).scaleb(-min(2, stripe_exponent(currency)))
    assert from_minor(to_minor(amount, currency), currency) == amount


def _doc(*amounts: str, currency: str = "USD", auto_charge: bool = True, total: str | None = None) -> OutboundDocument:
    lines = tuple(
        DocumentLine(f"L{i}", "SEATS", f"Seats {i}", Decimal(3), Decimal(a), date(2026, 1, 1), date(2026, 1, 31))
        for i, a in enumerate(amounts, 1)
    )
    return OutboundDocument(
        number="US-INV-000042",
        doc_type="invoice",
        version=2,
        entity_ref="us-inc",
        customer_ref="sf-ACC1",
        customer_name="Globex",
        customer_email=None,
        contract_ref="sf-OPP1",
        currency=currency,
        billing_date=date(2026, 1, 1),
        due_date=date(2026, 1, 31),
        total=Decimal(total) if total is not None else sum((Decimal(a) for a in amounts), Decimal(0)),
        auto_charge=auto_charge,
        lines=lines,
    )


def test_invoice_params_auto_charge_and_send_invoice() -> None:
    charged = invoice_params(_doc("135.00"), "cus_1")
    assert charged["collection_method"] == "charge_automatically" and "due_date" not in charged
    assert charged["metadata"] == {
        "billbridge_number": "US-INV-000042",
        "billbridge_version": "2",
        "billbridge_customer": "sf-ACC1",
        "billbridge_contract": "sf-OPP1",
    }
    assert charged["currency"] == "usd" and charged["auto_advance"] is False
    sent = invoice_params(_doc("135.00", auto_charge=False), "cus_1")
    assert sent["collection_method"] == "send_invoice"
    assert sent["days_until_due"] == 30 and "due_date" not in sent  # billed 2026-01-01, due 2026-01-31
    assert "days_until_due" not in charged


def test_invoice_lines_in_minor_units_with_credit_line() -> None:
    lines = invoice_lines(_doc("135.00", "-35.50"))
    assert [line["amount"] for line in lines] == [13500, -3550]
    assert lines[0]["metadata"] == {
        "billbridge_line": "L1",
        "billbridge_product": "SEATS",
        "billbridge_quantity": "3",
    }
    assert lines[0]["period"] == {"start": _ts(date(2026, 1, 1)), "end": _ts(date(2026, 1, 31))}
    assert [line["amount"] for line in invoice_lines(_doc("15000", currency="JPY"))] == [15000]


def test_lines_must_add_up_to_the_total() -> None:
    with pytest.raises(MappingError, match="total"):
        invoice_lines(_doc("135.00", total="135.01"))


def test_credit_notes_are_not_invoices() -> None:
    from dataclasses import replace

    with pytest.raises(MappingError, match="credit notes"):
        invoice_params(replace(_doc("10.00"), doc_type="credit_note"), "cus_1")


def test_charge_as_incoming_payment_with_fee_and_invoice() -> None:
    charge = {
        "id": "ch_1",
        "amount": 13500,
        "amount_captured": 13500,
        "amount_refunded": 0,
        "created": _ts(date(2026, 2, 3)) + 3600,
        "currency": "usd",
        "customer": "cus_1",
        "payment_intent": "pi_1",
        "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}},
    }
    invoice = {"id": "in_1", "metadata": {"billbridge_number": "US-INV-000042", "billbridge_customer": "sf-ACC1"}}
    payment = payment_from_charge(charge, {"fee": 422, "net": 13078}, invoice)
    assert (payment.amount, payment.fee, payment.currency) == (Decimal("135.00"), Decimal("4.22"), "USD")
    assert payment.received_on == date(2026, 2, 3)
    assert payment.invoice_numbers == ("US-INV-000042",) and payment.customer_ref == "sf-ACC1"
    assert payment.reference == "visa ****4242" and payment.extra["invoice"] == "in_1"
    assert payment.memo is None
    yen = payment_from_charge({**charge, "currency": "jpy", "amount": 15000, "amount_captured": 15000}, None, None)
    assert (yen.amount, yen.fee, yen.invoice_numbers, yen.customer_ref) == (Decimal(15000), Decimal(0), (), None)
    described = payment_from_charge({**charge, "description": "Payment for US-INV-000042"}, None, None)
    assert described.memo == "Payment for US-INV-000042"  # where matching looks for a written number


def _price(price_id: str, **fields: Any) -> dict[str, Any]:
    price = {
        "id": price_id,
        "object": "price",
        "currency": "usd",
        "product": "prod_1",
        "billing_scheme": "per_unit",
        "unit_amount": 4500,
        "unit_amount_decimal": Decimal("4500"),
        "tiers_mode": None,
        "transform_quantity": None,
        "recurring": {"interval": "month", "interval_count": 3, "usage_type": "licensed"},
        "nickname": None,
    }
    price.update(fields)
    return price


def _sub(*items: tuple[dict[str, Any], int], **fields: Any) -> dict[str, Any]:
    sub = {
        "id": "sub_1",
        "object": "subscription",
        "customer": "cus_1",
        "currency": "usd",
        "status": "active",
        "start_date": _ts(date(2026, 1, 15)),
        "billing_cycle_anchor": _ts(date(2026, 1, 15)),
        "cancel_at": None,
        "ended_at": None,
        "collection_method": "send_invoice",
        "days_until_due": 30,
        "metadata": {},
        "items": {
            "object": "list",
            "has_more": False,
            "data": [{"id": f"si_{i}", "price": p, "quantity": q} for i, (p, q) in enumerate(items, 1)],
        },
    }
    sub.update(fields)
    return sub


PRODUCTS = {"prod_1": {"id": "prod_1", "name": "User seats", "metadata": {"sku": "SEATS"}}}
CUSTOMER = {"id": "cus_1", "name": "Globex", "email": "billing@globex.test"}


def _map(sub: dict[str, Any], prices: dict[str, dict[str, Any]] | None = None) -> Any:
    return map_subscription(sub, CUSTOMER, prices or {}, PRODUCTS, CONFIG)


def test_per_unit_subscription_as_contract() -> None:
    mapped = _map(_sub((_price("price_1"), 12), cancel_at=_ts(date(2027, 1, 15))))
    contract = mapped.contract
    assert (contract.contract_ref, contract.customer_ref, contract.entity_ref) == ("st-sub_1", "st-cus_1", "us-inc")
    assert (contract.cycle_length, contract.cycle_unit) == (3, "month")
    assert (contract.contract_start_date, contract.contract_end_date) == (date(2026, 1, 15), date(2027, 1, 14))
    assert (contract.payment_terms_days, contract.auto_charge) == (30, False)
    line = contract.lines[0]
    assert (line.line_ref, line.product_ref, line.quantity) == ("si_1", "SEATS", Decimal(12))
    assert line.pricing is not None and line.pricing.amount_for(line.quantity) == Decimal("540.00")
    assert mapped.customer.name == "Globex" and mapped.customer.email == "billing@globex.test"


def test_package_pricing_from_transform_quantity() -> None:
    price = _price(
        "price_2", unit_amount=1000, unit_amount_decimal="1000", transform_quantity={"divide_by": 1000, "round": "up"}
    )
    line = _map(_sub((price, 2500))).contract.lines[0]
    assert line.pricing is not None and line.pricing.model == "package"
    assert line.pricing.amount_for(Decimal(2500)) == Decimal("30.00")  # 3 packs of 1,000 at 10.00


def test_graduated_and_volume_tiers_from_expanded_prices() -> None:
    tiers = [
        {"up_to": 10, "unit_amount_decimal": "5000", "flat_amount_decimal": "0"},
        {"up_to": None, "unit_amount_decimal": "4000", "flat_amount_decimal": "10000"},
    ]
    graduated = _price(
        "price_3", billing_scheme="tiered", tiers_mode="graduated", unit_amount=None, unit_amount_decimal=None
    )
    volume = _price("price_4", billing_scheme="tiered", tiers_mode="volume", unit_amount=None, unit_amount_decimal=None)
    prices = {"price_3": {**graduated, "tiers": tiers}, "price_4": {**volume, "tiers": tiers}}
    lines = _map(_sub((graduated, 25), (volume, 25)), prices).contract.lines
    assert lines[0].pricing is not None and lines[1].pricing is not None
    assert lines[0].pricing.amount_for(Decimal(25)) == Decimal("1200.00")  # 10 x 50 + 15 x 40 + 100
    assert lines[1].pricing.amount_for(Decimal(25)) == Decimal("1100.00")  # 25 x 40 + 100


def test_sub_cent_prices_stay_exact() -> None:
    price = _price("price_5", unit_amount=None, unit_amount_decimal="0.25")  # a quarter of a cent
    line = _map(_sub((price, 1000))).contract.lines[0]
    assert line.pricing is not None and line.pricing.amount_for(Decimal(1000)) == Decimal("2.50")


def test_jpy_subscription() -> None:
    price = _price("price_6", currency="jpy", unit_amount=6750, unit_amount_decimal="6750")
    contract = _map(
        _sub((price, 2), currency="jpy", collection_method="charge_automatically", days_until_due=None)
    ).contract
    assert (contract.currency, contract.entity_ref, contract.auto_charge) == ("JPY", "jp-kk", True)
    assert contract.lines[0].pricing is not None
    assert contract.lines[0].pricing.amount_for(Decimal(2)) == Decimal(13500)


@pytest.mark.parametrize(
    ("sub", "prices", "field"),
    [
        (
            _sub((_price("price_1"), 1), (_price("price_7", recurring={"interval": "year", "interval_count": 1}), 1)),
            {},
            "subscription sub_1: items.data[].price.recurring",
        ),
        (
            _sub((_price("price_8", billing_scheme="tiered", tiers_mode="graduated"), 1)),
            {},
            "subscription sub_1: items.data[0].price.tiers",
        ),
        (
            _sub((_price("price_9", transform_quantity={"divide_by": 10, "round": "down"}), 1)),
            {},
            "subscription sub_1: items.data[0].price.transform_quantity.round",
        ),
        (_sub((_price("price_1"), 1), currency="xyz"), {}, "subscription sub_1: currency"),
        (_sub((_price("price_1"), -1)), {}, "subscription sub_1: items.data[0].quantity"),
        (_sub((_price("price_1"), 1), discounts=["di_1"]), {}, "subscription sub_1: discounts"),
    ],
)
def test_errors_name_the_subscription_and_field(sub: dict[str, Any], prices: dict[str, Any], field: str) -> None:
    with pytest.raises(MappingError) as caught:
        _map(sub, prices)
    assert caught.value.field == field


def test_never_started_subscriptions_are_skipped() -> None:
    assert _map(_sub((_price("price_1"), 1), status="incomplete_expired")) is None


def test_refund_as_negative_payment() -> None:
    from billbridge.mapping.stripe import payment_from_refund

    refund = {
        "id": "re_1",
        "amount": 3500,
        "currency": "usd",
        "charge": "ch_1",
        "created": _ts(date(2026, 3, 1)),
        "status": "succeeded",
        "reason": None,
    }
    invoice = {"id": "in_1", "metadata": {"billbridge_number": "US-INV-000042", "billbridge_customer": "sf-ACC1"}}
    payment = payment_from_refund(refund, invoice)
    assert (payment.payment_ref, payment.amount, payment.received_on) == ("re_1", Decimal("-35.00"), date(2026, 3, 1))
    assert payment.invoice_numbers == ("US-INV-000042",) and payment.refund_of == "ch_1"


def test_a_free_trial_moves_the_billing_start_to_its_end() -> None:
    contract = _map(_sub((_price("price_1"), 1), trial_end=_ts(date(2026, 2, 1)), status="trialing")).contract
    assert contract.contract_start_date == date(2026, 2, 1)


def test_subscriptions_are_billed_by_stripe_and_name_their_products() -> None:
    mapped = _map(_sub((_price("price_1"), 12)))
    assert mapped.contract.billed_by == "stripe" and mapped.contract.effective_date is None
    assert [(p.product_ref, p.name, p.prices) for p in mapped.products] == [("SEATS", "User seats", [])]


def test_a_change_applies_from_its_day_and_a_cancellation_ends_where_stripe_stops() -> None:
    sub = _sub((_price("price_1"), 12))
    changed = map_subscription(sub, CUSTOMER, {}, PRODUCTS, CONFIG, changed_at=_ts(date(2026, 3, 4)) + 3600)
    assert changed is not None and changed.contract.effective_date == date(2026, 3, 4)
    before_start = map_subscription(sub, CUSTOMER, {}, PRODUCTS, CONFIG, changed_at=_ts(date(2025, 12, 1)))
    assert before_start is not None and before_start.contract.effective_date == date(2026, 1, 15)
    # canceled now (ended_at at 15:00 on 10 March): the 10th is the last day of service
    ended_at = _ts(date(2026, 3, 10)) + 15 * 3600
    canceled = {**sub, "status": "canceled", "canceled_at": ended_at, "ended_at": ended_at}
    stopped = map_subscription(canceled, CUSTOMER, {}, PRODUCTS, CONFIG, changed_at=ended_at)
    assert stopped is not None
    assert (stopped.contract.contract_end_date, stopped.contract.effective_date) == (
        date(2026, 3, 10),
        date(2026, 3, 10),
    )
    # at period end without cancel_at (older API versions): the current period's end, from the items
    period_end = _ts(date(2026, 4, 15))
    items = {**sub["items"], "data": [{**sub["items"]["data"][0], "current_period_end": period_end}]}
    at_period_end = {**sub, "cancel_at_period_end": True, "canceled_at": _ts(date(2026, 3, 20)), "items": items}
    scheduled = map_subscription(at_period_end, CUSTOMER, {}, PRODUCTS, CONFIG, changed_at=_ts(date(2026, 3, 20)))
    assert scheduled is not None
    assert (scheduled.contract.contract_end_date, scheduled.contract.effective_date) == (
        date(2026, 4, 14),
        date(2026, 3, 20),
    )


def test_metered_prices_need_a_usage_product_and_deleted_customers_are_refused() -> None:
    metered = _price("price_m", recurring={"interval": "month", "interval_count": 1, "usage_type": "metered"})
    line = _map(_sub((metered, 1))).contract.lines[0]
    assert (line.charge, line.product_ref, line.quantity) == ("usage", "SEATS", Decimal(1))
    no_sku = {"prod_1": {"id": "prod_1", "name": "API calls", "metadata": {}}}
    with pytest.raises(MappingError) as caught:
        map_subscription(_sub((metered, 1)), CUSTOMER, {}, no_sku, CONFIG)
    assert caught.value.field == "subscription sub_1: items.data[0].price.product.metadata.sku"
    with pytest.raises(MappingError) as gone:
        map_subscription(_sub((_price("price_1"), 1)), {"id": "cus_1", "deleted": True}, {}, PRODUCTS, CONFIG)
    assert gone.value.field == "subscription sub_1: customer"


def test_a_dispute_withdrawal_and_reinstatement_as_payments() -> None:
    """Shaped as Stripe's charge.dispute.funds_withdrawn example: USD 250.00 and a 15.00 dispute fee."""
    from billbridge.mapping.stripe import payment_from_dispute

    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "amount": 25000,
        "currency": "usd",
        "charge": "ch_1",
        "payment_intent": "pi_1",
        "reason": "fraudulent",
        "status": "needs_response",
        "balance_transactions": [{"id": "txn_1", "amount": -25000, "fee": 1500, "net": -26500, "type": "adjustment"}],
    }
    invoice = {"id": "in_1", "metadata": {"billbridge_number": "US-INV-7", "billbridge_customer": "globex"}}
    at = _ts(date(2026, 11, 30))
    out = payment_from_dispute("charge.dispute.funds_withdrawn", dispute, invoice, at)
    assert (out.payment_ref, out.amount, out.fee, out.invoice_numbers) == (
        "dp_1:withdrawn",
        Decimal("-250.00"),
        Decimal("15.00"),
        ("US-INV-7",),
    )
    assert (out.customer_ref, out.received_on, out.refund_of) == ("globex", date(2026, 11, 30), "ch_1")
    back = payment_from_dispute("charge.dispute.funds_reinstated", {**dispute, "status": "won"}, invoice, at)
    assert (back.payment_ref, back.amount, back.fee) == ("dp_1:reinstated", Decimal("250.00"), Decimal(0))
