"""CRM deals into the contract store, page by page: pull -> map -> store -> cursor.

Vendor-neutral: a ``CrmSourceSpec`` declares what differs per CRM (how to connect, how to read a
deal bundle into the neutral CRM records, the default mapping); the rules are in mapping/crm.py and
the storage in store/. Each page is stored in one transaction together with the cursor that follows
it, so a crash or a rerun repeats at most one page, and repeating a page changes nothing.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.orm import Session

from billbridge.billing.model import Product
from billbridge.connectors.base import DealBundle, DealPage, DealSource
from billbridge.flows.importing import ImportSummary, quarantine_invalid, store_records
from billbridge.flows.prefetch import prefetch
from billbridge.mapping.contract_file import ParsedRecord, RecordError
from billbridge.mapping.crm import (
    CrmCompany,
    CrmDeal,
    CrmMapping,
    CrmProduct,
    MappingError,
    contract_ref,
    ended_by_deletion,
    is_won,
    map_deal,
)
from billbridge.store import quarantine
from billbridge.store.contracts import AmendmentError, current_contracts, lookups_for, save_contract
from billbridge.store.cursors import get_cursor, set_cursor
from billbridge.store.db import Store

Extracted = tuple[CrmDeal, CrmCompany | None, dict[str, CrmProduct]]
Extract = Callable[[DealBundle, dict[Any, Any]], Extracted]  # (bundle, a cache kept for the whole sync)
STREAM = "deals"


@dataclass(frozen=True)
class CrmSourceSpec:
    """What one CRM declares: its name, how to read a bundle, its mapping."""

    name: str
    extract: Extract
    mapping: CrmMapping


@dataclass
class SyncSummary:
    source: str
    pages: int = 0
    api_calls: int = 0
    deals_pulled: int = 0
    not_won: int = 0
    deleted: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[RecordError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "pages": self.pages,
            "api_calls": self.api_calls,
            "deals_pulled": self.deals_pulled,
            "not_won": self.not_won,
            "deleted": self.deleted,
            "counts": dict(sorted(self.counts.items())),
            "errors": [{"record": e.key, "field": e.field, "message": e.message} for e in self.errors],
        }

    def markdown(self) -> str:
        """The run's summary for the Prefect UI: what changed, what was quarantined and why."""
        c = self.counts
        rows = [
            ("deals pulled", self.deals_pulled),
            ("not (yet) won, skipped", self.not_won),
            ("contracts created", c["contracts.created"]),
            ("contracts updated (new version)", c["contracts.updated"]),
            ("contracts unchanged", c["contracts.unchanged"]),
            ("contracts ended (deal deleted)", c["contracts.ended"]),
            ("customers created / updated", f"{c['customers.created']} / {c['customers.updated']}"),
            ("quarantined", c["contracts.quarantined"] + c["customers.quarantined"] + c["products.quarantined"]),
            ("API calls", self.api_calls),
        ]
        lines = [f"# CRM sync: {self.source}", "", "| | |", "|---|---:|"]
        lines += [f"| {label} | {value} |" for label, value in rows]
        if self.errors:
            lines += ["", "## Quarantined", "", "| record | field | reason |", "|---|---|---|"]
            lines += [f"| {e.key} | {e.field} | {e.message.replace('|', '/')} |" for e in self.errors[:200]]
        return "\n".join(lines) + "\n"


@dataclass
class MappedPage:
    records: list[ParsedRecord]  # canonical customers, products and contracts of the won deals
    errors: list[RecordError]  # one per deal that cannot be mapped (its key is the contract_ref)
    not_won: list[str]  # contract refs of deals outside the won stages


@dataclass
class MappingCaches:
    """What mapping keeps across the pages of one sync: vendor records read once, products mapped once."""

    extracted: dict[Any, Any] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)


def map_page(page: DealPage, spec: CrmSourceSpec, caches: MappingCaches | None = None) -> MappedPage:
    """Canonical records of a page's won deals, and an error for each deal that cannot be mapped."""
    caches = caches or MappingCaches()
    records: dict[tuple[str, str], ParsedRecord] = {}
    errors: list[RecordError] = []
    not_won: list[str] = []
    for index, bundle in enumerate(page.bundles):
        deal_id = str(bundle.deal.get("Id") or bundle.deal.get("id") or f"page-record-{index}")
        key = contract_ref(spec.mapping, deal_id)
        payload = _payload(bundle)
        try:
            deal, company, products = spec.extract(bundle, caches.extracted)
            if not is_won(deal, spec.mapping):
                not_won.append(key)
                continue
            mapped = map_deal(deal, company, products, spec.mapping, caches.products)
        except MappingError as exc:
            errors.append(RecordError("contracts", index, key, exc.field, str(exc).split(": ", 1)[-1], payload))
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a malformed vendor payload
            errors.append(RecordError("contracts", index, key, "(payload)", f"malformed record: {exc!r}", payload))
            continue
        for section, model, ref in (
            ("customers", mapped.customer, mapped.customer.customer_ref),
            *(("products", p, p.product_ref) for p in mapped.products),
            ("contracts", mapped.contract, mapped.contract.contract_ref),
        ):
            records[(section, ref)] = ParsedRecord(section, index, ref, model, payload)
    return MappedPage(list(records.values()), errors, not_won)


