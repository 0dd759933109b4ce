"""Sandbox handlers for customers, payment methods, products, prices and subscriptions."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from billbridge.sandbox.stripe.state import TEMPLATES, StripeState, invalid, page
from billbridge.sandbox.stripe.views import view

# Stripe's test payment methods (docs.stripe.com/testing): token -> (brand, last4, decline_code or None)
TEST_CARDS: dict[str, tuple[str, str, str | None]] = {
    "pm_card_visa": ("visa", "4242", None),
    "pm_card_mastercard": ("mastercard", "4444", None),
    "pm_card_chargeDeclined": ("visa", "0002", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": ("visa", "9995", "insufficient_funds"),
    "pm_card_createDispute": ("visa", "0259", None),  # succeeds, then the cardholder disputes it
}
_SEARCH_TERM = re.compile(r"^\s*(\w+)(?:\['([^']+)'\])?\s*:\s*'([^']*)'\s*$")


def metadata(params: dict[str, Any], current: dict[str, str] | None = None) -> dict[str, str]:
    """Stripe merges metadata on update; an empty value unsets a key."""
    merged = dict(current or {})
    for key, value in (params.get("metadata") or {}).items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return merged


def required(params: dict[str, Any], name: str) -> Any:
    if params.get(name) in (None, ""):
        raise invalid(f"Missing required param: {name}.", name, "parameter_missing")
    return params[name]


def to_int(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid integer: {value}", name) from None


def search(state: StripeState, kind: str, params: dict[str, Any], url: str) -> dict[str, Any]:
    """The subset of Stripe's search query language the connector uses: ``field:'v'`` and
    ``metadata['k']:'v'`` joined by AND. (Real search is eventually consistent; see the connector.)"""
    query = str(required(params, "query"))
    terms = []
    for text in re.split(r"\s+AND\s+", query):
        match = _SEARCH_TERM.match(text)
        if match is None:
            raise invalid(f"Unsupported search query: {query}", "query")
        terms.append(match.groups())

    def hit(obj: dict[str, Any]) -> bool:
        for name, key, value in terms:
            actual = obj.get("metadata", {}).get(key) if name == "metadata" else obj.get(name)
            if str(actual) != value:
                return False
        return True

    visible_before = state.now() - state.search_lag  # search is eventually consistent at Stripe
    found = [o for o in state.all(kind) if o["created"] <= visible_before and hit(o)]
    offset = to_int(params, "page", 0) or 0
    limit = to_int(params, "limit", 10) or 10
    chunk = found[offset : offset + limit]
    more = offset + limit < len(found)
    return {
        "object": "search_result",
        "data": [view(state, o) for o in chunk],
        "has_more": more,
        "next_page": str(offset + limit) if more else None,
        "url": url,
    }


def listing(state: StripeState, kind: str, params: dict[str, Any], url: str, **filters: Any) -> dict[str, Any]:
    items = state.all(kind)
    for name, wanted in filters.items():
        if wanted is not None:
            items = [o for o in items if o.get(name) == wanted]
    chosen, envelope = page(items, params, url)
    return {**envelope, "data": [view(state, o) for o in chosen]}


# customers


def create_customer(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    customer = state.new(
        "customer",
        address=None,
        currency=None,
        discount=None,
        name=params.get("name") or None,  # Stripe reads an empty string as "unset"
        email=params.get("email") or None,
        description=params.get("description") or None,
        phone=params.get("phone") or None,
        shipping=None,
        metadata=metadata(params),
        invoice_prefix=f"BB{len(state.all('customer')) + 1:05d}",
    )
    token = params.get("payment_method") or (state.card_on_signup(customer) if state.card_on_signup else None)
    if token:
        pm = attach_payment_method(state, {"customer": customer["id"]}, token)
        customer["invoice_settings"]["default_payment_method"] = pm["id"]
    _update_customer_fields(state, customer, params)
    state.emit("customer.created", customer, view(state, customer))
    return view(state, customer)


def update_customer(state: StripeState, params: dict[str, Any], customer_id: str) -> dict[str, Any]:
    customer = state.get("customer", customer_id)
    for name in ("name", "email", "description", "phone"):
        if name in params:
            customer[name] = params[name] or None
    customer["metadata"] = metadata(params, customer["metadata"])
    _update_customer_fields(state, customer, params)
    state.emit("customer.updated", customer, view(state, customer))
    return view(state, customer)


def _update_customer_fields(state: StripeState, customer: dict[str, Any], params: dict[str, Any]) -> None:
    settings = params.get("invoice_settings") or {}
    if pm_id := settings.get("default_payment_method"):
        pm = state.get("payment_method", pm_id, "invoice_settings[default_payment_method]")
        if pm["customer"] != customer["id"]:
            raise invalid(
                f"The payment method {pm_id} is not attached to customer {customer['id']}.",
                "invoice_settings[default_payment_method]",
            )
        customer["invoice_settings"]["default_payment_method"] = pm_id


def get_customer(state: StripeState, params: dict[str, Any], customer_id: str) -> dict[str, Any]:
    return view(state, state.get("customer", customer_id))


def list_customers(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    return listing(state, "customer", params, "/v1/customers", email=params.get("email"))


def search_customers(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    return search(state, "customer", params, "/v1/customers/search")


# payment methods


def attach_payment_method(state: StripeState, params: dict[str, Any], token: str) -> dict[str, Any]:
    """Attaching a test token makes a new card payment method owned by the customer, as Stripe does."""
    customer = state.get("customer", required(params, "customer"), "customer")
    if token not in TEST_CARDS:
        existing = state.get("payment_method", token)
        existing["customer"] = customer["id"]
        return view(state, existing)
    brand, last4, decline = TEST_CARDS[token]
    card = dict(TEMPLATES["payment_method"]["card"])
    card.update(brand=brand, display_brand=brand, last4=last4, fingerprint=f"fp{last4}{brand}", wallet=None)
    card["networks"] = {"available": [brand], "preferred": None}
    pm = state.new(
        "payment_method",
        customer=customer["id"],
        card=card,
        billing_details={
            **TEMPLATES["payment_method"]["billing_details"],
            "email": customer["email"],
            "name": customer["name"],
        },
        _decline=decline,
        _dispute=token == "pm_card_createDispute",
    )
    state.emit("payment_method.attached", pm, view(state, pm))
    return view(state, pm)


def get_payment_method(state: StripeState, params: dict[str, Any], pm_id: str) -> dict[str, Any]:
    return view(state, state.get("payment_method", pm_id))


# products and prices


def create_product(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    product = state.new(
        "product",
        name=required(params, "name"),
        description=params.get("description"),
        default_price=None,
        package_dimensions=None,
        metadata=metadata(params),
        type="service",
        updated=state.now(),
    )
    state.emit("product.created", product, view(state, product))
    return view(state, product)


def get_product(state: StripeState, params: dict[str, Any], product_id: str) -> dict[str, Any]:
    return view(state, state.get("product", product_id))


def list_products(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    return listing(state, "product", params, "/v1/products")


def create_price(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    product = state.get("product", required(params, "product"), "product")
    scheme = params.get("billing_scheme") or "per_unit"
    tiers = None
    if scheme == "tiered":
        tiers_mode = required(params, "tiers_mode")
        tiers = [_tier(t) for t in required(params, "tiers")]
        unit_decimal = None
    else:
        tiers_mode = None
        unit_decimal = params.get("unit_amount_decimal") or required(params, "unit_amount")
    recurring = None
    if raw := params.get("recurring"):
        recurring = {
            "interval": required(raw, "interval"),
            "interval_count": int(raw.get("interval_count") or 1),
            "meter": None,
            "usage_type": raw.get("usage_type") or "licensed",
            "trial_period_days": None,
        }
    transform = params.get("transform_quantity")
    price = state.new(
        "price",
        product=product["id"],
        currency=str(required(params, "currency")).lower(),
        billing_scheme=scheme,
        custom_unit_amount=None,
        nickname=params.get("nickname"),
        lookup_key=params.get("lookup_key"),
        recurring=recurring,
        type="recurring" if recurring else "one_time",
        tiers_mode=tiers_mode,
        transform_quantity={"divide_by": int(transform["divide_by"]), "round": transform["round"]}
        if transform
        else None,
        unit_amount=_whole(unit_decimal),
        unit_amount_decimal=str(unit_decimal) if unit_decimal is not None else None,
        metadata=metadata(params),
        _tiers=tiers,
    )
    state.emit("price.created", price, view(state, price))
    return view(state, price)


def _tier(raw: dict[str, Any]) -> dict[str, Any]:
    up_to = required(raw, "up_to")
    unit = raw.get("unit_amount_decimal") or raw.get("unit_amount") or "0"
    flat = raw.get("flat_amount_decimal") or raw.get("flat_amount") or "0"
    return {
        "flat_amount": _whole(flat),
        "flat_amount_decimal": str(flat),
        "unit_amount": _whole(unit),
        "unit_amount_decimal": str(unit),
        "up_to": None if up_to == "inf" else int(up_to),
    }


def _whole(amount: Any) -> int | None:
    """Stripe's integer twin of a ``*_decimal`` amount: null when the amount has a fraction of a minor unit."""
    if amount is None:
        return None
    exact = Decimal(str(amount))
    return int(exact) if exact == exact.to_integral_value() else None


