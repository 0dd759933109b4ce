"""The store's speed machinery, behind one door: Core statements run on the DBAPI cursor.

Hot paths (usage ingest, billing runs, contract imports, reconciliation) write thousands of rows a
second; Core's per-execution (and, in an executemany, per-row) bookkeeping costs several times the
statement itself there. :class:`BulkStatement` compiles a Core statement once per dialect and runs
it on the driver's cursor, converting each value with the very bind processor SQLAlchemy would
use, so values are stored exactly as Core stores them, and reading results back through Core's
result processors.

Only public SQLAlchemy API is used: ``ClauseElement.compile`` (``column_keys``,
``for_executemany``), ``SQLCompiler.string`` / ``positiontup`` / ``binds``,
``SQLCompiler.construct_expanded_state`` (IN lists), ``TypeEngine.dialect_impl`` with
``bind_processor`` / ``result_processor``, ``ReturnsRows.exported_columns``, the pool's
``dbapi_connection``, and for rows read from arrays ``visitors.iterate`` /
``visitors.replacement_traverse``, ``FunctionElement.table_valued`` and ``ARRAY``. One shape is read from compiled text: a plain ``INSERT ... VALUES (...)``
(checked when it is used, see :meth:`BulkStatement.insert_values`). ``tests/store/test_bulk.py``
compares, per dialect, what this module hands the driver with what Core itself hands it for the
same statements and rows: if SQLAlchemy changes underneath, that test fails, naming the statement.

Four ways to run a statement:

- :meth:`BulkStatement.run`: once, with its rows back (IN lists of any length);
- :meth:`BulkStatement.run_many`: executemany (pipelined by psycopg; one prepared statement on sqlite3);
- :meth:`BulkStatement.write_rows`: a batch of rows the fastest way the dialect allows: on PostgreSQL
  one statement for the whole batch, its rows read from one array parameter per column
  (``FROM unnest(CAST(%(a)s AS T[]), ...) AS anon_1(a, ...)``, each parameter replaced by its
  column, see :meth:`BulkStatement.unnested`), executemany elsewhere (SQLite's executemany reuses
  one prepared statement in process: already its fastest way). For an UPDATE or DELETE, or an
  INSERT made by :func:`insert_rows` (``INSERT ... SELECT``, every value in the statement). On the
  payments of a reconciliation page (200 rows) it is 1.6x to 3x faster than multi-row VALUES or
  executemany: the text is short and the same for any number of rows (psycopg parses and caches
  it once and the server prepares it once) and there are a dozen parameters, not thousands;
- :meth:`BulkStatement.insert_values`: a plain ``INSERT ... VALUES`` as multi-row ``VALUES``
  statements on PostgreSQL (one per :data:`VALUES_ROWS` rows), executemany elsewhere.
"""

from __future__ import annotations

import copy
import re
import typing
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from operator import itemgetter
from typing import Any, TypeVar, overload

from sqlalchemy import ARRAY, JSON, Connection, Date, Table, bindparam, cast, column, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import visitors
from sqlalchemy.sql.dml import Delete, Insert, Update
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.types import NullType

from billbridge.store.types import ExactDecimal, json_text

Processor = Callable[[Any], Any]
_Insert = TypeVar("_Insert", bound=Insert)

VALUES_ROWS = 1000
"""Rows per multi-row VALUES statement on PostgreSQL (far below its 65,535 parameters for our tables)."""
_MAX_PARAMETERS = 65_535

_NOTHING = object()
_NAMED = re.compile(r"%\((\w+)\)s")  # a pyformat placeholder (psycopg)


def _once_per_object(process: Processor) -> Processor:
    """``process`` that converts a value only when it is not the very object it converted last:
    a batch's shared timestamp is formatted once, not once a row (SQLite's datetime processor costs
    about a microsecond). Safe because bind processors are pure and the values immutable."""
    last: list[Any] = [_NOTHING, None]

    def run(value: Any) -> Any:
        if value is last[0]:
            return last[1]
        converted = process(value)
        last[0], last[1] = value, converted
        return converted

    return run


