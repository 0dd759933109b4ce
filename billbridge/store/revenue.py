"""Repository of revenue recognition: which contracts' schedules are stale, writing a contract's
obligations and schedule (closed months never rewritten), the period close, and the reads the reports
need. The math is ``billing/revenue.py``'s; only SQL here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, String, case, cast, delete, func, insert, literal, or_, select
from sqlalchemy.orm import Session

from billbridge.billing.engine import MINIMUM_LINE
from billbridge.billing.revenue import Key, Obligation, Posted
from billbridge.store.bulk import BulkStatement, Call, run_calls
from billbridge.store.models import (
    Contract,
    ContractLine,
    ContractVersion,
    Customer,
    Invoice,
    InvoiceLine,
    LegalEntity,
    OutboxMessage,
    Product,
    table_of,
    utcnow,
)
from billbridge.store.revenue_models import (
    RevenueContractState,
    RevenueObligation,
    RevenuePeriod,
    RevenuePeriodEvent,
    RevenueScheduleRow,
)
from billbridge.store.usage_aggregates import usage_events_through

ZERO = Decimal(0)
_INSERT_OBLIGATIONS = insert(table_of(RevenueObligation))
_INSERT_ROWS = insert(table_of(RevenueScheduleRow))
_INSERT_STATES = insert(table_of(RevenueContractState))


class PeriodError(ValueError):
    """A close or reopening that cannot be done (closed already, not closed)."""


def stale_contracts(session: Session, through: date, *, full: bool = False) -> list[tuple[int, str]]:
    """(contract id, stamp) in id order of every contract whose schedule is not built from what it is
    now (every contract with ``full``), found in one query: the stamp of what a schedule depends on (its
    current version, its documents' count, lines and last change, for an evergreen contract the month of
    ``through``, for a contract with a usage line its customer's events on those products through
    ``through`` and the month of ``through``: usage is recognised as consumed, before it is billed) is
    made and compared with the stored one by the database, so only stale contracts come back. Built in SQL, a stamp is the database's own text of those values: a stamp stored in another
    form (before this query, or another session time zone on PostgreSQL) only makes that schedule rebuilt
    once more, never skipped."""
    docs = (
        select(
            Invoice.contract_id.label("contract_id"),
            func.count(Invoice.id).label("n"),
            func.max(Invoice.updated_at).label("changed"),
        )
        .group_by(Invoice.contract_id)
        .subquery()
    )
    lines = (
        select(InvoiceLine.contract_id.label("contract_id"), func.count(InvoiceLine.id).label("n"))
        .group_by(InvoiceLine.contract_id)
        .subquery()
    )
    horizon = case((ContractVersion.contract_end_date.is_(None), literal(f":{through:%Y-%m}")), else_=literal(""))
    used = usage_events_through(through)  # usage consumed is recognised before it is billed
    usage = case(
        (used.c.events.is_(None), literal("")),
        else_=literal(":u") + cast(used.c.events, String) + literal(f"@{through:%Y-%m}"),
    )
    stamp = (
        literal("v")
        + cast(Contract.current_version_no, String)
        + literal(":d")
        + cast(func.coalesce(docs.c.n, 0), String)
        + literal(":l")
        + cast(func.coalesce(lines.c.n, 0), String)
        + literal(":")
        + func.coalesce(cast(docs.c.changed, String), literal("-"))
        + horizon
        + usage
    )
    query = (
        select(Contract.id, stamp)
        .join(
            ContractVersion,
            (ContractVersion.contract_id == Contract.id) & (ContractVersion.version_no == Contract.current_version_no),
        )
        .outerjoin(docs, docs.c.contract_id == Contract.id)
        .outerjoin(lines, lines.c.contract_id == Contract.id)
        .outerjoin(used, used.c.contract_id == Contract.id)
    )
    if not full:
        query = query.outerjoin(RevenueContractState, RevenueContractState.contract_id == Contract.id).where(
            RevenueContractState.stamp.is_(None) | (RevenueContractState.stamp != stamp)
        )
    return [(cid, found) for cid, found in session.execute(query.order_by(Contract.id))]


def contract_count(session: Session) -> int:
    """Contracts with a current version: those a rebuild looks at."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Contract)
            .join(
                ContractVersion,
                (ContractVersion.contract_id == Contract.id)
                & (ContractVersion.version_no == Contract.current_version_no),
            )
        )
        or 0
    )


