"""Every field every mapping reads, fed random and hostile values (hypothesis): the only outcomes
allowed are a mapped record (whose text any store keeps) or a MappingError naming a field, which
quarantines that one record. Anything else raised (an OverflowError from a date, a TypeError from a
dict where a number belongs) used to stop a whole sync or reconciliation, on every run.

Each case starts from a valid record (the fixtures of the other mapping tests, shaped after the
vendors' documented examples), puts one hostile value at one path (every node of the record, plus
the fields it may carry but the example leaves out), and maps it.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from billbridge.billing.documents import IncomingPayment
from billbridge.mapping import hubspot, salesforce
from billbridge.mapping.crm import is_won, map_deal
from billbridge.mapping.fields import MappingError
from billbridge.mapping.quickbooks import payment_deleted, payment_from_qbo
from billbridge.mapping.stripe import (
    StripeSubscriptionMapping,
    map_subscription,
    payment_from_charge,
    payment_from_dispute,
    payment_from_refund,
)
from billbridge.records import DealBundle

FIXTURES = Path(__file__).parent / "fixtures"
Path_ = tuple[str | int, ...]

# Strings a vendor value parser has tripped on, or could: out-of-range numbers and dates, non-ASCII
# digits, Python-only number syntax, characters no database keeps, JSON-looking text.
NASTY_TEXT = [
    "99999999999999999999999",
    "-99999999999999999999999",
    "0",
    "-1",
    "1e999999",
    "1e-999999",
    "NaN",
    "-Infinity",
    "sNaN",
    "1_000",
    "\u0663",
    "\uff11\uff12",
    "",
    " ",
    "\x00",
    "ab\x00cd",
    "\ud800",
    "x\udfffy",
    "0001-01-01",
    "9999-12-31",
    "2026-02-30",
    "2026-13-01T00:00:00Z",
    "1970-01-01T00:00:00+25:00",
    "null",
    "true",
    "[]",
    "{}",
    '{"model": "per_unit"}',
    '{"model": "graduated", "tiers": [{"up_to": 1e999}]}',
    "[" * 5000,
    "x" * 5000,
]
HOSTILE: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**30, -(10**30), 2**63, -(2**63) - 1, 10**4000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(st.characters(codec=None, categories=["Cs", "Cc", "Nd", "Zs"]), max_size=8),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)


@pytest.fixture(autouse=True)
def machine_time_zone() -> Iterator[str]:
    """One zone west of UTC for these (the other mapping tests run in three: conftest.py)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    yield os.environ["TZ"]
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


OURS = {("lines",), ("products",), ("prices",)}
"""The top level of a test record, where it stands for what our connector hands over (a deal's list
of line items, the dicts of products and prices by id): not vendor values. Their contents are."""


def nodes(value: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every path into a JSON-like value (containers and leaves), the root and ``OURS`` left out."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        if (*prefix, key) not in OURS:
            yield (*prefix, key)
        yield from nodes(child, (*prefix, key))


def put(record: Any, path: Path_, value: Any) -> Any:
    """A deep copy of ``record`` with ``value`` at ``path`` (missing objects on the way are made)."""
    out = copy.deepcopy(record)
    target = out
    for key in path[:-1]:
        if isinstance(target, dict) and target.get(key) is None:
            target[key] = {}
        target = target[key]
    target[path[-1]] = value
    return out


def storable(value: Any, where: str = "result") -> None:
    """Everything a mapped record holds can be stored: text without NUL or unpaired surrogates,
    finite decimals."""
    if isinstance(value, BaseModel):
        storable(value.model_dump(), where)
    elif is_dataclass(value) and not isinstance(value, type):
        storable(asdict(value), where)
    elif isinstance(value, dict):
        for key, child in value.items():
            storable(key, where)
            storable(child, f"{where}.{key}")
    elif isinstance(value, list | tuple | set):
        for child in value:
            storable(child, where)
    elif isinstance(value, str):
        assert "\x00" not in value, where
        value.encode("utf-8")
    elif isinstance(value, Decimal):
        assert value.is_finite(), where


def outcome(run: Callable[[], Any]) -> str:
    """Map: either a result whose contents are storable, or a MappingError naming a field."""
    try:
        result = run()
    except MappingError as exc:
        assert exc.field.strip() and str(exc).strip()
        return "quarantined"
    storable(result)
    return "mapped" if result is not None else "skipped"


# -- HubSpot ----------------------------------------------------------------------------------------

HUBSPOT = json.loads((FIXTURES / "hubspot_deal_bundle.json").read_text())
HUBSPOT.pop("_source", None)
HUBSPOT_EXTRA: list[Path_] = [
    ("deal", "properties", name)
    for name in ("billing_start_date", "billing_cycle", "billing_timing", "legal_entity", "payment_terms_days")
] + [
    ("company", "properties", "legal_entity"),
    ("lines", 0, "properties", "hs_discount_percentage"),
    ("products", "191902", "properties", "charge_type"),
    ("products", "191902", "properties", "pricing_json_usd"),
    ("products", "191903", "properties", "usage_aggregation"),
    ("products", "191902", "properties", "revenue_recognition"),
]


def map_hubspot(raw: dict[str, Any]) -> Any:
    bundle = DealBundle(raw["deal"], raw["lines"], raw["company"], raw["products"])
    deal, company, products = hubspot.bundle_to_crm(bundle, {})
    return map_deal(deal, company, products, hubspot.DEFAULT_MAPPING) if is_won(deal, hubspot.DEFAULT_MAPPING) else None


def test_the_hubspot_fixture_maps() -> None:
    assert outcome(lambda: map_hubspot(HUBSPOT)) == "mapped"


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(set(nodes(HUBSPOT)) | set(HUBSPOT_EXTRA), key=str), ids=str)
@SETTINGS
@given(value=HOSTILE)
def test_hubspot_deals_with_hostile_values(path: Path_, value: Any) -> None:
    outcome(lambda: map_hubspot(put(HUBSPOT, path, value)))


