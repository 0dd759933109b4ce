"""Importing contract files: read, map record by record, store each in its own savepoint.

A bad record is quarantined with its reason and payload and never stops the others; a record
fixed in a later file clears its quarantine entry.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from billbridge.billing.model import Contract, Customer, LegalEntity, Partner, Product, ReferralAgreement
from billbridge.billing.pricebook import PriceBookError, resolve_prices
from billbridge.billing.resellers import ResellerError, resell
from billbridge.mapping.contract_file import ParsedFile, ParsedRecord, RecordError, parse_document
from billbridge.store import quarantine
from billbridge.store.contracts import AmendmentError, ContractLookups, lookups_for, save_contract, save_contracts
from billbridge.store.db import Store
from billbridge.store.partners import (
    PartnerError,
    load_partners,
    unknown_referrals,
    upsert_agreement,
    upsert_partner,
)
from billbridge.store.reference import (
    MissingReference,
    load_products,
    unchanged_products,
    upsert_customer,
    upsert_customers,
    upsert_entity,
    upsert_product,
)

SOURCE = "contract_file"
BATCH = 500
# Entities before what names them; partners before their agreements and the contracts they resell.
SECTIONS = ("entities", "customers", "products", "partners", "referral_agreements", "contracts")


class ContractFileError(ValueError):
    """The file as a whole cannot be read (missing, not JSON/YAML)."""


class _DatesAsText(yaml.SafeLoader):
    """YAML's safe loader with dates left as text, for the contract models to read as they read JSON's:
    an impossible date (2026-02-30) is then one record's error, quarantined, not the whole file's."""


def _as_text(loader: _DatesAsText, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_DatesAsText.add_constructor("tag:yaml.org,2002:timestamp", _as_text)


@dataclass
class ImportSummary:
    counts: Counter[str] = field(default_factory=Counter)  # "contracts.created", "customers.unchanged", ...
    errors: list[RecordError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(sorted(self.counts.items())),
            "errors": [
                {"record": e.record, "section": e.section, "key": e.key, "field": e.field, "message": e.message}
                for e in self.errors
            ],
        }


def read_document(path: Path) -> Any:
    """Parse a JSON or YAML contract file (by extension; anything else is tried as YAML, a JSON superset)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:  # a Latin-1 file, say: the file's problem, said as such, not a traceback
        bad = exc.object[exc.start : exc.start + 1].hex()
        raise ContractFileError(f"{path}: not UTF-8 (byte 0x{bad} at {exc.start})") from exc
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.load(text, Loader=_DatesAsText)
    except json.JSONDecodeError as exc:
        raise ContractFileError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from exc
    except yaml.YAMLError as exc:
        raise ContractFileError(f"{path}: not valid YAML: {exc}") from exc


def import_file(store: Store, path: Path) -> ImportSummary:
    return import_document(store, read_document(path), folder=path.resolve().parent)


IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


def check_logos(parsed: ParsedFile, folder: Path) -> None:
    """An entity's logo is read here, when the entity is loaded, not first when an invoice is e-mailed:
    a relative path is taken from ``folder`` (the contract file's) and stored absolute; a file that
    cannot be read, or is no PNG or JPEG, refuses the entity with ``messaging.logo`` named."""
    kept: list[ParsedRecord] = []
    for parsed_record in parsed.records:
        record = parsed_record.record
        messaging = record.messaging if isinstance(record, LegalEntity) else None
        if messaging is None or messaging.logo is None:
            kept.append(parsed_record)
            continue
        path = (folder / Path(messaging.logo).expanduser()).resolve()
        problem = None
        try:
            with path.open("rb") as image:
                head = image.read(8)
            if not any(head.startswith(magic) for magic in IMAGE_MAGIC):
                problem = f"{path} is not a PNG or JPEG image"
        except OSError as exc:
            problem = f"cannot read {path}: {exc.strerror or exc}"
        if problem is not None:
            parsed.errors.append(
                RecordError(
                    parsed_record.section,
                    parsed_record.index,
                    parsed_record.key,
                    "messaging.logo",
                    problem,
                    parsed_record.payload,
                )
            )
            continue
        absolute = messaging.model_copy(update={"logo": str(path)})
        kept.append(replace(parsed_record, record=record.model_copy(update={"messaging": absolute})))
    parsed.records = kept