def closed_months(session: Session, entity_ids: Iterable[int] | None = None) -> dict[int, set[date]]:
    """The closed months of each legal entity."""
    query = select(RevenuePeriod.entity_id, RevenuePeriod.month)
    if entity_ids is not None:
        query = query.where(RevenuePeriod.entity_id.in_(list(entity_ids)))
    out: dict[int, set[date]] = defaultdict(set)
    for entity_id, month in session.execute(query):
        out[entity_id].add(month)
    return out


@dataclass(frozen=True)
class HeldRow:
    billed: Decimal
    recognised: Decimal


def held_rows(
    session: Session, contract_ids: Sequence[int], closed: Mapping[int, set[date]]
) -> dict[int, dict[Key, HeldRow]]:
    """The schedule rows the store holds for these contracts in closed months (``closed``: the closed
    months of each legal entity): what a rebuild must keep. Nothing is read while no month is closed."""
    out: dict[int, dict[Key, HeldRow]] = defaultdict(dict)
    months = sorted(set().union(*closed.values())) if closed else []
    if not months or not contract_ids:
        return out
    rows = session.execute(
        select(
            RevenueScheduleRow.contract_id,
            RevenueScheduleRow.line_ref,
            RevenueScheduleRow.booked_month,
            RevenueScheduleRow.month,
            RevenueScheduleRow.billed,
            RevenueScheduleRow.recognised,
        ).where(RevenueScheduleRow.contract_id.in_(list(contract_ids)), RevenueScheduleRow.month.in_(months))
    )
    for cid, line_ref, booked, month, billed, recognised in rows:
        out[cid][(line_ref, booked, month)] = HeldRow(billed, recognised)
    return out


@dataclass(frozen=True)
class Built:
    """A contract's schedule to store: ``billed`` and ``recognised`` rows as posted after the close."""

    contract_id: int
    entity_id: int
    currency: str
    stamp: str
    obligations: Sequence[Obligation]
    billed: Sequence[Posted]
    recognised: Sequence[Posted]


@dataclass(frozen=True)
class Prepared:
    """Built schedules ready to write: whose rows to replace (contract ids per legal entity) and the
    driver calls inserting the new ones, values converted where they were built (a planning process)."""

    by_entity: dict[int, list[int]]
    calls: list[Call]


OBLIGATION_KEYS = (
    "contract_id",
    "seq",
    "entity_id",
    "line_ref",
    "product_ref",
    "description",
    "method",
    "treatment",
    "version_no",
    "currency",
    "start_date",
    "end_date",
    "booked_month",
    "ssp",
    "price",
    "allocated",
)
ROW_KEYS = (
    "contract_id",
    "line_ref",
    "booked_month",
    "month",
    "entity_id",
    "currency",
    "billed",
    "recognised",
    "catch_up",
)
STATE_KEYS = ("contract_id", "stamp", "through", "built_at", "error")


