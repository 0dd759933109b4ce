"""Core statements run on the DBAPI cursor: compiled once per dialect, parameters converted by
SQLAlchemy's own bind processors, so values are stored exactly as Core stores them, without Core's
per-execution (and, in an executemany, per-row) work. For the bulk writes of hot paths: usage
ingest, billing runs, reconciliation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection


class RawStatement:
    """A Core statement compiled once per dialect and run on the DBAPI cursor, its parameters
    converted by SQLAlchemy's own bind processors (so values are stored exactly as Core stores
    them). Where Core's per-execution (and, in an executemany, per-row) work costs several times
    the statement itself. Python-side column defaults are not applied: rows carry every column the
    compiled statement names (a missing one is a KeyError, not a NULL)."""

    _cache: dict[tuple[int, str, tuple[str, ...]], RawStatement] = {}

    def __init__(self, statement: Any, connection: Connection, keys: tuple[str, ...]) -> None:
        dialect = connection.dialect
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        self.sql = compiled.string
        self.names = list(compiled.positiontup or []) if compiled.positional else None
        self.processors = dict(compiled._bind_processors)
        returned = statement.selected_columns if hasattr(statement, "selected_columns") else statement._returning
        self.results = [c.type._cached_result_processor(dialect, None) for c in returned]

    @classmethod
    def of(cls, statement: Any, connection: Connection, keys: tuple[str, ...]) -> RawStatement:
        key = (id(statement), connection.dialect.name, keys)
        found = cls._cache.get(key)
        if found is None:
            found = cls._cache[key] = cls(statement, connection, keys)
        return found

    def run(self, connection: Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows the statement returns, their values converted as Core would."""
        values = {k: (p(params[k]) if (p := self.processors.get(k)) else params[k]) for k in params}
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, [values[n] for n in self.names] if self.names is not None else values)
            rows = cursor.fetchall() if cursor.description else []
        finally:
            cursor.close()
        return [tuple(p(v) if p else v for p, v in zip(self.results, row, strict=True)) for row in rows]

    def run_many(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> int:
        """executemany of rows that all have the keys the statement was compiled for; the rows
        the DBAPI says it changed (summed over the rows by sqlite3 and psycopg; -1 if unknown)."""
        processors = self.processors
        if self.names is not None:
            order = [(name, processors.get(name)) for name in self.names]
            params: list[Any] = [[p(row[n]) if p else row[n] for n, p in order] for row in rows]
        else:
            keys = [(key, processors.get(key)) for key in rows[0]]
            params = [{k: (p(row[k]) if p else row[k]) for k, p in keys} for row in rows]
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(self.sql, params)
            return int(cursor.rowcount)
        finally:
            cursor.close()
