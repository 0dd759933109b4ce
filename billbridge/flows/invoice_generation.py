"""Billing runs: plan every contract's due invoices and store them, in chunks of contracts.

Each chunk is one transaction that first takes the numbering locks of its entities, then reads what
is billed and writes what is missing; two runs at once therefore never bill a period twice and
never leave a gap in the numbers. A contract that fails to plan is quarantined; the run goes on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from billbridge.billing.currency import money_str
from billbridge.billing.engine import InvoiceDraft, Plan, UsageLookup, plan_invoices
from billbridge.billing.resellers import SoldDraft, consolidate
from billbridge.billing.usage_periods import UsageQuery, aggregate
from billbridge.flows.ahead import done_ahead, fewer_collections
from billbridge.store import quarantine
from billbridge.store.contracts import ContractTimeline, contract_ids, load_timelines
from billbridge.store.db import Store
from billbridge.store.invoices import (
    BillingState,
    PreparedDrafts,
    billing_states,
    load_billed,
    lock_numbering,
    prepare_drafts,
    write_prepared,
)
from billbridge.store.resellers import bill_to_refs, customer_names, per_end_customer
from billbridge.store.usage_aggregates import daily_usage

CHUNK = 1000
SOURCE = "billing"
ZERO = Decimal(0)


@dataclass
class BillingSummary:
    as_of: date
    contracts: int = 0
    documents: Counter[str] = field(default_factory=Counter)  # invoice / credit_note
    totals: dict[str, Decimal] = field(default_factory=dict)  # per currency
    pending_adjustments: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (contract_ref, reason)

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "contracts": self.contracts,
            "invoices": self.documents["invoice"],
            "credit_notes": self.documents["credit_note"],
            "totals": {cur: money_str(total, cur) for cur, total in sorted(self.totals.items())},
            "pending_adjustments": self.pending_adjustments,
            "failed": [{"contract_ref": ref, "reason": reason} for ref, reason in self.failed],
        }


def _usage_lookup(
    session: Session, timelines: Sequence[ContractTimeline], as_of: date
) -> Callable[[ContractTimeline], UsageLookup]:
    """One aggregate query for the chunk's usage; each contract gets a lookup over its customer's days."""
    lines = [(t, line) for t in timelines for v in t.versions for line in v.contract.lines if line.charge == "usage"]
    if not lines:
        return lambda _t: lambda _query: Decimal(0)
    start = min(v.contract.contract_start_date for t, _ in lines for v in t.versions)
    days = daily_usage(
        session,
        sorted({t.customer_id for t, _ in lines}),
        start,
        as_of + timedelta(days=1),
        last_for={line.product_ref for _, line in lines if line.usage_aggregation == "last"},
        distinct_for={(line.product_ref, line.usage_property) for _, line in lines if line.usage_property},
    )

    def for_contract(timeline: ContractTimeline) -> UsageLookup:
        def lookup(query: UsageQuery) -> Decimal:
            return aggregate(days.get((timeline.customer_id, query.product_ref), {}), query)

        return lookup

    return for_contract


Planned = list[tuple[ContractTimeline, Plan]]
Failed = list[tuple[ContractTimeline, str]]


def plan_chunk(session: Session, timelines: Sequence[ContractTimeline], as_of: date) -> tuple[Planned, Failed]:
    """Plan the given contracts against what the store has billed. Reads only."""
    billed = load_billed(session, [t.contract_id for t in timelines])
    usage_for = _usage_lookup(session, timelines, as_of)
    plans: Planned = []
    failures: Failed = []
    for timeline in timelines:
        if timeline.error:
            failures.append((timeline, timeline.error))
            continue
        items, dates = billed[timeline.contract_id]
        try:
            plan = plan_invoices(timeline.contract_ref, timeline.versions, as_of, items, dates, usage_for(timeline))
        except (ValueError, ArithmeticError) as exc:
            failures.append((timeline, f"{type(exc).__name__}: {exc}"))
            continue
        plans.append((timeline, plan))
    return plans, failures


@dataclass(frozen=True)
class ChunkPlan:
    """A chunk planned ahead by a planning process, with the billing states it was planned from."""

    ids: list[int]
    states: dict[int, BillingState]
    plans: Planned
    failures: Failed


def plan_ahead(session: Session, ids: Sequence[int], as_of: date) -> ChunkPlan:
    """Plan a chunk outside the write transaction. The states are read first, so if they are
    unchanged when the chunk is saved, so is everything read after them."""
    states = billing_states(session, ids)
    timelines = list(load_timelines(session, ids).values())
    plans, failures = plan_chunk(session, timelines, as_of)
    # The writer needs the heads only: the versions stay here instead of crossing the process boundary.
    return ChunkPlan(
        list(ids),
        states,
        [(replace(t, versions=()), plan) for t, plan in plans],
        [(replace(t, versions=()), reason) for t, reason in failures],
    )


@dataclass(frozen=True)
class ResoldReads:
    """What grouping a chunk's resold drafts read besides the billing states: the customers' refs and
    names and the bill-to parties that want one invoice per end customer."""

    names: dict[int, tuple[str, str]]
    parties: list[str]
    split: set[str]

    def unchanged(self, session: Session) -> bool:
        """Whether the store still says the same (read again inside the write transaction)."""
        return (
            customer_names(session, list(self.names)) == self.names
            and per_end_customer(session, self.parties) == self.split
        )


@dataclass
class ChunkOutcome:
    """A chunk planned and grouped, as its rows to write and what the run's summary and quarantine need."""

    rows: PreparedDrafts
    documents: Counter[str] = field(default_factory=Counter)
    totals: dict[str, Decimal] = field(default_factory=dict)
    pending: int = 0
    planned_refs: list[str] = field(default_factory=list)  # contracts planned (their quarantine entries resolve)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (contract_ref, reason)


