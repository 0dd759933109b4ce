"""CRM deals (and Stripe subscriptions) into the contract store, page by page: pull -> map -> store -> cursor.

Vendor-neutral: a source spec declares what differs per source (how to map a bundle, its stream,
its refs); ``CrmSourceSpec`` covers the CRMs (reading a deal bundle into the neutral CRM records,
the rules in mapping/crm.py), ``SubscriptionSourceSpec`` Stripe subscriptions (mapping/stripe.py:
contracts Stripe itself bills, kept for reporting). The storage is store/'s. Each page is stored
in one transaction together with the cursor that follows it, so a crash or a rerun repeats at most
one page, and repeating a page changes nothing.

A record refused because the store lacked its legal entity, customer or product is kept in the
quarantine with what it lacked; the cursor moves on. Each sync first retries, from their kept
payloads, the records whose missing entity, customer or product the store has since gained
(``retry_healed``), so importing an entity bills the deals waiting for it without anyone editing
them in the CRM. A full sync (``full=True``) reads everything again, for what nothing else covers.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from typing import Any, Protocol

from sqlalchemy.orm import Session

from billbridge.billing.model import Contract, Customer, Partner, Product
from billbridge.connectors.base import DealSource
from billbridge.flows.heap import bulk_gc
from billbridge.flows.importing import ImportSummary, quarantine_invalid, store_records
from billbridge.flows.prefetch import prefetch
from billbridge.mapping.contract_file import ParsedRecord, RecordError
from billbridge.mapping.crm import (
    CrmCompany,
    CrmDeal,
    CrmMapping,
    CrmProduct,
    PartnerReferral,
    contract_ref,
    ended_by_deletion,
    is_won,
    map_deal,
)
from billbridge.mapping.fields import PARSE_FAILURES, MappingError
from billbridge.mapping.stripe import StripeSubscriptionMapping
from billbridge.records import DealBundle, RecordPage
from billbridge.settings import Settings
from billbridge.store import quarantine
from billbridge.store.contracts import AmendmentError, current_contracts, lookups_for, save_contract
from billbridge.store.cursors import get_cursor, set_cursor
from billbridge.store.db import Store
from billbridge.store.partners import PartnerError, add_referral, load_partners
from billbridge.vendors.registry import SubscriptionMapper, contract_sources, subscription_mapping

Extracted = tuple[CrmDeal, CrmCompany | None, dict[str, CrmProduct]]
Extract = Callable[[DealBundle, dict[Any, Any]], Extracted]  # (bundle, a cache kept for the whole sync)
STREAM = "deals"


class Mapped(Protocol):
    """What mapping one bundle yields: the customer, the products its lines name, the contract."""

    @property
    def customer(self) -> Customer: ...
    @property
    def products(self) -> list[Product]: ...
    @property
    def contract(self) -> Contract: ...


class SourceSpec(Protocol):
    """What the pipeline needs from a source: its name, the stream its cursor is saved under, the
    contract ref of a vendor record id, and how to map a bundle (None: not a contract, e.g. a deal
    not won or a subscription that never started)."""

    @property
    def name(self) -> str: ...
    @property
    def stream(self) -> str: ...
    def ref(self, record_id: str) -> str: ...
    def map_bundle(self, bundle: DealBundle, caches: MappingCaches) -> Mapped | None: ...


@dataclass(frozen=True)
class CrmSourceSpec:
    """What one CRM declares: its name, how to read a bundle, its mapping."""

    name: str
    extract: Extract
    mapping: CrmMapping
    stream: str = STREAM

    def ref(self, record_id: str) -> str:
        return contract_ref(self.mapping, record_id)

    def map_bundle(self, bundle: DealBundle, caches: MappingCaches) -> Mapped | None:
        deal, company, products = self.extract(bundle, caches.extracted)
        if not is_won(deal, self.mapping):
            return None
        return map_deal(deal, company, products, self.mapping, caches.products, caches.partners)


@dataclass(frozen=True)
class SubscriptionSourceSpec:
    """Stripe subscriptions as contracts Stripe bills itself (``billed_by="stripe"``): billbridge
    keeps them for MRR/ARR and revenue reporting, and Stripe's own invoices for them arrive as
    payments through reconciliation; the billing run never invoices them (``billing.engine``).
    A changed subscription is a new contract version from its change date (the newest event), a
    canceled one ends its contract where Stripe says it stops."""

    name: str
    mapping: StripeSubscriptionMapping
    map_subscription: SubscriptionMapper  # the registry's (``subscription_mapping``)
    stream: str = "subscriptions"

    def ref(self, record_id: str) -> str:
        return f"{self.mapping.ref_prefix}{record_id}"

    def map_bundle(self, bundle: DealBundle, caches: MappingCaches) -> Mapped | None:
        return self.map_subscription(
            bundle.deal, bundle.company, bundle.prices, bundle.products, self.mapping, changed_at=bundle.changed_at
        )


@dataclass
class SyncSummary:
    source: str
    pages: int = 0
    api_calls: int = 0
    deals_pulled: int = 0
    not_won: int = 0
    deleted: int = 0
    retried: int = 0  # quarantined deals retried because the store gained what they lacked
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
            "retried_from_quarantine": self.retried,
            "counts": dict(sorted(self.counts.items())),
            "errors": [{"record": e.key, "field": e.field, "message": e.message} for e in self.errors],
        }

    def markdown(self) -> str:
        """The run's summary for the Prefect UI: what changed, what was quarantined and why."""
        c = self.counts
        rows = [
            ("deals pulled", self.deals_pulled),
            ("retried from the quarantine (what they lacked is here now)", self.retried),
            ("not (yet) won / never started, skipped", self.not_won),
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
    payloads: bool = True  # False: the records carry no raw payload (see ``map_page``)
    referrals: list[PartnerReferral] = field(default_factory=list)  # referral partners the deals name


@dataclass
class MappingCaches:
    """What mapping keeps across the pages of one sync: vendor records read once, products mapped once."""

    extracted: dict[Any, Any] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)
    partners: dict[str, Partner] | None = None  # the known partners, for deals naming one (None: none known)


