"""Read API: who am I, products, customers, contracts and invoices of the key's legal entity. One
record comes with its ``ETag``, which the write API's updates ask for (``If-Match``)."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel

from billbridge.api import representations
from billbridge.api.auth import Auth, store_of
from billbridge.api.errors import ErrorBody, refuse
from billbridge.api.pagination import Cursor, Limit, Page, decode, page_of
from billbridge.api.representations import ETAG_HEADER
from billbridge.api.resource_models import ContractOut, CustomerOut, InvoiceOut, ProductOut, WhoAmI
from billbridge.billing.invoice_view import present_many
from billbridge.store import listings
from billbridge.store.invoices import lines_of

router = APIRouter(prefix="/api", responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}})
RefPath = Annotated[str, Path(min_length=1, max_length=200)]
NumberPath = Annotated[str, Path(min_length=1, max_length=60)]
RefQuery = Annotated[str | None, Query(min_length=1, max_length=200)]
R = TypeVar("R", bound=BaseModel)


def one(kind: str, description: str, model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The documented answers of an operation on one record: found (with its ETag) or not."""
    return {
        200: {"model": model, "description": description, "headers": ETAG_HEADER},
        404: {"model": ErrorBody, "description": f"No such {kind} of this legal entity"},
    }


def _found(resource: R | None, response: Response, what: str, field: str) -> R:
    if resource is None:
        raise refuse(404, "not_found", what, field)
    response.headers["ETag"] = representations.etag(resource)
    return resource


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


@router.get(
    "/products/{product_ref}", tags=["Products"], response_model=ProductOut, responses=one("product", "", ProductOut)
)
def get_product(request: Request, response: Response, principal: Auth, product_ref: RefPath) -> ProductOut:
    """One product the entity sells, with its prices in the entity's currency."""
    with store_of(request).read() as session:
        found = representations.product(session, principal, product_ref)
    return _found(found, response, f"no product {product_ref!r}", "product_ref")


@router.get("/customers", tags=["Customers"], response_model=Page[CustomerOut])
def list_customers(request: Request, principal: Auth, limit: Limit = 100, cursor: Cursor = None) -> Page[CustomerOut]:
    with store_of(request).read() as session:
        rows = listings.customers(session, principal.entity_id, after_id=decode(cursor), limit=limit)
    return page_of([CustomerOut.model_validate(r) for r in rows], limit, _last_id(rows, limit))


@router.get(
    "/customers/{customer_ref}",
    tags=["Customers"],
    response_model=CustomerOut,
    responses=one("customer", "", CustomerOut),
)
def get_customer(request: Request, response: Response, principal: Auth, customer_ref: RefPath) -> CustomerOut:
    with store_of(request).read() as session:
        found = representations.customer(session, principal, customer_ref)
    return _found(found, response, f"no customer {customer_ref!r}", "customer_ref")


@router.get("/contracts", tags=["Contracts"], response_model=Page[ContractOut])
def list_contracts(
    request: Request, principal: Auth, limit: Limit = 100, cursor: Cursor = None, customer_ref: RefQuery = None
) -> Page[ContractOut]:
    """Contracts with their current version's terms (lines: see one contract)."""
    with store_of(request).read() as session:
        rows = listings.contracts(
            session, principal.entity_id, after_id=decode(cursor), limit=limit, customer_ref=customer_ref
        )
    return page_of([representations.contract_out(r) for r in rows], limit, _last_id(rows, limit))


@router.get(
    "/contracts/{contract_ref}",
    tags=["Contracts"],
    response_model=ContractOut,
    responses=one("contract", "", ContractOut),
)
def get_contract(request: Request, response: Response, principal: Auth, contract_ref: RefPath) -> ContractOut:
    """The contract's current version with its lines; the ETag is its version number."""
    with store_of(request).read() as session:
        found = representations.contract(session, principal, contract_ref)
    return _found(found, response, f"no contract {contract_ref!r}", "contract_ref")


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
    shown = [representations.invoice_out(r) for r in present_many(rows, lines)]
    return page_of(shown, limit, _last_id(rows, limit))


@router.get(
    "/invoices/{number}",
    tags=["Invoices"],
    response_model=InvoiceOut,
    responses={404: {"model": ErrorBody, "description": "No such document of this legal entity"}},
)
def get_invoice(request: Request, principal: Auth, number: NumberPath) -> InvoiceOut:
    """One invoice or credit note by number, with its lines."""
    with store_of(request).read() as session:
        found = representations.invoice(session, principal, number)
    if found is None:
        raise refuse(404, "not_found", f"no invoice or credit note numbered {number!r}", "number")
    return found


def _last_id(rows: list[dict[str, Any]], limit: int) -> int:
    return int(rows[min(limit, len(rows)) - 1]["id"]) if rows else 0
