"""Pages of products, customers, contracts and invoices, scoped to one legal entity.

Keyset paging: each function takes ``after_id`` and returns up to ``limit + 1`` rows in id order
(the extra row tells the caller there is a next page), each with its ``id``. Asked for one record
by its ref with ``lock``, the row is locked to the end of the caller's transaction (on PostgreSQL),
so that an update compares the version it was sent against the one it changes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from billbridge.store.invoices import documents_query
from billbridge.store.models import (
    Contract,
    ContractLine,
    ContractVersion,
    Customer,
    Invoice,
    Price,
    Product,
)


def products(
    session: Session,
    entity_id: int,
    currency: str,
    *,
    after_id: int = 0,
    limit: int = 1,
    product_ref: str | None = None,
    lock: bool = False,
) -> list[dict[str, Any]]:
    """Products the entity sells: priced in its currency or on one of its contracts; with those prices."""
    on_contract = (
        select(ContractLine.id)
        .join(ContractVersion, ContractVersion.id == ContractLine.version_id)
        .join(Contract, Contract.id == ContractVersion.contract_id)
        .where(ContractLine.product_id == Product.id, Contract.entity_id == entity_id)
    )
    priced = select(Price.id).where(Price.product_id == Product.id, Price.currency == currency)
    query = (
        select(Product.id, Product.product_ref, Product.name, Product.description)
        .where(Product.id > after_id, or_(exists(priced), exists(on_contract)))
        .order_by(Product.id)
        .limit(limit + 1)
    )
    if product_ref is not None:
        query = query.where(Product.product_ref == product_ref)
    if lock:
        query = query.with_for_update(of=Product)
    rows = session.execute(query).all()
    prices: dict[int, list[dict[str, Any]]] = {r.id: [] for r in rows}
    if rows:
        for price in session.execute(
            select(Price.product_id, Price.price_ref, Price.currency, Price.pricing)
            .where(Price.product_id.in_(list(prices)), Price.currency == currency)
            .order_by(Price.id)
        ):
            prices[price.product_id].append(
                {"price_ref": price.price_ref, "currency": price.currency, "pricing": price.pricing}
            )
    return [
        {"id": r.id, "product_ref": r.product_ref, "name": r.name, "description": r.description, "prices": prices[r.id]}
        for r in rows
    ]


def customers(
    session: Session,
    entity_id: int,
    *,
    after_id: int = 0,
    limit: int = 1,
    customer_ref: str | None = None,
    lock: bool = False,
) -> list[dict[str, Any]]:
    query = (
        select(Customer.id, Customer.customer_ref, Customer.name, Customer.email)
        .where(Customer.entity_id == entity_id, Customer.id > after_id)
        .order_by(Customer.id)
        .limit(limit + 1)
    )
    if customer_ref is not None:
        query = query.where(Customer.customer_ref == customer_ref)
    if lock:
        query = query.with_for_update(of=Customer)
    return [dict(r) for r in session.execute(query).mappings()]


def contracts(
    session: Session,
    entity_id: int,
    *,
    after_id: int = 0,
    limit: int = 1,
    contract_ref: str | None = None,
    customer_ref: str | None = None,
    lock: bool = False,
) -> list[dict[str, Any]]:
    """Contracts with their current version's headline terms."""
    query = (
        select(
            Contract.id,
            Contract.contract_ref,
            Customer.customer_ref,
            ContractVersion.version_no,
            ContractVersion.effective_date,
            ContractVersion.currency,
            ContractVersion.contract_start_date,
            ContractVersion.contract_end_date,
            ContractVersion.cycle_length,
            ContractVersion.cycle_unit,
            ContractVersion.cycle_start_date,
            ContractVersion.billing_timing,
            ContractVersion.payment_terms_days,
            ContractVersion.minimum_commitment,
        )
        .join(Customer, Customer.id == Contract.customer_id)
        .join(
            ContractVersion,
            (ContractVersion.contract_id == Contract.id) & (ContractVersion.version_no == Contract.current_version_no),
        )
        .where(Contract.entity_id == entity_id, Contract.id > after_id)
        .order_by(Contract.id)
        .limit(limit + 1)
    )
    if contract_ref is not None:
        query = query.where(Contract.contract_ref == contract_ref)
    if customer_ref is not None:
        query = query.where(Customer.customer_ref == customer_ref)
    if lock:
        query = query.with_for_update(of=Contract)
    return [dict(r) for r in session.execute(query).mappings()]


def contract_lines(session: Session, contract_id: int) -> list[dict[str, Any]]:
    """The current version's lines."""
    rows = session.execute(
        select(
            ContractLine.line_ref,
            Product.product_ref,
            ContractLine.charge,
            ContractLine.description,
            ContractLine.quantity,
            ContractLine.price_ref,
            ContractLine.pricing,
            ContractLine.billing_timing,
            ContractLine.start_date,
            ContractLine.end_date,
            ContractLine.usage_aggregation,
        )
        .join(ContractVersion, ContractVersion.id == ContractLine.version_id)
        .join(Contract, Contract.id == ContractVersion.contract_id)
        .join(Product, Product.id == ContractLine.product_id)
        .where(Contract.id == contract_id, ContractVersion.version_no == Contract.current_version_no)
        .order_by(ContractLine.position)
    )
    return [dict(r) for r in rows.mappings()]


def invoices(
    session: Session,
    entity_id: int,
    *,
    after_id: int = 0,
    limit: int = 1,
    number: str | None = None,
    customer_ref: str | None = None,
    contract_ref: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """An entity's documents by id after ``after_id`` (one more than ``limit``, to tell a next page)."""
    query = documents_query().where(Invoice.entity_id == entity_id, Invoice.id > after_id)
    for column, value in (
        (Invoice.number, number),
        (Customer.customer_ref, customer_ref),
        (Contract.contract_ref, contract_ref),
        (Invoice.status, status),
    ):
        if value is not None:
            query = query.where(column == value)
    return [dict(r) for r in session.execute(query.order_by(Invoice.id).limit(limit + 1)).mappings()]
