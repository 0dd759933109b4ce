"""Reads for reseller billing: who each contract is billed to (so a billing run keeps a reseller's
contracts in one chunk), the names its lines show, and the bill-to parties' invoicing choice; and the
reseller data the API serves (end customers and revenue per reseller)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from billbridge.billing.lifecycle import ISSUED
from billbridge.store.bulk import BulkStatement
from billbridge.store.models import Contract, ContractVersion, Customer, Invoice, InvoiceLine, LegalEntity
from billbridge.store.partner_models import Partner
from billbridge.store.partners import load_partners

_NAMES_OF = select(Customer.id, Customer.customer_ref, Customer.name).where(
    Customer.id.in_(bindparam("ids", expanding=True))
)


def bill_to_refs(session: Session, contract_ids: Sequence[int] | None = None) -> dict[int, str]:
    """The partner each contract sold through a reseller is billed to (its current version's distributor,
    else its reseller), by contract id; contracts sold directly are left out."""
    query = (
        select(ContractVersion.contract_id, ContractVersion.bill_to_ref)
        .join(
            Contract,
            and_(Contract.id == ContractVersion.contract_id, Contract.current_version_no == ContractVersion.version_no),
        )
        .where(ContractVersion.bill_to_ref.is_not(None))
    )
    if contract_ids is not None:
        query = query.where(ContractVersion.contract_id.in_(list(contract_ids)))
    return {int(cid): str(ref) for cid, ref in session.execute(query)}


def customer_names(session: Session, customer_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """(ref, name) of customers by id: an end customer's name on its lines, a bill-to party's partner ref."""
    if not customer_ids:
        return {}
    connection = session.connection()  # a billing run reads these twice per chunk: on the driver
    rows = BulkStatement.of(_NAMES_OF, connection, ("ids",)).run(connection, {"ids": sorted(set(customer_ids))})
    return {int(cid): (ref, name) for cid, ref, name in rows}


def per_end_customer(session: Session, partner_refs: Sequence[str]) -> set[str]:
    """The bill-to parties among ``partner_refs`` that want one invoice per end customer."""
    if not partner_refs:
        return set()
    return {ref for ref, p in load_partners(session, set(partner_refs)).items() if p.invoice_per == "end_customer"}


def reseller_revenue(session: Session, entity_ref: str | None = None) -> list[dict[str, Any]]:
    """Per reseller (or distributor) billed: its end customers and what it was invoiced (issued invoices
    less issued credit notes, per currency; drafts and documents under review are not invoiced yet),
    from the stored lines; optionally of one legal entity."""
    query = (
        select(
            Customer.customer_ref,
            LegalEntity.entity_ref,
            Invoice.currency,
            InvoiceLine.contract_id,
            InvoiceLine.billed_amount,
        )
        .select_from(InvoiceLine)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .join(Partner, Partner.partner_ref == Customer.customer_ref)
        .join(LegalEntity, LegalEntity.id == Invoice.entity_id)
        .where(Invoice.period_released.is_(False), Invoice.status.in_(sorted(ISSUED)))
    )
    if entity_ref is not None:
        query = query.where(LegalEntity.entity_ref == entity_ref)
    revenue: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    contracts: dict[tuple[str, str], set[int]] = defaultdict(set)
    for partner_ref, entity, currency, contract_id, amount in session.execute(query):
        revenue[(partner_ref, entity)][currency] += Decimal(amount)
        contracts[(partner_ref, entity)].add(int(contract_id))
    ends = _end_customers(session, {cid for ids in contracts.values() for cid in ids})
    return [
        {
            "partner_ref": partner_ref,
            "entity_ref": entity,
            "end_customers": sorted({ends[cid] for cid in contracts[(partner_ref, entity)] if cid in ends}),
            "contracts": len(contracts[(partner_ref, entity)]),
            "revenue": dict(sorted(revenue[(partner_ref, entity)].items())),
        }
        for partner_ref, entity in sorted(revenue)
    ]


def _end_customers(session: Session, contract_ids: set[int]) -> dict[int, str]:
    if not contract_ids:
        return {}
    rows = session.execute(
        select(Contract.id, Customer.customer_ref)
        .join(Customer, Customer.id == Contract.customer_id)
        .where(Contract.id.in_(sorted(contract_ids)))
    )
    return {int(cid): ref for cid, ref in rows}