def _once_per_day(process: Processor) -> Processor:
    """``process`` for a column of plain dates, each distinct day converted once: a revenue schedule's
    rows repeat a few dozen months over hundreds of thousands of rows (SQLite's date processor formats
    each one otherwise). Keyed by type and value, so only a ``date`` equal to one seen before (never a
    datetime, whose text differs) reuses its text."""
    seen: dict[tuple[type, Any], Any] = {}

    def run(value: Any) -> Any:
        key = (type(value), value)
        found = seen.get(key, _NOTHING)
        if found is _NOTHING:
            found = seen[key] = process(value)
        return found

    return run


def _convert_column(rows: Sequence[list[Any]], at: int, convert: Processor) -> None:
    """Convert the values at position ``at`` of ``rows`` in place. A value shared by the batch (its
    timestamp: the first row's is the last row's, the very object) is converted once and given to
    each row holding that object, without a call a row."""
    first = rows[0][at]
    shared = first if first is rows[-1][at] else _NOTHING
    done = convert(first) if shared is not _NOTHING else None
    for row in rows:
        value = row[at]
        row[at] = done if value is shared else convert(value)


_JSON_PROBE = {"text": 'it\'s "quoted" \u00fc', 1: [None, True, 1.5, {"n": -2}]}


def _serializes_as_json_text(process: Processor) -> bool:
    """Whether Core's bind processor of a JSON column hands the driver the store's own JSON text
    (``types.json_text``, the engine's serializer) for a document: then a dict or list is given that
    text without Core's per-value checks (SQLite; PostgreSQL's driver takes a wrapper, not text)."""
    try:
        return bool(process(_JSON_PROBE) == json_text(_JSON_PROBE))
    except Exception:  # noqa: BLE001 - any other behaviour: Core's processor, as is
        return False


def in_list_length(length: int) -> int:
    """How many placeholders an IN list of ``length`` values is given: ``length`` rounded up to one of
    eight steps per doubling (exact up to 16; 972 -> 1024), at most an eighth more. Core renders the
    text for each new length (a fraction of a millisecond for a thousand ids, as long as planning a
    few contracts), and a billing run's chunks of a reseller's contracts, kept together, each have
    another length; a value repeated in an IN list changes nothing."""
    step = 1 << max(0, length.bit_length() - 4)
    return -(-length // step) * step


def bind_processor(type_: Any, dialect: Dialect) -> Processor | None:
    """The function Core converts a parameter of ``type_`` with on ``dialect`` (None: as is)."""
    return type_.dialect_impl(dialect).bind_processor(dialect)


def result_processor(type_: Any, dialect: Dialect, type_code: Any) -> Processor | None:
    """The function Core converts a returned value of ``type_`` with (some depend on the driver's
    column type: psycopg's NUMERIC)."""
    return type_.dialect_impl(dialect).result_processor(dialect, type_code)


@overload
def insert_rows(table: Table, columns: Sequence[str], **computed: ColumnElement[Any]) -> Insert: ...


@overload
def insert_rows(
    table: Table, columns: Sequence[str], *, insert: Callable[[Table], _Insert], **computed: ColumnElement[Any]
) -> _Insert: ...


def insert_rows(
    table: Table,
    columns: Sequence[str],
    *,
    insert: Any = None,
    **computed: ColumnElement[Any],
) -> Insert:
    """``INSERT INTO table (...) SELECT ...`` of one row of parameters: each of ``columns`` takes the
    parameter of its own name (typed as the column), each ``computed`` column an expression over
    parameters (``bindparam``), e.g. an id looked up by a ref. Unlike ``insert(table).values(...)``,
    whose plain columns get their parameters only when compiled, every value is in the statement,
    so :meth:`BulkStatement.write_rows` can read a whole batch from arrays on PostgreSQL.
    ``insert``: a dialect's own (``postgresql.insert``, ``sqlite.insert``), for ``ON CONFLICT``."""
    values = [bindparam(name, type_=table.c[name].type) for name in columns]
    into: Insert = table.insert() if insert is None else insert(table)
    return into.from_select([*columns, *computed], select(*values, *computed.values()))


_LARGEST: dict[Any, Any] = {}  # id column -> SELECT max(column): one statement object each (BulkStatement's cache key)


def _largest(connection: Connection, id_column: ColumnElement[int]) -> int:
    """The largest id in ``id_column``'s table (0 when empty): a look-up at the end of its index."""
    query = _LARGEST.get(id_column)
    if query is None:
        query = _LARGEST[id_column] = select(func.max(id_column))
    ((largest,),) = BulkStatement.of(query, connection, ()).run(connection, {})
    return int(largest or 0)


def dbapi_cursor(connection: Connection) -> Any:
    """A new cursor of the connection's DBAPI connection (inside its current transaction)."""
    return connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]