def map_page(
    page: RecordPage[DealBundle], spec: SourceSpec, caches: MappingCaches | None = None, *, payloads: bool = True
) -> MappedPage:
    """Canonical records of a page's won deals, and an error for each deal that cannot be mapped
    (with its raw payload). ``payloads=False`` leaves the payload off the mapped records, for a page
    handed to the writer process: it is needed only if the store refuses one of them."""
    caches = caches or MappingCaches()
    records: dict[tuple[str, str], ParsedRecord] = {}
    errors: list[RecordError] = []
    not_won: list[str] = []
    referrals: list[PartnerReferral] = []
    for index, bundle in enumerate(page.records):
        key = spec.ref(_record_id(bundle.deal, f"page-record-{index}"))
        payload = _payload(bundle)
        try:
            mapped = spec.map_bundle(bundle, caches)
            if mapped is None:
                not_won.append(key)
                continue
        except MappingError as exc:
            errors.append(RecordError("contracts", index, key, exc.field, exc.message, payload, exc.missing))
            continue
        except PARSE_FAILURES as exc:  # a mapping that let one through: the record is still only quarantined
            errors.append(RecordError("contracts", index, key, "(record)", f"malformed record: {exc!r}", payload))
            continue
        customer = mapped.customer
        earlier = records.get(("customers", customer.customer_ref))
        named = earlier.record.contacts if earlier and isinstance(earlier.record, Customer) else None
        if customer.contacts is None and named is not None:
            # another deal of this customer names its billing contacts; this one naming none erases nothing
            customer = customer.model_copy(update={"contacts": named})
        for section, model, ref in (
            ("customers", customer, customer.customer_ref),
            *(("products", p, p.product_ref) for p in mapped.products),
            ("contracts", mapped.contract, mapped.contract.contract_ref),
        ):
            records[(section, ref)] = ParsedRecord(section, index, ref, model, payload if payloads else None)
        referral = getattr(mapped, "referral", None)
        if referral is not None:
            referrals.append(referral)
        for problem in getattr(mapped, "dropped_contacts", ()):  # the deal is stored; its bad contact is shown
            errors.append(
                RecordError("customers", index, customer.customer_ref, problem.field, problem.message, payload)
            )
    return MappedPage(list(records.values()), errors, not_won, payloads, referrals)