def outcome_of(session: Session, plans: Planned, failures: Failed) -> tuple[ChunkOutcome, ResoldReads | None]:
    """A chunk's plans turned into its documents (resold drafts grouped per bill-to party) and their rows."""
    drafts: list[tuple[ContractTimeline, InvoiceDraft]] = []
    pending = 0
    for timeline, plan in plans:
        drafts.extend((timeline, draft) for draft in plan.invoices)
        pending += len(plan.pending)
    drafts, reads = consolidate_resold(session, drafts)
    outcome = ChunkOutcome(
        prepare_drafts(session, drafts),
        pending=pending,
        planned_refs=[t.contract_ref for t, _ in plans],
        failures=[(t.contract_ref, reason) for t, reason in failures],
    )
    for _, draft in drafts:
        outcome.documents[draft.doc_type] += 1
        outcome.totals[draft.currency] = outcome.totals.get(draft.currency, ZERO) + draft.invoice_total
    return outcome, reads


@dataclass(frozen=True)
class PreparedChunk:
    """A chunk planned ahead by a planning process down to the rows the writer inserts, with the
    billing states (and reseller data) it was planned from: plain rows, quick to send between processes."""

    ids: list[int]
    states: dict[int, BillingState]
    entities: list[int]
    resold: ResoldReads | None
    outcome: ChunkOutcome


def prepare_ahead(session: Session, ids: Sequence[int], as_of: date) -> PreparedChunk:
    """Plan a chunk outside the write transaction, down to its rows. The states are read first, so
    if they are unchanged when the chunk is saved, so is everything read after them."""
    states = billing_states(session, ids)
    timelines = list(load_timelines(session, ids).values())
    plans, failures = plan_chunk(session, timelines, as_of)
    outcome, resold = outcome_of(session, plans, failures)
    return PreparedChunk(list(ids), states, sorted({t.entity_id for t in timelines}), resold, outcome)


