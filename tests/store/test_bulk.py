"""store/bulk.py on both backends: IN lists of any length, Core's conversions both ways, values
shared by a batch converted once but stored like any other, what reaches the driver the same as what
Core sends it, and the multi-row VALUES path storing what Core stores."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, event, insert, select, update

from billbridge.store import bulk
from billbridge.store.bulk import BulkStatement
from billbridge.store.db import Store
from billbridge.store.models import Payment, table_of

PAYMENTS = table_of(Payment)
INSERT = insert(PAYMENTS)
SET_AMOUNT = (
    update(PAYMENTS)
    .where(PAYMENTS.c.payment_ref == bindparam("ref"))
    .values(amount=bindparam("new"), created_at=bindparam("at"))
)
BY_REFS = select(PAYMENTS.c.payment_ref, PAYMENTS.c.amount, PAYMENTS.c.received_on).where(
    PAYMENTS.c.payment_ref.in_(bindparam("refs", expanding=True)), PAYMENTS.c.currency == bindparam("currency")
)


def row(i: int, created_at: datetime, amount: Decimal) -> dict[str, Any]:
    return {
        "payment_ref": f"p{i}",
        "customer_id": None,
        "currency": "KWD" if i % 2 else "USD",
        "amount": amount,
        "unapplied_amount": amount,
        "received_on": date(2026, 1, 1) + timedelta(days=i),
        "method": None,
        "reference": None,
        "created_at": created_at,
    }


def test_in_lists_of_each_length_and_money_back_exactly(store: Store) -> None:
    t0 = datetime(2026, 1, 1, 9, 0, 0, 123456)
    rows = [row(i, t0, Decimal(f"{i}.{i:03d}")) for i in range(12)]
    with store.write_connection() as connection:
        BulkStatement.of(INSERT, connection, tuple(rows[0])).run_many(connection, rows)
    with store.write_connection() as connection:
        statement = BulkStatement.of(BY_REFS, connection, ("refs", "currency"))
        for refs in (["p1"], ["p1", "p2", "p3", "nope"], [f"p{i}" for i in range(12)], ["p5", "p7"]):
            found = statement.run(connection, {"currency": "KWD", "refs": refs})
            expected = [(r["payment_ref"], r["amount"], r["received_on"]) for r in rows if r["currency"] == "KWD"]
            assert sorted(found) == sorted(e for e in expected if e[0] in refs)
            assert all(isinstance(amount, Decimal) for _, amount, _ in found)
        with pytest.raises(ValueError, match="empty"):
            statement.run(connection, {"currency": "KWD", "refs": []})


def test_a_value_shared_by_the_batch_is_stored_like_the_others(store: Store) -> None:
    """The first and last rows share one timestamp object (converted once); the rows between
    carry others, which must not take the shared one's converted value."""
    shared, other = datetime(2026, 3, 1, 12, 0, 0, 1), datetime(2026, 3, 2, 8, 30)
    zero = Decimal("0.000")
    rows = [row(0, shared, zero), row(1, other, Decimal("1.5")), row(2, shared, zero), row(3, other, zero)]
    rows.append(row(4, shared, zero))
    with store.write_connection() as connection:
        assert BulkStatement.of(INSERT, connection, tuple(rows[0])).run_many(connection, rows) == len(rows)
    with store.read() as session:
        stored = session.execute(select(Payment.created_at, Payment.amount).order_by(Payment.payment_ref)).all()
    assert [(c.replace(tzinfo=None), a) for c, a in stored] == [(r["created_at"], r["amount"]) for r in rows]


# What reaches the driver: BulkStatement against Core itself, per dialect. If SQLAlchemy changes
# its compiled text, placeholders or conversions underneath, these fail and name the statement.


