"""Read API: who am I, products, customers, contracts and invoices of the key's legal entity."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from billbridge.api.auth import Auth, store_of
from billbridge.api.errors import ErrorBody, refuse
from billbridge.api.pagination import Cursor, Limit, Page, decode, page_of
from billbridge.api.resource_models import ContractOut, CustomerOut, InvoiceOut, ProductOut, WhoAmI
from billbridge.billing.invoice_view import present, present_many
from billbridge.billing.usage_documents import document_ref
from billbridge.store import listings
from billbridge.store.invoices import invoice_lines, lines_of

router = APIRouter(prefix="/api", responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}})
RefPath = Annotated[str, Path(min_length=1, max_length=200)]
RefQuery = Annotated[str | None, Query(min_length=1, max_length=200)]


def _texts(row: dict[str, Any]) -> dict[str, Any]:
    """Decimals as strings, so JSON never carries money as a float."""
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in row.items()}


@router.get("/auth/whoami", tags=["Authentication"], response_model=WhoAmI)
def whoami(principal: Auth) -> WhoAmI:
    """The API key in use and the legal entity it is scoped to."""
    return WhoAmI(
        key_id=principal.key_id,
        key_prefix=principal.key_prefix,
        entity_ref=principal.entity_ref,
        entity_name=principal.entity_name,
        currency=principal.currency,
    )


@router.get("/products", tags=["Products"], response_model=Page[ProductOut])
def list_products(request: Request, principal: Auth, limit: Limit = 100, cursor: Cursor = None) -> Page[ProductOut]:
    """Products the entity sells (priced in its currency or on its contracts), with those prices."""
    with store_of(request).read() as session:
        rows = listings.products(session, principal.entity_id, principal.currency, after_id=decode(cursor), limit=limit)
    return page_of([ProductOut.model_validate(r) for r in rows], limit, _last_id(rows, limit))


@router.get("/customers", tags=["Customers"], response_model=Page[CustomerOut])
def list_customers(request: Request, principal: Auth, limit: Limit = 100, cursor: Cursor = None) -> Page[CustomerOut]:
    with store_of(request).read() as session:
        rows = listings.customers(session, principal.entity_id, after_id=decode(cursor), limit=limit)
    return page_of([CustomerOut.model_validate(r) for r in rows], limit, _last_id(rows, limit))


@router.get(
    "/customers/{customer_ref}", tags=["Customers"], response_model=CustomerOut, responses={404: {"model": ErrorBody}}
)
def get_customer(request: Request, principal: Auth, customer_ref: RefPath) -> CustomerOut:
    with store_of(request).read() as session:
        rows = listings.customers(session, principal.entity_id, customer_ref=customer_ref)
    if not rows:
        raise refuse(404, "not_found", f"no customer {customer_ref!r}", "customer_ref")
    return CustomerOut.model_validate(rows[0])


@router.get("/contracts", tags=["Contracts"], response_model=Page[ContractOut])
def list_contracts(
    request: Request, principal: Auth, limit: Limit = 100, cursor: Cursor = None, customer_ref: RefQuery = None
) -> Page[ContractOut]:
    """Contracts with their current version's terms (lines: see one contract)."""
    with store_of(request).read() as session:
        rows = listings.contracts(
            session, principal.entity_id, after_id=decode(cursor), limit=limit, customer_ref=customer_ref
        )
    return page_of([ContractOut.model_validate(_texts(r)) for r in rows], limit, _last_id(rows, limit))


@router.get(
    "/contracts/{contract_ref}", tags=["Contracts"], response_model=ContractOut, responses={404: {"model": ErrorBody}}
)
def get_contract(request: Request, principal: Auth, contract_ref: RefPath) -> ContractOut:
    with store_of(request).read() as session:
        rows = listings.contracts(session, principal.entity_id, contract_ref=contract_ref)
        if not rows:
            raise refuse(404, "not_found", f"no contract {contract_ref!r}", "contract_ref")
        lines = listings.contract_lines(session, rows[0]["id"])
    return ContractOut.model_validate({**_texts(rows[0]), "lines": [_texts(line) for line in lines]})


def _invoice(shown: dict[str, Any]) -> InvoiceOut:
    """A document as ``billing.invoice_view`` shows it (money in minor units, discounts per line)."""
    return InvoiceOut.model_validate(
        {**shown, "document_ref": document_ref(shown["contract_ref"], shown["billing_date"])}
    )


@router.get("/invoices", tags=["Invoices"], response_model=Page[InvoiceOut])
def list_invoices(
    request: Request,
    principal: Auth,
    limit: Limit = 100,
    cursor: Cursor = None,
    customer_ref: RefQuery = None,
    contract_ref: RefQuery = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> Page[InvoiceOut]:
    """Invoices and credit notes, oldest first. ``document_ref`` is the ref the usage API answered
    for the document before it was generated."""
    with store_of(request).read() as session:
        rows = listings.invoices(
            session,
            principal.entity_id,
            after_id=decode(cursor),
            limit=limit,
            customer_ref=customer_ref,
            contract_ref=contract_ref,
            status=status,
        )
        lines = lines_of(session, [int(r["id"]) for r in rows[:limit]])
    return page_of([_invoice(r) for r in present_many(rows, lines)], limit, _last_id(rows, limit))


@router.get("/invoices/{number}", tags=["Invoices"], response_model=InvoiceOut, responses={404: {"model": ErrorBody}})
def get_invoice(
    request: Request, principal: Auth, number: Annotated[str, Path(min_length=1, max_length=60)]
) -> InvoiceOut:
    """One invoice or credit note by number, with its lines."""
    with store_of(request).read() as session:
        rows = listings.invoices(session, principal.entity_id, number=number)
        if not rows:
            raise refuse(404, "not_found", f"no invoice or credit note numbered {number!r}", "number")
        lines = invoice_lines(session, rows[0]["id"])
    return _invoice(present(rows[0], lines))


def _last_id(rows: list[dict[str, Any]], limit: int) -> int:
    return int(rows[min(limit, len(rows)) - 1]["id"]) if rows else 0