def with_payloads(mapped: MappedPage, page: RecordPage[DealBundle]) -> MappedPage:
    """``mapped`` (made with ``payloads=False``) with each record's raw payload from ``page``."""
    records = [
        ParsedRecord(r.section, r.index, r.key, r.record, _payload(page.records[r.index])) for r in mapped.records
    ]
    return MappedPage(records, mapped.errors, mapped.not_won, referrals=mapped.referrals)


@dataclass(frozen=True)
class PageToStore:
    """What storing a mapped page needs of the vendor's page: its deletions and the cursor after it."""

    deleted_ids: list[str]
    cursor: str | None


class NeedsPayloads(Exception):
    """The store refused a record of a page mapped without payloads: the page was rolled back, and is
    to be stored again with them, so the quarantine entry keeps the record as received."""


def store_page(
    store: Store,
    spec: SourceSpec,
    page: RecordPage[DealBundle],
    summary: SyncSummary,
    *,
    today: date,
    caches: MappingCaches | None = None,
) -> None:
    """Map one page, store it and the cursor after it, in one transaction."""
    mapped = map_page(page, spec, caches)
    imported = store_mapped(store, spec, PageToStore(page.deleted_ids, page.cursor), mapped, today=today)
    count_page(summary, page, mapped, imported)


def store_mapped(
    store: Store, spec: SourceSpec, page: PageToStore, mapped: MappedPage, *, today: date
) -> ImportSummary:
    """Store a mapped page and the cursor after it, in one transaction. Raises ``NeedsPayloads``
    (having stored nothing) when a record mapped without its payload is refused."""
    imported = ImportSummary(errors=list(mapped.errors))
    with store.write() as session:
        store_records(session, mapped.records, imported, source=spec.name)
        if not mapped.payloads and any(e.payload is None for e in imported.errors):
            raise NeedsPayloads(spec.name)  # rolls the page back
        quarantine_invalid(session, mapped.errors, imported, source=spec.name)
        _add_referrals(session, spec, mapped.referrals, imported)
        # A deal that left the won stages, or was deleted, is no longer a contract candidate: its
        # old entry is moot (and never retried).
        gone = mapped.not_won + [spec.ref(i) for i in page.deleted_ids]
        quarantine.resolve_many(session, source=spec.name, record_type="contracts", record_keys=gone)
        _end_deleted(session, spec, [spec.ref(i) for i in page.deleted_ids], today, imported)
        if page.cursor is not None:
            set_cursor(session, spec.name, spec.stream, page.cursor)
    return imported


RETRY_ROUNDS = 3  # a retried customer lets its company's other deals in, on the next round


def retry_healed(store: Store, spec: SourceSpec, summary: SyncSummary, *, today: date, caches: MappingCaches) -> None:
    """Store again, from their kept payloads, the quarantined records of ``spec`` whose missing legal
    entity, customer or product the store has gained since they were refused. Of each payload only
    the records still quarantined are stored: one taken in since (or moot) is left as it is. A
    round that stores customers lets in, on the next, the deals of theirs that waited for them."""
    tried: set[str] = set()
    for _round in range(RETRY_ROUNDS):
        with store.read() as session:
            healed = quarantine.healed(session, source=spec.name)
            held = quarantine.open_keys(session, source=spec.name) if healed else set()
        bundles = {}
        for entry in healed:
            bundle = bundle_of(entry.payload)
            if bundle is not None:
                bundles[spec.ref(_record_id(bundle.deal))] = bundle
        new = bundles.keys() - tried
        if not new:  # nothing new to try: what is still missing is not here yet
            return
        tried |= new
        mapped = map_page(RecordPage(list(bundles.values())), spec, caches)
        mapped.records = [r for r in mapped.records if (r.section, r.key) in held]
        mapped.errors = [e for e in mapped.errors if (e.section, e.key) in held]
        imported = store_mapped(store, spec, PageToStore([], None), mapped, today=today)
        summary.retried += len(new)
        summary.counts.update(imported.counts)
        summary.errors.extend(imported.errors)


