"""Usage events: storing them with their per-day rollups (idempotently, for the usage API), finding
where they are billed, and report rows. Reading the billing aggregates: ``usage_aggregates``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from billbridge.billing.usage_billing_dates import VersionTerms
from billbridge.billing.usage_periods import from_micros, to_micros
from billbridge.store.bulk import BulkStatement
from billbridge.store.models import (
    Contract,
    ContractLine,
    ContractVersion,
    Customer,
    Invoice,
    InvoiceLine,
    Product,
    UsageDaily,
    UsageEvent,
    table_of,
)

_DAILY = table_of(UsageDaily)
_EVENTS = table_of(UsageEvent)


SPLIT = 10**12
"""A day's total is kept as ``total_millions`` x SPLIT + ``total_micros`` micro-units, with
0 <= total_micros < SPLIT (a million units), in two BIGINTs. One BIGINT of micro-units overflows
at 9.2 x 10^12 units, 9,224 maximal events a day: PostgreSQL then refused the write, SQLite turned
the sum into a float. Split, a day holds 9.2 x 10^24 units, and a period's SUM of either column
stays within 64 bits for any number of days. Integer arithmetic on both backends, so exact."""
_SPLIT = literal_column(str(SPLIT), BigInteger)  # inline: no parameter for BulkStatement to fill


def split_total(micros: int) -> tuple[int, int]:
    """(total_millions, total_micros) of a total in micro-units."""
    return divmod(micros, SPLIT)


def joined_total(millions: int | Decimal | None, micros: int | Decimal | None) -> int:
    """A total in micro-units from its two columns (or their SUMs: PostgreSQL sums BIGINTs as numeric)."""
    return int(millions or 0) * SPLIT + int(micros or 0)


def _upsert_daily(dialect: str) -> Any:
    """Add a batch's figures to the day rows: integer arithmetic, exact on both backends."""
    return _adding_to_day((postgresql.insert if dialect == "postgresql" else sqlite.insert)(_DAILY))


def _adding_to_day(statement: Any) -> Any:
    """An insert of day rows that adds to the row already there (the same keys, the same sums),
    carrying whole millions of units from total_micros into total_millions (see SPLIT)."""
    new = statement.excluded
    micros = _DAILY.c.total_micros + new.total_micros  # below 2 x SPLIT: no overflow
    return statement.on_conflict_do_update(
        index_elements=[_DAILY.c.customer_id, _DAILY.c.product_id, _DAILY.c.day],
        set_={
            "total_micros": micros % _SPLIT,
            "total_millions": _DAILY.c.total_millions + new.total_millions + micros // _SPLIT,
            "peak_micros": case((new.peak_micros > _DAILY.c.peak_micros, new.peak_micros), else_=_DAILY.c.peak_micros),
            "events": _DAILY.c.events + new.events,
        },
    )


_UPSERT_DAILY = {dialect: _upsert_daily(dialect) for dialect in ("postgresql", "sqlite")}


def as_stored_timestamp(stamp: datetime) -> datetime:
    """Timestamps are stored as naive UTC, so a day boundary is the same on every backend."""
    return stamp.astimezone(timezone.utc).replace(tzinfo=None) if stamp.tzinfo else stamp


def event_row(row: dict[str, Any]) -> dict[str, Any]:
    """A validated event as stored: UTC timestamp and the quantity's integer micro-units added."""
    return {**row, "timestamp": as_stored_timestamp(row["timestamp"]), "quantity_micros": to_micros(row["quantity"])}