def stored_obligations(obligations: Sequence[Obligation]) -> list[Obligation]:
    """The obligations as stored: a month-to-month line's consecutive billing periods allocated by the
    same version (each its own obligation, see ``billing/revenue.py``) as one, from the first period's
    start to the last one's end, booked in the first one's month, its SSP, price and allocation the
    periods' sums. The schedule rows keep each period's booked month, so no amount changes."""
    out: list[Obligation] = []
    run: list[Obligation] = []  # consecutive periods of one line and version

    def flush() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            first = run[0]
            out.append(
                first._replace(
                    end=run[-1].end,
                    ssp=sum((ob.ssp for ob in run), ZERO),
                    price=sum((ob.price for ob in run), ZERO),
                    allocated=sum((ob.allocated for ob in run), ZERO),
                )
            )
        run.clear()

    for ob in obligations:
        if not ob.period:
            flush()
            out.append(ob)
            continue
        last = run[-1] if run else None
        if last is None or (
            (last.line_ref, last.version_no, last.treatment) == (ob.line_ref, ob.version_no, ob.treatment)
            and (ob.start - last.end).days == 1
        ):
            run.append(ob)
        else:
            flush()
            run.append(ob)
    flush()
    return out


def prepare_built(connection: Connection, built: Sequence[Built], through: date) -> Prepared:
    """The obligations, schedule rows and states of ``built`` as the driver takes them (per-value work
    done here, on the connection's dialect, so the process writing them only runs the calls). Rows are
    built as tuples of converted values (:meth:`BulkStatement.converter`): a schedule has millions."""
    by_entity: dict[int, list[int]] = defaultdict(list)
    ob_statement = BulkStatement.of(_INSERT_OBLIGATIONS, connection, OBLIGATION_KEYS)
    row_statement = BulkStatement.of(_INSERT_ROWS, connection, ROW_KEYS)
    state_statement = BulkStatement.of(_INSERT_STATES, connection, STATE_KEYS)

    def converters(statement: BulkStatement) -> list[Any]:
        return [statement.converter(key) or _same for key in statement.keys]

    ob_conv = converters(ob_statement)  # zipped with each obligation's values, in OBLIGATION_KEYS order
    row_conv = dict(zip(ROW_KEYS, converters(row_statement), strict=True))
    state_conv = converters(state_statement)  # zipped with each state's values, in STATE_KEYS order
    # One converter for both months (their cache of days is shared) and one for the three amounts:
    # each pair is of one column type.
    day, money = row_conv["booked_month"], row_conv["billed"]
    line = row_conv["line_ref"]
    obligations: list[tuple[Any, ...]] = []
    rows: list[tuple[Any, ...]] = []
    states: list[tuple[Any, ...]] = []
    now = utcnow()
    zero = money(ZERO)
    for b in built:
        by_entity[b.entity_id].append(b.contract_id)
        for seq, ob in enumerate(stored_obligations(b.obligations)):
            values = (
                b.contract_id,
                seq,
                b.entity_id,
                ob.line_ref,
                ob.product_ref,
                ob.description[:300],
                ob.method,
                ob.treatment,
                ob.version_no,
                b.currency,
                ob.start,
                ob.end,
                ob.booked,
                ob.ssp,
                ob.price,
                ob.allocated,
            )
            obligations.append(tuple(c(v) for c, v in zip(ob_conv, values, strict=True)))
        # one row per (line, booked month, month): billed and recognised side by side
        merged: dict[Key, list[Any]] = {}
        for p in b.billed:
            merged[(p.line_ref, p.booked, p.month)] = [money(p.amount), zero, zero]
        for p in b.recognised:
            key = (p.line_ref, p.booked, p.month)
            found = merged.get(key)
            amount = money(p.amount)
            catch_up = money(p.catch_up)
            if found is None:
                merged[key] = [zero, amount, catch_up]
            else:
                found[1], found[2] = amount, catch_up
        cid = row_conv["contract_id"](b.contract_id)
        entity_id, currency = row_conv["entity_id"](b.entity_id), row_conv["currency"](b.currency)
        rows.extend(  # in ROW_KEYS order
            (cid, line(line_ref), day(booked), day(month), entity_id, currency, billed, recognised, catch_up)
            for (line_ref, booked, month), (billed, recognised, catch_up) in merged.items()
        )
        state = (b.contract_id, b.stamp, through, now, None)
        states.append(tuple(c(v) for c, v in zip(state_conv, state, strict=True)))
    calls: list[Call] = []
    for statement, rows_of in ((ob_statement, obligations), (row_statement, rows), (state_statement, states)):
        calls += statement.tuple_calls(rows_of)  # on the driver's cursor: Core's per-row work costs more
    return Prepared(dict(by_entity), calls)


