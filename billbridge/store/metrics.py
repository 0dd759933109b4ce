"""SQL of the finance metrics: building the summary tables (``metric_models``) from invoices, payments
and lines in one aggregate statement each, and reading them (and a few live figures) as the inputs
of the pure metrics in ``billing/metrics``.

Sums of money are exact on both backends (:class:`billbridge.store.types.exact_sum`). Every read
takes the legal entities it may see; rows name their entity by ``entity_ref``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, Integer, case, delete, exists, func, insert, literal, select, text, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement, SQLColumnExpression
from sqlalchemy.sql.functions import FunctionElement

from billbridge.billing.metrics.collections import Collected, DocumentGroup
from billbridge.billing.metrics.forecast import PaymentHistory
from billbridge.billing.metrics.recurring import Movement, Step
from billbridge.store.metric_models import (
    MetricCollected,
    MetricContractCash,
    MetricContractPlan,
    MetricDocuments,
    MetricExpectedCash,
    MetricMrrMovement,
    MetricMrrStep,
    MetricPaymentHistory,
    MetricProductMonth,
    MetricState,
)
from billbridge.store.models import (
    Contract,
    Customer,
    Invoice,
    InvoiceLine,
    LegalEntity,
    Payment,
    PaymentAllocation,
    Product,
    UsageDaily,
    UsageEvent,
)
from billbridge.store.types import ExactDecimal, exact_sum
from billbridge.store.usage_aggregates import event_day


class month_start(FunctionElement[date]):  # noqa: N801 - an SQL function
    """The first day of a date's month."""

    type = Date()
    inherit_cache = True


@compiles(month_start)
def _month_pg(element: month_start, compiler: Any, **kw: Any) -> str:
    return f"CAST(date_trunc('month', {compiler.process(element.clauses, **kw)}) AS DATE)"


@compiles(month_start, "sqlite")
def _month_sqlite(element: month_start, compiler: Any, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)}, 'start of month')"


class days_between(FunctionElement[int]):  # noqa: N801 - an SQL function
    """Whole days from the second date to the first."""

    type = Integer()
    inherit_cache = True