def count_page(summary: SyncSummary, page: RecordPage[DealBundle], mapped: MappedPage, imported: ImportSummary) -> None:
    summary.pages += 1
    summary.deals_pulled += len(page.records)
    summary.not_won += len(mapped.not_won)
    summary.api_calls += page.api_calls
    summary.deleted += len(page.deleted_ids)
    summary.counts.update(imported.counts)
    summary.errors.extend(imported.errors)


def _add_referrals(
    session: Session, spec: SourceSpec, referrals: list[PartnerReferral], summary: ImportSummary
) -> None:
    """Each stored deal's referral partner refers its customer (and contract) in the partner's referral
    agreements; a partner without one is quarantined (``referrals``), naming the deal's partner field."""
    refused = {e.key for e in summary.errors if e.section == "contracts"}
    for item in referrals:
        contract = item.referral.contract_ref or ""
        if contract in refused:
            continue
        try:
            summary.counts[f"referrals.{add_referral(session, item.partner_ref, item.referral)}"] += 1
        except PartnerError as exc:
            summary.counts["referrals.quarantined"] += 1
            quarantine.quarantine(
                session,
                source=spec.name,
                record_type="referrals",
                record_key=contract,
                field=item.field,
                reason=str(exc),
                payload={"partner_ref": item.partner_ref, "referral": item.referral.model_dump(mode="json")},
            )


def _end_deleted(session: Session, spec: SourceSpec, refs: list[str], today: date, summary: ImportSummary) -> None:
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
    spec: SourceSpec,
    source: DealSource,
    *,
    today: date | None = None,
    run_page: Callable[[Callable[[], None]], None] | None = None,
    on_page: Callable[[SyncSummary], None] | None = None,
    writer_process: bool | None = None,
    full: bool = False,
) -> SyncSummary:
    """Retry the quarantined records the store now has what they lacked for (``retry_healed``),
    then pull from the stored cursor (``full``: from the beginning, everything again) and store
    page by page. ``run_page`` runs each page's work (the Prefect flow makes it a task);
    ``on_page`` reports progress. ``writer_process``: store the pages in a writer process while the
    next ones are mapped (flows/page_writer.py); None: once the pull has brought enough deals to be
    worth a process's start, and there is a CPU to spare."""
    from billbridge.flows.page_writer import PageWriter, StoreTicket

    today = today or datetime.now(UTC).date()
    with store.read() as session:
        cursor = None if full else get_cursor(session, spec.name, spec.stream)
    summary = SyncSummary(spec.name)
    with store.read() as session:
        caches = MappingCaches(partners=load_partners(session))
    # Asked for, the writer starts while the first page is fetched.
    writer = PageWriter(store, spec, today) if writer_process and _wants_writer(writer_process, store, 0) else None
    pulled = 0  # deals pulled so far
    # with the writer, not yet waited for
    handed: deque[tuple[RecordPage[DealBundle], MappedPage, StoreTicket]] = deque()

    def run(work: Callable[[], None]) -> None:
        (run_page or _call)(work)
        if on_page is not None:
            on_page(summary)

    def finish(page: RecordPage[DealBundle], mapped: MappedPage, ticket: StoreTicket) -> None:
        run(lambda: count_page(summary, page, mapped, ticket.result()))

    try:
        run(partial(retry_healed, store, spec, summary, today=today, caches=caches))
        with bulk_gc():
            for page in prefetch(source.pull(cursor)):  # the next page is fetched while this one is stored
                pulled += len(page.records)
                if writer is None and _wants_writer(writer_process, store, pulled):
                    writer = PageWriter(store, spec, today)
                # Until the writer is up, pages are stored here (unless it was asked for: then it is waited for).
                if writer is None or (writer.idle and not writer.ready(wait=bool(writer_process))):
                    run(partial(store_page, store, spec, page, summary, today=today, caches=caches))
                    continue
                mapped = map_page(page, spec, caches, payloads=False)
                handed.append((page, mapped, writer.submit(page, mapped)))
                if len(handed) > WRITER_AHEAD:  # the pages before were stored while this one was mapped
                    finish(*handed.popleft())
            while handed:
                finish(*handed.popleft())
    finally:
        if writer is not None:
            writer.close()
    return summary