def _same(value: Any) -> Any:
    return value


def write_prepared(session: Session, prepared: Prepared, closed: Mapping[int, set[date]]) -> None:
    """Replace these contracts' obligations and their schedule rows of open months (a closed month's
    rows stay as they are) by the prepared ones, and record what each was built from."""
    ids = [cid for cids in prepared.by_entity.values() for cid in cids]
    if not ids:
        return
    session.execute(delete(RevenueObligation).where(RevenueObligation.contract_id.in_(ids)))
    for entity_id, cids in prepared.by_entity.items():
        months = closed.get(entity_id, set())
        query = delete(RevenueScheduleRow).where(RevenueScheduleRow.contract_id.in_(cids))
        if months:
            query = query.where(RevenueScheduleRow.month.not_in(sorted(months)))
        session.execute(query)
    session.execute(delete(RevenueContractState).where(RevenueContractState.contract_id.in_(ids)))
    run_calls(session.connection(), prepared.calls)


def save_built(session: Session, built: Sequence[Built], through: date, closed: Mapping[int, set[date]]) -> None:
    """Replace these contracts' obligations and their schedule rows of open months (a closed month's
    rows stay as they are), and record what each was built from."""
    if built:
        write_prepared(session, prepare_built(session.connection(), built, through), closed)


def close_marker(session: Session) -> int:
    """The newest close or reopening of any month (0: none yet). Schedules built while it stays the same
    saw the closed months, and their rows, as they still are: a closed month's rows never change."""
    return session.scalar(select(func.coalesce(func.max(RevenuePeriodEvent.id), 0))) or 0


def save_failed(session: Session, failures: Mapping[int, tuple[str, str]], through: date) -> None:
    """Record contracts whose schedule could not be built (id -> (stamp, reason)); retried when they change."""
    if not failures:
        return
    session.execute(delete(RevenueContractState).where(RevenueContractState.contract_id.in_(list(failures))))
    now = utcnow()
    session.execute(
        insert(RevenueContractState),
        [
            {"contract_id": cid, "stamp": stamp, "through": through, "built_at": now, "error": reason[:2000]}
            for cid, (stamp, reason) in failures.items()
        ],
    )


# --- the close ----------------------------------------------------------------------------------


def entity_id_of(session: Session, entity_ref: str) -> int | None:
    return session.scalar(select(LegalEntity.id).where(LegalEntity.entity_ref == entity_ref))


def entity_refs(session: Session) -> list[str]:
    return list(session.scalars(select(LegalEntity.entity_ref).order_by(LegalEntity.entity_ref)))


def close_period(
    session: Session,
    entity_id: int,
    month: date,
    *,
    actor: str | None = None,
    forced: bool = False,
    reason: str | None = None,
) -> int:
    """Close a month; the id of the close event (what announces it in the outbox). ``forced``: closed
    past failed checks, ``reason`` saying what the controller accepted."""
    if session.get(RevenuePeriod, (entity_id, month)) is not None:
        raise PeriodError(f"{month:%Y-%m} is closed already")
    session.add(RevenuePeriod(entity_id=entity_id, month=month, closed_at=utcnow()))
    event = RevenuePeriodEvent(
        entity_id=entity_id, month=month, action="close", at=utcnow(), actor=actor, forced=forced, reason=reason
    )
    session.add(event)
    session.flush()
    return event.id


def current_close(session: Session, entity_id: int, month: date) -> int | None:
    """The close event a month stands closed by (None while it is open): a journal entry announced by an
    older close is superseded."""
    if session.get(RevenuePeriod, (entity_id, month)) is None:
        return None
    return session.scalar(
        select(func.max(RevenuePeriodEvent.id)).where(
            RevenuePeriodEvent.entity_id == entity_id,
            RevenuePeriodEvent.month == month,
            RevenuePeriodEvent.action == "close",
        )
    )


