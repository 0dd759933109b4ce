"""Billing runs: plan every contract's due invoices and store them, in chunks of contracts.

Each chunk is one transaction that first takes the numbering locks of its entities, then reads what
is billed and writes what is missing; two runs at once therefore never bill a period twice and
never leave a gap in the numbers. A contract that fails to plan is quarantined; the run goes on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from billbridge.billing.engine import InvoiceDraft, Plan, UsageLookup, plan_invoices
from billbridge.billing.usage import aggregate
from billbridge.store import quarantine
from billbridge.store.contracts import ContractTimeline, contract_ids, load_timelines
from billbridge.store.db import Store
from billbridge.store.invoices import load_billed, lock_numbering, save_drafts
from billbridge.store.usage import daily_usage

CHUNK = 1000
SOURCE = "billing"


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
            "totals": {cur: str(total) for cur, total in sorted(self.totals.items())},
            "pending_adjustments": self.pending_adjustments,
            "failed": [{"contract_ref": ref, "reason": reason} for ref, reason in self.failed],
        }


def _usage_lookup(
    session: Session, timelines: Sequence[ContractTimeline], as_of: date
) -> Callable[[ContractTimeline], UsageLookup]:
    """One query for the chunk's usage; each contract gets a lookup over its customer's days."""
    with_usage = [t for t in timelines if any(line.charge == "usage" for v in t.versions for line in v.contract.lines)]
    if not with_usage:
        return lambda _t: lambda *_: Decimal(0)
    start = min(v.contract.contract_start_date for t in with_usage for v in t.versions)
    days = daily_usage(session, sorted({t.customer_id for t in with_usage}), start, as_of + timedelta(days=1))

    def for_contract(timeline: ContractTimeline) -> UsageLookup:
        def lookup(product_ref: str, a: date, b: date, aggregation: str) -> Decimal:
            return aggregate(days.get((timeline.customer_id, product_ref), {}), a, b, aggregation)

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


def run_billing(
    store: Store,
    as_of: date,
    *,
    contract_refs: Sequence[str] | None = None,
    chunk_size: int = CHUNK,
    on_progress: Callable[[int], None] | None = None,
) -> BillingSummary:
    """Generate every invoice and credit note due by ``as_of``. Running it again creates nothing."""
    summary = BillingSummary(as_of=as_of)
    with store.read() as session:  # clearing entries costs an UPDATE per chunk: only when some are open
        clear_quarantine = bool(quarantine.list_open(session, source=SOURCE))
    after = 0
    while True:
        with store.read() as session:
            ids = contract_ids(session, refs=contract_refs, after_id=after, limit=chunk_size)
        if not ids:
            break
        after = ids[-1]
        with store.write() as session:
            timelines = list(load_timelines(session, ids).values())
            lock_numbering(session, {t.entity_id for t in timelines})
            plans, failures = plan_chunk(session, timelines, as_of)
            drafts: list[tuple[ContractTimeline, InvoiceDraft]] = []
            for timeline, plan in plans:
                drafts.extend((timeline, draft) for draft in plan.invoices)
                summary.pending_adjustments += len(plan.pending)
            save_drafts(session, drafts)
            for timeline, reason in failures:
                summary.failed.append((timeline.contract_ref, reason))
                quarantine.quarantine(
                    session,
                    source=SOURCE,
                    record_type="contracts",
                    record_key=timeline.contract_ref,
                    field=None,
                    reason=reason,
                    payload={"contract_ref": timeline.contract_ref, "as_of": as_of.isoformat()},
                )
            if clear_quarantine:
                quarantine.resolve_many(
                    session, source=SOURCE, record_type="contracts", record_keys=[t.contract_ref for t, _ in plans]
                )
        summary.contracts += len(ids)
        for _, draft in drafts:
            summary.documents[draft.doc_type] += 1
            summary.totals[draft.currency] = summary.totals.get(draft.currency, Decimal(0)) + draft.invoice_total
        if on_progress:
            on_progress(len(ids))
    return summary


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