WRITER_PAGE = 500
"""Deals pulled that make a writer process worth its start: importing what storing needs costs it
about 2 s of CPU, more than storing a few hundred deals here (a small pull, a first sync of a small
CRM, every test and the demo's worlds never start one; a large full pull starts it after a few pages
and stores those here while it starts)."""
WRITER_AHEAD = 2  # pages handed to the writer before the sync waits for the oldest


def _wants_writer(writer_process: bool | None, store: Store, pulled: int) -> bool:
    """Whether to store through a writer process: as told, or (None) once ``pulled`` deals make it
    worth its start, when another process can open the store and there is a CPU for it."""
    if not store.shared:
        return False
    if writer_process is not None:
        return writer_process
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cpus < 2:
        return False
    return pulled >= WRITER_PAGE


def _call(work: Callable[[], None]) -> None:
    work()


Dates = tuple[date, date] | None


def spec_for(
    name: str,
    mapping: CrmMapping | StripeSubscriptionMapping | None = None,
    *,
    dates: Dates = None,
    settings: Settings | None = None,
) -> SourceSpec:
    """The declared spec of a contract source (the vendor registry's), with the installation's mapping
    or the documented default (and, for a CRM, ``dates``: the window of plausible dates, settings
    ``crm_earliest_date`` and ``crm_latest_date``; ``settings``: the fields the installation names,
    such as Salesforce's partner lookups). Stripe subscriptions carry Stripe's own timestamps,
    not dates a person typed: no window."""
    sources = contract_sources()
    if name not in sources:
        raise ValueError(f"unknown CRM source {name!r} (expected {', '.join(sources)})")
    source = sources[name]
    if source.kind == "subscriptions":
        how = subscription_mapping(name)
        subscriptions = mapping if isinstance(mapping, how.settings) else how.settings()
        return SubscriptionSourceSpec(name, subscriptions, how.map)
    assert source.bundle_to_crm is not None and source.default_mapping is not None
    crm = mapping if isinstance(mapping, CrmMapping) else source.default_mapping
    if dates is not None:
        crm = crm.model_copy(update={"earliest_date": dates[0], "latest_date": dates[1]})
    extract = source.configured(settings) if settings is not None and source.configured else source.bundle_to_crm
    return CrmSourceSpec(name, extract, crm)


def _record_id(deal: Any, default: str = "(no id)") -> str:
    """A vendor deal's id (Salesforce ``Id``, HubSpot and Stripe ``id``), whatever the record holds."""
    found = (deal.get("Id") or deal.get("id")) if isinstance(deal, dict) else None
    return str(found) if found is not None else default


def _payload(bundle: DealBundle) -> dict[str, Any]:
    """What a quarantine entry keeps: the deal, its lines, company and products (and the prices its
    lines name, where they come apart, and its billing contacts, where the source reads them) as the
    vendor sent them: all it takes to map it again."""
    payload: dict[str, Any] = {
        "deal": bundle.deal,
        "lines": bundle.lines,
        "company": bundle.company,
        "products": bundle.products,
    }
    if bundle.prices:
        payload["prices"] = bundle.prices
    if bundle.changed_at is not None:
        payload["changed_at"] = bundle.changed_at
    if bundle.labelled:
        payload["labelled"] = bundle.labelled
    if bundle.contacts is not None:
        payload["contacts"] = bundle.contacts
    return payload


def bundle_of(payload: Any) -> DealBundle | None:
    """The bundle a quarantine entry's payload keeps (``_payload``); None for one kept before the
    products were (those are read again by a full sync)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("deal"), dict) or "products" not in payload:
        return None
    return DealBundle(
        payload["deal"],
        payload.get("lines") or [],
        payload.get("company"),
        payload.get("products") or {},
        payload.get("prices") or {},
        payload.get("changed_at"),
        payload.get("labelled") or {},
        payload.get("contacts"),
    )