class DriverCalls:
    """The (statement, parameters) Core hands the DBAPI cursor, as its cursor-execute event sees them."""

    def __init__(self, connection: Connection) -> None:
        self.calls: list[tuple[str, Any]] = []
        event.listen(connection, "before_cursor_execute", self._seen)
        self.connection = connection

    def _seen(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        self.calls.append((statement, parameters))

    def stop(self) -> None:
        event.remove(self.connection, "before_cursor_execute", self._seen)


def as_lists(parameters: Any) -> Any:
    """Parameters with tuples as lists (sqlite3 takes either; Core passes tuples)."""
    if isinstance(parameters, tuple | list):
        return [as_lists(p) for p in parameters]
    if isinstance(parameters, dict):
        return {k: as_lists(v) for k, v in parameters.items()}
    return parameters


def core_call(connection: Connection, statement: Any, params: Any) -> tuple[str, Any]:
    """What Core sends the driver for ``statement`` with ``params`` (a dict, or a list: executemany),
    inside a savepoint rolled back, so the data stays as it was."""
    watcher = DriverCalls(connection)
    savepoint = connection.begin_nested()
    try:
        connection.execute(statement, params)
    finally:
        watcher.stop()
        savepoint.rollback()
    calls = [c for c in watcher.calls if not c[0].startswith(("SAVEPOINT", "RELEASE", "ROLLBACK"))]
    assert len(calls) == 1, calls
    return calls[0]


def test_what_reaches_the_driver_is_what_core_sends(store: Store) -> None:
    t0 = datetime(2026, 1, 1, 9, 0, 0, 123456)
    rows = [row(i, t0, Decimal(f"{i}.{i:03d}")) for i in range(5)]
    keys = tuple(rows[0])
    with store.write_connection() as connection:
        mine = BulkStatement.of(INSERT, connection, keys)
        core_sql, core_params = core_call(connection, INSERT, rows)
        assert (mine.sql, as_lists(mine.driver_rows(rows))) == (core_sql, as_lists(core_params)), "INSERT payments"
        mine.run_many(connection, rows)
        for refs in (["p1"], ["p1", "p2", "p3"]):
            params = {"refs": refs, "currency": "KWD"}
            statement = BulkStatement.of(BY_REFS, connection, ("refs", "currency"))
            sql, arguments = statement.driver_call(params)
            assert (sql, as_lists(arguments)) == tuple(as_lists(core_call(connection, BY_REFS, params))), "IN list"
        update = SET_AMOUNT
        changes = [{"ref": r["payment_ref"], "new": r["amount"] * 2, "at": t0} for r in rows]
        mine_update = BulkStatement.of(update, connection, ("ref", "new", "at"))
        core_sql, core_params = core_call(connection, update, changes)
        assert (mine_update.sql, as_lists(mine_update.driver_rows(changes))) == (core_sql, as_lists(core_params))


def test_insert_values_stores_what_core_stores(store: Store) -> None:
    """The multi-row VALUES path (PostgreSQL; executemany on SQLite) against Core's own insert of
    the same rows: every column alike, in chunks of VALUES_ROWS and a remainder."""
    t0 = datetime(2026, 1, 1, 9, 0, 0, 123456)
    count = bulk.VALUES_ROWS + 7
    mine = [row(i, t0, Decimal(f"{i % 50}.{i % 1000:03d}")) for i in range(count)]
    core = [{**r, "payment_ref": f"core-{r['payment_ref']}"} for r in mine]
    with store.write_connection() as connection:
        assert BulkStatement.of(INSERT, connection, tuple(mine[0])).insert_values(connection, mine) == count
        connection.execute(INSERT, core)
    columns = [c for c in PAYMENTS.c if c.name not in ("id", "payment_ref")]
    with store.read() as session:
        stored = {r.payment_ref: tuple(r[1:]) for r in session.execute(select(PAYMENTS.c.payment_ref, *columns))}
    assert len(stored) == 2 * count
    assert all(stored[r["payment_ref"]] == stored[f"core-{r['payment_ref']}"] for r in mine)


def test_insert_values_refuses_what_it_cannot_rewrite(store: Store) -> None:
    with store.write_connection() as connection:
        if connection.dialect.name != "postgresql":
            pytest.skip("SQLite inserts by executemany")
        returning = BulkStatement.of(
            INSERT.returning(PAYMENTS.c.id), connection, tuple(row(0, datetime(2026, 1, 1), Decimal(1)))
        )
        with pytest.raises(NotImplementedError, match="plain INSERT"):
            returning.insert_values(connection, [row(0, datetime(2026, 1, 1), Decimal(1))])


def test_repeated_days_are_converted_as_each_day_alone_would_be(store: Store) -> None:
    """Date columns convert each distinct day once (a schedule repeats a few months over many rows): each
    row still gets its own day's conversion, by SQLAlchemy's own processor, for days repeating out of order."""
    from billbridge.store.revenue_models import RevenueScheduleRow

    statement = insert(table_of(RevenueScheduleRow))
    months = [date(2026, m, 1) for m in (1, 2, 1, 3, 2, 12, 1)]
    rows = [
        {
            "contract_id": 1,
            "line_ref": f"l{n}",
            "booked_month": date(2025, 12, 1) if n % 2 else date(2026, 1, 1),
            "month": month,
            "entity_id": 1,
            "currency": "USD",
            "billed": Decimal("1.00"),
            "recognised": Decimal(n),
            "catch_up": Decimal(0),
        }
        for n, month in enumerate(months)
    ]
    with store.write_connection() as connection:
        mine = BulkStatement.of(statement, connection, tuple(rows[0]))
        sent = mine.driver_rows(rows)
    dialect = store.engine.dialect

    def alone(key: str, value: Any) -> Any:
        p = bulk.bind_processor(table_of(RevenueScheduleRow).c[key].type, dialect)
        return p(value) if p else value

    for key in ("month", "booked_month"):
        got = [r[mine.names.index(key)] for r in sent] if mine.names is not None else [r[key] for r in sent]
        assert got == [alone(key, r[key]) for r in rows], key