def reopen_period(
    session: Session, entity_id: int, month: date, reason: str | None, *, actor: str | None = None
) -> None:
    """Open a closed month again. The schedules built since it was closed are marked stale: a change they
    saw that touched the month went to a later month as a catch-up, and the next rebuild puts it back in
    the month (the others hold what the month should)."""
    found = session.get(RevenuePeriod, (entity_id, month))
    if found is None:
        raise PeriodError(f"{month:%Y-%m} is not closed")
    since = select(Contract.id).where(Contract.entity_id == entity_id)
    session.execute(
        delete(RevenueContractState).where(
            RevenueContractState.contract_id.in_(since), RevenueContractState.built_at > found.closed_at
        )
    )
    session.delete(found)
    session.add(
        RevenuePeriodEvent(entity_id=entity_id, month=month, action="reopen", reason=reason, at=utcnow(), actor=actor)
    )


@dataclass(frozen=True)
class PeriodEvent:
    """A close or reopening of a month: what, who, when, why, and whether a close was forced."""

    month: date
    action: str
    reason: str | None
    at: datetime
    actor: str | None = None
    forced: bool = False


def period_events(session: Session, entity_id: int) -> list[PeriodEvent]:
    """An entity's closes and reopenings, oldest first."""
    rows = session.execute(
        select(
            RevenuePeriodEvent.month,
            RevenuePeriodEvent.action,
            RevenuePeriodEvent.reason,
            RevenuePeriodEvent.at,
            RevenuePeriodEvent.actor,
            RevenuePeriodEvent.forced,
        )
        .where(RevenuePeriodEvent.entity_id == entity_id)
        .order_by(RevenuePeriodEvent.id)
    )
    return [PeriodEvent(*r) for r in rows]


def failed_contracts(session: Session, entity_id: int) -> list[tuple[str, str]]:
    """(contract_ref, reason) of each contract of the entity whose schedule could not be built, as the
    last rebuild recorded it."""
    rows = session.execute(
        select(Contract.contract_ref, RevenueContractState.error)
        .join(RevenueContractState, RevenueContractState.contract_id == Contract.id)
        .where(Contract.entity_id == entity_id, RevenueContractState.error.is_not(None))
        .order_by(Contract.contract_ref)
    )
    return [(ref, error or "") for ref, error in rows]


def draft_documents(session: Session, entity_id: int, first: date, last: date) -> list[str]:
    """The numbers of the entity's invoices and credit notes dated ``first``..``last`` still in draft
    (not approved, so not pushed to the ledger): what a close warns about."""
    return list(
        session.scalars(
            select(Invoice.number)
            .where(
                Invoice.entity_id == entity_id,
                Invoice.status == "draft",
                Invoice.period_released.is_(False),
                Invoice.billing_date.between(first, last),
            )
            .order_by(Invoice.number)
        )
    )


def contracts_of_entity(session: Session, entity_id: int) -> list[int]:
    return list(session.scalars(select(Contract.id).where(Contract.entity_id == entity_id).order_by(Contract.id)))


# --- reads --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContractHead:
    contract_id: int
    contract_ref: str
    customer_ref: str
    entity_id: int
    entity_ref: str


def contract_head(session: Session, contract_ref: str) -> ContractHead | None:
    row = session.execute(
        select(Contract.id, Contract.contract_ref, Customer.customer_ref, Contract.entity_id, LegalEntity.entity_ref)
        .join(Customer, Customer.id == Contract.customer_id)
        .join(LegalEntity, LegalEntity.id == Contract.entity_id)
        .where(Contract.contract_ref == contract_ref)
    ).first()
    return ContractHead(*row) if row else None


def contract_refs(session: Session, contract_ids: Iterable[int]) -> dict[int, str]:
    ids = list(contract_ids)
    if not ids:
        return {}
    return {
        cid: ref for cid, ref in session.execute(select(Contract.id, Contract.contract_ref).where(Contract.id.in_(ids)))
    }


