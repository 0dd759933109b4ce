"""The subset of QuickBooks' SQL-like query language the connector uses, parsed and evaluated.

``SELECT * | COUNT(*) FROM Entity [WHERE cond AND ...] [ORDERBY Field [ASC|DESC]]
[STARTPOSITION n] [MAXRESULTS m]`` with conditions ``Field (= | < | <= | > | >=) value`` and
``Field IN (value, ...)``. As in QuickBooks, keywords are case-insensitive, strings are single-quoted
with ``\\'`` escaping a quote, STARTPOSITION counts from 1 and MAXRESULTS is at most 1000 (Intuit's
"Data queries" reference). Anything else is a QueryParserError, so an unsupported query fails loudly.

As strict as Intuit's "Data queries" page: projections are not supported (``SELECT Id, DocNumber``
is refused, the answer always carries whole objects), and only an entity's filterable properties
may be filtered or sorted on (``FILTERABLE``); anything else is Intuit's 4001 QueryValidationError.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from billbridge.sandbox.quickbooks.errors import query_error

MAX_RESULTS = 1000  # QuickBooks returns at most 1000 entities per query
DEFAULT_MAX_RESULTS = 100

_COMMON = frozenset({"Id", "MetaData.CreateTime", "MetaData.LastUpdatedTime"})
_NAMES = frozenset({"DisplayName", "GivenName", "MiddleName", "FamilyName", "CompanyName", "Active"})
# The properties each entity can be filtered and sorted on. From Intuit's XSDs, every element whose
# annotation says "Filterable: ALL" or "Filterable: QBO" (tests/sandbox checks this table holds them
# all); Payment's DocNumber left out, as its annotation says "Filter support not provided for
# Payment". Added where the XSD says QBW only or nothing though QuickBooks Online filters them, as
# Intuit's API reference and its own examples do: the names and Active of list entities,
# FullyQualifiedName, the transactions' CustomerRef, DueDate and TotalAmt.
FILTERABLE: dict[str, frozenset[str]] = {
    "Customer": _COMMON | _NAMES | {"FullyQualifiedName", "PrintOnCheckName", "Balance", "BalanceWithJobs"},
    "Vendor": _COMMON | _NAMES | {"Balance"},
    "Employee": _COMMON | _NAMES,
    "Item": _COMMON | {"Name", "Sku", "Description", "Type", "Active", "FullyQualifiedName"},
    "Account": _COMMON | {"Name", "AccountType", "Classification", "Active", "FullyQualifiedName"},
    "Invoice": _COMMON | {"DocNumber", "TxnDate", "DueDate", "CustomerRef", "TotalAmt", "Balance", "HomeBalance"},
    "CreditMemo": _COMMON | {"DocNumber", "TxnDate", "CustomerRef", "TotalAmt", "Balance", "HomeBalance"},
    "Payment": _COMMON | {"TxnDate", "CustomerRef", "TotalAmt"},
    "JournalEntry": _COMMON | {"DocNumber", "TxnDate"},
}

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><=|>=|=|<|>)|(?P<punct>[(),*])|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


@dataclass(frozen=True)
class Condition:
    field: str
    op: str  # = < <= > >= in
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Query:
    entity: str
    fields: tuple[str, ...] | None  # None: SELECT *
    count: bool
    where: tuple[Condition, ...]
    order_by: str | None
    descending: bool
    start: int
    max_results: int


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos, text = [], 0, text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise query_error(f"Encountered unexpected text at position {pos}: {text[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens, self.pos = _tokens(text), 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def next(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise query_error("Encountered end of query")
        self.pos += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "word" and token[1].upper() == word:
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, value: str | None = None) -> str:
        got_kind, got = self.next()
        if got_kind != kind or (value is not None and got.upper() != value):
            raise query_error(f"Encountered {got!r}, expected {value or kind}")
        return got

    def value(self) -> Any:
        kind, text = self.next()
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "num":
            return Decimal(text)
        if kind == "word" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise query_error(f"Encountered {text!r}, expected a value")

    def parse(self) -> Query:
        self.expect("word", "SELECT")
        fields: tuple[str, ...] | None = None
        count = False
        if self.peek() == ("punct", "*"):
            self.next()
        elif self.keyword("COUNT"):
            self.expect("punct", "(")
            self.expect("punct", "*")
            self.expect("punct", ")")
            count = True
        else:
            names = [self.expect("word")]
            while self.peek() == ("punct", ","):
                self.next()
                names.append(self.expect("word"))
            fields = tuple(names)
        self.expect("word", "FROM")
        entity = self.expect("word")
        where: list[Condition] = []
        if self.keyword("WHERE"):
            where.append(self.condition())
            while self.keyword("AND"):
                where.append(self.condition())
        order_by, descending = None, False
        if self.keyword("ORDERBY"):
            order_by = self.expect("word")
            if self.keyword("DESC"):
                descending = True
            else:
                self.keyword("ASC")
        start, max_results = 1, DEFAULT_MAX_RESULTS
        if self.keyword("STARTPOSITION"):
            start = int(self.expect("num"))
        if self.keyword("MAXRESULTS"):
            max_results = int(self.expect("num"))
        if self.peek() is not None:
            raise query_error(f"Encountered {self.peek()[1]!r} after the end of the query")  # type: ignore[index]
        if start < 1 or not 1 <= max_results <= MAX_RESULTS:
            raise query_error(f"STARTPOSITION must be >= 1 and MAXRESULTS within 1..{MAX_RESULTS}")
        return Query(entity, fields, count, tuple(where), order_by, descending, start, max_results)

    def condition(self) -> Condition:
        field = self.expect("word")
        if self.keyword("IN"):
            self.expect("punct", "(")
            values = [self.value()]
            while self.peek() == ("punct", ","):
                self.next()
                values.append(self.value())
            self.expect("punct", ")")
            return Condition(field, "in", tuple(values))
        kind, op = self.next()
        if kind != "op":
            raise query_error(f"Encountered {op!r}, expected an operator (=, <, <=, >, >=, IN)")
        return Condition(field, op, (self.value(),))


def parse_query(text: str) -> Query:
    """The query, or Intuit's 4000 (it does not parse) or 4001 (a projection, or a property that
    cannot be filtered or sorted on)."""
    query = _Parser(text).parse()
    if query.fields is not None:
        raise query_error(
            f"QueryValidationError: projections are not supported ({', '.join(query.fields)}): select *",
            "4001",
        )
    allowed = FILTERABLE.get(query.entity)
    if allowed is not None:
        for name in [c.field for c in query.where] + ([query.order_by] if query.order_by else []):
            if name not in allowed:
                raise query_error(f"QueryValidationError: property '{name}' is not queryable", "4001")
    return query


def field_value(record: dict[str, Any], path: str) -> Any:
    """``MetaData.LastUpdatedTime`` -> record["MetaData"]["LastUpdatedTime"]; ``CustomerRef`` -> its value."""
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value.get("value") if isinstance(value, dict) and "value" in value else value


_DATE_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER_LIKE = re.compile(r"-?\d+(\.\d+)?")


def _comparable(value: Any) -> Any:
    """Dates compare as datetimes, numbers as Decimals, anything else as text."""
    if not isinstance(value, str):
        return value
    if _DATE_LIKE.match(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return Decimal(value) if _NUMBER_LIKE.fullmatch(value) else value


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _matches(record: dict[str, Any], cond: Condition) -> bool:
    actual = _comparable(field_value(record, cond.field))
    if actual is None:
        return False
    wanted = [_comparable(v) for v in cond.values]
    try:
        if cond.op == "in":
            return actual in wanted
        return _OPS[cond.op](actual, wanted[0])
    except TypeError:
        raise query_error(f"cannot compare {cond.field} with {cond.values[0]!r}") from None


def run_query(query: Query, records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The ``QueryResponse`` object QuickBooks answers a query with. Like Intuit's, a query of a list
    entity (customers, items) returns only active records unless its WHERE names ``Active``."""
    rows = [r for r in records if all(_matches(r, c) for c in query.where)]
    if not any(c.field == "Active" for c in query.where):
        rows = [r for r in rows if r.get("Active", True) is not False]
    if query.count:
        return {"totalCount": len(rows)}
    if query.order_by:
        key = query.order_by
        rows.sort(
            key=lambda r: (_comparable(field_value(r, key)) is None, _comparable(field_value(r, key))),
            reverse=query.descending,
        )
    page = rows[query.start - 1 : query.start - 1 + query.max_results]
    if not page:
        return {}  # QuickBooks leaves out the entity key (and the paging keys) when nothing matched
    return {query.entity: page, "startPosition": query.start, "maxResults": len(page)}
