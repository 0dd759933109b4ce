"""Small contract documents for tests (the examples folder has the full tour)."""

from __future__ import annotations

from typing import Any

REFERENCE: dict[str, Any] = {
    "entities": [
        {"entity_ref": "us", "name": "Acme Inc.", "currency": "USD", "invoice_prefix": "US-INV-"},
        {"entity_ref": "kw", "name": "Acme W.L.L.", "currency": "KWD", "invoice_prefix": "KW-INV-"},
    ],
    "customers": [
        {"customer_ref": "globex", "name": "Globex", "entity_ref": "us"},
        {"customer_ref": "initech", "name": "Initech", "entity_ref": "us"},
        {"customer_ref": "gulf", "name": "Gulf Data", "entity_ref": "kw"},
    ],
    "products": [
        {
            "product_ref": "platform",
            "name": "Platform",
            "prices": [
                {"price_ref": "platform-usd", "currency": "USD", "pricing": {"model": "flat", "amount": "1200.00"}},
                {"price_ref": "platform-kwd", "currency": "KWD", "pricing": {"model": "flat", "amount": "365.125"}},
            ],
        },
        {
            "product_ref": "seats",
            "name": "Seats",
            "prices": [
                {"price_ref": "seats-usd", "currency": "USD", "pricing": {"model": "per_unit", "unit_price": "45.00"}},
            ],
        },
        {
            "product_ref": "api",
            "name": "API calls",
            "prices": [
                {"price_ref": "api-usd", "currency": "USD", "pricing": {"model": "per_unit", "unit_price": "0.002"}},
            ],
        },
    ],
}


def contract(
    ref: str, customer: str = "globex", entity: str = "us", currency: str = "USD", **terms: Any
) -> dict[str, Any]:
    return {
        "contract_ref": ref,
        "customer_ref": customer,
        "entity_ref": entity,
        "currency": currency,
        "contract_start_date": "2026-01-01",
        "lines": [{"line_ref": "platform", "product_ref": "platform"}],
        **terms,
    }


def document(*contracts: dict[str, Any], with_reference: bool = True) -> dict[str, Any]:
    return {**(REFERENCE if with_reference else {}), "contracts": list(contracts)}


DISCOUNTED = contract(
    "C-D",
    contract_start_date="2026-01-15",
    cycle_start_date="2026-01-01",  # a first period of 17 of January's 31 days
    discount={"percent": "5"},
    lines=[
        {"line_ref": "seats", "product_ref": "seats", "quantity": "3.0", "discount": {"percent": "10"}},
        {"line_ref": "api", "product_ref": "api", "quantity": "6000"},  # 6000 x 0.002 = 12.000 a month
    ],
)
"""A partial first period, a line discount, a contract discount and a price finer than a cent
(its invoice is worked out by hand in tests/app/test_cli_invoices.py)."""
