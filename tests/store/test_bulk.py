"""store/bulk.py on both backends: IN lists of any length, Core's conversions both ways, values
shared by a batch converted once but stored like any other, what reaches the driver the same as what
Core sends it, the multi-row VALUES path storing what Core stores, and write_rows (rows read from
arrays on PostgreSQL) writing exactly what it is given."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, event, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from billbridge.store import bulk
from billbridge.store.bulk import BulkStatement
from billbridge.store.db import Store
from billbridge.store.models import Customer, LegalEntity, OutboxMessage, Payment, table_of
from billbridge.store.outbox import _ENQUEUE_KEYS

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


def test_in_lists_of_nearby_lengths_are_rendered_once_and_find_the_same_rows(store: Store) -> None:
    """A billing run's chunks of reseller contracts (kept together) each have another length: lists
    within an eighth of each other share one text, padded with their last value, which is found once."""
    t0 = datetime(2026, 1, 1, 9, 0, 0)
    rows = [row(i, t0, Decimal(i)) for i in range(6)]
    with store.write_connection() as connection:
        BulkStatement.of(INSERT, connection, tuple(rows[0])).run_many(connection, rows)
    with store.read() as session:
        connection = session.connection()
        statement = BulkStatement.of(BY_REFS, connection, ("refs", "currency"))
        texts = set()
        for length in (972, 1000, 1024):
            refs = [f"none{i}" for i in range(length - 3)] + ["p1", "p2", "p3"]
            params = {"currency": "KWD", "refs": refs}
            texts.add(statement.driver_call(params)[0])
            found = statement.run(connection, params)
            assert sorted(ref for ref, _, _ in found) == ["p1", "p3"], length
        assert len(texts) == 1
        assert [bulk.in_list_length(n) for n in (1, 3, 16, 17, 972, 1000, 1025)] == [1, 3, 16, 18, 1024, 1024, 1152]


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


def test_rows_shaped_from_their_values_are_what_core_sends(store: Store) -> None:
    """``shaped`` (rows as lists of values, converted a column at a time: a billing run's invoice lines)
    hands the driver what Core does for the same rows as dicts."""
    t0 = datetime(2026, 1, 1, 9, 0, 0, 123456)
    rows = [row(i, t0, Decimal(f"{i}.{i:03d}")) for i in range(5)]
    keys = tuple(rows[0])
    with store.write_connection() as connection:
        mine = BulkStatement.of(INSERT, connection, keys)
        _, core_params = core_call(connection, INSERT, rows)
        shaped = mine.shaped([[r[k] for k in keys] for r in rows])
        assert as_lists(shaped) == as_lists(core_params)
        reordered = BulkStatement.of(INSERT, connection, keys[::-1])
        assert as_lists(reordered.shaped([[r[k] for k in keys[::-1]] for r in rows])) == as_lists(core_params)


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


# write_rows: a batch in one statement reading arrays on PostgreSQL (executemany on SQLite).

AWKWARD_TEXT = ['it\'s "quoted"', "ünïcødé ✓ 日本", "NULL", "{a,b}", "back\\slash", "", " padded ", "a,b;c"]
INSERT_LOOKED_UP = bulk.insert_rows(
    PAYMENTS,
    ("payment_ref", "currency", "amount", "unapplied_amount", "received_on", "method", "reference", "created_at"),
    customer_id=select(table_of(Customer).c.id)
    .where(table_of(Customer).c.customer_ref == bindparam("customer_ref"))
    .scalar_subquery(),
)
LOOKED_UP_KEYS = (
    "payment_ref",
    "customer_ref",
    "currency",
    "amount",
    "unapplied_amount",
    "received_on",
    "method",
    "reference",
    "created_at",
)


def awkward_row(i: int) -> dict[str, Any]:
    """Row ``i``: NULLs every third row, exact amounts of 0 to 3 decimals and negatives, dates across
    a year end, UTC timestamps (the store's) across days, text needing quotes in an array literal."""
    text_value = AWKWARD_TEXT[i % len(AWKWARD_TEXT)]
    return {
        "payment_ref": f"w{i:03d} {text_value}",
        "customer_ref": None if i % 3 == 0 else ("c-1" if i % 2 else "c-nobody"),
        "currency": ("USD", "JPY", "KWD")[i % 3],
        "amount": (Decimal("1234567890.12"), Decimal("-0.001"), Decimal(7), Decimal("0.10"))[i % 4],
        "unapplied_amount": Decimal(f"{i}.{i:03d}"),
        "received_on": date(2025, 12, 30) + timedelta(days=i),
        "method": None if i % 3 == 0 else text_value,
        "reference": None if i % 2 else text_value[::-1],
        "created_at": datetime(2026, 1, 1, 23, 59, 59, i, tzinfo=timezone.utc) + timedelta(hours=i),
    }


def one_customer(store: Store) -> int:
    with store.write() as session:
        entity = LegalEntity(entity_ref="us", name="US", currency="USD", invoice_prefix="I-", credit_note_prefix="C-")
        session.add(entity)
        session.flush()
        customer = Customer(customer_ref="c-1", name="One", entity_id=entity.id)
        session.add(customer)
        session.flush()
        return customer.id


def stored_payments(store: Store, prefix: str) -> dict[str, dict[str, Any]]:
    """The stored rows whose ref starts with ``prefix``, by the ref without it; times in UTC."""
    with store.read() as session:
        found = session.execute(select(PAYMENTS).where(PAYMENTS.c.payment_ref.startswith(prefix))).all()
    out = {}
    for r in found:
        values = {k: v for k, v in r._mapping.items() if k not in ("id", "payment_ref")}
        created = values["created_at"]
        values["created_at"] = created.astimezone(timezone.utc).replace(tzinfo=None) if created.tzinfo else created
        out[r.payment_ref[len(prefix) :]] = values
    return out


def test_write_rows_inserts_exactly_what_it_is_given(store: Store) -> None:
    """A worked example: 23 awkward rows (NULLs, Decimals, dates, quotes, unicode, the text "NULL")
    inserted by write_rows land as given, the customer looked up per row (an unknown ref is NULL),
    and equal Core's own executemany of the same statement and rows."""
    customer_id = one_customer(store)
    rows = [awkward_row(i) for i in range(23)]
    with store.write_connection() as connection:
        statement = BulkStatement.of(INSERT_LOOKED_UP, connection, LOOKED_UP_KEYS)
        assert statement.write_rows(connection, []) == 0
        assert statement.write_rows(connection, rows) == 23
        connection.execute(INSERT_LOOKED_UP, [{**r, "payment_ref": f"core:{r['payment_ref']}"} for r in rows])
    mine, core = stored_payments(store, "w"), stored_payments(store, "core:w")
    assert mine == core
    assert len(mine) == 23
    for r in rows:
        got = mine[r["payment_ref"][1:]]
        assert got["customer_id"] == (customer_id if r["customer_ref"] == "c-1" else None)
        assert (got["currency"], got["amount"], got["unapplied_amount"]) == (
            r["currency"],
            r["amount"],
            r["unapplied_amount"],
        )
        assert isinstance(got["amount"], Decimal) and str(got["amount"]) == str(r["amount"])
        assert (got["received_on"], got["method"], got["reference"]) == (r["received_on"], r["method"], r["reference"])
        assert got["created_at"] == r["created_at"].astimezone(timezone.utc).replace(tzinfo=None)
        assert got["review_reason"] is None and got["reviewed"] is None
    assert mine['000 it\'s "quoted"']["customer_id"] is None  # row 0: no customer ref
    assert mine["002 NULL"]["reference"] == "LLUN" and mine["002 NULL"]["method"] == "NULL"  # text, not NULL


def test_write_rows_updates_the_rows_named_and_no_other(store: Store) -> None:
    rows = [row(i, datetime(2026, 1, 1, 9), Decimal(f"{i}.5")) for i in range(6)]
    later = datetime(2026, 2, 1, 12, 30, tzinfo=timezone.utc)
    with store.write_connection() as connection:
        BulkStatement.of(INSERT, connection, tuple(rows[0])).run_many(connection, rows)
        changes = [
            {"ref": "p1", "new": Decimal("-12.345"), "at": later},
            {"ref": "p4", "new": Decimal("0.000"), "at": later},
            {"ref": "nope", "new": Decimal(1), "at": later},
        ]
        assert BulkStatement.of(SET_AMOUNT, connection, ("ref", "new", "at")).write_rows(connection, changes) == 2
    with store.read() as session:
        stored = {
            r.payment_ref: (r.amount, r.created_at.replace(tzinfo=None)) for r in session.execute(select(PAYMENTS))
        }
    unchanged = datetime(2026, 1, 1, 9)
    assert stored == {
        "p0": (Decimal("0.5"), unchanged),
        "p1": (Decimal("-12.345"), later.replace(tzinfo=None)),
        "p2": (Decimal("2.5"), unchanged),
        "p3": (Decimal("3.5"), unchanged),
        "p4": (Decimal("0.000"), later.replace(tzinfo=None)),
        "p5": (Decimal("5.5"), unchanged),
    }


def test_write_rows_reaches_the_driver_as_core_would(store: Store) -> None:
    """What write_rows hands the driver against Core: on PostgreSQL Core's own call of the statement
    rewritten to read arrays, with the arrays as parameters (its text naming unnest and no per-row
    placeholder); elsewhere Core's executemany of the statement itself."""
    one_customer(store)
    rows = [awkward_row(i) for i in range(7)]
    with store.write_connection() as connection:
        mine = BulkStatement.of(INSERT_LOOKED_UP, connection, LOOKED_UP_KEYS)
        [(many, sql, arguments)] = mine.write_calls(rows)
        if connection.dialect.name == "postgresql":
            arrays = {k: [r[k] for r in rows] for k in LOOKED_UP_KEYS}
            core = core_call(connection, mine.unnested().statement, arrays)
            assert (many, sql, as_lists(arguments)) == (False, *as_lists(core)), "INSERT ... SELECT FROM unnest"
            assert "FROM unnest(" in sql and sql.count("%(") == len(LOOKED_UP_KEYS)
        else:
            core = core_call(connection, INSERT_LOOKED_UP, rows)
            assert (many, sql, as_lists(arguments)) == (True, *as_lists(core)), "INSERT ... SELECT, executemany"


def test_rows_from_arrays_refuses_what_it_cannot_rewrite(store: Store) -> None:
    """A plain INSERT ... VALUES gets its columns' parameters only when compiled: it cannot read
    arrays (insert_rows builds the form that can); a parameter of no known type cannot be cast."""
    with store.write_connection() as connection:
        if connection.dialect.name != "postgresql":
            pytest.skip("SQLite writes rows by executemany")
        with pytest.raises(NotImplementedError, match="insert_rows"):
            BulkStatement.of(INSERT, connection, tuple(row(0, datetime(2026, 1, 1), Decimal(1)))).unnested()
        untyped = (
            update(PAYMENTS)
            .where(PAYMENTS.c.payment_ref == bindparam("ref"))
            .values(method=bindparam("m") + bindparam("suffix"))
        )
        with pytest.raises(NotImplementedError, match="no known type"):
            BulkStatement.of(untyped, connection, ("ref", "m", "suffix")).unnested()


def test_rows_built_as_converted_tuples_reach_the_driver_as_core_sends_them(store: Store) -> None:
    """tuple_calls with each value converted by converter() (money as text on SQLite without Core's
    dispatch, days once each) against Core's own executemany of the same rows as dicts."""
    t0 = datetime(2026, 1, 1, 9, 0, 0, 123456)
    rows = [row(i, t0, Decimal(f"{i}.{i:03d}") if i % 3 else Decimal("0.00")) for i in range(7)]
    keys = tuple(rows[0])
    with store.write_connection() as connection:
        mine = BulkStatement.of(INSERT, connection, keys)
        converters = [mine.converter(k) for k in keys]
        tuples = [tuple(c(r[k]) if c else r[k] for c, k in zip(converters, keys, strict=True)) for r in rows]
        [(many, sql, arguments)] = mine.tuple_calls(tuples)[:1]
        if connection.dialect.name == "postgresql":
            assert (many, sql, arguments) == mine.insert_calls(rows)[0]
        else:
            assert (sql, as_lists(arguments)) == tuple(as_lists(core_call(connection, INSERT, rows)))
        with pytest.raises(TypeError, match="money columns take Decimal"):
            mine.converter("amount")(1.5)  # type: ignore[misc]


OUTBOX = table_of(OutboxMessage)
OUTBOX_KEYS = _ENQUEUE_KEYS  # the columns the outbox writes (store/outbox.py)


def skipping_taken(dialect: str) -> Any:
    """An insert_rows() INSERT ... SELECT in the dialect's own form, skipping a taken dedupe key."""
    into: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return bulk.insert_rows(OUTBOX, OUTBOX_KEYS, insert=into).on_conflict_do_nothing(index_elements=["dedupe_key"])


def outbox_row(key: str, aggregate_id: int) -> dict[str, Any]:
    at = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
    payload = {"n": aggregate_id, "text": 'it\'s "quoted" ü', "none": None}
    return {
        "topic": "t",
        "aggregate_type": "a",
        "aggregate_id": aggregate_id,
        "dedupe_key": key,
        "payload": payload,
        "created_at": at,
        "available_at": at,
        "attempts": aggregate_id,
    }


def unwrapped(arguments: Any) -> Any:
    """Arguments with psycopg's JSON wrappers (equal only to themselves) replaced by what they wrap."""
    if isinstance(arguments, dict):
        return {k: unwrapped(v) for k, v in arguments.items()}
    if isinstance(arguments, list | tuple):
        return [unwrapped(v) for v in arguments]
    return getattr(arguments, "obj", arguments)


def test_a_dialects_own_insert_skips_taken_keys_and_returns_what_it_inserted(store: Store) -> None:
    """insert_rows(insert=<dialect>.insert) with ON CONFLICT DO NOTHING: a key stored already and a
    key repeated in the batch are skipped (the first of the batch wins), JSON lands as given. With
    RETURNING, write_returning (PostgreSQL: one statement reading arrays, as Core would send it)
    returns exactly the rows inserted, ids as stored; SQLite refuses it (sqlite3's executemany drops
    what RETURNING gives) and writes by write_rows, counting the rows inserted."""
    rows = [outbox_row("k1", 1), outbox_row("k0", 2), outbox_row("k2", 3), outbox_row("k1", 4)]
    with store.write_connection() as connection:
        dialect = connection.dialect.name
        statement = skipping_taken(dialect)
        assert BulkStatement.of(statement, connection, OUTBOX_KEYS).write_rows(connection, [outbox_row("k0", 0)]) == 1
        if dialect == "postgresql":
            returning = statement.returning(OUTBOX.c.dedupe_key, OUTBOX.c.id)
            mine = BulkStatement.of(returning, connection, OUTBOX_KEYS)
            arrays = {k: [r[k] for r in rows[:1]] for k in OUTBOX_KEYS}
            sql, arguments = mine.unnested().driver_call(arrays)
            core_sql, core_arguments = core_call(connection, mine.unnested().statement, arrays)
            assert (sql, unwrapped(arguments)) == (core_sql, unwrapped(core_arguments)), "INSERT ... ON CONFLICT"
            assert "FROM unnest(" in sql and "ON CONFLICT" in sql and "RETURNING" in sql
            assert mine.write_returning(connection, []) == []
            returned = mine.write_returning(connection, rows)
            assert sorted(key for key, _ in returned) == ["k1", "k2"]
        else:
            mine = BulkStatement.of(statement.returning(OUTBOX.c.id), connection, OUTBOX_KEYS)
            with pytest.raises(NotImplementedError, match="PostgreSQL only"):
                mine.write_returning(connection, rows)
            assert BulkStatement.of(statement, connection, OUTBOX_KEYS).write_rows(connection, rows) == 2
            returned = []
    with store.read() as session:
        stored = {r.dedupe_key: r for r in session.execute(select(OUTBOX))}
    assert sorted(stored) == ["k0", "k1", "k2"]
    assert (stored["k0"].aggregate_id, stored["k1"].aggregate_id, stored["k2"].aggregate_id) == (0, 1, 3)
    assert stored["k1"].payload == {"n": 1, "text": 'it\'s "quoted" ü', "none": None}
    assert (stored["k1"].attempts, stored["k1"].delivered_at, stored["k1"].leased_by) == (1, None, None)
    for key, ident in returned:
        assert stored[key].id == ident


def test_positional_rows_reach_the_driver_as_core_sends_them(store: Store) -> None:
    """driver_rows on a positional paramstyle (SQLite's: values taken a row at once, only the columns
    with a processor converted) against Core's own executemany of the same rows: a payments INSERT
    (money, days repeated and not, a shared timestamp, NULLs, a zero shared by every row), an UPDATE,
    the outbox's JSON payloads, a batch of one, a statement of one parameter. PostgreSQL's named
    paramstyle takes rows as dicts, and write_rows reads them from arrays there (tests above)."""
    if store.dialect == "postgresql":
        pytest.skip("PostgreSQL's paramstyle is named: rows go to the driver as dicts or arrays")
    t0 = datetime(2026, 1, 1, 9, 0, 0, 123456)
    zero = Decimal("0.00")
    rows = [row(i, t0, Decimal(f"{i}.{i:03d}") if i % 3 else zero) for i in range(7)]
    for r in rows:
        r["unapplied_amount"] = zero
    rows[4]["received_on"] = rows[3]["received_on"]
    changes = [{"ref": r["payment_ref"], "new": r["amount"] * 2, "at": t0} for r in rows]
    queued = [outbox_row(f"k{i}", i) for i in range(3)]
    single = select(PAYMENTS.c.id).where(PAYMENTS.c.payment_ref == bindparam("r"))
    with store.write_connection() as connection:
        for statement, batch in (
            (INSERT, rows),
            (INSERT, rows[:1]),
            (SET_AMOUNT, changes),
            (insert(OUTBOX), queued),
        ):
            mine = BulkStatement.of(statement, connection, tuple(batch[0]))
            core_sql, core_params = core_call(connection, statement, batch)
            if len(batch) == 1:  # Core executes a batch of one as one row, not executemany
                core_params = [core_params]
            assert (mine.sql, as_lists(mine.driver_rows(batch))) == (core_sql, as_lists(core_params)), mine.sql[:40]
        one_key = BulkStatement.of(single, connection, ("r",))  # one name: no tuple to take the values from
        assert as_lists(one_key.driver_rows([{"r": "p1"}, {"r": "p2"}])) == [["p1"], ["p2"]]


def test_ids_of_inserted_rows_are_the_ones_stored_or_none(store: Store) -> None:
    """write_rows_ids: on SQLite the ids it says the rows got, in order, are the stored ones, also
    after rows were deleted below and at the top of the table (a rowid is one more than the largest
    left); a batch where ON CONFLICT skipped a row, or where the ids are not consecutive (a row
    inserted with its own id in between), gets None (the caller reads back); PostgreSQL always None."""
    with store.write_connection() as connection:
        dialect = connection.dialect.name
        statement = BulkStatement.of(skipping_taken(dialect), connection, OUTBOX_KEYS)
        assert statement.write_rows_ids(connection, [], OUTBOX.c.id) == (0, [])
        first = statement.write_rows_ids(connection, [outbox_row(f"a{i}", i) for i in range(5)], OUTBOX.c.id)
        before = dict(connection.execute(select(OUTBOX.c.dedupe_key, OUTBOX.c.id)).tuples().all())
    with store.write_connection() as connection:
        connection.execute(OUTBOX.delete().where(OUTBOX.c.dedupe_key.in_(["a1", "a4"])))  # below and at the top
        second = statement.write_rows_ids(connection, [outbox_row(f"b{i}", i) for i in range(3)], OUTBOX.c.id)
        skipped = statement.write_rows_ids(connection, [outbox_row("a0", 9), outbox_row("c0", 9)], OUTBOX.c.id)
    with store.read() as session:
        stored = {r.dedupe_key: r.id for r in session.execute(select(OUTBOX.c.dedupe_key, OUTBOX.c.id))}
    assert skipped[0] == 1 and skipped[1] is None  # a0 was taken
    if dialect == "postgresql":
        assert (first[0], first[1], second[0], second[1]) == (5, None, 3, None)
        return
    assert first == (5, [before[f"a{i}"] for i in range(5)])
    assert second == (3, [stored[f"b{i}"] for i in range(3)])
    assert second[1] == [before["a4"], before["a4"] + 1, before["a4"] + 2]  # a4's id given again


def test_ids_not_consecutive_are_not_taken_for_the_rows(store: Store) -> None:
    """A row with its own id above the largest, inserted by a trigger while the batch is written,
    leaves the ids of the batch not consecutive: None, whatever the arithmetic would say."""
    with store.write_connection() as connection:
        if connection.dialect.name != "sqlite":
            pytest.skip("SQLite's rowids")
        connection.exec_driver_sql(
            "CREATE TEMP TRIGGER jump AFTER INSERT ON outbox WHEN NEW.dedupe_key = 'x1' BEGIN "
            "INSERT INTO outbox (id, topic, aggregate_type, aggregate_id, dedupe_key, payload, created_at,"
            " available_at, attempts) SELECT NEW.id + 10, topic, aggregate_type, 0, 'jumped', payload, created_at,"
            " available_at, 0 FROM outbox WHERE id = NEW.id; END"
        )
        statement = BulkStatement.of(skipping_taken("sqlite"), connection, OUTBOX_KEYS)
        inserted, ids = statement.write_rows_ids(connection, [outbox_row(f"x{i}", i) for i in range(3)], OUTBOX.c.id)
        connection.exec_driver_sql("DROP TRIGGER jump")
    assert (inserted, ids) == (3, None)


def test_json_text_is_what_json_dumps_makes_of_it() -> None:
    """The store's JSON text (orjson, tried without its non-string-keys option first) says what the
    standard library's json.dumps says, for string keys and for others (made strings alike)."""
    import json

    from billbridge.store.types import json_text

    for document in (
        {"to": ["ap@example.com"], "cc": []},
        {"text": 'it\'s "quoted" \u00fc', "n": [None, True, 1.5, {"k": -2}]},
        {1: "a", "b": {2: [3]}},
        [{"x": 1}, {7: None}],
        [],
    ):
        assert json_text(document) == json.dumps(document, separators=(",", ":"), ensure_ascii=False), document
    with pytest.raises(TypeError):
        json_text({"amount": Decimal("1.00")})  # money is text in a document, never a number guessed


def test_rows_given_as_lists_land_as_the_same_rows_given_as_dicts(store: Store) -> None:
    """write_rows, write_rows_ids and (PostgreSQL) write_returning take rows as lists of values in the
    statement's key order, as hot paths build them: the awkward rows land exactly as the same rows
    given as dicts, with the same ids said on SQLite; a timestamp shared by the batch, once."""
    one_customer(store)
    rows = [awkward_row(i) for i in range(23)]
    shared = datetime(2026, 3, 1, 8, 30, 15, 250000)
    for r in (rows[0], *rows[10:15], rows[-1]):
        r["created_at"] = shared  # one object at both ends of the batch, its own value in between
    as_lists = [[r[k] for k in LOOKED_UP_KEYS] for r in rows]
    with store.write_connection() as connection:
        statement = BulkStatement.of(INSERT_LOOKED_UP, connection, LOOKED_UP_KEYS)
        assert statement.write_rows(connection, [{**r, "payment_ref": f"d{r['payment_ref']}"} for r in rows]) == 23
        lists = [[f"l{values[0]}", *values[1:]] for values in as_lists]
        assert statement.write_rows(connection, lists) == 23
    assert stored_payments(store, "lw") == stored_payments(store, "dw")
    assert len(stored_payments(store, "lw")) == 23
    with store.write_connection() as connection:
        dialect = connection.dialect.name
        statement = BulkStatement.of(skipping_taken(dialect), connection, OUTBOX_KEYS)
        given = [[outbox_row(f"k{i}", i)[k] for k in OUTBOX_KEYS] for i in range(4)]
        inserted, ids = statement.write_rows_ids(connection, given, OUTBOX.c.id)
        if dialect == "postgresql":
            returning = BulkStatement.of(
                skipping_taken(dialect).returning(OUTBOX.c.dedupe_key), connection, OUTBOX_KEYS
            )
            again = [[outbox_row(f"k{i}", i)[k] for k in OUTBOX_KEYS] for i in range(3, 6)]
            assert sorted(returning.write_returning(connection, again)) == [("k4",), ("k5",)]  # k3 taken
    with store.read() as session:
        stored = {
            r.dedupe_key: (r.id, r.payload)
            for r in session.execute(select(OUTBOX.c.dedupe_key, OUTBOX.c.id, OUTBOX.c.payload))
        }
    assert inserted == 4
    assert {key: payload for key, (_, payload) in stored.items() if key.startswith("k")} == {
        f"k{i}": outbox_row(f"k{i}", i)["payload"] for i in range(6 if dialect == "postgresql" else 4)
    }
    if dialect == "sqlite":
        assert ids == [stored[f"k{i}"][0] for i in range(4)]
