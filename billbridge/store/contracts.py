"""Contracts and their versions: saving an import or amendment, loading version timelines for billing."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billbridge.billing import model
from billbridge.billing.engine import Version
from billbridge.store.models import Contract, ContractLine, ContractVersion, Customer, LegalEntity, Product
from billbridge.store.records import Outcome
from billbridge.store.reference import MissingReference, customer_ids, entity_ids, product_ids


class AmendmentError(ValueError):
    """An amendment the store refuses; ``field`` names the contract field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ContractTimeline:
    contract_id: int
    contract_ref: str
    customer_id: int
    entity_id: int
    versions: tuple[Version, ...]
    error: str | None = None  # the stored terms no longer validate (hand edits, a bad migration)


def content_hash(contract: model.Contract) -> str:
    """Hash of the terms (not of when they apply), to tell a changed import from a repeated one."""
    terms = contract.model_dump(mode="json", exclude={"effective_date"})
    return hashlib.sha256(json.dumps(terms, sort_keys=True).encode()).hexdigest()


def save_contract(session: Session, contract: model.Contract) -> Outcome:
    """Store a contract with resolved prices: new, unchanged, or a new version from its effective_date."""
    customers = customer_ids(session, [contract.customer_ref])
    if contract.customer_ref not in customers:
        raise MissingReference("customer_ref", f"unknown customer {contract.customer_ref!r}")
    customer_id, customer_entity = customers[contract.customer_ref]
    entity_id = entity_ids(session, [contract.entity_ref]).get(contract.entity_ref)
    if entity_id is None:
        raise MissingReference("entity_ref", f"unknown legal entity {contract.entity_ref!r}")
    if customer_entity != entity_id:
        raise MissingReference("entity_ref", f"customer {contract.customer_ref!r} belongs to another legal entity")
    products = product_ids(session, [line.product_ref for line in contract.lines])

    digest = content_hash(contract)
    row = session.scalar(select(Contract).where(Contract.contract_ref == contract.contract_ref))
    if row is None:
        row = Contract(
            contract_ref=contract.contract_ref, customer_id=customer_id, entity_id=entity_id, current_version_no=1
        )
        session.add(row)
        session.flush()
        _add_version(session, row.id, 1, contract.contract_start_date, digest, contract, products)
        return "created"

    effective = contract.effective_date or contract.contract_start_date
    versions = session.execute(
        select(ContractVersion.version_no, ContractVersion.effective_date, ContractVersion.content_hash)
        .where(ContractVersion.contract_id == row.id)
        .order_by(ContractVersion.version_no)
    ).all()
    latest = versions[-1]
    # A version is its terms and the day they apply from: importing a known one (an older file
    # again, a retried sync) changes nothing.
    if latest.content_hash == digest or any(
        v.content_hash == digest and v.effective_date == effective for v in versions
    ):
        return "unchanged"
    if row.customer_id != customer_id or row.entity_id != entity_id:
        raise AmendmentError("customer_ref", "an amendment cannot move a contract to another customer or legal entity")
    if contract.effective_date is None:
        raise AmendmentError("effective_date", "the terms changed: say from when they apply (effective_date)")
    if contract.effective_date < contract.contract_start_date:
        raise AmendmentError("effective_date", "effective_date is before contract_start_date")
    version_no = latest.version_no + 1
    _add_version(session, row.id, version_no, contract.effective_date, digest, contract, products)
    row.current_version_no = version_no
    return "updated"


def _add_version(
    session: Session,
    contract_id: int,
    version_no: int,
    effective_date: date,
    digest: str,
    contract: model.Contract,
    products: dict[str, int],
) -> None:
    version = ContractVersion(
        contract_id=contract_id,
        version_no=version_no,
        effective_date=effective_date,
        content_hash=digest,
        currency=contract.currency,
        contract_start_date=contract.contract_start_date,
        contract_end_date=contract.contract_end_date,
        cycle_length=contract.cycle_length,
        cycle_unit=contract.cycle_unit,
        cycle_start_date=contract.anchor,
        billing_timing=contract.billing_timing,
        payment_terms_days=contract.payment_terms_days,
        auto_charge=contract.auto_charge,
        discount=contract.discount.model_dump(mode="json") if contract.discount else None,
        minimum_commitment=contract.minimum_commitment,
    )
    session.add(version)
    session.flush()
    for position, line in enumerate(contract.lines):
        if line.product_ref not in products:
            raise MissingReference(f"lines[{position}].product_ref", f"unknown product {line.product_ref!r}")
        if line.pricing is None:
            raise ValueError(f"line {line.line_ref!r} must have its pricing resolved before it is stored")
        session.add(
            ContractLine(
                version_id=version.id,
                position=position,
                line_ref=line.line_ref,
                product_id=products[line.product_ref],
                charge=line.charge,
                description=line.description,
                quantity=line.quantity,
                price_ref=line.price_ref,
                pricing=line.pricing.model_dump(mode="json"),
                billing_timing=line.billing_timing,
                start_date=line.start_date,
                end_date=line.end_date,
                ramps={"steps": [step.model_dump(mode="json") for step in line.ramps]} if line.ramps else None,
                discount=line.discount.model_dump(mode="json") if line.discount else None,
                usage_aggregation=line.usage_aggregation,
                billing_date=line.billing_date,
                installments=line.installments,
            )
        )


