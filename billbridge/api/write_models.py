"""Request bodies of the write API, published in the OpenAPI document: the contract file's own models
(``billing.model``), so the API validates exactly as a file import does. A body may leave out its
legal entity (the API key's) and, on PUT, its ref (the URL's); a PATCH body is a JSON merge patch
(RFC 7386) of the record, any field of it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from billbridge.billing.model import Contract, Customer, Product
from billbridge.billing.monitors import MonitorDefinition

NONE: frozenset[str] = frozenset()
# component name -> (model, the required fields it may leave out (None: all), the optional ones it needs)
BODIES: dict[str, tuple[type[BaseModel], frozenset[str] | None, frozenset[str]]] = {
    "CustomerIn": (Customer, frozenset({"entity_ref"}), NONE),
    "CustomerUpdate": (Customer, frozenset({"entity_ref", "customer_ref"}), NONE),
    "CustomerPatch": (Customer, None, NONE),
    "ProductIn": (Product, NONE, frozenset({"prices"})),  # a new product is priced in the key's currency
    "ProductUpdate": (Product, frozenset({"product_ref"}), NONE),
    "ProductPatch": (Product, None, NONE),
    "ContractIn": (Contract, frozenset({"entity_ref"}), NONE),
    # An amendment says from when it applies (a body changing nothing may say it too).
    "ContractUpdate": (Contract, frozenset({"entity_ref", "contract_ref"}), frozenset({"effective_date"})),
    "ContractPatch": (Contract, None, NONE),
    "MonitorIn": (MonitorDefinition, frozenset({"entity_ref"}), NONE),  # routes_monitors
}


def components() -> dict[str, Any]:
    """The bodies' JSON Schemas (and the schemas they refer to) for ``components.schemas``."""
    out: dict[str, Any] = {}
    for name, (model, optional, needed) in BODIES.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        kept = [f for f in schema.pop("required", []) if optional is not None and f not in optional]
        required = kept + sorted(needed)
        if required:
            schema["required"] = required
        schema["title"] = name
        out[name] = schema
    return out


def request_body(component: str) -> dict[str, Any]:
    """``openapi_extra`` of an operation whose body is ``component``."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
        }
    }
