"""Monitors in the store: definitions, the values per customer and day (written only when they
change, so a rerun of a day writes nothing), and alerts (inserted once per monitor, customer,
condition and day: a rerun raises nothing twice)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from billbridge.billing.monitors import InvoiceFact, MonitorDefinition
from billbridge.store.models import (
    Contract,
    ContractLine,
    ContractVersion,
    Customer,
    Invoice,
    LegalEntity,
    Product,
    table_of,
    utcnow,
)
from billbridge.store.monitor_models import Monitor, MonitorAlert, MonitorValue

_VALUES = table_of(MonitorValue)
_ALERTS = table_of(MonitorAlert)
_INSERT: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


class MonitorExists(ValueError):
    """A monitor of that name exists in the legal entity."""


@dataclass(frozen=True)
class StoredMonitor:
    id: int
    entity_id: int
    entity_ref: str
    name: str
    definition: MonitorDefinition
    created_at: datetime
    timezone: str = "UTC"  # the entity's (IANA): its monitors' days are calendar days there

    def as_dict(self) -> dict[str, Any]:
        return {**self.definition.model_dump(mode="json", exclude_none=True), "created_at": self.created_at.isoformat()}


def add_monitor(session: Session, entity_id: int, definition: MonitorDefinition) -> int:
    """Store a new monitor (its definition as given); :class:`MonitorExists` when the name is taken."""
    taken = session.scalar(select(Monitor.id).where(Monitor.entity_id == entity_id, Monitor.name == definition.name))
    if taken is not None:
        raise MonitorExists(f"monitor {definition.name!r} exists")
    row = Monitor(
        entity_id=entity_id,
        name=definition.name,
        source=definition.source,
        definition=definition.model_dump(mode="json", exclude_none=True),
    )
    session.add(row)
    session.flush()
    return row.id


def _query() -> Any:
    return select(Monitor, LegalEntity.entity_ref, LegalEntity.timezone).join(
        LegalEntity, LegalEntity.id == Monitor.entity_id
    )


def _stored(row: Monitor, entity_ref: str, timezone: str) -> StoredMonitor:
    definition = MonitorDefinition.model_validate(row.definition)
    return StoredMonitor(row.id, row.entity_id, entity_ref, row.name, definition, row.created_at, timezone)


def list_monitors(
    session: Session, entity_ids: Sequence[int] | None = None, name: str | None = None
) -> list[StoredMonitor]:
    """Monitors by entity and name, of the given entities (None: all), optionally one name."""
    query = _query().order_by(LegalEntity.entity_ref, Monitor.name)
    if entity_ids is not None:
        query = query.where(Monitor.entity_id.in_(list(entity_ids)))
    if name is not None:
        query = query.where(Monitor.name == name)
    return [_stored(row, ref, zone) for row, ref, zone in session.execute(query)]


def remove_monitor(session: Session, monitor_id: int) -> None:
    """A monitor with its values and alerts (alerts already announced stay in the outbox)."""
    session.execute(delete(MonitorAlert).where(MonitorAlert.monitor_id == monitor_id))
    session.execute(delete(MonitorValue).where(MonitorValue.monitor_id == monitor_id))
    session.execute(delete(Monitor).where(Monitor.id == monitor_id))


def scope_contracts(
    session: Session,
    entity_id: int,
    *,
    contract_ref: str | None = None,
    customer_id: int | None = None,
    after_id: int = 0,
    limit: int = 1000,
) -> list[int]:
    """Contract ids a contract monitor covers, in id order after ``after_id`` (keyset paging)."""
    query = select(Contract.id).where(Contract.entity_id == entity_id, Contract.id > after_id)
    if contract_ref is not None:
        query = query.where(Contract.contract_ref == contract_ref)
    if customer_id is not None:
        query = query.where(Contract.customer_id == customer_id)
    return list(session.scalars(query.order_by(Contract.id).limit(limit)))


def scope_customers(
    session: Session, entity_id: int, *, customer_id: int | None = None, after_id: int = 0, limit: int = 1000
) -> list[int]:
    """Customer ids of an entity in id order after ``after_id`` (or just the one)."""
    query = select(Customer.id).where(Customer.entity_id == entity_id, Customer.id > after_id)
    if customer_id is not None:
        query = query.where(Customer.id == customer_id)
    return list(session.scalars(query.order_by(Customer.id).limit(limit)))


def customer_id(session: Session, entity_id: int, customer_ref: str) -> int | None:
    return session.scalar(
        select(Customer.id).where(Customer.entity_id == entity_id, Customer.customer_ref == customer_ref)
    )


def customers(session: Session, ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """id -> (customer_ref, name)."""
    rows = session.execute(select(Customer.id, Customer.customer_ref, Customer.name).where(Customer.id.in_(list(ids))))
    return {cid: (ref, name) for cid, ref, name in rows}


def usage_products(session: Session, entity_id: int) -> list[str]:
    """The product_refs the entity's contracts bill as usage (any version), for defining monitors."""
    rows = session.scalars(
        select(Product.product_ref)
        .join(ContractLine, ContractLine.product_id == Product.id)
        .join(ContractVersion, ContractVersion.id == ContractLine.version_id)
        .join(Contract, Contract.id == ContractVersion.contract_id)
        .where(Contract.entity_id == entity_id, ContractLine.charge == "usage")
        .distinct()
    )
    return sorted(rows)


