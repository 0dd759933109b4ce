"""Contracts and their versions: saving an import or amendment, loading version timelines for billing."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from billbridge.billing import model
from billbridge.billing.engine import Version
from billbridge.store.bulk import BulkStatement
from billbridge.store.models import (
    Contract,
    ContractLine,
    ContractVersion,
    Customer,
    LegalEntity,
    table_of,
    utcnow,
)
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
    bill_to: Mapping[int, int] = field(default_factory=dict, compare=False)  # version_no -> its reseller's customer id
    resold_by: Mapping[int, str] = field(
        default_factory=dict, compare=False
    )  # version_no -> reseller, billed to a distributor

    def bill_to_id(self, version_no: int) -> int:
        """Who a version's documents are addressed to: its reseller, else the contract's customer."""
        return self.bill_to.get(version_no, self.customer_id)


def terms_json(contract: model.Contract) -> str:
    """The terms as stored with a version (``terms``): the contract without its effective date."""
    return contract.model_dump_json(exclude={"effective_date"})


def content_hash(contract: model.Contract, terms: str | None = None) -> str:
    """Hash of the terms (not of when they apply), to tell a changed import from a repeated one.

    The canonical JSON of the terms as pydantic writes it (fields in declaration order), marked
    ``2:``. ``billed_by`` counts only when it is not the default, so contracts stored before the
    field existed keep their hash (a re-import of one is still "unchanged", not a new version).
    ``terms``: the contract's ``terms_json``, when the caller has it already."""
    terms = terms_json(contract) if terms is None else terms
    if contract.billed_by == "billbridge":
        # The same text as dumping without billed_by: pydantic writes it as exactly this member of
        # the top-level object (a nested object has no such key; inside a JSON string its quotes
        # would be escaped), and one dump is a third of the cost of saving a version.
        terms = terms.replace(_DEFAULT_BILLER, "", 1)
    # Lines without recognition or SSP (every line stored before those fields existed) hash as before.
    terms = terms.replace(_DEFAULT_REVENUE, "}")
    # Contracts without a distributor, and those not sold through a reseller, hash as before the fields existed.
    if terms.endswith(_NO_DISTRIBUTOR):
        terms = terms[: -len(_NO_DISTRIBUTOR)] + "}"
    if terms.endswith(_NO_RESELLER):
        terms = terms[: -len(_NO_RESELLER)] + "}"
    return HASH_V2 + hashlib.sha256(terms.encode()).hexdigest()[: 64 - len(HASH_V2)]


HASH_V2 = "2:"
_DEFAULT_BILLER = ',"billed_by":"billbridge"'
_DEFAULT_REVENUE = ',"recognition":null,"ssp":null}'  # the tail of a line (its last two fields) left unset
_NO_RESELLER = ',"reseller_ref":null}'  # the tail of a contract sold directly
_NO_DISTRIBUTOR = ',"distributor_ref":null}'  # the tail of one sold without a distributor


def legacy_content_hash(contract: model.Contract) -> str:
    """The hash of versions stored before ``content_hash`` took pydantic's JSON (JSON with sorted keys
    through the json module, five times the cost): still what those versions are compared by."""
    terms = contract.model_dump(mode="json", exclude=_hashed_without(contract))
    for line in terms["lines"]:
        for key in ("recognition", "ssp"):
            if line[key] is None:
                del line[key]
    return hashlib.sha256(json.dumps(terms, sort_keys=True).encode()).hexdigest()


def _hashed_without(contract: model.Contract) -> set[str]:
    return (
        {"effective_date"}
        | ({"billed_by"} if contract.billed_by == "billbridge" else set())
        | ({"reseller_ref"} if contract.reseller_ref is None else set())
        | ({"distributor_ref"} if contract.distributor_ref is None else set())
    )


# Core statements built once: the ORM's per-call statement handling costs more than the insert.
_INSERT_LINES = insert(table_of(ContractLine))
# Batch forms without RETURNING (SQLite runs ordered RETURNING one row per statement): the ids are
# read back by their unique keys, contract_ref and (contract_id, version_no).
_INSERT_CONTRACTS = insert(table_of(Contract))
_INSERT_VERSIONS = insert(table_of(ContractVersion))
_SET_CURRENT_VERSION = (
    update(table_of(Contract))
    .where(table_of(Contract).c.id == bindparam("cid"))
    .values(current_version_no=bindparam("vno"), updated_at=bindparam("now"))
)


@dataclass
class _Known:
    contract_id: int
    customer_id: int
    entity_id: int
    versions: list[tuple[int, date, str]]  # (version_no, effective_date, content_hash)


@dataclass
class ContractLookups:
    """What saving a batch of contracts needs from the store, read in four queries up front."""

    customers: dict[str, tuple[int, int]]
    entities: dict[str, int]
    products: dict[str, int]
    known: dict[str, _Known]


