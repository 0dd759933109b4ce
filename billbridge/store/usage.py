"""Usage events: storing them (idempotently), finding where they are billed, reports, and the
per-day aggregates that billing rates."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from billbridge.billing.usage import DailyUsage
from billbridge.billing.usage_documents import VersionTerms
from billbridge.store.models import (
    Contract,
    ContractLine,
    ContractVersion,
    Customer,
    Invoice,
    Product,
    UsageEvent,
    table_of,
)

_EVENTS = table_of(UsageEvent)


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert of already validated events (event_ref, entity_id, customer_id, product_id, timestamp, quantity)."""
    if rows:
        session.execute(insert(UsageEvent), list(rows))


def daily_usage(
    session: Session, customer_ids: Sequence[int], start: date, end: date
) -> dict[tuple[int, str], dict[date, DailyUsage]]:
    """(customer id, usage product_ref) -> day -> sum / max / count of quantities, days in [start, end).

    Days are UTC calendar days; billing periods are whole days, so any period's sum, max and
    count follow from these.
    """
    if not customer_ids or start >= end:
        return {}
    lower = datetime.combine(start, time.min, tzinfo=timezone.utc)
    upper = datetime.combine(end, time.min, tzinfo=timezone.utc)
    rows = session.execute(
        select(UsageEvent.customer_id, Product.product_ref, UsageEvent.timestamp, UsageEvent.quantity)
        .join(Product, Product.id == UsageEvent.product_id)
        .where(
            UsageEvent.customer_id.in_(list(customer_ids)), UsageEvent.timestamp >= lower, UsageEvent.timestamp < upper
        )
    )
    days: dict[tuple[int, str], dict[date, list[Decimal]]] = {}
    for customer_id, product_ref, timestamp, quantity in rows:
        stamp = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=timezone.utc)
        days.setdefault((customer_id, product_ref), {}).setdefault(stamp.astimezone(timezone.utc).date(), []).append(
            quantity
        )
    return {
        key: {day: DailyUsage(sum(q, Decimal(0)), max(q), len(q)) for day, q in per_day.items()}
        for key, per_day in days.items()
    }


@dataclass(frozen=True)
class StoredEvent:
    """An event already in the store, as an idempotent replay needs it."""

    event_ref: str
    idempotency_key: str | None
    customer_id: int
    product_id: int
    timestamp: datetime
    quantity: Decimal
    received_at: datetime