def invoice_facts(session: Session, contract_ids: Sequence[int], until: date) -> dict[int, list[InvoiceFact]]:
    """The contracts' invoices and credit notes dated up to ``until`` and not voided."""
    out: dict[int, list[InvoiceFact]] = defaultdict(list)
    rows = session.execute(
        select(Invoice.contract_id, Invoice.billing_date, Invoice.invoice_total).where(
            Invoice.contract_id.in_(list(contract_ids)), Invoice.status != "void", Invoice.billing_date <= until
        )
    )
    for contract_id, billing_date, total in rows:
        out[contract_id].append(InvoiceFact(billing_date, total))
    return dict(out)


def write_values(session: Session, monitor_id: int, values: dict[tuple[int, date], str | None]) -> int:
    """Keep ``(customer id, day) -> value`` (None: no value that day, a row kept before is removed);
    only new, changed and removed rows are written. Returns how many."""
    if not values:
        return 0
    customer_ids = {c for c, _ in values}
    days = {d for _, d in values}
    present = {  # a range of the primary key (a chunk's customers are in id order), not an IN list
        (c, d): v
        for c, d, v in session.execute(
            select(MonitorValue.customer_id, MonitorValue.day, MonitorValue.value).where(
                MonitorValue.monitor_id == monitor_id,
                MonitorValue.customer_id.between(min(customer_ids), max(customer_ids)),
                MonitorValue.day >= min(days),
                MonitorValue.day <= max(days),
            )
        )
        if c in customer_ids
    }
    now = utcnow()
    rows = [
        {"monitor_id": monitor_id, "customer_id": c, "day": d, "value": v, "computed_at": now}
        for (c, d), v in values.items()
        if v is not None and present.get((c, d)) != v
    ]
    gone = [(c, d) for (c, d), v in values.items() if v is None and (c, d) in present]
    for c, d in gone:
        session.execute(
            delete(MonitorValue).where(
                MonitorValue.monitor_id == monitor_id, MonitorValue.customer_id == c, MonitorValue.day == d
            )
        )
    if rows:
        statement = _INSERT[session.get_bind().dialect.name](_VALUES)
        statement = statement.on_conflict_do_update(
            index_elements=["monitor_id", "customer_id", "day"],
            set_={"value": statement.excluded.value, "computed_at": statement.excluded.computed_at},
        )
        session.execute(statement, rows)
    return len(rows) + len(gone)


def seen_before(session: Session, monitor_id: int, customer_ids: Sequence[int], day: date) -> set[int]:
    """The customers the monitor has a value for on some day before ``day``."""
    rows = session.scalars(
        select(MonitorValue.customer_id)
        .where(
            MonitorValue.monitor_id == monitor_id,
            MonitorValue.customer_id.in_(list(customer_ids)),
            MonitorValue.day < day,
        )
        .distinct()
    )
    return set(rows)


def insert_alert(
    session: Session,
    monitor_id: int,
    customer_id: int,
    condition_key: str,
    day: date,
    value: str,
    increment: str | None,
) -> int | None:
    """The alert's id when it is new; None when that crossing was alerted already."""
    statement = (
        _INSERT[session.get_bind().dialect.name](_ALERTS)
        .values(
            monitor_id=monitor_id,
            customer_id=customer_id,
            condition_key=condition_key,
            day=day,
            value=value,
            increment=increment,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing()
        .returning(_ALERTS.c.id)
    )
    return session.execute(statement).scalar()


def values_on(
    session: Session, monitor_id: int, first: date, last: date, customer_ids: Sequence[int] | None = None
) -> dict[int, dict[date, str]]:
    """customer id -> day -> value, for the days from ``first`` to ``last``."""
    query = select(MonitorValue.customer_id, MonitorValue.day, MonitorValue.value).where(
        MonitorValue.monitor_id == monitor_id, MonitorValue.day >= first, MonitorValue.day <= last
    )
    if customer_ids is not None:
        query = query.where(MonitorValue.customer_id.in_(list(customer_ids)))
    out: dict[int, dict[date, str]] = defaultdict(dict)
    for c, d, v in session.execute(query):
        out[c][d] = v
    return dict(out)


def alerts(session: Session, monitor_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """The monitor's latest alerts, newest first."""
    rows = session.execute(
        select(MonitorAlert, Customer.customer_ref)
        .join(Customer, Customer.id == MonitorAlert.customer_id)
        .where(MonitorAlert.monitor_id == monitor_id)
        .order_by(MonitorAlert.day.desc(), MonitorAlert.id.desc())
        .limit(limit)
    )
    return [
        {
            "day": a.day.isoformat(),
            "customer_ref": ref,
            "condition": a.condition_key,
            "value": a.value,
            "increment": a.increment,
        }
        for a, ref in rows
    ]