def import_document(store: Store, document: Any, *, folder: Path | None = None) -> ImportSummary:
    """Import a parsed contract file; ``folder`` is where its relative paths (an entity's logo) start
    (the working directory when None)."""
    parsed = parse_document(document)
    check_logos(parsed, folder if folder is not None else Path.cwd())
    summary = ImportSummary()
    summary.errors.extend(parsed.errors)
    for section in SECTIONS:
        records = list(parsed.section(section))
        for start in range(0, len(records), BATCH):
            with store.write() as session:
                store_records(session, records[start : start + BATCH], summary, source=SOURCE)
    with store.write() as session:
        quarantine_invalid(session, parsed.errors, summary, source=SOURCE)
    retry_healed(store, summary)
    return summary


RETRY_ROUNDS = 3  # a customer let in by a retry lets in, on the next round, what waited for it


def retry_healed(store: Store, summary: ImportSummary) -> None:
    """Store again, from their kept payloads, the quarantined contract-file records whose missing legal
    entity, customer, product or partner the store has gained since (an agreement waiting for a customer,
    a contract for its reseller), as CRM syncs do (``crm_pages.retry_healed``). Counted in ``summary``
    as ``retried`` and ``retried.<section>.<outcome>``; one still refused stays quarantined, refreshed."""
    tried: set[tuple[str, str]] = set()
    for _round in range(RETRY_ROUNDS):
        with store.read() as session:
            healed = quarantine.healed(session, source=SOURCE)
        fresh = [h for h in healed if h.record_type in SECTIONS and (h.record_type, h.record_key) not in tried]
        if not fresh:
            return
        tried.update((h.record_type, h.record_key) for h in fresh)
        document: dict[str, list[Any]] = {}
        for entry in fresh:
            document.setdefault(entry.record_type, []).append(entry.payload)
        parsed = parse_document(document)
        again = ImportSummary()
        with store.write() as session:
            store_records(session, parsed.records, again, source=SOURCE)
        summary.counts["retried"] += len(fresh)
        summary.counts.update({f"retried.{k}": v for k, v in again.counts.items()})


def store_records(
    session: Session, records: list[ParsedRecord], summary: ImportSummary, *, source: str | None
) -> list[str]:
    """Store canonical records section by section (entities before the contracts that use them), each
    in its own savepoint; refused ones are quarantined under ``source``, stored ones clear their
    quarantine entries. With ``source`` None (the write API, which answers a refusal with a 422)
    refusals are only listed in the summary. Returns the keys of the contracts stored."""
    stored_contracts: list[str] = []
    for section in SECTIONS:
        batch = [r for r in records if r.section == section]
        if not batch:
            continue
        stored: list[str] | None = None
        if section == "partners":  # distributors before the resellers naming them (checked on import)
            batch.sort(key=lambda r: getattr(r.record, "distributor_ref", None) is not None)
        if section == "customers":
            stored = _store_customers(session, batch, summary, source)
        elif section == "contracts":
            stored = _store_contracts(session, batch, summary, source)
        elif section == "products":
            # A price book comes again with every page of a sync: leave the products that did not change.
            same = unchanged_products(session, [r.record for r in batch if isinstance(r.record, Product)])
            if same:
                summary.counts["products.unchanged"] += sum(1 for r in batch if r.key in same)
            if source is not None:
                quarantine.resolve_many(session, source=source, record_type=section, record_keys=sorted(same))
            batch = [r for r in batch if r.key not in same]
            stored = _store_optimistically(session, batch, summary, source) if batch else []
        else:
            stored = _store_optimistically(session, batch, summary, source)
        if stored is None:
            context = _context(session, section, batch)
            stored = [r.key for r in batch if _import_one(session, r, summary, context, source)]
        if source is not None:
            quarantine.resolve_many(session, source=source, record_type=section, record_keys=stored)
        if section == "referral_agreements":
            _wait_for_customers(session, [r for r in batch if r.key in set(stored)], summary, source)
        if section == "contracts":
            stored_contracts = stored
    return stored_contracts