@compiles(days_between)
def _days_pg(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return f"({compiler.process(later, **kw)} - {compiler.process(earlier, **kw)})"


@compiles(days_between, "sqlite")
def _days_sqlite(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return f"CAST(julianday({compiler.process(later, **kw)}) - julianday({compiler.process(earlier, **kw)}) AS INTEGER)"


# ---------------------------------------------------------------------------------------------
# What the summaries are built from
# ---------------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else "-"


def contracts_stamp(session: Session) -> tuple[str, datetime | None]:
    """(stamp, newest change) of the contracts: their count and the latest ``updated_at``."""
    count, newest = session.execute(select(func.count(Contract.id), func.max(Contract.updated_at))).one()
    return f"{count}:{_iso(newest)}", newest


def invoices_stamp(session: Session) -> str:
    """The invoices' highest id and latest ``updated_at`` (indexed): every document created or changed
    (status, payments applied or taken back) moves one of them."""
    top, newest = session.execute(select(func.max(Invoice.id), func.max(Invoice.updated_at))).one()
    return f"{top or 0}:{_iso(newest)}"


def invoice_count_stamp(session: Session) -> str:
    """The invoices' highest id: changes when billing generates documents."""
    return str(session.scalar(select(func.max(Invoice.id))) or 0)


def lock_summary(session: Session, name: str) -> None:
    """Serialise the rebuilds of one summary until commit (two would both delete, then both insert).
    SQLite needs nothing: the write transaction already holds the database lock."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"billbridge-metrics:{name}".encode()) - 2**31  # a signed 32-bit advisory key
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def states(session: Session) -> dict[str, MetricState]:
    return {row.name: row for row in session.scalars(select(MetricState))}


def save_state(session: Session, name: str, stamp: str, *, as_of: date | None, read_at: datetime) -> None:
    """What summary ``name`` was built from: ``stamp``, the day (``as_of``), when its sources were read."""
    row = session.get(MetricState, name)
    if row is None:
        session.add(MetricState(name=name, stamp=stamp, as_of=as_of, refreshed_at=read_at))
    else:
        row.stamp, row.as_of, row.refreshed_at = stamp, as_of, read_at
    session.flush()


# ---------------------------------------------------------------------------------------------
# Building the summaries
# ---------------------------------------------------------------------------------------------

_OPEN = ("sent", "partially_paid")


def rebuild_documents(session: Session) -> None:
    """Documents, collections, payment history and products, rebuilt from the invoices and payments
    (one aggregate statement each; a reader sees the old ones until the transaction commits)."""
    for table in (MetricDocuments, MetricCollected, MetricPaymentHistory, MetricProductMonth):
        session.execute(delete(table))
    keys = (
        Invoice.entity_id,
        Invoice.currency,
        Invoice.doc_type,
        Invoice.status,
        Invoice.billing_date,
        Invoice.due_date,
    )
    session.execute(
        insert(MetricDocuments).from_select(
            ["entity_id", "currency", "doc_type", "status", "billing_date", "due_date", "documents", "total", "paid"],
            select(*keys, func.count(), exact_sum(Invoice.invoice_total), exact_sum(Invoice.amount_paid)).group_by(
                *keys
            ),
        )
    )
    session.execute(
        insert(MetricCollected).from_select(
            ["entity_id", "currency", "day", "amount"],
            select(Invoice.entity_id, Invoice.currency, Payment.received_on, exact_sum(PaymentAllocation.amount))
            .join(Invoice, Invoice.id == PaymentAllocation.invoice_id)
            .join(Payment, Payment.id == PaymentAllocation.payment_id)
            .group_by(Invoice.entity_id, Invoice.currency, Payment.received_on),
        )
    )
    paid_on = (
        select(
            Invoice.customer_id.label("customer_id"),
            Invoice.entity_id.label("entity_id"),
            days_between(func.max(Payment.received_on), Invoice.due_date).label("late"),
        )
        .join(PaymentAllocation, PaymentAllocation.invoice_id == Invoice.id)
        .join(Payment, Payment.id == PaymentAllocation.payment_id)
        .where(Invoice.doc_type == "invoice", Invoice.status == "paid")
        .group_by(Invoice.id, Invoice.customer_id, Invoice.entity_id, Invoice.due_date)
        .subquery()
    )
    session.execute(
        insert(MetricPaymentHistory).from_select(
            ["customer_id", "entity_id", "invoices", "days_late"],
            select(
                paid_on.c.customer_id, func.min(paid_on.c.entity_id), func.count(), func.sum(paid_on.c.late)
            ).group_by(paid_on.c.customer_id),
        )
    )
    per_customer = case((InvoiceLine.kind == "usage", Invoice.customer_id), else_=literal(0))
    month = month_start(Invoice.billing_date)
    product_keys = (Invoice.entity_id, Invoice.currency, month, InvoiceLine.product_ref, InvoiceLine.kind, per_customer)
    session.execute(
        insert(MetricProductMonth).from_select(
            ["entity_id", "currency", "month", "product_ref", "kind", "customer_id", "billed", "collected"],
            select(
                *product_keys,
                exact_sum(InvoiceLine.billed_amount),
                func.coalesce(
                    exact_sum(case((Invoice.status == "paid", InvoiceLine.billed_amount))),
                    literal(Decimal(0), ExactDecimal()),
                ),
            )
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(Invoice.status != "void")
            .group_by(*product_keys),
        )
    )


@dataclass(frozen=True)
class PartlyPaidLine:
    invoice_id: int
    entity_id: int
    currency: str
    month: date
    product_ref: str
    kind: str
    customer_id: int
    billed: Decimal
    amount_paid: Decimal


def partly_paid_lines(session: Session) -> list[PartlyPaidLine]:
    """The lines of partially paid documents, whose collected share is worked out line by line."""
    rows = session.execute(
        select(
            Invoice.id,
            Invoice.entity_id,
            Invoice.currency,
            Invoice.billing_date,
            InvoiceLine.product_ref,
            InvoiceLine.kind,
            Invoice.customer_id,
            InvoiceLine.billed_amount,
            Invoice.amount_paid,
        )
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(Invoice.status == "partially_paid")
        .order_by(Invoice.id, InvoiceLine.position)
    )
    return [
        PartlyPaidLine(iid, entity, cur, day.replace(day=1), product, kind, customer if kind == "usage" else 0, b, p)
        for iid, entity, cur, day, product, kind, customer, b, p in rows
    ]


def add_collected(session: Session, rows: Iterable[tuple[tuple[int, str, date, str, str, int], Decimal]]) -> None:
    """Add collected money to product months (keys: entity id, currency, month, product, kind, customer id)."""
    for (entity_id, currency, month, product, kind, customer_id), amount in rows:
        row = session.get(MetricProductMonth, (entity_id, currency, month, product, kind, customer_id))
        if row is not None and amount:
            row.collected += amount
    session.flush()


def open_balances(session: Session) -> list[tuple[int, str, int, str, date, Decimal, int]]:
    """Open invoices per (entity id, currency, customer id, customer ref, due date): balance and count."""
    rows = session.execute(
        select(
            Invoice.entity_id,
            Invoice.currency,
            Invoice.customer_id,
            Customer.customer_ref,
            Invoice.due_date,
            exact_sum(Invoice.invoice_total),
            exact_sum(Invoice.amount_paid),
            func.count(),
        )
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(Invoice.doc_type == "invoice", Invoice.status.in_(_OPEN))
        .group_by(Invoice.entity_id, Invoice.currency, Invoice.customer_id, Customer.customer_ref, Invoice.due_date)
    )
    return [(e, cur, cid, ref, due, total - paid, n) for e, cur, cid, ref, due, total, paid, n in rows]


def all_payment_history(session: Session) -> list[PaymentHistory]:
    """Every customer's payment history from the summary, keyed by ids (as text): the forecast's delays
    while the summaries are built."""
    rows = session.execute(
        select(
            MetricPaymentHistory.entity_id,
            MetricPaymentHistory.customer_id,
            MetricPaymentHistory.invoices,
            MetricPaymentHistory.days_late,
        )
    )
    return [PaymentHistory(str(e), str(c), int(n), int(d)) for e, c, n, d in rows]


def replace_expected_cash(session: Session, source: str, rows: Iterable[tuple[int, str, date, Decimal, int]]) -> None:
    """The expected cash of one source: (entity id, currency, expected day, amount, invoices) rows."""
    session.execute(delete(MetricExpectedCash).where(MetricExpectedCash.source == source))
    values = [
        {"entity_id": e, "currency": c, "source": source, "expected_date": d, "amount": a, "invoices": n}
        for e, c, d, a, n in rows
    ]
    if values:
        session.execute(insert(MetricExpectedCash), values)


BATCH = 5000  # ids per IN list (SQLite allows 32,766 parameters a statement)


def contracts_to_plan(
    session: Session, since: datetime | None, after_invoice_id: int, needed_to: date
) -> list[int] | None:
    """Contracts whose projected cash is out of date: created or amended after ``since``, billed
    after invoice ``after_invoice_id``, or planned short of ``needed_to`` (None when ``since`` is None: all)."""
    if since is None:
        return None
    found = set(session.scalars(select(Contract.id).where(Contract.updated_at > since)))
    found.update(session.scalars(select(Invoice.contract_id).where(Invoice.id > after_invoice_id).distinct()))
    found.update(
        session.scalars(select(MetricContractPlan.contract_id).where(MetricContractPlan.planned_to < needed_to))
    )
    planned = select(MetricContractPlan.contract_id).where(MetricContractPlan.contract_id == Contract.id)
    found.update(session.scalars(select(Contract.id).where(~exists(planned))))
    return sorted(found)


CashRow = tuple[int, int, str, date, Decimal, int]
"""(contract id, entity id, currency, expected day, amount, invoices)"""


def replace_contract_cash(
    session: Session, contract_ids: Sequence[int] | None, rows: Sequence[CashRow], planned_to: date
) -> None:
    """Replace the projected cash of these contracts (None: of all) and keep their sum, the projected
    source of ``metric_expected_cash``, in step: their old rows are taken off it, the new ones added."""
    totals: dict[tuple[int, str, date], list[Any]] = {}

    def add(entity: int, currency: str, day: date, amount: Decimal, count: int, sign: int) -> None:
        found = totals.setdefault((entity, currency, day), [Decimal(0), 0])
        found[0] += sign * amount
        found[1] += sign * count

    if contract_ids is None:
        for table in (MetricContractCash, MetricContractPlan):
            session.execute(delete(table))
        session.execute(delete(MetricExpectedCash).where(MetricExpectedCash.source == "projected"))
    else:
        for start in range(0, len(contract_ids), BATCH):
            batch = list(contract_ids[start : start + BATCH])
            keys = (MetricContractCash.entity_id, MetricContractCash.currency, MetricContractCash.expected_date)
            for entity, currency, day, amount, count in session.execute(
                select(*keys, exact_sum(MetricContractCash.amount), func.sum(MetricContractCash.invoices))
                .where(MetricContractCash.contract_id.in_(batch))
                .group_by(*keys)
            ):
                add(entity, currency, day, amount, int(count), -1)
            for table in (MetricContractCash, MetricContractPlan):
                session.execute(delete(table).where(table.contract_id.in_(batch)))
    for _contract, entity, currency, day, amount, count in rows:
        add(entity, currency, day, amount, count, 1)
    if rows:
        columns = ("contract_id", "entity_id", "currency", "expected_date", "amount", "invoices")
        session.execute(insert(MetricContractCash), [dict(zip(columns, row, strict=True)) for row in rows])
    planned = list(contract_ids) if contract_ids is not None else list(session.scalars(select(Contract.id)))
    if planned:
        session.execute(insert(MetricContractPlan), [{"contract_id": c, "planned_to": planned_to} for c in planned])
    _add_to_expected(session, totals)


def _add_to_expected(session: Session, changes: dict[tuple[int, str, date], list[Any]]) -> None:
    """Add signed (amount, count) changes to the projected rows of ``metric_expected_cash``: the rows
    touched are read once per entity and currency (a range of days), then inserted, updated by primary
    key and deleted a statement each, not looked up a day at a time (a year of days per refresh)."""
    changed = {key: (amount, count) for key, (amount, count) in changes.items() if amount or count}
    if not changed:
        return
    session.flush()
    days_by_series: dict[tuple[int, str], list[date]] = {}
    for entity, currency, day in changed:
        days_by_series.setdefault((entity, currency), []).append(day)
    found: dict[tuple[int, str, date], tuple[Decimal, int]] = {}
    for (entity, currency), days in days_by_series.items():
        for day, amount, invoices in session.execute(
            select(MetricExpectedCash.expected_date, MetricExpectedCash.amount, MetricExpectedCash.invoices).where(
                MetricExpectedCash.entity_id == entity,
                MetricExpectedCash.currency == currency,
                MetricExpectedCash.source == "projected",
                MetricExpectedCash.expected_date.between(min(days), max(days)),
            )
        ):
            found[(entity, currency, day)] = (amount, int(invoices))
    added: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    gone: dict[tuple[int, str], list[date]] = {}
    for (entity, currency, day), (amount, count) in sorted(changed.items()):
        key = {"entity_id": entity, "currency": currency, "source": "projected", "expected_date": day}
        old = found.get((entity, currency, day))
        if old is None:
            added.append({**key, "amount": amount, "invoices": count})
        elif old[1] + count == 0:
            gone.setdefault((entity, currency), []).append(day)
        else:
            kept.append({**key, "amount": old[0] + amount, "invoices": old[1] + count})
    if added:
        session.execute(insert(MetricExpectedCash), added)
    if kept:
        session.execute(update(MetricExpectedCash), kept)  # the ORM's bulk UPDATE by primary key
    for (entity, currency), days in gone.items():
        for start in range(0, len(days), BATCH):
            session.execute(
                delete(MetricExpectedCash).where(
                    MetricExpectedCash.entity_id == entity,
                    MetricExpectedCash.currency == currency,
                    MetricExpectedCash.source == "projected",
                    MetricExpectedCash.expected_date.in_(days[start : start + BATCH]),
                )
            )


def entity_ids_by_ref(session: Session) -> dict[str, int]:
    return {ref: eid for eid, ref in session.execute(select(LegalEntity.id, LegalEntity.entity_ref))}


def customer_ids_by_ref(session: Session, refs: Iterable[str]) -> dict[str, int]:
    wanted = list(set(refs))
    if not wanted:
        return {}
    return dict(
        session.execute(select(Customer.customer_ref, Customer.id).where(Customer.customer_ref.in_(wanted))).all()
    )


def customers_with_contracts(session: Session, since: datetime | None) -> list[int]:
    """Customers with a contract created or amended after ``since`` (None: every customer with one)."""
    query = select(Contract.customer_id).distinct().order_by(Contract.customer_id)
    if since is not None:
        query = query.where(Contract.updated_at > since)
    return list(session.scalars(query))


def contract_ids_of_customers(session: Session, customer_ids: Sequence[int]) -> list[int]:
    return list(session.scalars(select(Contract.id).where(Contract.customer_id.in_(list(customer_ids)))))


def customer_contract_ids(
    session: Session, entity_ids: Sequence[int], refs: Sequence[str] | None, after: str, limit: int
) -> list[int]:
    """The contracts of a page of customers (``limit`` customers by ref after ``after``, or the refs given)."""
    customers = select(Customer.id).where(_in(Customer.entity_id, entity_ids))
    if refs is not None:
        customers = customers.where(Customer.customer_ref.in_(list(refs)))
    else:
        customers = customers.where(Customer.customer_ref > after).order_by(Customer.customer_ref).limit(limit)
    ids = list(session.scalars(customers))
    return contract_ids_of_customers(session, ids) if ids else []


def replace_mrr(
    session: Session, customer_ids: Sequence[int] | None, steps: Sequence[Step], moves: Sequence[Movement]
) -> None:
    """Replace the MRR steps and movements of these customers (None: of all)."""
    for table in (MetricMrrStep, MetricMrrMovement):
        statement = delete(table)
        if customer_ids is not None:
            statement = statement.where(table.customer_id.in_(customer_ids))
        session.execute(statement)
    entities = entity_ids_by_ref(session)
    customers = customer_ids_by_ref(session, [s.customer_ref for s in steps])
    if steps:
        session.execute(
            insert(MetricMrrStep),
            [
                {
                    "customer_id": customers[s.customer_ref],
                    "currency": s.currency,
                    "day": s.day,
                    "entity_id": entities[s.entity_ref],
                    "mrr": s.mrr,
                    "delta": s.delta,
                    "active_delta": s.active_delta,
                }
                for s in steps
            ],
        )
    if moves:
        session.execute(
            insert(MetricMrrMovement),
            [
                {
                    "customer_id": customers[m.customer_ref],
                    "currency": m.currency,
                    "month": m.month,
                    "entity_id": entities[m.entity_ref],
                    "kind": m.kind,
                    "before": m.before,
                    "after": m.after,
                    "amount": m.amount,
                }
                for m in moves
            ],
        )


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _in(column: SQLColumnExpression[int], entity_ids: Sequence[int]) -> ColumnElement[bool]:
    return column.in_(list(entity_ids))


def mrr_on(session: Session, entity_ids: Sequence[int], day: date) -> list[tuple[str, str, Decimal, int]]:
    """(entity_ref, currency, MRR, active customers) on ``day``: the sums of the steps up to it."""
    rows = session.execute(
        select(
            LegalEntity.entity_ref,
            MetricMrrStep.currency,
            exact_sum(MetricMrrStep.delta),
            func.sum(MetricMrrStep.active_delta),
        )
        .join(LegalEntity, LegalEntity.id == MetricMrrStep.entity_id)
        .where(_in(MetricMrrStep.entity_id, entity_ids), MetricMrrStep.day <= day)
        .group_by(LegalEntity.entity_ref, MetricMrrStep.currency)
        .order_by(LegalEntity.entity_ref, MetricMrrStep.currency)
    )
    return [(e, c, amount, int(active or 0)) for e, c, amount, active in rows]


def movement_totals(
    session: Session, entity_ids: Sequence[int], first: date, last: date
) -> list[tuple[str, str, date, str, Decimal, int]]:
    """Per entity, currency, month and kind: the movements' signed sum and number of customers."""
    rows = session.execute(
        select(
            LegalEntity.entity_ref,
            MetricMrrMovement.currency,
            MetricMrrMovement.month,
            MetricMrrMovement.kind,
            exact_sum(MetricMrrMovement.amount),
            func.count(),
        )
        .join(LegalEntity, LegalEntity.id == MetricMrrMovement.entity_id)
        .where(
            _in(MetricMrrMovement.entity_id, entity_ids),
            MetricMrrMovement.month >= first.replace(day=1),
            MetricMrrMovement.month <= last,
        )
        .group_by(LegalEntity.entity_ref, MetricMrrMovement.currency, MetricMrrMovement.month, MetricMrrMovement.kind)
    )
    return [(e, c, m, k, a, int(n)) for e, c, m, k, a, n in rows]


def movements_of(
    session: Session,
    entity_ids: Sequence[int],
    first: date,
    last: date,
    *,
    customer_id: int | None = None,
    limit: int = 500,
) -> list[Movement]:
    """The customers behind the movements of the months ``first``..``last``, largest first."""
    query = (
        select(
            LegalEntity.entity_ref,
            MetricMrrMovement.currency,
            Customer.customer_ref,
            MetricMrrMovement.month,
            MetricMrrMovement.kind,
            MetricMrrMovement.before,
            MetricMrrMovement.after,
        )
        .join(LegalEntity, LegalEntity.id == MetricMrrMovement.entity_id)
        .join(Customer, Customer.id == MetricMrrMovement.customer_id)
        .where(
            _in(MetricMrrMovement.entity_id, entity_ids),
            MetricMrrMovement.month >= first.replace(day=1),
            MetricMrrMovement.month <= last,
        )
        .order_by(MetricMrrMovement.month, Customer.customer_ref)
        .limit(limit)
    )
    if customer_id is not None:
        query = query.where(MetricMrrMovement.customer_id == customer_id)
    return [Movement(e, c, ref, m, k, b, a) for e, c, ref, m, k, b, a in session.execute(query)]  # type: ignore[arg-type]


def mrr_history(session: Session, customer_id: int) -> list[tuple[str, date, Decimal]]:
    """One customer's MRR steps: (currency, from day, MRR)."""
    rows = session.execute(
        select(MetricMrrStep.currency, MetricMrrStep.day, MetricMrrStep.mrr)
        .where(MetricMrrStep.customer_id == customer_id)
        .order_by(MetricMrrStep.currency, MetricMrrStep.day)
    )
    return [(c, d, m) for c, d, m in rows]


def document_groups(session: Session, entity_ids: Sequence[int]) -> list[DocumentGroup]:
    rows = session.execute(
        select(
            LegalEntity.entity_ref,
            MetricDocuments.currency,
            MetricDocuments.doc_type,
            MetricDocuments.status,
            MetricDocuments.billing_date,
            MetricDocuments.due_date,
            MetricDocuments.documents,
            MetricDocuments.total,
            MetricDocuments.paid,
        )
        .join(LegalEntity, LegalEntity.id == MetricDocuments.entity_id)
        .where(_in(MetricDocuments.entity_id, entity_ids))
    )
    return [DocumentGroup(*row) for row in rows]


def collected(session: Session, entity_ids: Sequence[int], first: date, last: date) -> list[Collected]:
    rows = session.execute(
        select(LegalEntity.entity_ref, MetricCollected.currency, MetricCollected.day, MetricCollected.amount)
        .join(LegalEntity, LegalEntity.id == MetricCollected.entity_id)
        .where(_in(MetricCollected.entity_id, entity_ids), MetricCollected.day >= first, MetricCollected.day <= last)
    )
    return [Collected(*row) for row in rows]


def product_months(
    session: Session, entity_ids: Sequence[int], first: date, last: date, *, usage_only: bool = False
) -> list[tuple[str, str, date, str, str, str, Decimal, Decimal]]:
    """(entity_ref, currency, month, product_ref, kind, customer_ref or "", billed, collected) rows."""
    query = (
        select(
            LegalEntity.entity_ref,
            MetricProductMonth.currency,
            MetricProductMonth.month,
            MetricProductMonth.product_ref,
            MetricProductMonth.kind,
            func.coalesce(Customer.customer_ref, ""),
            MetricProductMonth.billed,
            MetricProductMonth.collected,
        )
        .join(LegalEntity, LegalEntity.id == MetricProductMonth.entity_id)
        .outerjoin(Customer, Customer.id == MetricProductMonth.customer_id)
        .where(
            _in(MetricProductMonth.entity_id, entity_ids),
            MetricProductMonth.month >= first.replace(day=1),
            MetricProductMonth.month <= last,
        )
    )
    if usage_only:
        query = query.where(MetricProductMonth.kind == "usage")
    return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


def expected_cash(session: Session, entity_ids: Sequence[int]) -> list[tuple[str, str, str, date, Decimal, int]]:
    """(entity_ref, currency, source, expected day, amount, invoices) rows."""
    rows = session.execute(
        select(
            LegalEntity.entity_ref,
            MetricExpectedCash.currency,
            MetricExpectedCash.source,
            MetricExpectedCash.expected_date,
            MetricExpectedCash.amount,
            MetricExpectedCash.invoices,
        )
        .join(LegalEntity, LegalEntity.id == MetricExpectedCash.entity_id)
        .where(_in(MetricExpectedCash.entity_id, entity_ids))
    )
    return [(e, c, s, d, a, int(n)) for e, c, s, d, a, n in rows]


def usage_billed_since(session: Session, entity_ids: Sequence[int], since: date) -> list[tuple[str, str, Decimal]]:
    """(entity_ref, currency, usage billed on documents dated ``since`` or later), for the run rate."""
    rows = session.execute(
        select(LegalEntity.entity_ref, MetricProductMonth.currency, exact_sum(MetricProductMonth.billed))
        .join(LegalEntity, LegalEntity.id == MetricProductMonth.entity_id)
        .where(
            _in(MetricProductMonth.entity_id, entity_ids),
            MetricProductMonth.kind == "usage",
            MetricProductMonth.month >= since.replace(day=1),
        )
        .group_by(LegalEntity.entity_ref, MetricProductMonth.currency)
    )
    return [(e, c, a) for e, c, a in rows]


def usage_quantities(
    session: Session, entity_ids: Sequence[int], first: date, last: date
) -> list[tuple[str, date, str, str, int, int]]:
    """Per (entity_ref, month, customer_ref, product_ref): summed quantity in micro-units and events."""
    month = month_start(UsageDaily.day)
    rows = session.execute(
        select(
            LegalEntity.entity_ref,
            month,
            Customer.customer_ref,
            Product.product_ref,
            func.sum(UsageDaily.total_micros),
            func.sum(UsageDaily.events),
        )
        .join(Customer, Customer.id == UsageDaily.customer_id)
        .join(LegalEntity, LegalEntity.id == Customer.entity_id)
        .join(Product, Product.id == UsageDaily.product_id)
        .where(_in(Customer.entity_id, entity_ids), UsageDaily.day >= first.replace(day=1), UsageDaily.day <= last)
        .group_by(LegalEntity.entity_ref, month, Customer.customer_ref, Product.product_ref)
    )
    return [(e, m if isinstance(m, date) else date.fromisoformat(m), c, p, int(q), int(n)) for e, m, c, p, q, n in rows]


def latest_usage_events(session: Session, entity_ids: Sequence[int], *, limit: int = 50) -> list[dict[str, Any]]:
    """The newest usage events, each marked late when a usage line billing its product for its
    customer over its day was on a document created before the event came in."""
    day = event_day(session)
    late = exists(
        select(InvoiceLine.id)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(
            Invoice.customer_id == UsageEvent.customer_id,
            InvoiceLine.kind == "usage",
            InvoiceLine.product_ref == Product.product_ref,
            InvoiceLine.period_start <= day,
            InvoiceLine.period_end >= day,
            Invoice.created_at < UsageEvent.received_at,
        )
    )
    rows = session.execute(
        select(
            UsageEvent.event_ref,
            LegalEntity.entity_ref,
            Customer.customer_ref,
            Product.product_ref,
            UsageEvent.timestamp,
            UsageEvent.quantity,
            UsageEvent.received_at,
            late.label("late"),
        )
        .join(Customer, Customer.id == UsageEvent.customer_id)
        .join(Product, Product.id == UsageEvent.product_id)
        .join(LegalEntity, LegalEntity.id == UsageEvent.entity_id)
        .where(_in(UsageEvent.entity_id, entity_ids))
        .order_by(UsageEvent.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in rows.mappings()]


def entity_rows(session: Session, refs: Iterable[str] | None = None) -> list[tuple[int, str, str, str]]:
    """(id, entity_ref, name, currency) of the legal entities (of ``refs``), in ref order."""
    query = select(LegalEntity.id, LegalEntity.entity_ref, LegalEntity.name, LegalEntity.currency).order_by(
        LegalEntity.entity_ref
    )
    if refs is not None:
        query = query.where(LegalEntity.entity_ref.in_(list(refs)))
    return [(i, r, n, c) for i, r, n, c in session.execute(query)]


def customer_payments(session: Session, customer_id: int, *, limit: int = 200) -> list[dict[str, Any]]:
    """A customer's payments, newest first, with the invoices each was applied to."""
    rows = session.execute(
        select(
            Payment.id,
            Payment.payment_ref,
            Payment.currency,
            Payment.amount,
            Payment.unapplied_amount,
            Payment.received_on,
            Payment.method,
        )
        .where(Payment.customer_id == customer_id)
        .order_by(Payment.received_on.desc(), Payment.id.desc())
        .limit(limit)
    ).all()
    applied: dict[int, list[str]] = {r.id: [] for r in rows}
    if rows:
        for payment_id, number in session.execute(
            select(PaymentAllocation.payment_id, Invoice.number)
            .join(Invoice, Invoice.id == PaymentAllocation.invoice_id)
            .where(PaymentAllocation.payment_id.in_(list(applied)))
            .order_by(PaymentAllocation.id)
        ):
            applied[payment_id].append(number)
    return [{**r._mapping, "invoices": applied[r.id]} for r in rows]