# -- Salesforce -------------------------------------------------------------------------------------

SF_PRODUCTS = {p["Id"]: p for p in json.loads((FIXTURES / "salesforce_products.json").read_text())["records"]}
SF_OPPORTUNITY = json.loads((FIXTURES / "salesforce_opportunities.json").read_text())["records"][0]
SALESFORCE = {"opportunity": SF_OPPORTUNITY, "products": SF_PRODUCTS}


def map_salesforce(raw: dict[str, Any]) -> Any:
    opp = raw["opportunity"]  # as the connector splits it up
    lines = (opp.get("OpportunityLineItems") if isinstance(opp, dict) else None) or {}
    records = lines.get("records") if isinstance(lines, dict) else lines
    account = opp.get("Account") if isinstance(opp, dict) else None
    bundle = DealBundle(opp, records if isinstance(records, list) else [], account, raw["products"])
    deal, company, products = salesforce.bundle_to_crm(bundle, {})
    if not is_won(deal, salesforce.DEFAULT_MAPPING):
        return None
    return map_deal(deal, company, products, salesforce.DEFAULT_MAPPING)


def test_the_salesforce_fixture_maps() -> None:
    assert outcome(lambda: map_salesforce(SALESFORCE)) == "mapped"


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(nodes(SALESFORCE), key=str), ids=str)
@SETTINGS
@given(value=HOSTILE)
def test_salesforce_opportunities_with_hostile_values(path: Path_, value: Any) -> None:
    outcome(lambda: map_salesforce(put(SALESFORCE, path, value)))


# -- Stripe: charges, refunds, disputes -------------------------------------------------------------


def _ts(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


INVOICE = {
    "id": "in_1",
    "metadata": {"billbridge_number": "US-INV-000042", "billbridge_customer": "sf-ACC1"},
    "parent": {"subscription_details": {"subscription": "sub_1"}},
}
CHARGE = {
    "charge": {
        "id": "ch_1",
        "amount": 13500,
        "amount_captured": 13500,
        "amount_refunded": 0,
        "created": _ts(date(2026, 2, 3)),
        "currency": "usd",
        "customer": "cus_1",
        "description": "Payment for US-INV-000042",
        "payment_intent": "pi_1",
        "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}},
    },
    "balance_transaction": {"fee": 422, "net": 13078},
    "invoice": INVOICE,
}
REFUND = {
    "refund": {
        "id": "re_1",
        "amount": 3500,
        "currency": "usd",
        "charge": "ch_1",
        "created": _ts(date(2026, 3, 1)),
        "status": "succeeded",
        "reason": "requested_by_customer",
    },
    "invoice": INVOICE,
}
DISPUTE = {
    "dispute": {
        "id": "dp_1",
        "amount": 25000,
        "currency": "usd",
        "charge": "ch_1",
        "reason": "fraudulent",
        "status": "needs_response",
        "balance_transactions": [{"id": "txn_1", "amount": -25000, "fee": 1500, "net": -26500}],
    },
    "invoice": INVOICE,
    "at": _ts(date(2026, 11, 30)),
}
PAYMENTS: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], IncomingPayment]]] = {
    "charge": (CHARGE, lambda r: payment_from_charge(r["charge"], r["balance_transaction"], r["invoice"])),
    "refund": (REFUND, lambda r: payment_from_refund(r["refund"], r["invoice"])),
    "withdrawal": (
        DISPUTE,
        lambda r: payment_from_dispute("charge.dispute.funds_withdrawn", r["dispute"], r["invoice"], r["at"]),
    ),
    "reinstatement": (
        DISPUTE,
        lambda r: payment_from_dispute("charge.dispute.funds_reinstated", r["dispute"], r["invoice"], r["at"]),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "path"), [(kind, path) for kind, (raw, _) in PAYMENTS.items() for path in nodes(raw)], ids=str
)
@SETTINGS
@given(value=HOSTILE)
def test_stripe_payments_with_hostile_values(kind: str, path: Path_, value: Any) -> None:
    raw, mapper = PAYMENTS[kind]
    assert outcome(lambda: mapper(raw)) == "mapped"
    outcome(lambda: mapper(put(raw, path, value)))


