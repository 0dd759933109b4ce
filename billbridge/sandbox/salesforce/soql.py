"""The SOQL subset the Salesforce connector sends, parsed into a small query object.

Supported: ``SELECT`` fields (``Id``, relationship fields such as ``Account.Name`` and child
subqueries ``(SELECT ... FROM OpportunityLineItems)``) ``FROM`` one object, ``WHERE`` comparisons
joined by ``AND`` (=, !=, <, <=, >, >= against datetime literals, numbers, quoted strings,
true/false/null; ``IN ('a', 'b')`` against a list of them), ``ORDER BY`` fields with ASC/DESC, ``LIMIT``. Anything else is a ``SoqlError``
that the sandbox answers with MALFORMED_QUERY, as Salesforce does for a query it cannot parse.
Datetime literals are unquoted ISO 8601 (``2026-11-01T00:00:00Z``), per the SOQL reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))"
    r"|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<string>'(?:[^'\\]|\\.)*')"
    r"|(?P<op><=|>=|!=|<>|=|<|>)"
    r"|(?P<punct>[(),])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "IN", "ORDER", "BY", "LIMIT", "ASC", "DESC", "NULLS", "FIRST", "LAST"}
OPERATORS = {"=", "!=", "<>", "<", "<=", ">", ">="}


class SoqlError(ValueError):
    """A query outside the supported subset (answered as MALFORMED_QUERY)."""


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any  # datetime (UTC), Decimal, str, bool or None; for ``IN`` a tuple of them


@dataclass(frozen=True)
class Query:
    fields: tuple[str, ...]  # plain and relationship fields, as written
    subqueries: tuple[Query, ...]  # child relationship queries; their ``sobject`` is the relationship name
    sobject: str
    where: tuple[Condition, ...] = ()
    order_by: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    limit: int | None = None
    columns: tuple[str, ...] = field(default=())  # fields and subqueries in the order written


def parse_datetime(text: str) -> datetime:
    """A SOQL / ISO 8601 datetime (``Z`` or an offset), as an aware UTC datetime."""
    text = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text).astimezone(UTC)


def _tokens(soql: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    soql = soql.strip()
    while pos < len(soql):
        match = _TOKEN.match(soql, pos)
        if match is None or match.end() == pos:
            raise SoqlError(f"unexpected token at position {pos}: {soql[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        text = match.group(kind)
        if kind == "word" and text.upper() in _KEYWORDS:
            kind, text = "keyword", text.upper()
        tokens.append((kind, text))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, soql: str) -> None:
        self.tokens = _tokens(soql)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self, kind: str, text: str | None = None) -> str:
        got_kind, got = self.peek()
        if got_kind != kind or (text is not None and got != text):
            raise SoqlError(f"unexpected token: expected {text or kind}, found {got or 'end of query'!r}")
        self.pos += 1
        return got

    def accept(self, kind: str, text: str) -> bool:
        if self.peek() == (kind, text):
            self.pos += 1
            return True
        return False

    def query(self, nested: bool = False) -> Query:
        self.take("keyword", "SELECT")
        fields: list[str] = []
        subqueries: list[Query] = []
        columns: list[str] = []
        while True:
            if self.accept("punct", "("):
                if nested:
                    raise SoqlError("nested subqueries are not supported")
                sub = self.query(nested=True)
                self.take("punct", ")")
                subqueries.append(sub)
                columns.append(sub.sobject)
            else:
                name = self.take("word")
                fields.append(name)
                columns.append(name)
            if not self.accept("punct", ","):
                break
        self.take("keyword", "FROM")
        sobject = self.take("word")
        if "." in sobject:
            raise SoqlError(f"unexpected token: {sobject}")
        where = self.conditions() if self.accept("keyword", "WHERE") else ()
        order_by: list[tuple[str, bool]] = []
        if self.accept("keyword", "ORDER"):
            self.take("keyword", "BY")
            while True:
                name = self.take("word")
                descending = self.accept("keyword", "DESC")
                if not descending:
                    self.accept("keyword", "ASC")
                order_by.append((name, descending))
                if not self.accept("punct", ","):
                    break
        limit = None
        if self.accept("keyword", "LIMIT"):
            number = self.take("number")
            if not number.isdigit():
                raise SoqlError(f"LIMIT must be a non-negative integer, found {number}")
            limit = int(number)
        if not nested and self.peek()[0] != "end":
            raise SoqlError(f"unexpected token: {self.peek()[1]!r}")
        return Query(tuple(fields), tuple(subqueries), sobject, tuple(where), tuple(order_by), limit, tuple(columns))

    def conditions(self) -> tuple[Condition, ...]:
        found = [self.condition()]
        while self.accept("keyword", "AND"):
            found.append(self.condition())
        return tuple(found)

    def condition(self) -> Condition:
        name = self.take("word")
        if self.accept("keyword", "IN"):
            self.take("punct", "(")
            values = [self.value()]
            while self.accept("punct", ","):
                values.append(self.value())
            self.take("punct", ")")
            return Condition(name, "IN", tuple(values))
        op = self.take("op")
        return Condition(name, "!=" if op == "<>" else op, self.value())

    def value(self) -> Any:
        kind, text = self.peek()
        self.pos += 1
        value: Any
        if kind == "datetime":
            value = parse_datetime(text)
        elif kind == "number":
            value = Decimal(text)
        elif kind == "string":
            value = re.sub(r"\\(.)", r"\1", text[1:-1])
        elif kind == "word" and text.lower() in ("true", "false", "null"):
            value = {"true": True, "false": False, "null": None}[text.lower()]
        else:
            raise SoqlError(f"unexpected token: {text or 'end of query'!r} is not a value")
        return value


def parse(soql: str) -> Query:
    """Parse a query of the supported subset, or raise SoqlError."""
    if not soql.strip():
        raise SoqlError("empty query")
    return _Parser(soql).query()