def billed_by_others(session: Session, contract_ids: Iterable[int]) -> set[int]:
    """Of ``contract_ids``, those a version of which another system bills (Stripe): no schedule here."""
    ids = list(contract_ids)
    if not ids:
        return set()
    return set(
        session.scalars(
            select(ContractVersion.contract_id)
            .where(ContractVersion.contract_id.in_(ids), ContractVersion.billed_by != "billbridge")
            .distinct()
        )
    )


def obligations_of(session: Session, contract_id: int) -> list[RevenueObligation]:
    return list(
        session.scalars(
            select(RevenueObligation)
            .where(RevenueObligation.contract_id == contract_id)
            .order_by(RevenueObligation.seq)
        )
    )


@dataclass(frozen=True)
class ScheduleRow:
    contract_id: int
    line_ref: str
    booked_month: date
    month: date
    currency: str
    billed: Decimal
    recognised: Decimal
    catch_up: Decimal


def schedule_rows(
    session: Session,
    *,
    contract_id: int | None = None,
    entity_id: int | None = None,
    until: date | None = None,
) -> list[ScheduleRow]:
    """Schedule rows of one contract or one entity, optionally up to a month (inclusive)."""
    query = select(
        RevenueScheduleRow.contract_id,
        RevenueScheduleRow.line_ref,
        RevenueScheduleRow.booked_month,
        RevenueScheduleRow.month,
        RevenueScheduleRow.currency,
        RevenueScheduleRow.billed,
        RevenueScheduleRow.recognised,
        RevenueScheduleRow.catch_up,
    )
    if contract_id is not None:
        query = query.where(RevenueScheduleRow.contract_id == contract_id)
    if entity_id is not None:
        query = query.where(RevenueScheduleRow.entity_id == entity_id)
    if until is not None:
        query = query.where(RevenueScheduleRow.month <= until)
    # every key column: rows of one line and month booked in different months must not come in the
    # database's arbitrary order (PostgreSQL returns ties as they lie; the reports and CSVs must be stable)
    query = query.order_by(
        RevenueScheduleRow.contract_id,
        RevenueScheduleRow.month,
        RevenueScheduleRow.line_ref,
        RevenueScheduleRow.booked_month,
    )
    return [ScheduleRow(*r) for r in session.execute(query)]


def line_products(session: Session, entity_id: int) -> dict[tuple[int, str], tuple[str, str]]:
    """(contract id, line_ref) -> (product_ref, recognition) for an entity's schedule lines: from the
    obligations, and from the invoice lines or the contracts' usage lines for what has none (usage and
    minimum true-ups: variable consideration, recognised as ``usage``; usage is recognised before it is
    billed, so its line's product comes from the contract). A minimum commitment's floor is ``usage``
    too, of the usage product it commits to."""
    found: dict[tuple[int, str], tuple[str, str]] = {}
    usage = session.execute(
        select(Contract.id, ContractLine.line_ref, Product.product_ref)
        .join(ContractVersion, ContractVersion.contract_id == Contract.id)
        .join(ContractLine, ContractLine.version_id == ContractVersion.id)
        .join(Product, Product.id == ContractLine.product_id)
        .where(Contract.entity_id == entity_id, ContractLine.charge == "usage")
        .order_by(ContractVersion.version_no)  # the latest version's product wins
    )
    for cid, line_ref, product_ref in usage:
        found[(cid, line_ref)] = (product_ref, "usage")
    billed = session.execute(
        select(InvoiceLine.contract_id, InvoiceLine.line_ref, InvoiceLine.product_ref)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(Invoice.entity_id == entity_id)
        .distinct()
    )
    for cid, line_ref, product_ref in billed:
        found[(cid, line_ref)] = (product_ref or "", "usage")
    obligations = session.execute(
        select(
            RevenueObligation.contract_id,
            RevenueObligation.line_ref,
            RevenueObligation.product_ref,
            RevenueObligation.method,
        )
        .where(RevenueObligation.entity_id == entity_id)
        .distinct()
    )
    for cid, line_ref, product_ref, method in obligations:
        # a minimum commitment's floor is scheduled ratably but is consideration for usage: its revenue
        # posts where the usage it stands in for posts (the usage product's account, else usage's), so
        # usage revenue stays in one account whether a customer uses less than the floor or more
        found[(cid, line_ref)] = (product_ref, "usage" if line_ref == MINIMUM_LINE else method)
    return found