def _wait_for_customers(
    session: Session, stored: list[ParsedRecord], summary: ImportSummary, source: str | None
) -> None:
    """An agreement stored without the referrals of customers the store does not have yet: each such
    agreement is listed (the first referral waiting named) and kept in quarantine with what it waits
    for, so the import retries it when the customer arrives; its other referrals earn meanwhile."""
    for record in stored:
        assert isinstance(record.record, ReferralAgreement)
        waiting = unknown_referrals(session, record.record)
        if not waiting:
            continue
        n, first = waiting[0]
        names = ", ".join(repr(r.customer_ref) for _, r in waiting)
        missing = MissingReference(
            f"referrals[{n}].customer_ref",
            f"unknown customer(s) {names}: stored without their referral(s), which wait for them",
            ("customers", first.customer_ref),
        )
        _refuse(session, record, missing, summary, source)


def _context(session: Session, section: str, batch: list[ParsedRecord]) -> _BatchContext | None:
    return _BatchContext.read(session, batch) if section == "contracts" else None


def _store_optimistically(
    session: Session, batch: list[ParsedRecord], summary: ImportSummary, source: str | None
) -> list[str] | None:
    """Store a whole batch in one savepoint (one per record costs two statements each); None when any
    record is refused, after rolling the batch back, so the caller stores it record by record."""
    if len(batch) < 2:
        return None
    outcomes: list[str] = []
    try:
        with session.begin_nested():
            context = _context(session, batch[0].section, batch)
            for record in batch:
                outcomes.append(_store_record(session, record.record, context))
    except (MissingReference, PriceBookError, AmendmentError, ValueError):
        return None
    for record, outcome in zip(batch, outcomes, strict=True):
        summary.counts[f"{record.section}.{outcome}"] += 1
    return [r.key for r in batch]


def _store_contracts(
    session: Session, batch: list[ParsedRecord], summary: ImportSummary, source: str | None
) -> list[str] | None:
    """Contracts through the batch save: each checked on its own, all written with a few statements.
    None (after rolling back) when the batch cannot go that way; the caller then goes record by record."""
    context = _BatchContext.read(session, batch)
    resolved: list[tuple[ParsedRecord, Contract]] = []
    refused: list[tuple[ParsedRecord, Exception]] = []
    for record in batch:
        assert isinstance(record.record, Contract)
        try:
            resolved.append((record, context.billed_terms(record.record)))
        except (PriceBookError, MissingReference, ResellerError) as exc:
            refused.append((record, exc))
    try:
        with session.begin_nested():
            results = save_contracts(session, [c for _, c in resolved], context.lookups)
            if results is None:
                raise _Fallback
    except (_Fallback, ValueError):
        return None
    stored = []
    for (record, _), result in zip(resolved, results, strict=True):
        if isinstance(result, Exception):
            refused.append((record, result))
            continue
        summary.counts[f"contracts.{result}"] += 1
        stored.append(record.key)
    for record, error in refused:
        _refuse(session, record, error, summary, source)
    return stored


class _Fallback(Exception):
    """The batch path does not fit this batch."""


def _store_customers(
    session: Session, batch: list[ParsedRecord], summary: ImportSummary, source: str | None
) -> list[str]:
    """Customers in one batched upsert; one with an unknown entity, or one that would rename or move a
    reseller's bill-to record, is quarantined."""
    outcomes = upsert_customers(session, [r.record for r in batch if isinstance(r.record, Customer)])
    stored = []
    for record in batch:
        outcome = outcomes[record.key]
        if isinstance(outcome, Exception):
            _refuse(session, record, outcome, summary, source)
            continue
        summary.counts[f"customers.{outcome}"] += 1
        stored.append(record.key)
    return stored


