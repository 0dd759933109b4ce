"""How stored sandbox objects look on the wire: private bookkeeping stripped, children embedded, ``expand``."""

from __future__ import annotations

from typing import Any

from billbridge.sandbox.stripe.state import StripeState, clone, expand_paths

INVOICE_LINES_EMBEDDED = 10  # an invoice carries its first lines; the rest via /v1/invoices/{id}/lines


def view(state: StripeState, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the API returns it (a deep copy without ``_private`` keys)."""
    out = {k: clone(v) for k, v in obj.items() if not k.startswith("_")}
    kind = obj.get("object")
    if kind == "subscription":
        items = [item_view(state, state.get("subscription_item", i)) for i in obj["_items"]]
        out["items"] = {
            "object": "list",
            "data": items,
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={obj['id']}",
        }
    elif kind == "invoice":
        lines = [view(state, state.get("line_item", i)) for i in obj["_lines"]]
        out["lines"] = {
            "object": "list",
            "data": lines[:INVOICE_LINES_EMBEDDED],
            "has_more": len(lines) > INVOICE_LINES_EMBEDDED,
            "url": f"/v1/invoices/{obj['id']}/lines",
        }
    elif kind == "charge":
        refunds = [view(state, r) for r in state.all("refund") if r["charge"] == obj["id"]]
        out["refunds"] = {
            "object": "list",
            "data": refunds,
            "has_more": False,
            "url": f"/v1/charges/{obj['id']}/refunds",
        }
    return out


def item_view(state: StripeState, item: dict[str, Any]) -> dict[str, Any]:
    """A subscription item embeds its price and the legacy ``plan`` mirror of it."""
    out = view(state, item)
    price = view(state, state.get("price", item["price"]))
    out["price"] = price
    recurring = price.get("recurring") or {}
    out["plan"] = {
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "id": price["id"],
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count"),
        "livemode": False,
        "metadata": price["metadata"],
        "meter": None,
        "nickname": price["nickname"],
        "object": "plan",
        "product": price["product"],
        "tiers_mode": price["tiers_mode"],
        "transform_usage": price["transform_quantity"],
        "trial_period_days": None,
        "usage_type": recurring.get("usage_type", "licensed"),
    }
    return out


def expand(state: StripeState, value: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Apply the request's ``expand[]`` paths to a response (a single object or a list)."""
    for parts in expand_paths(params):
        _expand(state, value, parts)
    return value


def _expand(state: StripeState, value: Any, parts: list[str]) -> None:
    if not parts or not isinstance(value, dict):
        return
    head, rest = parts[0], parts[1:]
    if head == "data" and isinstance(value.get("data"), list):
        for item in value["data"]:
            _expand(state, item, rest)
        return
    if head == "tiers" and value.get("object") == "price":
        # Stripe leaves price.tiers out unless it is expanded
        stored = state.find(value["id"])
        value["tiers"] = clone(stored.get("_tiers")) if stored else None
        return
    child = value.get(head)
    if isinstance(child, str):
        found = state.find(child)
        if found is not None:
            child = view(state, found)
            value[head] = child
    _expand(state, child, rest)