def closed_at(session: Session, entity_id: int) -> dict[date, datetime]:
    """The closed months of a legal entity, each with when it was (last) closed."""
    rows = session.execute(
        select(RevenuePeriod.month, RevenuePeriod.closed_at).where(RevenuePeriod.entity_id == entity_id)
    )
    return {month: at for month, at in rows}


@dataclass(frozen=True)
class DocumentLine:
    """A line of an invoice or credit note (signed), as the rollforward's check reads it."""

    contract_id: int
    currency: str
    line_ref: str
    billing_date: date
    created_at: datetime
    billed_amount: Decimal


def document_lines(
    session: Session, entity_id: int, month: date, month_end: date, late: Mapping[date, tuple[date, datetime]]
) -> list[DocumentLine]:
    """The invoice and credit-note lines of an entity's contracts (drafts voided before issue left out)
    billed from ``month`` to ``month_end``, and those billed in an earlier closed month after its close
    (``late``: closed month -> (its last day, when it was closed)), which the schedule carries later."""
    billed_in = Invoice.billing_date.between(month, month_end)
    after_close = [
        Invoice.billing_date.between(first, last) & (Invoice.created_at > at) for first, (last, at) in late.items()
    ]
    rows = session.execute(
        select(
            InvoiceLine.contract_id,
            Invoice.currency,
            InvoiceLine.line_ref,
            Invoice.billing_date,
            Invoice.created_at,
            InvoiceLine.billed_amount,
        )
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .join(Contract, Contract.id == InvoiceLine.contract_id)
        .where(Contract.entity_id == entity_id, Invoice.period_released.is_(False), or_(billed_in, *after_close))
        .order_by(InvoiceLine.id)
    )
    return [DocumentLine(*row) for row in rows]


@dataclass(frozen=True)
class Posting:
    """The newest outbox message of a journal entry: which close queued it and how its delivery went."""

    close_event: int
    queued_at: datetime
    delivered_at: datetime | None
    attempts: int
    last_error: str | None


def journal_posting(session: Session, key_prefix: str) -> Posting | None:
    """The newest message whose dedupe key is ``key_prefix`` followed by a close event id."""
    rows = session.execute(
        select(
            OutboxMessage.dedupe_key,
            OutboxMessage.aggregate_id,
            OutboxMessage.created_at,
            OutboxMessage.delivered_at,
            OutboxMessage.attempts,
            OutboxMessage.last_error,
        )
        .where(OutboxMessage.dedupe_key.startswith(key_prefix, autoescape=True))
        .order_by(OutboxMessage.id.desc())
    )
    for key, event, queued, delivered, attempts, error in rows:
        if key[len(key_prefix) :].isdigit():
            return Posting(event, queued, delivered, attempts, error)
    return None


def journal_currencies(session: Session, key_prefix: str, month: date) -> set[str]:
    """The currencies earlier closes of ``month`` queued an entry in: messages whose dedupe key is
    ``key_prefix`` (topic and entity), a currency, the month and a close event id. A reclose that no
    longer recognises anything in one of them must take its entry back."""
    keys = session.scalars(
        select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.startswith(key_prefix, autoescape=True))
    )
    found = set()
    for key in keys:
        currency, period, event = key[len(key_prefix) :].rsplit(":", 2)
        if period == f"{month:%Y-%m}" and event.isdigit():
            found.add(currency)
    return found
