"""Keeping the finance metrics' summaries fresh (``store/metric_models.py``): each is rebuilt when
what it was built from changed, contracts for MRR, invoices and payments for the billing figures,
contracts, billed documents and the day for the forecast's projected invoices. Billing, CRM sync and
reconciliation runs call :func:`refresh` when they finish, and every report calls it first, so a
change made otherwise (an invoice marked by hand) is never missed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from billbridge.billing.engine import Version
from billbridge.billing.metrics import forecast as fc
from billbridge.billing.metrics import products as prod
from billbridge.billing.metrics.recurring import Step, movements, mrr_steps
from billbridge.flows.invoice_generation import plan_all
from billbridge.store import metrics as sql
from billbridge.store.contracts import load_timelines
from billbridge.store.db import Store
from billbridge.store.models import utcnow

CHANGE_LAG = timedelta(minutes=5)  # contracts changed this long before the last refresh are looked at again
PLAN_MARGIN_DAYS = 62  # contracts are planned this far past the horizon, so a day later most need nothing
MRR_BATCH = 2000  # customers per MRR rebuild batch


def today_utc() -> date:
    return datetime.now(UTC).date()


EARLIEST_DAY = date(2000, 1, 1)
YEARS_AHEAD = 5


def day_window(today: date | None = None) -> tuple[date, date]:
    """The days a report may be asked for: from 2000 (as usage events) to five years after today.
    A forecast plans every contract up to a year past its day, so a day centuries ahead would plan
    for minutes; nobody closes a month in 2600."""
    today = today or today_utc()
    return EARLIEST_DAY, today.replace(year=today.year + YEARS_AHEAD, day=min(today.day, 28))


def forecast_horizon(day: date) -> date:
    """The last day the forecast looks at: the end of its twelfth month after ``day``'s."""
    return fc.month_starts(day)[-1] - timedelta(days=1)


PARTS = ("mrr", "documents", "projection")


def refresh(
    store: Store, day: date | None = None, *, workers: int = 0, parts: Sequence[str] = PARTS
) -> dict[str, float]:
    """Rebuild the summaries (of ``parts``) whose sources changed; returns the seconds each rebuilt
    part took. The projected invoices are planned for the forecast from ``day`` (default today).
    ``workers``: planning processes for them (as in a billing run)."""
    day = day or today_utc()
    done: dict[str, float] = {}
    read_at = utcnow()  # what changes after this is newer than what the summaries are built from
    with store.read() as session:
        known = sql.states(session)
        contracts, _ = sql.contracts_stamp(session)
        invoices = sql.invoices_stamp(session)
        billed = sql.invoice_count_stamp(session)
    if "mrr" in parts and _stale(known, "mrr", contracts):
        since = _changed_since(known.get("mrr"))
        _rebuild(store, done, "mrr", contracts, None, None, lambda session: _rebuild_mrr(session, since), read_at)
    if "documents" in parts and _stale(known, "documents", invoices):
        _rebuild(store, done, "documents", invoices, None, None, _rebuild_documents, read_at)
    projection = f"{contracts}|{billed}"
    if "projection" in parts and _stale(known, "projection", projection, day):
        started = time.perf_counter()
        previous = known.get("projection")
        planned_to = forecast_horizon(day) + timedelta(days=PLAN_MARGIN_DAYS)
        with store.read() as session:
            last_invoice = 0 if previous is None else int(previous.stamp.rpartition("|")[2])
            ids = sql.contracts_to_plan(session, _changed_since(previous), last_invoice, forecast_horizon(day))
        rows = _projection(store, planned_to, ids, workers)  # planned outside the write transaction
        _rebuild(
            store,
            done,
            "projection",
            projection,
            day,
            day,
            lambda session: sql.replace_contract_cash(session, ids, rows, planned_to),
            read_at,
            started,
        )
    return done


def _rebuild(
    store: Store,
    done: dict[str, float],
    name: str,
    stamp: str,
    day: date | None,
    as_of: date | None,
    build: Callable[[Session], None],
    read_at: datetime,
    started: float | None = None,
) -> None:
    """Build one summary and record what it was built from (read at ``read_at``), in one transaction
    holding the summary's lock; unless another process built it from the same sources meanwhile."""
    started = time.perf_counter() if started is None else started
    with store.write() as session:
        sql.lock_summary(session, name)
        if not _stale(sql.states(session), name, stamp, day):
            return
        build(session)
        sql.save_state(session, name, stamp, as_of=as_of, read_at=read_at)
    done[name] = time.perf_counter() - started