# -- Stripe subscriptions ---------------------------------------------------------------------------

PRICE = {
    "id": "price_1",
    "currency": "usd",
    "product": "prod_1",
    "billing_scheme": "per_unit",
    "unit_amount": 4500,
    "unit_amount_decimal": "4500",
    "transform_quantity": {"divide_by": 10, "round": "up"},
    "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
    "nickname": "Seats",
}
TIERED = {
    "id": "price_2",
    "currency": "usd",
    "product": "prod_2",
    "billing_scheme": "tiered",
    "tiers_mode": "graduated",
    "tiers": [
        {"up_to": 1000, "unit_amount": None, "unit_amount_decimal": "0.5", "flat_amount": 0},
        {"up_to": "inf", "unit_amount": 1, "unit_amount_decimal": None, "flat_amount": None},
    ],
    "recurring": {"interval": "month", "interval_count": 1, "usage_type": "metered"},
}
SUBSCRIPTION = {
    "sub": {
        "id": "sub_1",
        "customer": "cus_1",
        "currency": "usd",
        "status": "active",
        "start_date": _ts(date(2026, 1, 15)),
        "trial_end": _ts(date(2026, 1, 20)),
        "billing_cycle_anchor": _ts(date(2026, 1, 20)),
        "cancel_at": None,
        "cancel_at_period_end": False,
        "ended_at": None,
        "current_period_end": _ts(date(2026, 2, 20)),
        "collection_method": "charge_automatically",
        "days_until_due": 30,
        "discounts": [],
        "metadata": {"billbridge_entity": "us-inc"},
        "items": {
            "has_more": False,
            "data": [
                {"id": "si_1", "price": PRICE, "quantity": 12, "current_period_end": _ts(date(2026, 2, 20))},
                {"id": "si_2", "price": {"id": "price_2"}, "quantity": None},
            ],
        },
    },
    "customer": {"id": "cus_1", "name": "Globex", "email": "billing@globex.test", "deleted": False},
    "prices": {"price_2": TIERED},
    "products": {
        "prod_1": {"id": "prod_1", "name": "User seats", "metadata": {"sku": "SEATS"}},
        "prod_2": {"id": "prod_2", "name": "API calls", "metadata": {"sku": "API-CALLS"}},
    },
    "changed_at": _ts(date(2026, 1, 25)),
}


def map_stripe_subscription(raw: dict[str, Any]) -> Any:
    return map_subscription(
        raw["sub"],
        raw["customer"],
        raw["prices"],
        raw["products"],
        StripeSubscriptionMapping(),
        changed_at=raw["changed_at"],
    )


def test_the_subscription_fixture_maps() -> None:
    assert outcome(lambda: map_stripe_subscription(SUBSCRIPTION)) == "mapped"


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(nodes(SUBSCRIPTION), key=str), ids=str)
@SETTINGS
@given(value=HOSTILE)
def test_stripe_subscriptions_with_hostile_values(path: Path_, value: Any) -> None:
    outcome(lambda: map_stripe_subscription(put(SUBSCRIPTION, path, value)))


# -- QuickBooks payments ----------------------------------------------------------------------------

QBO_PAYMENT = json.loads(
    """{"Id": "77", "SyncToken": "1", "TxnDate": "2026-02-03", "TotalAmt": 150.10, "UnappliedAmt": 20.00,
    "CurrencyRef": {"value": "USD"}, "CustomerRef": {"value": "58"}, "PaymentRefNum": "CHK-1001",
    "PrivateNote": "billbridge stripe ch_1", "PaymentMethodRef": {"value": "3", "name": "Check"},
    "MetaData": {"LastUpdatedTime": "2026-02-03T10:00:00-08:00"},
    "Line": [{"Amount": 100.05, "LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}]},
             {"Amount": 30.05, "LinkedTxn": [{"TxnId": "131", "TxnType": "Invoice"}]}]}""",
    parse_float=Decimal,  # as the connector's client parses QuickBooks' JSON
)
NUMBERS = {"130": "US-INV-000042", "131": "US-INV-000043"}


def test_the_quickbooks_payment_maps() -> None:
    assert outcome(lambda: payment_from_qbo(QBO_PAYMENT, NUMBERS)) == "mapped"
    assert outcome(lambda: payment_deleted({"Id": "77", "status": "Deleted", **QBO_PAYMENT})) == "mapped"


@pytest.mark.parametrize("path", sorted(nodes(QBO_PAYMENT), key=str), ids=str)
@SETTINGS
@given(value=HOSTILE)
def test_quickbooks_payments_with_hostile_values(path: Path_, value: Any) -> None:
    hostile = put(QBO_PAYMENT, path, value)
    outcome(lambda: payment_from_qbo(hostile, NUMBERS))
    outcome(lambda: payment_deleted(hostile))