def _utc(stamp: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    return stamp.replace(tzinfo=timezone.utc) if stamp.tzinfo is None else stamp.astimezone(timezone.utc)


def events_by_key(session: Session, keys: Iterable[str]) -> dict[str, StoredEvent]:
    """Stored events by idempotency key."""
    keys = list(set(keys))
    if not keys:
        return {}
    rows = session.execute(
        select(
            _EVENTS.c.event_ref,
            _EVENTS.c.idempotency_key,
            _EVENTS.c.customer_id,
            _EVENTS.c.product_id,
            _EVENTS.c.timestamp,
            _EVENTS.c.quantity,
            _EVENTS.c.received_at,
        ).where(_EVENTS.c.idempotency_key.in_(keys))
    )
    return {r[1]: StoredEvent(r[0], r[1], r[2], r[3], _utc(r[4]), r[5], _utc(r[6])) for r in rows}


def insert_new_events(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert events in one statement, skipping any whose event_ref or idempotency key is taken
    (a concurrent replay); returns the event_refs actually inserted."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = make(_EVENTS).on_conflict_do_nothing().returning(_EVENTS.c.event_ref)
    return set(session.execute(statement, list(rows)).scalars())


@dataclass(frozen=True)
class UsageContract:
    """A contract that bills a customer's usage of a product, with its versions' terms."""

    contract_id: int
    contract_ref: str
    versions: tuple[VersionTerms, ...]


def usage_contracts(session: Session, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], list[UsageContract]]:
    """(customer id, product id) -> contracts with a ``charge: usage`` line on that product, by id."""
    pairs = set(pairs)
    if not pairs:
        return {}
    customers = {c for c, _ in pairs}
    products = {p for _, p in pairs}
    lines = session.execute(
        select(
            Contract.id,
            Contract.customer_id,
            ContractLine.product_id,
            ContractVersion.version_no,
            ContractLine.start_date,
            ContractLine.end_date,
        )
        .join(ContractVersion, ContractVersion.contract_id == Contract.id)
        .join(ContractLine, ContractLine.version_id == ContractVersion.id)
        .where(
            Contract.customer_id.in_(customers),
            ContractLine.product_id.in_(products),
            ContractLine.charge == "usage",
        )
    ).all()
    if not lines:
        return {}
    usage_lines: dict[tuple[int, int, int], list[tuple[date | None, date | None]]] = defaultdict(list)
    keys_of: dict[int, set[tuple[int, int]]] = defaultdict(set)
    for contract_id, customer_id, product_id, version_no, start, end in lines:
        if (customer_id, product_id) in pairs:
            usage_lines[(contract_id, product_id, version_no)].append((start, end))
            keys_of[contract_id].add((customer_id, product_id))
    versions = session.execute(
        select(
            Contract.id,
            Contract.contract_ref,
            ContractVersion.version_no,
            ContractVersion.effective_date,
            ContractVersion.contract_start_date,
            ContractVersion.contract_end_date,
            ContractVersion.cycle_length,
            ContractVersion.cycle_unit,
            ContractVersion.cycle_start_date,
        )
        .join(ContractVersion, ContractVersion.contract_id == Contract.id)
        .where(Contract.id.in_(list(keys_of)))
        .order_by(Contract.id, ContractVersion.version_no)
    ).all()
    heads: dict[int, str] = {}
    by_contract: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for row in versions:
        heads[row[0]] = row[1]
        by_contract[row[0]].append(tuple(row))
    out: dict[tuple[int, int], list[UsageContract]] = defaultdict(list)
    for contract_id in sorted(keys_of):
        for customer_id, product_id in sorted(keys_of[contract_id]):
            terms = tuple(
                VersionTerms(
                    version_no=r[2],
                    effective_date=r[3],
                    contract_start_date=r[4],
                    contract_end_date=r[5],
                    cycle_length=r[6],
                    cycle_unit=r[7],
                    anchor=r[8],
                    usage_lines=tuple(usage_lines.get((contract_id, product_id, r[2]), ())),
                )
                for r in by_contract[contract_id]
            )
            out[(customer_id, product_id)].append(UsageContract(contract_id, heads[contract_id], terms))
    return dict(out)


def documents_from(
    session: Session, contract_ids: Iterable[int], since: date
) -> dict[int, dict[date, tuple[str, datetime]]]:
    """contract id -> billing date -> (document number, created at), for documents dated ``since`` or later."""
    ids = list(set(contract_ids))
    out: dict[int, dict[date, tuple[str, datetime]]] = {cid: {} for cid in ids}
    if ids:
        for contract_id, billing_date, number, created_at in session.execute(
            select(Invoice.contract_id, Invoice.billing_date, Invoice.number, Invoice.created_at).where(
                Invoice.contract_id.in_(ids), Invoice.billing_date >= since
            )
        ):
            out[contract_id][billing_date] = (number, _utc(created_at))
    return out


def report_rows(
    session: Session,
    entity_id: int,
    *,
    customer_ref: str | None = None,
    product_ref: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[tuple[str, str, datetime, Decimal]]:
    """(customer_ref, product_ref, UTC timestamp, quantity) of an entity's events in [start, end).

    Sums are done by the caller in Decimal: SQLite would add the text-stored quantities as floats.
    """
    query = (
        select(Customer.customer_ref, Product.product_ref, _EVENTS.c.timestamp, _EVENTS.c.quantity)
        .join(Customer, Customer.id == _EVENTS.c.customer_id)
        .join(Product, Product.id == _EVENTS.c.product_id)
        .where(_EVENTS.c.entity_id == entity_id)
    )
    if customer_ref is not None:
        query = query.where(Customer.customer_ref == customer_ref)
    if product_ref is not None:
        query = query.where(Product.product_ref == product_ref)
    if start is not None:
        query = query.where(_EVENTS.c.timestamp >= start)
    if end is not None:
        query = query.where(_EVENTS.c.timestamp < end)
    return [(c, p, _utc(t), q) for c, p, t, q in session.execute(query)]