@dataclass
class _BatchContext:
    """The price book and store lookups a batch of contracts needs, read once per batch."""

    products: dict[str, Product]
    lookups: ContractLookups
    resellers: dict[str, Partner]

    @classmethod
    def read(cls, session: Session, batch: list[ParsedRecord]) -> _BatchContext:
        contracts = [r.record for r in batch if isinstance(r.record, Contract)]
        products = load_products(session, [line.product_ref for c in contracts for line in c.lines])
        refs = {c.reseller_ref for c in contracts if c.reseller_ref is not None}
        resellers = load_partners(session, refs) if refs else {}
        distributors = {p.distributor_ref for p in resellers.values() if p.distributor_ref is not None} - set(resellers)
        if distributors:  # a reseller's distributor is billed instead of it (read once per batch)
            resellers.update(load_partners(session, distributors))
        return cls(products, lookups_for(session, contracts), resellers)

    def billed_terms(self, contract: Contract) -> Contract:
        """The contract as stored and billed: prices resolved from the price book, and for one sold through
        a reseller, the reseller's discount and payment terms."""
        resolved = resolve_prices(contract, self.products)
        if contract.reseller_ref is None:
            return resolved
        reseller = self.resellers.get(contract.reseller_ref)
        if reseller is None:
            raise MissingReference(
                "reseller_ref", f"unknown reseller {contract.reseller_ref!r}", ("partners", contract.reseller_ref)
            )
        distributor = self.resellers.get(reseller.distributor_ref) if reseller.distributor_ref else None
        return resell(resolved, reseller, distributor)


def _import_one(
    session: Session, record: ParsedRecord, summary: ImportSummary, context: _BatchContext | None, source: str | None
) -> bool:
    """Store one record in its own savepoint; a refused one is quarantined. Returns whether it was stored."""
    try:
        with session.begin_nested():
            outcome = _store_record(session, record.record, context)
    except (MissingReference, PriceBookError, AmendmentError, PartnerError, ResellerError, ValueError) as exc:
        # The savepoint rolled the record back whole; keep it visible and go on with the others.
        _refuse(session, record, exc, summary, source)
        return False
    summary.counts[f"{record.section}.{outcome}"] += 1
    return True


def _refuse(session: Session, record: ParsedRecord, exc: Exception, summary: ImportSummary, source: str | None) -> None:
    where = getattr(exc, "field", "(record)")
    error = RecordError(record.section, record.index, record.key, where, str(exc), record.payload)
    summary.errors.append(error)
    if source is None:
        return
    summary.counts[f"{record.section}.quarantined"] += 1
    quarantine.quarantine(
        session,
        source=source,
        record_type=record.section,
        record_key=record.key,
        field=error.field,
        reason=error.message,
        payload=record.payload,
        missing=getattr(exc, "missing", None),  # a sync retries the record once the store has it
    )


def _store_record(session: Session, record: object, context: _BatchContext | None) -> str:
    if isinstance(record, LegalEntity):
        return upsert_entity(session, record)
    if isinstance(record, Customer):
        return upsert_customer(session, record)
    if isinstance(record, Product):
        return upsert_product(session, record)
    if isinstance(record, Partner):
        return upsert_partner(session, record)
    if isinstance(record, ReferralAgreement):
        return upsert_agreement(session, record)
    assert isinstance(record, Contract) and context is not None
    return save_contract(session, context.billed_terms(record), context.lookups)


def quarantine_invalid(session: Session, errors: list[RecordError], summary: ImportSummary, *, source: str) -> None:
    """Records that did not validate: one quarantine entry each, all their field errors in the reason."""
    by_record: dict[tuple[str, int], list[RecordError]] = defaultdict(list)
    for error in errors:
        if error.section != "file":
            by_record[(error.section, error.index)].append(error)
    entries = []
    for (section, index), found in by_record.items():
        first = found[0]
        summary.counts[f"{section}.quarantined"] += 1
        entries.append(
            quarantine.Entry(
                record_type=section,
                record_key=first.key or f"{section}[{index}]",
                field=first.field,
                reason="; ".join(f"{e.field}: {e.message}" for e in found),
                payload=first.payload,
                missing=first.missing,  # a sync retries it once the store has what it lacked
            )
        )
    quarantine.quarantine_many(session, source=source, entries=entries)
