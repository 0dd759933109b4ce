"""Column types: exact decimals on every backend, JSON that is JSONB on PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import JSON, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine


def json_text(value: Any) -> str:
    """JSON columns' text through orjson (several times faster than json.dumps on hot insert paths),
    the engine's JSON serializer (store/db.py); non-string keys become strings as json.dumps makes them.
    Tried without that option first: orjson's keys-as-given path is about twice as fast, and refuses
    (TypeError) a document with a key that is not a string, which then goes the slower way."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


class ExactDecimal(TypeDecorator[Decimal]):
    """A Decimal stored exactly: NUMERIC on PostgreSQL, text on SQLite (whose NUMERIC is a float)."""

    impl = String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(asdecimal=True))
        return dialect.type_descriptor(String(64))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"money columns take Decimal, not {type(value).__name__}")
        return value if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(value)


JSONDoc = JSON().with_variant(JSONB(), "postgresql")


def storable_text(text: str) -> bool:
    """Whether both backends can store ``text``: no NUL (PostgreSQL refuses it) and no unpaired
    surrogate (not encodable as UTF-8)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class DecimalSum:
    """SQLite aggregate ``decimal_sum(x)``: the exact sum of decimal text (SQLite's own SUM turns text
    into floats). Registered on every SQLite connection (store/db.py); :class:`exact_sum` uses it."""

    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: object) -> None:
        if value is not None:
            self.total = (self.total or Decimal(0)) + Decimal(str(value))

    def finalize(self) -> str | None:
        return None if self.total is None else str(self.total)


class exact_sum(FunctionElement[Decimal]):  # noqa: N801 - an SQL function, named like SQLAlchemy's
    """SUM of a money column, exact on both backends: NUMERIC sum on PostgreSQL, ``decimal_sum`` on SQLite."""

    type = ExactDecimal()
    inherit_cache = True


@compiles(exact_sum)
def _sum_numeric(element: exact_sum, compiler: Any, **kw: Any) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


@compiles(exact_sum, "sqlite")
def _sum_decimal_text(element: exact_sum, compiler: Any, **kw: Any) -> str:
    return f"decimal_sum({compiler.process(element.clauses, **kw)})"
