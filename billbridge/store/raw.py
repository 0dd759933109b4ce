"""Core statements run on the DBAPI cursor: compiled once per dialect, parameters converted by
SQLAlchemy's own bind processors, so values are stored exactly as Core stores them, without Core's
per-execution (and, in an executemany, per-row) work. For the bulk writes of hot paths: usage
ingest, billing runs, reconciliation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

_NOTHING = object()

Processor = Callable[[Any], Any]


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


class RawStatement:
    """A Core statement compiled once per dialect and run on the DBAPI cursor, its parameters
    converted by SQLAlchemy's own bind processors (so values are stored exactly as Core stores
    them). Where Core's per-execution (and, in an executemany, per-row) work costs several times
    the statement itself. Python-side column defaults are not applied: rows carry every column the
    compiled statement names (a missing one is a KeyError, not a NULL).

    An expanding parameter (``bindparam(name, expanding=True)``, as in ``column.in_(...)``) takes a
    non-empty sequence in :meth:`run`; its placeholders are rendered once per length."""

    _cache: dict[tuple[int, str, tuple[str, ...]], RawStatement] = {}

    def __init__(self, statement: Any, connection: Connection, keys: tuple[str, ...]) -> None:
        dialect = connection.dialect
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        self.sql = compiled.string
        self.names = list(compiled.positiontup or []) if compiled.positional else None
        self.processors = dict(compiled._bind_processors)
        self.expanding = tuple(name for name, bind in compiled.binds.items() if bind.expanding)
        if self.expanding and dialect.paramstyle not in ("qmark", "format", "pyformat", "named"):
            raise NotImplementedError(f"expanding parameters with the {dialect.paramstyle} paramstyle")
        # One placeholder per element: "?" / "%s" (positional) or the element's name (named styles).
        self._template = {"qmark": "?", "format": "%s"}.get(dialect.paramstyle, compiled.bindtemplate)
        self._expanded_sql: dict[tuple[int, ...], str] = {}
        returned = statement.selected_columns if hasattr(statement, "selected_columns") else statement._returning
        self._returned = [c.type for c in returned]
        self._dialect = dialect
        self._results: dict[tuple[Any, ...], list[Processor | None]] = {}

    @classmethod
    def of(cls, statement: Any, connection: Connection, keys: tuple[str, ...]) -> RawStatement:
        key = (id(statement), connection.dialect.name, keys)
        found = cls._cache.get(key)
        if found is None:
            found = cls._cache[key] = cls(statement, connection, keys)
        return found

    def _sql_for(self, params: dict[str, Any]) -> str:
        """The statement's text with each expanding parameter's placeholders, one per element."""
        lengths = tuple(len(params[name]) for name in self.expanding)
        sql = self._expanded_sql.get(lengths)
        if sql is None:
            sql = self.sql
            for name, length in zip(self.expanding, lengths, strict=True):
                if not length:
                    raise ValueError(f"{name}: an empty sequence for an expanding parameter")
                if self.names is not None:
                    marks = ", ".join([self._template] * length)
                else:
                    marks = ", ".join(self._template % {"name": f"{name}_{i}"} for i in range(length))
                sql = sql.replace(f"__[POSTCOMPILE_{name}]", marks)
            self._expanded_sql[lengths] = sql
        return sql

    def run(self, connection: Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows the statement returns, their values converted as Core would."""
        values: dict[str, Any] = {}
        for key, value in params.items():
            p = self.processors.get(key)
            if key in self.expanding:
                converted = [p(v) for v in value] if p else list(value)
                if self.names is None:
                    values.update((f"{key}_{i}", v) for i, v in enumerate(converted))
                else:
                    values[key] = converted
            else:
                values[key] = p(value) if p else value
        sql = self._sql_for(params) if self.expanding else self.sql
        if self.names is None:
            arguments: Any = values
        else:
            arguments = []
            for name in self.names:
                if name in self.expanding:
                    arguments.extend(values[name])
                else:
                    arguments.append(values[name])
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, arguments)
            description = cursor.description
            rows = cursor.fetchall() if description else []
        finally:
            cursor.close()
        if not rows:
            return []
        results = self._result_processors(tuple(d[1] for d in description))
        if not any(results):
            return [tuple(row) for row in rows]
        return [tuple(p(v) if p else v for p, v in zip(results, row, strict=True)) for row in rows]

    def _result_processors(self, type_codes: tuple[Any, ...]) -> list[Processor | None]:
        """Core's result processors of the returned columns for the driver's column types (some
        depend on them: psycopg's NUMERIC)."""
        found = self._results.get(type_codes)
        if found is None:
            found = self._results[type_codes] = [
                t._cached_result_processor(self._dialect, code)
                for t, code in zip(self._returned, type_codes, strict=True)
            ]
        return found

    def run_many(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> int:
        """executemany of rows that all have the keys the statement was compiled for; the rows
        the DBAPI says it changed (summed over the rows by sqlite3 and psycopg; -1 if unknown)."""
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(self.sql, self.driver_rows(rows))
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def driver_rows(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """The rows as the DBAPI takes them for :attr:`sql`: values converted, in the paramstyle's shape."""
        processors = self.processors
        first, last = rows[0], rows[-1]

        def processor(key: str) -> Processor | None:
            p = processors.get(key)
            # A value shared by the whole batch (its timestamp, a zero) is converted once.
            return _once_per_object(p) if p is not None and first[key] is last[key] else p

        if self.names is not None:
            order = [(name, processor(name)) for name in self.names]
            params: list[Any] = [[p(row[n]) if p else row[n] for n, p in order] for row in rows]
        else:
            keys = [(key, processor(key)) for key in first]
            params = [{k: (p(row[k]) if p else row[k]) for k, p in keys} for row in rows]
        return params
