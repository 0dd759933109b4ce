"""Building revenue schedules for a chunk of contracts: inputs read, recognised, posted against the
closed months. Used by the rebuild in its own process and by its planning processes, which import
this module alone (no Prefect: a planning process starts faster)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy.orm import Session

from billbridge.billing import revenue as rr
from billbridge.billing.engine import BilledItem
from billbridge.store import revenue as sql
from billbridge.store.contracts import ContractTimeline, load_timelines
from billbridge.store.db import Store
from billbridge.store.invoices import load_billed
from billbridge.store.usage_aggregates import usage_buckets


@dataclass(frozen=True)
class Ahead:
    """A chunk built by a planning process, as of the close marker it read first."""

    marker: int
    closed: dict[int, set[date]]
    prepared: sql.Prepared
    rebuilt: int
    failed: dict[int, tuple[str, str]]


def build_ahead(store: Store, stale: dict[int, str], through: date) -> Ahead:
    """In a planning process: build a chunk and convert its rows for the driver. The marker is read
    first: if it is unchanged when the chunk is written, so are the closed months read after it."""
    with store.read() as session:
        marker = sql.close_marker(session)
        done, failed, closed = build(session, stale, through)
        prepared = sql.prepare_built(session.connection(), done, through)
    return Ahead(marker, dict(closed), prepared, len(done), failed)


def build(
    session: Session, stale: dict[int, str], through: date
) -> tuple[list[sql.Built], dict[int, tuple[str, str]], dict[int, set[date]]]:
    """The schedules of a chunk of contracts (id -> stamp) as they are to be stored, the contracts that
    could not be recognised (id -> (stamp, reason)), and the closed months of their legal entities."""
    ids = list(stale)
    timelines = load_timelines(session, ids)
    billed = load_billed(session, ids)
    usage = _usage(session, timelines, billed, through)
    closed = sql.closed_months(session, {t.entity_id for t in timelines.values()})
    held = sql.held_rows(session, ids, closed)
    done: list[sql.Built] = []
    failed: dict[int, tuple[str, str]] = {}
    for cid in ids:
        timeline = timelines.get(cid)
        if timeline is None:
            continue
        try:
            if timeline.error:
                raise ValueError(timeline.error)
            if any(v.contract.billed_by != "billbridge" for v in timeline.versions):
                # Stripe invoices it (and Stripe Revenue Recognition recognises it): nothing here.
                done.append(sql.Built(cid, timeline.entity_id, "", stale[cid], (), (), ()))
                continue
            revenue = rr.recognise(timeline.contract_ref, timeline.versions, billed[cid][0], through, usage(timeline))
        except (ValueError, ArithmeticError) as exc:
            failed[cid] = (stale[cid], f"{timeline.contract_ref}: {exc}")
            continue
        months = closed.get(timeline.entity_id, set())
        kept = held.get(cid, {})
        held_billed = {k: v.billed for k, v in kept.items() if k[2] in months}
        held_recognised = {k: v.recognised for k, v in kept.items() if k[2] in months}
        done.append(
            sql.Built(
                cid,
                timeline.entity_id,
                revenue.currency,
                stale[cid],
                revenue.obligations,
                rr.post_with_close(revenue.billed, held_billed, months),
                rr.post_with_close(revenue.recognised, held_recognised, months),
            )
        )
    return done, failed, closed


def _usage(
    session: Session,
    timelines: Mapping[int, ContractTimeline],
    billed: Mapping[int, tuple[Sequence[BilledItem], object]],
    through: date,
) -> Callable[[ContractTimeline], rr.UsageByProduct]:
    """The chunk's usage, read in one query grouped per customer, product and month (cut where a
    contract's billing periods split months); each contract gets its customer's usage of the products
    of its usage lines."""
    wanted: dict[int, set[str]] = defaultdict(set)
    splits: dict[int, set[int]] = defaultdict(set)
    for cid, timeline in timelines.items():
        refs = {line.product_ref for v in timeline.versions for line in v.contract.lines if line.charge == "usage"}
        if not refs or timeline.error:
            continue
        wanted[timeline.customer_id] |= refs
        try:
            splits[timeline.customer_id] |= rr.usage_splits(timeline.versions, billed[cid][0], through)
        except ValueError:  # terms that do not make periods: the contract fails on its own in recognise
            continue
    found = usage_buckets(session, wanted, splits, through) if wanted else {}

    def of(timeline: ContractTimeline) -> rr.UsageByProduct:
        customer = timeline.customer_id
        return {ref: found.get((customer, ref), []) for ref in wanted.get(customer, ())}

    return of