def store_page(
    store: Store,
    spec: CrmSourceSpec,
    page: DealPage,
    summary: SyncSummary,
    *,
    today: date,
    caches: MappingCaches | None = None,
) -> None:
    """Store one page and the cursor after it, in one transaction."""
    mapped = map_page(page, spec, caches)
    imported = ImportSummary(errors=list(mapped.errors))
    with store.write() as session:
        store_records(session, mapped.records, imported, source=spec.name)
        quarantine_invalid(session, mapped.errors, imported, source=spec.name)
        # A deal that left the won stages is no longer a contract candidate: its old entry is moot.
        quarantine.resolve_many(session, source=spec.name, record_type="contracts", record_keys=mapped.not_won)
        _end_deleted(session, spec, [contract_ref(spec.mapping, i) for i in page.deleted_ids], today, imported)
        if page.cursor is not None:
            set_cursor(session, spec.name, STREAM, page.cursor)
    summary.pages += 1
    summary.deals_pulled += len(page.bundles)
    summary.not_won += len(mapped.not_won)
    summary.api_calls += page.api_calls
    summary.deleted += len(page.deleted_ids)
    summary.counts.update(imported.counts)
    summary.errors.extend(imported.errors)


def _end_deleted(session: Session, spec: CrmSourceSpec, refs: list[str], today: date, summary: ImportSummary) -> None:
    """Contracts of deleted deals end the day before; one that had not started is quarantined for a person."""
    known = current_contracts(session, refs)
    for ref, contract in known.items():
        ended = ended_by_deletion(contract, today)
        if ended is None:
            if contract.contract_end_date is None or contract.contract_end_date >= today:
                reason = f"the deal was deleted in {spec.name} before the contract started; end or remove it by hand"
                quarantine.quarantine(
                    session,
                    source=spec.name,
                    record_type="contracts",
                    record_key=ref,
                    field="(deleted)",
                    reason=reason,
                    payload={"contract_ref": ref, "deleted_on": today.isoformat()},
                )
                summary.counts["contracts.quarantined"] += 1
            continue
        try:
            with session.begin_nested():
                save_contract(session, ended, lookups_for(session, [ended]))
        except (AmendmentError, ValueError) as exc:
            summary.counts["contracts.quarantined"] += 1
            quarantine.quarantine(
                session,
                source=spec.name,
                record_type="contracts",
                record_key=ref,
                field="(deleted)",
                reason=f"the deal was deleted but its contract could not be ended: {exc}",
                payload={"contract_ref": ref, "deleted_on": today.isoformat()},
            )
            continue
        summary.counts["contracts.ended"] += 1


def sync_pages(
    store: Store,
    spec: CrmSourceSpec,
    source: DealSource,
    *,
    today: date | None = None,
    run_page: Callable[[Callable[[], None]], None] | None = None,
    on_page: Callable[[SyncSummary], None] | None = None,
) -> SyncSummary:
    """Pull from the stored cursor and store page by page. ``run_page`` runs each page's work (the
    Prefect flow makes it a task); ``on_page`` reports progress."""
    today = today or datetime.now(UTC).date()
    with store.read() as session:
        cursor = get_cursor(session, spec.name, STREAM)
    summary = SyncSummary(spec.name)
    caches = MappingCaches()
    for page in prefetch(source.pull(cursor)):  # the next page is fetched while this one is stored

        def work(page: DealPage = page) -> None:
            store_page(store, spec, page, summary, today=today, caches=caches)

        (run_page or _call)(work)
        if on_page is not None:
            on_page(summary)
    return summary


def _call(work: Callable[[], None]) -> None:
    work()


# Registry: source name -> (mapping module, connector module). Imported lazily, so that one vendor's
# SDK is loaded only when that vendor is synced. A mapping module declares ``bundle_to_crm`` and
# ``DEFAULT_MAPPING``; a connector module declares ``connect(settings) -> DealSource``.
SOURCES: dict[str, tuple[str, str]] = {
    "salesforce": ("billbridge.mapping.salesforce", "billbridge.connectors.salesforce"),
    "hubspot": ("billbridge.mapping.hubspot", "billbridge.connectors.hubspot"),
}


def spec_for(name: str, mapping: CrmMapping | None = None) -> CrmSourceSpec:
    """The declared spec of a CRM, with the installation's mapping or the documented default."""
    if name not in SOURCES:
        raise ValueError(f"unknown CRM source {name!r} (expected {', '.join(SOURCES)})")
    module = importlib.import_module(SOURCES[name][0])
    return CrmSourceSpec(name, module.bundle_to_crm, mapping or module.DEFAULT_MAPPING)


def _payload(bundle: DealBundle) -> dict[str, Any]:
    """What a quarantine entry keeps: the deal, its lines and company as the vendor sent them."""
    return {"deal": bundle.deal, "lines": bundle.lines, "company": bundle.company}