def _changed_since(previous: Any) -> datetime | None:
    """Contracts changed after this may be missing from a summary last built from ``previous``'s
    sources (None: never built): their read time, less ``CHANGE_LAG`` for writes in flight then."""
    return None if previous is None else previous.refreshed_at - CHANGE_LAG


def _rebuild_documents(session: Session) -> None:
    sql.rebuild_documents(session)
    _add_partly_paid(session)
    _expected_from_open_invoices(session)


def _stale(known: dict[str, Any], name: str, stamp: str, day: date | None = None) -> bool:
    state = known.get(name)
    return state is None or state.stamp != stamp or (day is not None and state.as_of != day)


def _rebuild_mrr(session: Session, since: datetime | None) -> None:
    """MRR steps and movements of the customers whose contracts changed after ``since`` (None: all),
    a batch of customers at a time."""
    customers = sql.customers_with_contracts(session, since)
    if since is None:
        sql.replace_mrr(session, None, [], [])
    for start in range(0, len(customers), MRR_BATCH):
        batch = customers[start : start + MRR_BATCH]
        timelines = load_timelines(session, sql.contract_ids_of_customers(session, batch)).values()
        by_customer: dict[int, list[Sequence[Version]]] = defaultdict(list)
        for timeline in timelines:
            if timeline.versions:
                by_customer[timeline.customer_id].append(timeline.versions)
        steps: list[Step] = []
        for own in by_customer.values():
            steps += mrr_steps(own)
        sql.replace_mrr(session, batch, steps, movements(steps))


def _add_partly_paid(session: Session) -> None:
    """The collected share of partially paid documents' lines, line by line (the SQL counted only paid ones)."""
    by_invoice: dict[int, list[sql.PartlyPaidLine]] = defaultdict(list)
    for line in sql.partly_paid_lines(session):
        by_invoice[line.invoice_id].append(line)
    sums: dict[tuple[int, str, date, str, str, int], Decimal] = defaultdict(Decimal)
    for lines in by_invoice.values():
        shares = prod.collected_per_line([x.billed for x in lines], lines[0].amount_paid, lines[0].currency)
        for x, share in zip(lines, shares, strict=True):
            sums[(x.entity_id, x.currency, x.month, x.product_ref, x.kind, x.customer_id)] += share
    sql.add_collected(session, sums.items())


def _delays(session: Session) -> fc.Delays:
    return fc.delays(sql.all_payment_history(session))


def _expected_from_open_invoices(session: Session) -> None:
    delays = _delays(session)
    sums: dict[tuple[int, str, date], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for entity_id, currency, customer_id, _ref, due, balance, count in sql.open_balances(session):
        expected = due + timedelta(days=delays.days_for(str(entity_id), str(customer_id)))
        found = sums[(entity_id, currency, expected)]
        found[0] += balance
        found[1] += count
    sql.replace_expected_cash(session, "invoiced", [(*k, v[0], v[1]) for k, v in sorted(sums.items())])


def _projection(store: Store, planned_to: date, ids: Sequence[int] | None, workers: int) -> list[sql.CashRow]:
    """The invoices the billing engine plans for these contracts (None: all) up to ``planned_to``
    and has not generated, per contract and expected payment day (credit notes bring no cash)."""
    if ids is not None and not ids:
        return []
    with store.read() as session:
        delays = _delays(session)
    sums: dict[tuple[int, int, str, date], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for chunk in plan_all(store, planned_to, ids=ids, workers=workers):
        for timeline, plan in chunk.plans:
            for draft in plan.invoices:
                if draft.invoice_total <= 0:
                    continue
                shift = delays.days_for(str(timeline.entity_id), str(timeline.customer_id))
                expected = draft.due_date + timedelta(days=shift)
                found = sums[(timeline.contract_id, timeline.entity_id, draft.currency, expected)]
                found[0] += draft.invoice_total
                found[1] += 1
    return [(*k, v[0], v[1]) for k, v in sorted(sums.items())]