def _prepare(store: Store, ids: list[int], as_of: date) -> PreparedChunk:
    """In a planning process (``flows.ahead``): one chunk prepared ahead of its write."""
    with store.read() as session:
        return prepare_ahead(session, ids, as_of)


def _plan(store: Store, ids: list[int], as_of: date) -> ChunkPlan:
    """In a planning process: one chunk's plans, for the forecast."""
    with store.read() as session:
        return plan_ahead(session, ids, as_of)


def _chunks(store: Store, contract_refs: Sequence[str] | None, size: int) -> list[list[int]]:
    """Contract ids in chunks of about ``size``: those sold directly in id order, then those billed to
    each reseller (or distributor) together, never split over two chunks, so that a reseller's cycle
    becomes one document (a party with more contracts than ``size`` gets a larger chunk of its own)."""
    with store.read() as session:
        ids = contract_ids(session, refs=contract_refs)
        sold = bill_to_refs(session, None if contract_refs is None else ids)
    if not sold:
        return [ids[i : i + size] for i in range(0, len(ids), size)]
    direct = [cid for cid in ids if cid not in sold]
    chunks = [direct[i : i + size] for i in range(0, len(direct), size)]
    by_party: dict[str, list[int]] = {}
    for cid in ids:
        if cid in sold:
            by_party.setdefault(sold[cid], []).append(cid)
    current: list[int] = chunks.pop() if chunks and len(chunks[-1]) < size else []
    for party in sorted(by_party):
        group = by_party[party]
        if current and len(current) + len(group) > size:
            chunks.append(current)
            current = []
        current.extend(group)
    if current:
        chunks.append(current)
    return chunks


def consolidate_resold(
    session: Session, drafts: list[tuple[ContractTimeline, InvoiceDraft]]
) -> tuple[list[tuple[ContractTimeline, InvoiceDraft]], ResoldReads | None]:
    """A chunk's drafts with those of contracts sold through resellers grouped into one document per
    bill-to party and cycle (``billing.resellers.consolidate``), each carried by its lead contract's
    timeline; drafts sold directly pass unchanged. With what the grouping read (None: nothing resold)."""
    resold = [(t, d) for t, d in drafts if d.version_no in t.bill_to]
    if not resold:
        return drafts, None
    names = customer_names(session, [t.customer_id for t, _ in resold] + [t.bill_to[d.version_no] for t, d in resold])
    sold: list[SoldDraft] = []
    for timeline, draft in resold:
        bill_to_ref = names[timeline.bill_to[draft.version_no]][0]
        reseller = timeline.resold_by.get(draft.version_no)
        sold.append(
            SoldDraft(
                bill_to=bill_to_ref,
                contract_id=timeline.contract_id,
                contract_ref=timeline.contract_ref,
                end_customer=names[timeline.customer_id][1],
                reseller=reseller if reseller != bill_to_ref else None,
                draft=draft,
            )
        )
    parties = sorted({s.bill_to for s in sold})
    split = per_end_customer(session, parties)
    by_contract = {t.contract_id: t for t, _ in resold}
    ids = {s.contract_ref: s.contract_id for s in sold}
    grouped: list[tuple[ContractTimeline, InvoiceDraft]] = [
        (by_contract[ids[doc.contract_ref]], doc) for doc in consolidate(sold, split.__contains__)
    ]
    direct = [(t, d) for t, d in drafts if d.version_no not in t.bill_to]
    return direct + grouped, ResoldReads(names, parties, split)


