"""One customer, product, contract or invoice of an API key's legal entity as the API shows it, with
its ETag: what the read API answers and what the write API answers after a change. Another
entity's record is not found (None), as if it did not exist.

The ETag is the resource's version: a contract's version number (an amendment adds one); for a
customer or a product, a digest of what this entity sees of it (so a change made by a contract
file or a CRM sync shows too). An update must name the ETag it was made from (``If-Match``).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from billbridge.api.resource_models import ContractOut, CustomerOut, InvoiceOut, ProductOut
from billbridge.billing.currency import money_str
from billbridge.billing.invoice_view import present, quantity_str
from billbridge.billing.usage_billing_dates import document_ref
from billbridge.store import listings
from billbridge.store.api_keys import Principal
from billbridge.store.invoices import invoice_lines

ETAG_HEADER = {"ETag": {"description": "The resource's version, for If-Match", "schema": {"type": "string"}}}


def etag(resource: BaseModel) -> str:
    if isinstance(resource, ContractOut):
        return f'"v{resource.version_no}"'
    return '"' + hashlib.sha256(resource.model_dump_json().encode()).hexdigest()[:20] + '"'


def customer(session: Session, principal: Principal, ref: str, *, lock: bool = False) -> CustomerOut | None:
    rows = listings.customers(session, principal.entity_id, customer_ref=ref, lock=lock)
    return CustomerOut.model_validate(rows[0]) if rows else None


def product(session: Session, principal: Principal, ref: str, *, lock: bool = False) -> ProductOut | None:
    """A product the entity sells (priced in its currency or on its contracts), with those prices."""
    rows = listings.products(session, principal.entity_id, principal.currency, product_ref=ref, lock=lock)
    return ProductOut.model_validate(rows[0]) if rows else None


def contract_out(row: dict[str, Any], lines: list[dict[str, Any]] | None = None) -> ContractOut:
    """A contract's current version: minimum commitment in its currency's minor units, quantities as written."""
    body = {**row, "minimum_commitment": _money(row.get("minimum_commitment"), str(row["currency"]))}
    if lines is not None:
        body["lines"] = [{**line, "quantity": quantity_str(line["quantity"])} for line in lines]
    return ContractOut.model_validate(body)


def contract(session: Session, principal: Principal, ref: str, *, lock: bool = False) -> ContractOut | None:
    """The contract's current version, with its lines."""
    rows = listings.contracts(session, principal.entity_id, contract_ref=ref, lock=lock)
    if not rows:
        return None
    return contract_out(rows[0], listings.contract_lines(session, rows[0]["id"]))


def invoice_out(shown: dict[str, Any]) -> InvoiceOut:
    """A document as ``billing.invoice_view`` presents it, with the ref the usage API named it by."""
    return InvoiceOut.model_validate(
        {**shown, "document_ref": document_ref(shown["contract_ref"], shown["billing_date"])}
    )


def invoice(session: Session, principal: Principal, number: str) -> InvoiceOut | None:
    """One invoice or credit note, with its lines."""
    rows = listings.invoices(session, principal.entity_id, number=number)
    if not rows:
        return None
    return invoice_out(present(rows[0], invoice_lines(session, rows[0]["id"])))


def _money(amount: Decimal | None, currency: str) -> str | None:
    return None if amount is None else money_str(amount, currency)