def lookups_for(session: Session, contracts: Sequence[model.Contract]) -> ContractLookups:
    refs = [c.contract_ref for c in contracts]
    known: dict[str, _Known] = {}
    for ref, cid, customer_id, entity_id, no, effective, digest in session.execute(
        select(
            Contract.contract_ref,
            Contract.id,
            Contract.customer_id,
            Contract.entity_id,
            ContractVersion.version_no,
            ContractVersion.effective_date,
            ContractVersion.content_hash,
        )
        .join(ContractVersion, ContractVersion.contract_id == Contract.id)
        .where(Contract.contract_ref.in_(refs))
        .order_by(Contract.id, ContractVersion.version_no)
    ):
        known.setdefault(ref, _Known(cid, customer_id, entity_id, [])).versions.append((no, effective, digest))
    return ContractLookups(
        customers=customer_ids(session, [c.customer_ref for c in contracts]),
        entities=entity_ids(session, [c.entity_ref for c in contracts]),
        products=product_ids(session, [line.product_ref for c in contracts for line in c.lines]),
        known=known,
    )


def save_contract(session: Session, contract: model.Contract, lookups: ContractLookups | None = None) -> Outcome:
    """Store a contract with resolved prices: new, unchanged, or a new version from its effective_date.

    ``lookups`` (from :func:`lookups_for` over a batch) saves the per-contract queries.
    """
    results = save_contracts(session, [contract], lookups or lookups_for(session, [contract]))
    assert results is not None
    [result] = results
    if isinstance(result, Exception):
        raise result
    return result


def save_contracts(
    session: Session, contracts: Sequence[model.Contract], lookups: ContractLookups
) -> list[Outcome | MissingReference | AmendmentError] | None:
    """Batch form of :func:`save_contract`: each contract is checked on its own (a refused one gets its
    error in the result, nothing of it is written), then the new contracts, the versions and their
    lines go in with one statement each. None when a contract_ref repeats within the batch (the
    caller saves those one by one, so each sees the version before it)."""
    refs = [c.contract_ref for c in contracts]
    if len(set(refs)) != len(refs):
        return None
    results: list[Outcome | MissingReference | AmendmentError] = []
    new: list[tuple[model.Contract, str, int, int]] = []  # (contract, digest, customer id, entity id)
    amended: list[tuple[model.Contract, str, _Known]] = []
    terms_of: dict[int, str] = {}  # id(contract) -> its terms_json, made once for its hash and its row
    for contract in contracts:
        try:
            customer_id, entity_id = _check_refs(contract, lookups)
            terms = terms_of[id(contract)] = terms_json(contract)
            digest = content_hash(contract, terms)
            known = lookups.known.get(contract.contract_ref)
            if known is None:
                new.append((contract, digest, customer_id, entity_id))
                results.append("created")
            elif _is_known_version(contract, digest, known):
                results.append("unchanged")
            else:
                _check_amendment(contract, known, customer_id, entity_id)
                amended.append((contract, digest, known))
                results.append("updated")
        except (MissingReference, AmendmentError) as exc:
            results.append(exc)
    connection = session.connection()
    now = utcnow()
    if new:
        rows = [
            {
                "contract_ref": c.contract_ref,
                "customer_id": cu,
                "entity_id": en,
                "current_version_no": 1,
                "created_at": now,
                "updated_at": now,
            }
            for c, _, cu, en in new
        ]
        _run_many(_INSERT_CONTRACTS, connection, rows)
        by_ref = dict(
            connection.execute(
                select(Contract.contract_ref, Contract.id).where(
                    Contract.contract_ref.in_([r["contract_ref"] for r in rows])
                )
            ).all()
        )
        for contract, digest, customer_id, entity_id in new:
            cid = by_ref[contract.contract_ref]
            start = contract.contract_start_date
            lookups.known[contract.contract_ref] = _Known(cid, customer_id, entity_id, [(1, start, digest)])
    versions: list[tuple[int, int, date, str, model.Contract]] = [
        (lookups.known[c.contract_ref].contract_id, 1, c.contract_start_date, d, c) for c, d, _, _ in new
    ]
    updates = []
    for contract, digest, known in amended:
        version_no = known.versions[-1][0] + 1
        assert contract.effective_date is not None  # checked by _check_amendment
        versions.append((known.contract_id, version_no, contract.effective_date, digest, contract))
        known.versions.append((version_no, contract.effective_date, digest))
        updates.append({"cid": known.contract_id, "vno": version_no, "now": now})
    if versions:
        _run_many(
            _INSERT_VERSIONS,
            connection,
            [_version_row(cid, no, eff, d, c, terms_of[id(c)], now) for cid, no, eff, d, c in versions],
        )
        wanted = {(cid, no) for cid, no, _, _, _ in versions}
        version_ids = {
            (cid, no): vid
            for vid, cid, no in connection.execute(
                select(ContractVersion.id, ContractVersion.contract_id, ContractVersion.version_no).where(
                    ContractVersion.contract_id.in_({cid for cid, _ in wanted})
                )
            )
            if (cid, no) in wanted
        }
        dumps = _Dumps()
        lines = [
            row
            for cid, no, _, _, contract in versions
            for row in _line_rows(version_ids[(cid, no)], contract, lookups.products, dumps)
        ]
        if lines:
            _run_many(_INSERT_LINES, connection, lines)
    if updates:
        _run_many(_SET_CURRENT_VERSION, connection, updates)
    return results