def add_to_daily(session: Session | Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Fold newly stored events (as ``event_row`` made them) into the per-day rollups.

    Call it in the transaction that stored them, with exactly the rows that were inserted (not the
    replays a conflict skipped). Keys go in sorted order so concurrent writers never deadlock.
    """
    days: dict[tuple[int, int, date], list[int]] = defaultdict(list)
    for row in rows:
        days[(row["customer_id"], row["product_id"], row["timestamp"].date())].append(row["quantity_micros"])
    if not days:
        return
    connection = session if isinstance(session, Connection) else session.connection()
    statement = _UPSERT_DAILY[connection.dialect.name]
    params = [
        dict(
            zip(("total_millions", "total_micros"), split_total(sum(micros)), strict=True),
            customer_id=customer_id,
            product_id=product_id,
            day=day,
            peak_micros=max(micros),
            events=len(micros),
        )
        for (customer_id, product_id, day), micros in sorted(days.items())
    ]
    BulkStatement.of(statement, connection, tuple(params[0])).run_many(
        connection, params
    )  # Core's work per row skipped


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert of already validated, new events (event_ref, entity_id, customer_id, product_id,
    timestamp, quantity, optional properties), with their rollups."""
    if rows:
        stored = [event_row(row) for row in rows]
        session.execute(insert(UsageEvent), stored)
        add_to_daily(session, stored)


@dataclass(frozen=True)
class Document:
    """A document that bills a contract on a date: its number, when it was created, and the contract
    its header names (its document ref's; another contract's on a reseller's invoice)."""

    number: str
    created_at: datetime
    header_ref: str


@dataclass(frozen=True)
class StoredEvent:
    """An event already in the store, as an idempotent replay needs it."""

    event_ref: str
    idempotency_key: str | None
    customer_id: int
    product_id: int
    timestamp: datetime
    quantity: Decimal
    properties: dict[str, Any] | None  # additional_report_data as stored
    received_at: datetime


def _utc(stamp: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    return stamp.replace(tzinfo=timezone.utc) if stamp.tzinfo is None else stamp.astimezone(timezone.utc)


# Statements of the ingest hot path, built once (building a statement costs more than running it).
_BY_KEYS = select(
    _EVENTS.c.event_ref,
    _EVENTS.c.idempotency_key,
    _EVENTS.c.customer_id,
    _EVENTS.c.product_id,
    _EVENTS.c.timestamp,
    _EVENTS.c.quantity,
    _EVENTS.c.properties,
    _EVENTS.c.received_at,
).where(_EVENTS.c.idempotency_key.in_(bindparam("keys", expanding=True)))
_INSERT_NEW = {
    "postgresql": postgresql.insert(_EVENTS).on_conflict_do_nothing().returning(_EVENTS.c.event_ref),
    "sqlite": sqlite.insert(_EVENTS).on_conflict_do_nothing().returning(_EVENTS.c.event_ref),
}
_INSERT_NEW_PLAIN = {
    "postgresql": postgresql.insert(_EVENTS).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(_EVENTS).on_conflict_do_nothing(),
}
_PRESENT = select(_EVENTS.c.event_ref).where(_EVENTS.c.event_ref.in_(bindparam("refs", expanding=True)))
_INVOICES = table_of(Invoice)
_STAMP = select(func.coalesce(func.max(table_of(ContractVersion).c.id), 0))
# The documents that bill: a draft voided before it was issued gave its period (and date) to its replacement.
_CONTRACTS = table_of(Contract)
_LINES = table_of(InvoiceLine)


def _documents_of(header_clause: Any, line_clause: Any, since: Any, since_lines: Any) -> Any:
    """The documents billing contracts from a date: those a contract heads, and those that bill it on
    lines under another contract's header (a reseller's invoice, one per reseller and cycle, names its
    first contract): (contract id, billing date, number, created at, the header's contract ref)."""
    headed = (
        select(
            _INVOICES.c.contract_id,
            _INVOICES.c.billing_date,
            _INVOICES.c.number,
            _INVOICES.c.created_at,
            _CONTRACTS.c.contract_ref,
        )
        .join(_CONTRACTS, _CONTRACTS.c.id == _INVOICES.c.contract_id)
        .where(header_clause, _INVOICES.c.billing_date >= since, _INVOICES.c.period_released.is_(False))
    )
    on_lines = (
        select(
            _LINES.c.contract_id,
            _INVOICES.c.billing_date,
            _INVOICES.c.number,
            _INVOICES.c.created_at,
            _CONTRACTS.c.contract_ref,
        )
        .select_from(_LINES)
        .join(_INVOICES, _INVOICES.c.id == _LINES.c.invoice_id)
        .join(_CONTRACTS, _CONTRACTS.c.id == _INVOICES.c.contract_id)
        .where(
            line_clause,
            _INVOICES.c.contract_id != _LINES.c.contract_id,
            _INVOICES.c.billing_date >= since_lines,
            _INVOICES.c.period_released.is_(False),
        )
    )
    return union_all(headed, on_lines)


_DOCUMENTS_OF_ONE = _documents_of(
    _INVOICES.c.contract_id == bindparam("id"),
    _LINES.c.contract_id == bindparam("line_id"),
    bindparam("since"),
    bindparam("line_since"),
)
_DOCUMENTS = _documents_of(
    _INVOICES.c.contract_id.in_(bindparam("ids", expanding=True)),
    _LINES.c.contract_id.in_(bindparam("line_ids", expanding=True)),
    bindparam("since"),
    bindparam("line_since"),
)


def events_by_key(connection: Connection, keys: Iterable[str]) -> dict[str, StoredEvent]:
    """Stored events by idempotency key."""
    keys = list(set(keys))
    if not keys:
        return {}
    rows = connection.execute(_BY_KEYS, {"keys": keys})
    return {
        key: StoredEvent(ref, key, customer_id, product_id, _utc(timestamp), quantity, properties, _utc(created_at))
        for ref, key, customer_id, product_id, timestamp, quantity, properties, created_at in rows
    }


def _one_event_with_its_day() -> Any:
    """PostgreSQL: ``WITH inserted AS (INSERT INTO usage_events ... ON CONFLICT DO NOTHING RETURNING
    ...) INSERT INTO usage_daily SELECT ... FROM inserted ON CONFLICT DO UPDATE ... RETURNING``.

    One statement is atomic on its own, so on an autocommit connection one event and its day row
    cost one round trip instead of four (BEGIN, two inserts, COMMIT). The day row changes only
    when the event was inserted; a row comes back exactly then."""
    inserted = (
        postgresql.insert(_EVENTS)
        .values({c.name: bindparam(c.name, type_=c.type) for c in _EVENTS.c if c.name != "id"})
        .on_conflict_do_nothing()
        .returning(_EVENTS.c.customer_id, _EVENTS.c.product_id, _EVENTS.c.quantity_micros)
        .cte("inserted")
    )
    day = select(
        inserted.c.customer_id,
        inserted.c.product_id,
        bindparam("day", type_=_DAILY.c.day.type),
        inserted.c.quantity_micros // _SPLIT,
        inserted.c.quantity_micros % _SPLIT,
        inserted.c.quantity_micros,
        literal_column("1", BigInteger),
    )
    columns = ["customer_id", "product_id", "day", "total_millions", "total_micros", "peak_micros", "events"]
    statement = postgresql.insert(_DAILY).from_select(columns, day)
    return _adding_to_day(statement).add_cte(inserted).returning(_DAILY.c.events)


_ONE_EVENT_WITH_ITS_DAY = _one_event_with_its_day()


def insert_event_with_its_day(connection: Connection, row: dict[str, Any]) -> bool:
    """Store one event (as ``event_row`` made it) unless its event_ref or idempotency key is
    taken, and add it to its day row, in one statement (PostgreSQL only: SQLite has no
    data-modifying WITH). True when it was inserted."""
    params = {**row, "day": row["timestamp"].date()}
    return bool(BulkStatement.of(_ONE_EVENT_WITH_ITS_DAY, connection, tuple(params)).run(connection, params))


def insert_new_events(connection: Connection, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert events in one statement, skipping any whose event_ref or idempotency key is taken
    (a concurrent replay); returns the event_refs actually inserted."""
    if not rows:
        return set()
    dialect = connection.dialect.name
    if len(rows) == 1:
        statement = _INSERT_NEW[dialect]
        return {row[0] for row in BulkStatement.of(statement, connection, tuple(rows[0])).run(connection, rows[0])}
    # Many rows: a plain executemany (pipelined by psycopg) without RETURNING. Event refs are fresh
    # UUIDs, so when the row count falls short, the refs now present are the rows inserted.
    inserted = BulkStatement.of(_INSERT_NEW_PLAIN[dialect], connection, tuple(rows[0])).run_many(connection, rows)
    refs = [row["event_ref"] for row in rows]
    if inserted == len(rows):
        return set(refs)
    return set(connection.execute(_PRESENT, {"refs": refs}).scalars())


@dataclass(frozen=True)
class UsageContract:
    """A contract that bills a customer's usage of a product, with its versions' terms."""

    contract_id: int
    contract_ref: str
    versions: tuple[VersionTerms, ...]


_VERSIONS = table_of(ContractVersion)
_LINES = table_of(ContractLine)
_CONTRACTS = table_of(Contract)
_OTHER_BILLER = _VERSIONS.alias("other_biller")
_USAGE_TERMS = (
    select(
        _CONTRACTS.c.id,
        _CONTRACTS.c.contract_ref,
        _CONTRACTS.c.customer_id,
        _VERSIONS.c.version_no,
        _VERSIONS.c.effective_date,
        _VERSIONS.c.contract_start_date,
        _VERSIONS.c.contract_end_date,
        _VERSIONS.c.cycle_length,
        _VERSIONS.c.cycle_unit,
        _VERSIONS.c.cycle_start_date,
        _LINES.c.product_id,
        _LINES.c.start_date,
        _LINES.c.end_date,
    )
    .join(_VERSIONS, _VERSIONS.c.contract_id == _CONTRACTS.c.id)
    .outerjoin(_LINES, (_LINES.c.version_id == _VERSIONS.c.id) & (_LINES.c.charge == "usage"))
    .where(
        _CONTRACTS.c.customer_id.in_(bindparam("customers", expanding=True)),
        # Usage of a contract another system invoices (a Stripe subscription) is on no billbridge document.
        ~exists().where(_OTHER_BILLER.c.contract_id == _CONTRACTS.c.id, _OTHER_BILLER.c.billed_by != "billbridge"),
    )
    .order_by(_CONTRACTS.c.id, _VERSIONS.c.version_no)
)


def usage_contracts(connection: Connection, customer_ids: Iterable[int]) -> dict[int, dict[int, list[UsageContract]]]:
    """customer id -> usage product id -> the customer's contracts with a ``charge: usage`` line on
    that product (in any version), in contract id order. One query for all the customers."""
    customers = list(set(customer_ids))
    out: dict[int, dict[int, list[UsageContract]]] = {c: {} for c in customers}
    if not customers:
        return out
    heads: dict[int, tuple[str, int]] = {}
    versions: dict[int, dict[int, VersionTerms]] = defaultdict(dict)
    lines: dict[tuple[int, int, int], list[tuple[date | None, date | None]]] = defaultdict(list)
    products_of: dict[int, set[int]] = defaultdict(set)
    for (
        contract_id,
        contract_ref,
        customer_id,
        version_no,
        effective_date,
        start_date,
        end_date,
        cycle_length,
        cycle_unit,
        anchor,
        product_id,
        line_start,
        line_end,
    ) in connection.execute(_USAGE_TERMS, {"customers": customers}):
        heads[contract_id] = (contract_ref, customer_id)
        versions[contract_id][version_no] = VersionTerms(
            version_no=version_no,
            effective_date=effective_date,
            contract_start_date=start_date,
            contract_end_date=end_date,
            cycle_length=cycle_length,
            cycle_unit=cycle_unit,
            anchor=anchor,
            usage_lines=(),
        )
        if product_id is not None:
            lines[(contract_id, product_id, version_no)].append((line_start, line_end))
            products_of[contract_id].add(product_id)
    for contract_id in sorted(products_of):
        contract_ref, customer_id = heads[contract_id]
        for product_id in sorted(products_of[contract_id]):
            terms = tuple(
                replace(v, usage_lines=tuple(lines.get((contract_id, product_id, v.version_no), ())))
                for v in versions[contract_id].values()
            )
            out[customer_id].setdefault(product_id, []).append(UsageContract(contract_id, contract_ref, terms))
    return out


_CUSTOMERS = table_of(Customer)
_PRODUCTS = table_of(Product)
_CUSTOMERS_BY_REF = select(_CUSTOMERS.c.customer_ref, _CUSTOMERS.c.id, _CUSTOMERS.c.entity_id).where(
    _CUSTOMERS.c.customer_ref.in_(bindparam("refs", expanding=True))
)
_PRODUCTS_BY_REF = select(_PRODUCTS.c.product_ref, _PRODUCTS.c.id).where(
    _PRODUCTS.c.product_ref.in_(bindparam("refs", expanding=True))
)


def customers_by_ref(connection: Connection, refs: Iterable[str]) -> dict[str, tuple[int, int]]:
    """customer_ref -> (customer id, entity id)."""
    refs = list(set(refs))
    found = connection.execute(_CUSTOMERS_BY_REF, {"refs": refs}) if refs else ()
    return {r.customer_ref: (r.id, r.entity_id) for r in found}


def products_by_ref(connection: Connection, refs: Iterable[str]) -> dict[str, int]:
    refs = list(set(refs))
    return {r.product_ref: r.id for r in connection.execute(_PRODUCTS_BY_REF, {"refs": refs})} if refs else {}


def contracts_stamp(connection: Connection) -> int:
    """Changes whenever any contract gets a version (terms are only ever added as new versions)."""
    return int(connection.execute(_STAMP).scalar_one())


def documents_from(connection: Connection, contract_ids: Iterable[int], since: date) -> dict[int, dict[date, Document]]:
    """contract id -> billing date -> the document billing it then, for documents dated ``since`` or
    later: the contract's own, or the one billing it on lines under another contract's header (a
    reseller's invoice); of two, the first created (it invoiced the period)."""
    ids = list(set(contract_ids))
    out: dict[int, dict[date, Document]] = {cid: {} for cid in ids}
    if ids:
        rows: Iterable[Any] = (
            BulkStatement.of(_DOCUMENTS_OF_ONE, connection, ("id", "line_id", "since", "line_since")).run(
                connection, {"id": ids[0], "line_id": ids[0], "since": since, "line_since": since}
            )
            if len(ids) == 1
            else connection.execute(_DOCUMENTS, {"ids": ids, "line_ids": ids, "since": since, "line_since": since})
        )
        for contract_id, billing_date, number, created_at, header_ref in rows:
            found = Document(number, _utc(created_at), header_ref)
            known = out[contract_id].get(billing_date)
            if known is None or found.created_at < known.created_at:
                out[contract_id][billing_date] = found
    return out


def report_rows(
    session: Session,
    entity_id: int,
    *,
    customer_ref: str | None = None,
    product_ref: str | None = None,
    start: date | None = None,
    end: date | None = None,
) -> list[tuple[str, str, date, Decimal, int]]:
    """(customer_ref, product_ref, UTC day, sum of quantities, events) of an entity's usage on the
    days in [start, end), from the per-day rollups: a report over millions of events reads one row
    per customer, product and day."""
    query = (
        select(
            Customer.customer_ref,
            Product.product_ref,
            UsageDaily.day,
            UsageDaily.total_millions,
            UsageDaily.total_micros,
            UsageDaily.events,
        )
        .join(Customer, Customer.id == UsageDaily.customer_id)
        .join(Product, Product.id == UsageDaily.product_id)
        .where(Customer.entity_id == entity_id)
    )
    if customer_ref is not None:
        query = query.where(Customer.customer_ref == customer_ref)
    if product_ref is not None:
        query = query.where(Product.product_ref == product_ref)
    if start is not None:
        query = query.where(UsageDaily.day >= start)
    if end is not None:
        query = query.where(UsageDaily.day < end)
    return [
        (c, p, day, from_micros(joined_total(millions, micros)), int(n))
        for c, p, day, millions, micros, n in session.execute(query)
    ]