def get_price(state: StripeState, params: dict[str, Any], price_id: str) -> dict[str, Any]:
    return view(state, state.get("price", price_id))


def list_prices(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    return listing(state, "price", params, "/v1/prices", product=params.get("product"))


# subscriptions (a contract source: no invoices are generated for them here)


def create_subscription(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    customer = state.get("customer", required(params, "customer"), "customer")
    raw_items = required(params, "items")
    start = to_int(params, "backdate_start_date") or state.now()
    sub = state.new(
        "subscription",
        customer=customer["id"],
        collection_method=params.get("collection_method") or "charge_automatically",
        days_until_due=to_int(params, "days_until_due"),
        description=params.get("description"),
        metadata=metadata(params),
        start_date=start,
        billing_cycle_anchor=start,
        billing_cycle_anchor_config=None,
        cancel_at=to_int(params, "cancel_at"),
        cancel_at_period_end=False,
        canceled_at=None,
        ended_at=None,
        trial_start=None,
        trial_end=None,
        pause_collection=None,
        pending_update=None,
        pending_invoice_item_interval=None,
        next_pending_invoice_item_invoice=None,
        transfer_data=None,
        billing_schedules=[],
        status="active",
        _items=[],
    )
    currencies = set()
    for raw in raw_items:
        price = state.get("price", required(raw, "price"), "items[price]")
        currencies.add(price["currency"])
        sub["_items"].append(_new_item(state, sub, price, to_int(raw, "quantity", 1) or 1, start)["id"])
    if len(currencies) != 1:
        raise invalid("All prices on a subscription must have the same currency.", "items")
    sub["currency"] = currencies.pop()
    state.emit("customer.subscription.created", sub, view(state, sub))
    return view(state, sub)


def _new_item(
    state: StripeState, sub: dict[str, Any], price: dict[str, Any], quantity: int, start: int
) -> dict[str, Any]:
    return state.new(
        "subscription_item",
        subscription=sub["id"],
        price=price["id"],
        quantity=quantity,
        current_period_start=start,
        current_period_end=start,
        billing_thresholds=None,
    )


def update_subscription(state: StripeState, params: dict[str, Any], sub_id: str) -> dict[str, Any]:
    sub = state.get("subscription", sub_id)
    sub["metadata"] = metadata(params, sub["metadata"])
    if "cancel_at" in params:
        sub["cancel_at"] = to_int(params, "cancel_at")
    for raw in params.get("items") or []:
        if item_id := raw.get("id"):
            item = state.get("subscription_item", item_id, "items[id]")
            if "quantity" in raw:
                item["quantity"] = to_int(raw, "quantity")
        else:
            price = state.get("price", required(raw, "price"), "items[price]")
            sub["_items"].append(_new_item(state, sub, price, to_int(raw, "quantity", 1) or 1, state.now())["id"])
    state.emit("customer.subscription.updated", sub, view(state, sub))
    return view(state, sub)


def cancel_subscription(state: StripeState, params: dict[str, Any], sub_id: str) -> dict[str, Any]:
    sub = state.get("subscription", sub_id)
    now = state.now()
    sub.update(status="canceled", canceled_at=now, ended_at=now)
    state.emit("customer.subscription.deleted", sub, view(state, sub))
    return view(state, sub)


def get_subscription(state: StripeState, params: dict[str, Any], sub_id: str) -> dict[str, Any]:
    return view(state, state.get("subscription", sub_id))


def list_subscriptions(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    status = params.get("status")
    items = state.all("subscription")
    if status is None:  # Stripe: by default canceled subscriptions are left out
        items = [s for s in items if s["status"] != "canceled"]
    elif status != "all":
        items = [s for s in items if s["status"] == status]
    if customer := params.get("customer"):
        items = [s for s in items if s["customer"] == customer]
    chosen, envelope = page(items, params, "/v1/subscriptions")
    return {**envelope, "data": [view(state, o) for o in chosen]}