def _run_many(statement: object, connection: Connection, rows: list[dict[str, object]]) -> None:
    """executemany on the driver cursor (store/bulk.py): Core's per-row work cost more than the rows."""
    BulkStatement.of(statement, connection, tuple(rows[0])).run_many(connection, rows)


class _Dumps:
    """JSON forms of the pricing and discount objects of one batch, made once per object: lines
    resolved from the price book share their product's pricing object."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[object, object]] = {}  # id -> (the object, kept alive; its dump)

    def __call__(self, value: BaseModel | None) -> object:
        if value is None:
            return None
        found = self._seen.get(id(value))
        if found is None:
            found = self._seen[id(value)] = (value, value.model_dump(mode="json"))
        return found[1]


def _check_refs(contract: model.Contract, lookups: ContractLookups) -> tuple[int, int]:
    if contract.customer_ref not in lookups.customers:
        raise MissingReference(
            "customer_ref", f"unknown customer {contract.customer_ref!r}", ("customers", contract.customer_ref)
        )
    customer_id, customer_entity = lookups.customers[contract.customer_ref]
    entity_id = lookups.entities.get(contract.entity_ref)
    if entity_id is None:
        raise MissingReference(
            "entity_ref", f"unknown legal entity {contract.entity_ref!r}", ("entities", contract.entity_ref)
        )
    if customer_entity != entity_id:
        raise MissingReference("entity_ref", f"customer {contract.customer_ref!r} belongs to another legal entity")
    for position, line in enumerate(contract.lines):
        if line.product_ref not in lookups.products:
            raise MissingReference(
                f"lines[{position}].product_ref",
                f"unknown product {line.product_ref!r}",
                ("products", line.product_ref),
            )
        if line.pricing is None:
            raise ValueError(f"line {line.line_ref!r} must have its pricing resolved before it is stored")
    return customer_id, entity_id


def _is_known_version(contract: model.Contract, digest: str, known: _Known) -> bool:
    """A version is its terms and the day they apply from: importing a known one (an older file
    again, a retried sync) changes nothing. Versions stored with the legacy hash are compared by it."""
    legacy: list[str] = []

    def same(stored: str) -> bool:
        if stored.startswith(HASH_V2):
            return stored == digest
        if not legacy:
            legacy.append(legacy_content_hash(contract))
        return stored == legacy[0]

    effective = contract.effective_date or contract.contract_start_date
    return same(known.versions[-1][2]) or any(e == effective and same(d) for _, e, d in known.versions)


def _check_amendment(contract: model.Contract, known: _Known, customer_id: int, entity_id: int) -> None:
    if known.customer_id != customer_id or known.entity_id != entity_id:
        raise AmendmentError("customer_ref", "an amendment cannot move a contract to another customer or legal entity")
    if contract.effective_date is None:
        raise AmendmentError("effective_date", "the terms changed: say from when they apply (effective_date)")
    if contract.effective_date < contract.contract_start_date:
        raise AmendmentError("effective_date", "effective_date is before contract_start_date")


def _version_row(
    contract_id: int,
    version_no: int,
    effective_date: date,
    digest: str,
    contract: model.Contract,
    terms: str,
    now: datetime,
) -> dict[str, object]:
    return {
        "contract_id": contract_id,
        "version_no": version_no,
        "effective_date": effective_date,
        "content_hash": digest,
        "currency": contract.currency,
        "contract_start_date": contract.contract_start_date,
        "contract_end_date": contract.contract_end_date,
        "cycle_length": contract.cycle_length,
        "cycle_unit": contract.cycle_unit,
        "cycle_start_date": contract.anchor,
        "billing_timing": contract.billing_timing,
        "payment_terms_days": contract.payment_terms_days,
        "auto_charge": contract.auto_charge,
        "discount": contract.discount.model_dump(mode="json") if contract.discount else None,
        "minimum_commitment": contract.minimum_commitment,
        "terms": terms,
        "billed_by": contract.billed_by,
        "bill_to_ref": _bill_to_ref(contract),
        "created_at": now,
    }


def _line_rows(
    version_id: int, contract: model.Contract, products: dict[str, int], dumps: _Dumps
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for position, line in enumerate(contract.lines):
        assert line.pricing is not None  # checked by _check_refs
        rows.append(
            {
                "version_id": version_id,
                "position": position,
                "line_ref": line.line_ref,
                "product_id": products[line.product_ref],
                "charge": line.charge,
                "description": line.description,
                "quantity": line.quantity,
                "price_ref": line.price_ref,
                "pricing": dumps(line.pricing),
                "billing_timing": line.billing_timing,
                "start_date": line.start_date,
                "end_date": line.end_date,
                "ramps": {"steps": [step.model_dump(mode="json") for step in line.ramps]} if line.ramps else None,
                "discount": dumps(line.discount),
                "usage_aggregation": line.usage_aggregation,
                "billing_date": line.billing_date,
                "installments": line.installments,
            }
        )
    return rows


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


def _bill_to_ref(contract: model.Contract) -> str | None:
    """The partner a contract's documents go to: its reseller's distributor, else its reseller, else none."""
    return contract.distributor_ref or contract.reseller_ref


# A billing run reads these once per chunk of contract ids: built once and run on the driver
# (BulkStatement), whose IN list is rendered once per length.
_HEADS_OF = select(Contract.id, Contract.contract_ref, Contract.customer_id, Contract.entity_id).where(
    Contract.id.in_(bindparam("ids", expanding=True))
)
_VERSIONS_OF = (
    select(
        ContractVersion.contract_id, ContractVersion.version_no, ContractVersion.effective_date, ContractVersion.terms
    )
    .where(ContractVersion.contract_id.in_(bindparam("ids", expanding=True)))
    .order_by(ContractVersion.contract_id, ContractVersion.version_no)
)


def load_timelines(session: Session, ids: Iterable[int]) -> dict[int, ContractTimeline]:
    """Every version of the given contracts as canonical models, for the billing engine."""
    ids = list(ids)
    if not ids:
        return {}
    connection = session.connection()
    params = {"ids": ids}
    heads = BulkStatement.of(_HEADS_OF, connection, ("ids",)).run(connection, params)
    versions = BulkStatement.of(_VERSIONS_OF, connection, ("ids",)).run(connection, params)
    out_versions: dict[int, list[Version]] = defaultdict(list)
    errors: dict[int, str] = {}
    sold: list[tuple[int, int, str]] = []  # (contract id, version number, the partner billed)
    resold_by: dict[int, dict[int, str]] = defaultdict(dict)
    validate = model.Contract.__pydantic_validator__.validate_json  # model_validate_json without its wrapper
    for contract_id, version_no, effective_date, terms in versions:
        try:
            contract = validate(terms)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            errors.setdefault(contract_id, f"stored version {version_no} is invalid: {where}: {first['msg']}")
            continue
        out_versions[contract_id].append(Version(version_no, effective_date, contract))
        ref = _bill_to_ref(contract)
        if ref is not None:  # sold through a reseller: noted here, in the one pass over the versions
            sold.append((contract_id, version_no, ref))
            if contract.distributor_ref is not None and contract.reseller_ref is not None:
                resold_by[contract_id][version_no] = contract.reseller_ref
    resellers = {ref for _, _, ref in sold}
    reseller_ids = {ref: ids[0] for ref, ids in customer_ids(session, resellers).items()} if resellers else {}
    bill_to: dict[int, dict[int, int]] = defaultdict(dict)
    for contract_id, version_no, ref in sold:
        if ref in reseller_ids:
            bill_to[contract_id][version_no] = reseller_ids[ref]
    return {
        cid: ContractTimeline(
            cid,
            contract_ref,
            customer_id,
            entity_id,
            () if cid in errors else tuple(out_versions[cid]),
            errors.get(cid),
            bill_to.get(cid, {}),
            resold_by.get(cid, {}),
        )
        for cid, contract_ref, customer_id, entity_id in heads
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


def current_contracts(session: Session, refs: Iterable[str] | None) -> dict[str, model.Contract]:
    """The latest stored version of each known contract among ``refs`` (None: all), prices resolved."""
    query = select(Contract.contract_ref, ContractVersion.terms).join(
        ContractVersion,
        (ContractVersion.contract_id == Contract.id) & (ContractVersion.version_no == Contract.current_version_no),
    )
    if refs is not None:
        refs = list(refs)
        if not refs:
            return {}
        query = query.where(Contract.contract_ref.in_(refs))
    return {ref: model.Contract.model_validate_json(terms) for ref, terms in session.execute(query).all()}