Rows = Sequence[dict[str, Any]] | Sequence[list[Any]]
"""A batch of rows to write: dicts by parameter name, or lists of values in the statement's key order."""

Call = tuple[bool, str, Any]
"""A call of the driver: (executemany?, text, its arguments as the driver takes them)."""


def run_calls(connection: Connection, calls: Sequence[Call]) -> int:
    """Run driver calls (:meth:`BulkStatement.insert_calls`) in the connection's transaction; the rows
    the driver says they changed."""
    if not calls:
        return 0
    changed = 0
    cursor = dbapi_cursor(connection)
    try:
        for many, sql, arguments in calls:
            if many:
                cursor.executemany(sql, arguments)
            else:
                cursor.execute(sql, arguments)
            changed += int(cursor.rowcount)
    finally:
        cursor.close()
    return changed


class BulkStatement:
    """A Core statement compiled once per dialect and run on the DBAPI cursor, its parameters
    converted by SQLAlchemy's own bind processors. Python-side column defaults are not applied:
    rows carry every key the statement was compiled for (a missing one is a KeyError, not a NULL).

    An expanding parameter (``bindparam(name, expanding=True)``, as in ``column.in_(...)``) takes a
    non-empty sequence in :meth:`run`; its placeholders are rendered by Core once per length of
    :func:`in_list_length` (a longer list padded with its last value, the same IN)."""

    _cache: dict[tuple[int, str, tuple[str, ...]], BulkStatement] = {}

    def __init__(self, statement: Any, dialect: Dialect, keys: tuple[str, ...]) -> None:
        # for_executemany: no implicit RETURNING of the primary key (nobody reads it back here).
        self.statement, self.keys = statement, keys
        self.compiled = statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
        self.sql: str = self.compiled.string
        self.names: list[str] | None = list(self.compiled.positiontup) if self.compiled.positional else None
        binds = self.compiled.binds
        self.processors: dict[str, Processor] = {
            name: p for name, bind in binds.items() if (p := bind_processor(bind.type, dialect)) is not None
        }
        self.expanding = tuple(name for name, bind in binds.items() if bind.expanding)
        # What comes back. Read on a copy: SQLAlchemy memoizes exported_columns on the statement and
        # .returning() copies the memo, so a statement read here before would lose its RETURNING types.
        exported = copy.copy(statement).exported_columns if hasattr(type(statement), "exported_columns") else []
        self._returned = [c.type for c in exported]
        self._dialect = dialect
        self._expanded: dict[tuple[int, ...], tuple[str, list[str] | None, dict[str, list[str]]]] = {}
        self._results: dict[tuple[Any, ...], list[Processor | None]] = {}
        self._values: tuple[str, str, list[str]] | None = None
        self._values_sql: dict[int, str] = {}
        self._unnested: BulkStatement | None = None

    @classmethod
    def of(cls, statement: Any, connection: Connection, keys: tuple[str, ...]) -> BulkStatement:
        """The statement compiled for the connection's dialect and these parameter keys (cached)."""
        key = (id(statement), connection.dialect.name, keys)
        found = cls._cache.get(key)
        if found is None:
            found = cls._cache[key] = cls(statement, connection.dialect, keys)
        return found

    def _padded(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with each IN list padded to :func:`in_list_length` by repeating its last value."""
        out = params
        for name in self.expanding:
            values = params[name]
            wanted = in_list_length(len(values))
            if wanted != len(values):
                if out is params:
                    out = dict(params)
                padded = list(values)
                padded += [padded[-1]] * (wanted - len(padded))
                out[name] = padded
        return out

    def _expanded_for(self, params: dict[str, Any]) -> tuple[str, list[str] | None, dict[str, list[str]]]:
        """Core's text, positional order and expanded names for these lengths of the IN lists."""
        lengths = tuple(len(params[name]) for name in self.expanding)
        found = self._expanded.get(lengths)
        if found is None:
            for name, length in zip(self.expanding, lengths, strict=True):
                if not length:
                    raise ValueError(f"{name}: an empty sequence for an expanding parameter")
            probe = {name: (params[name] if name in self.expanding else None) for name in self.compiled.binds}
            state = self.compiled.construct_expanded_state(probe)
            names = list(state.positiontup) if state.positiontup is not None else None
            found = self._expanded[lengths] = (state.statement, names, dict(state.parameter_expansion))
        return found

    def driver_call(self, params: dict[str, Any]) -> tuple[str, Any]:
        """The text and the arguments :meth:`run` hands the DBAPI's ``execute`` for ``params``."""
        if self.expanding:
            params = self._padded(params)
            sql, names, expansion = self._expanded_for(params)
        else:
            sql, names, expansion = self.sql, self.names, {}
        values: dict[str, Any] = {}
        for key, value in params.items():
            p = self.processors.get(key)
            if key in expansion:
                values.update(zip(expansion[key], value if p is None else map(p, value), strict=True))
            else:
                values[key] = p(value) if p else value
        return sql, (values if names is None else [values[name] for name in names])

    def run(self, connection: Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows the statement returns, their values converted as Core would."""
        sql, arguments = self.driver_call(params)
        cursor = dbapi_cursor(connection)
        try:
            cursor.execute(sql, arguments)
            description = cursor.description
            rows = cursor.fetchall() if description else []
        finally:
            cursor.close()
        if not rows:
            return []
        if len(description) != len(self._returned):
            raise RuntimeError(
                f"{len(description)} columns came back, {len(self._returned)} expected: {self.sql[:200]}"
            )
        results = self._result_processors(tuple(d[1] for d in description))
        if not any(results):
            return [tuple(row) for row in rows]
        # Column by column: each converted column is one ``map`` over its values, instead of a
        # generator and a test per value of every row (a billing chunk reads thousands of rows).
        columns: list[Any] = list(zip(*rows, strict=True))
        for at, p in enumerate(results):
            if p is not None:
                columns[at] = map(p, columns[at])
        return list(zip(*columns, strict=True))

    def _result_processors(self, type_codes: tuple[Any, ...]) -> list[Processor | None]:
        found = self._results.get(type_codes)
        if found is None:
            found = self._results[type_codes] = [
                result_processor(t, self._dialect, code) for t, code in zip(self._returned, type_codes, strict=True)
            ]
        return found

    def unnested(self) -> BulkStatement:
        """This statement reading its rows from arrays (PostgreSQL): each per-row parameter ``k`` is
        replaced by column ``k`` of ``unnest(CAST(%(k)s AS T[]), ...) AS anon_1(k, ...)``, ``T`` the
        parameter's type as Core compiled it here; its parameters are the arrays, named as the rows'
        keys. An UPDATE or DELETE then reads ``FROM`` the arrays (rows must name distinct target rows:
        one row of the table is updated once); an INSERT must be an ``INSERT ... SELECT``
        (:func:`insert_rows`), whose SELECT then reads from them, one inserted row per array element,
        its look-ups correlated. Raises NotImplementedError for what cannot be rewritten."""
        if self._unnested is not None:
            return self._unnested
        statement = self.statement
        if not isinstance(statement, Update | Delete | Insert) or (
            isinstance(statement, Insert) and statement.select is None
        ):
            raise NotImplementedError(
                f"rows from arrays: an UPDATE, a DELETE or an insert_rows() INSERT ... SELECT, not {self.sql[:200]}"
            )
        binds = self.compiled.binds
        names = [name for name in self.keys if name in binds]
        in_statement = {e.key for e in visitors.iterate(statement) if isinstance(e, BindParameter)}
        for name in names:
            if name not in in_statement:
                raise NotImplementedError(f"{name}: a parameter Core adds when compiling, not one in {self.sql[:200]}")
            if isinstance(binds[name].type, NullType):
                raise NotImplementedError(f"{name}: a parameter of no known type in {self.sql[:200]}")
        arrays = [cast(bindparam(n, type_=ARRAY(binds[n].type)), ARRAY(binds[n].type)) for n in names]
        rows = func.unnest(*arrays).table_valued(*(column(n, binds[n].type) for n in names)).render_derived()

        def from_arrays(element: Any, **_: Any) -> Any:
            if isinstance(element, BindParameter) and element.key in names:
                return rows.c[element.key]
            return None

        rewritten = visitors.replacement_traverse(statement, {}, from_arrays)
        found = BulkStatement(rewritten, self._dialect, tuple(names))
        left = set(found.compiled.binds) - set(names)
        if left:
            raise NotImplementedError(f"parameters {sorted(left)} not given per row in {self.sql[:200]}")
        self._unnested = found
        return found

    def write_calls(self, rows: Rows) -> list[tuple[bool, str, Any]]:
        """What :meth:`write_rows` hands the driver for ``rows``: (executemany?, text, arguments) per
        call, values converted (the benchmark's floor runs these bare)."""
        if not rows:
            return []
        if self._dialect.name != "postgresql":
            if isinstance(rows[0], dict):
                return [(True, self.sql, self.driver_rows(typing.cast("Sequence[dict[str, Any]]", rows)))]
            return [(True, self.sql, self.shaped(typing.cast("Sequence[list[Any]]", rows)))]
        unnested = self.unnested()
        sql, arguments = unnested.driver_call(self._arrays(rows, unnested.keys))
        return [(False, sql, arguments)]

    def _arrays(self, rows: Rows, names: Sequence[str]) -> dict[str, list[Any]]:
        """Each of ``names`` with the list of its values in ``rows`` (dicts, or lists in :attr:`keys` order)."""
        if isinstance(rows[0], dict):
            return {name: [row[name] for row in rows] for name in names}  # type: ignore[call-overload]
        columns = dict(zip(self.keys, zip(*rows, strict=True), strict=True))
        return {name: list(columns[name]) for name in names}

    def write_rows(self, connection: Connection, rows: Rows) -> int:
        """Write a batch of rows the fastest way the dialect allows: one statement reading them from
        arrays on PostgreSQL (:meth:`unnested`), executemany elsewhere. The rows the database says
        the statement changed (inserted, updated or deleted).

        ``rows``: dicts, or lists of values in :attr:`keys` order as a hot path builds them (no dict
        a row; converted column by column by :meth:`shaped`, the lists changed in place)."""
        if not rows:
            return 0
        changed = 0
        cursor = dbapi_cursor(connection)
        try:
            for many, sql, arguments in self.write_calls(rows):
                (cursor.executemany if many else cursor.execute)(sql, arguments)
                changed += int(cursor.rowcount)
        finally:
            cursor.close()
        return changed

    def write_rows_ids(
        self, connection: Connection, rows: Rows, id_column: ColumnElement[int]
    ) -> tuple[int, list[int] | None]:
        """:meth:`write_rows` of an INSERT giving each row an id, and the ids the rows were given, in
        order, where the dialect lets them be known without reading them back; None where not (the
        caller reads them back). The rows inserted, and those ids.

        SQLite: a row inserted without an id gets one more than the largest in the table at that
        moment (its rowid algorithm; with AUTOINCREMENT one more than the largest ever), and the
        write transaction holds the database lock. So when the table's largest id went from ``m`` to
        ``m + n`` while the ``n`` rows were inserted one after the other, they were given ``m + 1``
        to ``m + n``, in order (n rising ids in ``(m, m + n]``). Anything else (a row skipped by ON
        CONFLICT, AUTOINCREMENT past a deleted largest id, a random id past the largest possible) is
        not taken for that: None. PostgreSQL: None (a sequence serves concurrent transactions too)."""
        if not rows:
            return 0, []
        if self._dialect.name != "sqlite":
            return self.write_rows(connection, rows), None
        before = _largest(connection, id_column)
        inserted = self.write_rows(connection, rows)
        after = _largest(connection, id_column)
        if inserted != len(rows) or after - before != len(rows):
            return inserted, None
        return inserted, list(range(before + 1, after + 1))

    def write_returning(self, connection: Connection, rows: Rows) -> list[tuple[Any, ...]]:
        """:meth:`write_rows` for a statement with RETURNING, on PostgreSQL only (one statement reading
        the rows from arrays, :meth:`unnested`): the rows it returns, converted as Core would. sqlite3's
        executemany drops what RETURNING gives, so there the caller writes by :meth:`write_rows` and
        reads back what it needs."""
        if self._dialect.name != "postgresql":
            raise NotImplementedError(f"RETURNING of a batch: PostgreSQL only, not {self._dialect.name}")
        if not rows:
            return []
        unnested = self.unnested()
        return unnested.run(connection, self._arrays(rows, unnested.keys))

    def slot(self, name: str) -> int | str:
        """Where parameter ``name`` sits in a row of :meth:`driver_rows`: its index (positional
        paramstyles) or its key. For rows converted where they are built and completed, a value or
        two, where they are written (a document number taken under a lock)."""
        return name if self.names is None else self.names.index(name)

    def convert(self, name: str, value: Any) -> Any:
        """``value`` of parameter ``name`` as the driver takes it (converted as in :meth:`driver_rows`)."""
        p = self.processors.get(name)
        return p(value) if p is not None else value

    def run_many(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> int:
        """executemany of rows that all have the keys the statement was compiled for; the rows
        the DBAPI says it changed (summed over the rows by sqlite3 and psycopg; -1 if unknown)."""
        cursor = dbapi_cursor(connection)
        try:
            cursor.executemany(self.sql, self.driver_rows(rows))
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def insert_values(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> int:
        """Insert the rows the fastest way the dialect allows: multi-row VALUES statements of up to
        :data:`VALUES_ROWS` rows on PostgreSQL, :meth:`run_many` elsewhere. For a plain
        ``INSERT ... VALUES (...)`` (value expressions such as scalar subqueries are fine; no
        RETURNING, no ON CONFLICT). The rows inserted."""
        return run_calls(connection, self.insert_calls(rows))

    def insert_calls(self, rows: Sequence[dict[str, Any]]) -> list[Call]:
        """What :meth:`insert_values` hands the driver for ``rows``, values converted: made where the
        rows are built (a planning process of the same dialect), run by :func:`run_calls` where they
        are written, so the writer does no per-value work."""
        if not rows:
            return []
        if self._dialect.name != "postgresql":
            return [(True, self.sql, self.driver_rows(rows))]
        return [(False, sql, arguments) for sql, arguments in self.values_calls(rows)]

    def values_calls(self, rows: Sequence[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
        """The multi-row VALUES statements (PostgreSQL) :meth:`insert_values` runs for ``rows``,
        each with its arguments, converted."""
        head, group, order = self._values_parts()
        chunk = max(1, min(VALUES_ROWS, _MAX_PARAMETERS // len(order)))
        flat = self._positional_rows(rows, order)
        calls = []
        for start in range(0, len(flat), chunk):
            part = flat[start : start + chunk]
            sql = self._values_sql.get(len(part))
            if sql is None:
                sql = self._values_sql[len(part)] = head + ", ".join([group] * len(part))
            calls.append((sql, [value for row in part for value in row]))
        return calls

    def _values_parts(self) -> tuple[str, str, list[str]]:
        """``INSERT INTO t (cols) VALUES ``, the ``(...)`` of one row with positional ``%s``
        placeholders, and the parameter names in their order (psycopg takes ``%s`` as it takes
        ``%(name)s``)."""
        if self._values is None:
            head, marker, rest = self.sql.partition(") VALUES (")
            group = "(" + rest
            if not marker or not rest.endswith(")") or ") VALUES (" in rest or "RETURNING" in rest or "%%" in rest:
                raise NotImplementedError(f"not a plain INSERT ... VALUES (...): {self.sql[:200]}")
            if self.names is None:
                order = _NAMED.findall(group)
                group = _NAMED.sub("%s", group)
            else:
                order = list(self.names)
            if group.count("%s") != len(order) or not order:
                raise NotImplementedError(f"placeholders of {self.sql[:200]} not understood")
            self._values = (head + ") VALUES ", group, order)
        return self._values

    def _positional_rows(self, rows: Sequence[dict[str, Any]], order: list[str]) -> list[list[Any]]:
        processors = self.processors
        first, last = rows[0], rows[-1]
        converters = []
        for name in order:
            p = processors.get(name)
            converters.append((name, _once_per_object(p) if p is not None and first[name] is last[name] else p))
        return [[p(row[n]) if p else row[n] for n, p in converters] for row in rows]

    def converter(self, name: str) -> Processor | None:
        """What converts a value of parameter ``name`` as the driver takes it, for rows built already
        converted (:meth:`tuple_calls`): Core's own bind processor, a plain date's converted once per
        distinct day, and a money column's (``ExactDecimal``) Decimal turned to its text on a driver
        taking text (SQLite) without Core's per-value dispatch: the same text (tests/store/test_bulk.py)."""
        p = self.processors.get(name)
        if p is None:
            return None
        bind = self.compiled.binds[name]
        if isinstance(bind.type, ExactDecimal) and self._dialect.name != "postgresql":
            core = p

            def text(value: Any) -> Any:
                return str(value) if type(value) is Decimal else core(value)

            return text
        if isinstance(bind.type, Date):
            return _once_per_day(p)
        if isinstance(bind.type, JSON) and _serializes_as_json_text(p):
            core_json = p

            def document(value: Any) -> Any:
                kind = type(value)
                return json_text(value) if kind is dict or kind is list else core_json(value)

            return document
        return p

    def tuple_calls(self, rows: Sequence[Sequence[Any]]) -> list[Call]:
        """What :meth:`insert_calls` hands the driver for ``rows`` given as values in :attr:`keys` order,
        each converted already by :meth:`converter`: built where the rows are made, without a dict a row."""
        if not rows:
            return []
        if self._dialect.name == "postgresql":
            head, group, order = self._values_parts()
        elif self.names is not None:
            order = self.names
        else:
            return [(True, self.sql, [dict(zip(self.keys, row, strict=True)) for row in rows])]
        at = [self.keys.index(name) for name in order]
        shaped: Sequence[Sequence[Any]] = (
            rows if at == list(range(len(self.keys))) else [[r[i] for i in at] for r in rows]
        )
        if self._dialect.name != "postgresql":
            return [(True, self.sql, shaped)]
        chunk = max(1, min(VALUES_ROWS, _MAX_PARAMETERS // len(order)))
        calls: list[Call] = []
        for start in range(0, len(shaped), chunk):
            part = shaped[start : start + chunk]
            sql = self._values_sql.get(len(part))
            if sql is None:
                sql = self._values_sql[len(part)] = head + ", ".join([group] * len(part))
            calls.append((False, sql, [value for row in part for value in row]))
        return calls

    def shaped(self, rows: Sequence[list[Any]]) -> list[Any]:
        """Rows given as lists of values in :attr:`keys` order, as :meth:`driver_rows` makes them of
        dicts: each value converted (:meth:`converter`, column by column, the lists changed in place),
        in the paramstyle's shape. For rows by the hundred thousand, built where they are planned: a
        dict a row and Core's per-value dispatch cost more than the values."""
        if not rows:
            return []
        for at, key in enumerate(self.keys):
            if (convert := self.converter(key)) is not None:
                _convert_column(rows, at, convert)
        if self.names is None:
            return [dict(zip(self.keys, row, strict=True)) for row in rows]
        if self.names == list(self.keys):
            return rows if isinstance(rows, list) else list(rows)
        if len(self.names) == 1:
            at = self.keys.index(self.names[0])
            return [[row[at]] for row in rows]
        take = itemgetter(*(self.keys.index(name) for name in self.names))  # a tuple a row, in the driver's order
        return [take(row) for row in rows]

    def driver_rows(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """The rows as the DBAPI takes them for :attr:`sql`: values converted, in the paramstyle's shape."""
        processors = self.processors
        first, last = rows[0], rows[-1]

        def processor(key: str) -> Processor | None:
            p = processors.get(key)
            if p is not None and type(first[key]) is date:
                return _once_per_day(p)  # few distinct days among many rows
            # A value shared by the whole batch (its timestamp, a zero) is converted once.
            return _once_per_object(p) if p is not None and first[key] is last[key] else p

        if self.names is not None:  # positional (SQLite's qmark): a row's values taken at once, then
            # only the columns with a processor converted, column by column (:meth:`converter`: money
            # as its text, a plain day once), a value shared by the batch (its timestamp) once
            names = self.names
            taken = (
                [list(itemgetter(*names)(row)) for row in rows] if len(names) > 1 else [[row[names[0]]] for row in rows]
            )
            for at, name in enumerate(names):
                if (convert := self.converter(name)) is not None:
                    _convert_column(taken, at, convert)
            return taken
        keys = [(key, processor(key)) for key in first]
        return [{k: (p(row[k]) if p else row[k]) for k, p in keys} for row in rows]