def contract_ids(
    session: Session, *, refs: Sequence[str] | None = None, after_id: int = 0, limit: int | None = None
) -> list[int]:
    """Contract ids in id order (keyset paging with ``after_id``), optionally only the given refs."""
    query = select(Contract.id).where(Contract.id > after_id).order_by(Contract.id)
    if refs is not None:
        query = query.where(Contract.contract_ref.in_(list(refs)))
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def count_contracts(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Contract)) or 0


def load_timelines(session: Session, ids: Iterable[int]) -> dict[int, ContractTimeline]:
    """Every version of the given contracts as canonical models, for the billing engine."""
    ids = list(ids)
    if not ids:
        return {}
    heads = session.execute(
        select(
            Contract.id,
            Contract.contract_ref,
            Contract.customer_id,
            Contract.entity_id,
            Customer.customer_ref,
            LegalEntity.entity_ref,
        )
        .join(Customer, Customer.id == Contract.customer_id)
        .join(LegalEntity, LegalEntity.id == Contract.entity_id)
        .where(Contract.id.in_(ids))
    ).all()
    versions = session.scalars(
        select(ContractVersion)
        .where(ContractVersion.contract_id.in_(ids))
        .order_by(ContractVersion.contract_id, ContractVersion.version_no)
    ).all()
    lines_by_version: dict[int, list[dict[str, object]]] = defaultdict(list)
    if versions:
        rows = session.execute(
            select(ContractLine, Product.product_ref)
            .join(Product, Product.id == ContractLine.product_id)
            .where(ContractLine.version_id.in_([v.id for v in versions]))
            .order_by(ContractLine.version_id, ContractLine.position)
        )
        for line, product_ref in rows:
            lines_by_version[line.version_id].append(
                {
                    "line_ref": line.line_ref,
                    "product_ref": product_ref,
                    "charge": line.charge,
                    "description": line.description,
                    "quantity": line.quantity,
                    "price_ref": line.price_ref,
                    "pricing": line.pricing,
                    "billing_timing": line.billing_timing,
                    "start_date": line.start_date,
                    "end_date": line.end_date,
                    "ramps": (line.ramps or {}).get("steps", []),
                    "discount": line.discount,
                    "usage_aggregation": line.usage_aggregation,
                    "billing_date": line.billing_date,
                    "installments": line.installments,
                }
            )
    head_by_id = {h.id: h for h in heads}
    out_versions: dict[int, list[Version]] = defaultdict(list)
    errors: dict[int, str] = {}
    for v in versions:
        head = head_by_id[v.contract_id]
        try:
            contract = model.Contract.model_validate(
                {
                    "contract_ref": head.contract_ref,
                    "customer_ref": head.customer_ref,
                    "entity_ref": head.entity_ref,
                    "currency": v.currency,
                    "contract_start_date": v.contract_start_date,
                    "contract_end_date": v.contract_end_date,
                    "cycle_length": v.cycle_length,
                    "cycle_unit": v.cycle_unit,
                    "cycle_start_date": v.cycle_start_date,
                    "billing_timing": v.billing_timing,
                    "payment_terms_days": v.payment_terms_days,
                    "auto_charge": v.auto_charge,
                    "discount": v.discount,
                    "minimum_commitment": v.minimum_commitment,
                    "effective_date": v.effective_date if v.version_no > 1 else None,
                    "lines": lines_by_version[v.id],
                }
            )
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            errors.setdefault(v.contract_id, f"stored version {v.version_no} is invalid: {where}: {first['msg']}")
            continue
        out_versions[v.contract_id].append(Version(v.version_no, v.effective_date, contract))
    return {
        h.id: ContractTimeline(
            h.id,
            h.contract_ref,
            h.customer_id,
            h.entity_id,
            () if h.id in errors else tuple(out_versions[h.id]),
            errors.get(h.id),
        )
        for h in heads
    }


def contract_summaries(session: Session) -> list[dict[str, object]]:
    """One row per contract with its current version's headline terms (for `contracts list`)."""
    rows = session.execute(
        select(
            Contract.contract_ref,
            Customer.customer_ref,
            LegalEntity.entity_ref,
            ContractVersion.version_no,
            ContractVersion.currency,
            ContractVersion.contract_start_date,
            ContractVersion.contract_end_date,
            ContractVersion.cycle_length,
            ContractVersion.cycle_unit,
        )
        .join(Customer, Customer.id == Contract.customer_id)
        .join(LegalEntity, LegalEntity.id == Contract.entity_id)
        .join(
            ContractVersion,
            (ContractVersion.contract_id == Contract.id) & (ContractVersion.version_no == Contract.current_version_no),
        )
        .order_by(Contract.contract_ref)
    ).mappings()
    return [dict(r) for r in rows]