def run_billing(
    store: Store,
    as_of: date,
    *,
    contract_refs: Sequence[str] | None = None,
    chunk_size: int = CHUNK,
    workers: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> BillingSummary:
    """Generate every invoice and credit note due by ``as_of``. Running it again creates nothing.

    With ``workers`` > 0, that many processes plan the next chunks, down to the rows to insert,
    while this one saves the current chunk (:func:`save_chunk`). Each chunk's plan is checked
    against the billing states under the numbering locks; a chunk in which a contract changed in
    between (a concurrent run, an amendment) is planned again inside the write transaction, so the
    result is the same as planning there.
    """
    summary = BillingSummary(as_of=as_of)
    with store.read() as session:  # clearing entries costs an UPDATE per chunk: only when some are open
        clear_quarantine = bool(quarantine.list_open(session, source=SOURCE))
    chunks = _chunks(store, contract_refs, chunk_size)
    with fewer_collections():  # rows by the hundred thousand, unpickled and freed chunk after chunk
        for ids, ahead in zip(chunks, done_ahead(store, chunks, _prepare, (as_of,), workers), strict=True):
            with store.write() as session:
                outcome = save_chunk(session, ids, as_of, ahead)
                for contract_ref, reason in outcome.failures:
                    summary.failed.append((contract_ref, reason))
                    quarantine.quarantine(
                        session,
                        source=SOURCE,
                        record_type="contracts",
                        record_key=contract_ref,
                        field=None,
                        reason=reason,
                        payload={"contract_ref": contract_ref, "as_of": as_of.isoformat()},
                    )
                if clear_quarantine:
                    quarantine.resolve_many(
                        session, source=SOURCE, record_type="contracts", record_keys=outcome.planned_refs
                    )
            summary.contracts += len(ids)
            summary.pending_adjustments += outcome.pending
            summary.documents.update(outcome.documents)
            for currency, total in outcome.totals.items():
                summary.totals[currency] = summary.totals.get(currency, ZERO) + total
            if on_progress:
                on_progress(len(ids))

    return summary


def save_chunk(session: Session, ids: Sequence[int], as_of: date, ahead: PreparedChunk | None = None) -> ChunkOutcome:
    """Inside the write transaction: bill the chunk's contracts under their entities' numbering locks.
    A chunk prepared ahead is written as it is if nothing it was planned from changed since (its
    contracts' billing states, the reseller data it was grouped by); otherwise, or without one, the
    chunk is planned here, so the result is the same as planning here."""
    if ahead is not None:
        lock_numbering(session, ahead.entities)
        now = billing_states(session, ahead.ids)
        if now == ahead.states and (ahead.resold is None or ahead.resold.unchanged(session)):
            write_prepared(session, ahead.outcome.rows)
            return ahead.outcome
    timelines = list(load_timelines(session, ids).values())
    lock_numbering(session, {t.entity_id for t in timelines})
    plans, failures = plan_chunk(session, timelines, as_of)
    outcome, _ = outcome_of(session, plans, failures)
    write_prepared(session, outcome.rows)
    return outcome


def preview(store: Store, contract_ref: str, as_of: date) -> Plan:
    """What billing would create for one contract by ``as_of``, without saving anything."""
    with store.read() as session:
        timelines = list(load_timelines(session, contract_ids(session, refs=[contract_ref])).values())
        if not timelines:
            raise LookupError(f"no contract {contract_ref!r}")
        plans, failures = plan_chunk(session, timelines, as_of)
    if failures:
        raise ValueError(f"contract {contract_ref}: {failures[0][1]}")
    return plans[0][1]


def plan_all(
    store: Store, as_of: date, *, ids: Sequence[int] | None = None, chunk_size: int = CHUNK, workers: int = 0
) -> Iterator[ChunkPlan]:
    """Every contract's plan (or the plans of contracts ``ids``) by ``as_of`` against what the store
    has billed, chunk by chunk, saving nothing (with ``workers`` planning processes, as a billing run
    plans): the invoices still to come, for the cash forecast."""
    if ids is None:
        chunks = _chunks(store, None, chunk_size)
    else:
        ordered = sorted(ids)
        chunks = [ordered[i : i + chunk_size] for i in range(0, len(ordered), chunk_size)]
    for chunk, ahead in zip(chunks, done_ahead(store, chunks, _plan, (as_of,), workers), strict=True):
        if ahead is None:
            with store.read() as session:
                ahead = plan_ahead(session, chunk, as_of)
        yield ahead
