"""Render the vendor-neutral demo world in the Stripe sandbox: companies as customers (each with a
working test card as default payment method), price-book products with one Stripe price per
(currency, cycle) and won deals as subscriptions, so the subscription contract source has data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from billbridge.mapping.stripe import stripe_exponent
from billbridge.sandbox.demo_world import CYCLES_MONTHS, DemoDeal, DemoProduct, DemoWorld
from billbridge.sandbox.stripe import catalog
from billbridge.sandbox.stripe.state import StripeState

_INTERVALS = {1: ("month", 1), 3: ("month", 3), 12: ("year", 1)}


@dataclass
class SeededIds:
    """Which Stripe ids the world's records got."""

    customers: dict[str, str] = field(default_factory=dict)  # company key -> cus_
    products: dict[str, str] = field(default_factory=dict)  # sku -> prod_
    prices: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (sku, currency, cycle) -> price_
    subscriptions: dict[str, str] = field(default_factory=dict)  # deal key -> sub_


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _units(amount: Any, currency: str) -> str:
    """A price-book amount as Stripe's ``*_decimal`` minor-unit string (sub-unit prices allowed)."""
    return format(Decimal(str(amount)).scaleb(stripe_exponent(currency)).normalize(), "f")


def price_params(product: DemoProduct, product_id: str, currency: str, cycle: str) -> dict[str, Any] | None:
    """Stripe price params of a canonical price-book pricing (None for what a subscription cannot hold)."""
    if product.charge != "recurring":
        return None
    pricing = product.pricing[currency]
    interval, count = _INTERVALS[CYCLES_MONTHS[cycle]]
    params: dict[str, Any] = {
        "product": product_id,
        "currency": currency.lower(),
        "recurring": {"interval": interval, "interval_count": count},
        "metadata": {"sku": product.sku, "cycle": cycle},
    }
    model = pricing["model"]
    if model == "flat":
        params["unit_amount_decimal"] = _units(pricing["amount"], currency)
    elif model == "per_unit":
        params["unit_amount_decimal"] = _units(pricing["unit_price"], currency)
    elif model == "package":
        params["unit_amount_decimal"] = _units(pricing["package_price"], currency)
        params["transform_quantity"] = {"divide_by": str(pricing["package_size"]), "round": "up"}
    else:  # graduated | volume
        params["billing_scheme"] = "tiered"
        params["tiers_mode"] = model
        params["tiers"] = [
            {
                "up_to": "inf" if t["up_to"] is None else str(t["up_to"]),
                "unit_amount_decimal": _units(t["unit_price"], currency),
                "flat_amount_decimal": _units(t["flat_fee"], currency),
            }
            for t in pricing["tiers"]
        ]
    return params


def seed(state: StripeState, world: DemoWorld, *, subscriptions: int | None = None) -> SeededIds:
    """Create the world's customers, products, prices and (up to ``subscriptions``) subscriptions."""
    ids = SeededIds()
    with state.lock:
        for company in world.companies.values():
            customer = catalog.create_customer(
                state,
                {
                    "name": company.name,
                    "email": f"billing@{company.domain}",
                    "payment_method": "pm_card_visa",
                    "metadata": {"billbridge_company": company.key, "billbridge_entity": company.entity_ref},
                },
            )
            ids.customers[company.key] = customer["id"]
        for product in world.products.values():
            created = catalog.create_product(state, {"name": product.name, "metadata": {"sku": product.sku}})
            ids.products[product.sku] = created["id"]
        deals = [d for d in world.live_deals if d.won and d.broken is None and d.start_date is not None]
        for deal in deals[:subscriptions] if subscriptions is not None else deals:
            sub = _subscription(state, world, deal, ids)
            if sub is not None:
                ids.subscriptions[deal.key] = sub["id"]
    return ids


def _subscription(state: StripeState, world: DemoWorld, deal: DemoDeal, ids: SeededIds) -> dict[str, Any] | None:
    items = []
    for line in deal.lines:
        product = world.products[line.sku]
        key = (line.sku, deal.currency, deal.billing_cycle)
        if key not in ids.prices:
            price = price_params(product, ids.products[line.sku], deal.currency, deal.billing_cycle)
            if price is None:
                continue
            ids.prices[key] = catalog.create_price(state, price)["id"]
        items.append({"price": ids.prices[key], "quantity": str(int(line.quantity))})
    if not items or deal.start_date is None:
        return None
    params: dict[str, Any] = {
        "customer": ids.customers[deal.company_key],
        "items": items,
        "backdate_start_date": str(_epoch(deal.start_date)),
        "collection_method": "charge_automatically" if deal.auto_charge else "send_invoice",
        "metadata": {"billbridge_deal": deal.key, "billbridge_entity": deal.entity_ref},
    }
    if not deal.auto_charge:
        params["days_until_due"] = str(deal.payment_terms_days)
    if deal.end_date is not None:
        params["cancel_at"] = str(_epoch(deal.end_date + timedelta(days=1)))
    return catalog.create_subscription(state, params)
