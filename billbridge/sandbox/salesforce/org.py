"""An in-memory Salesforce org: sObject tables, the SOQL subset run against them, query cursors, a delete log.

Each table keeps its live records in (SystemModstamp, Id) order, so an incremental query
(``WHERE SystemModstamp >= ... ORDER BY SystemModstamp, Id``) is a bisect and a slice even with
50,000 opportunities, and paging a query walks a list of ids captured when it ran.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

from billbridge.sandbox.salesforce.soql import Condition, Query, SoqlError

MAX_BATCH_SIZE = 2000  # records per query page (the default and the maximum)
MIN_BATCH_SIZE = 200  # Sforce-Query-Options batchSize below this is raised to it
OPEN_CURSORS = 50  # query locators kept; older ones answer INVALID_QUERY_LOCATOR
DELETE_LOG_DAYS = 15  # getDeleted answers for no more than 15 days back (REST API reference)

# Standard and custom fields each object has (queries naming others fail with INVALID_FIELD).
SCHEMA: dict[str, frozenset[str]] = {
    "Contact": frozenset({"Id", "FirstName", "LastName", "Email", "AccountId", "IsDeleted", "SystemModstamp"}),
    "OpportunityContactRole": frozenset(
        {"Id", "OpportunityId", "ContactId", "Role", "IsPrimary", "IsDeleted", "SystemModstamp"}
    ),
    # Contacts' roles at an Account (Account Contact Roles), read by the connector where configured.
    "AccountContactRole": frozenset(
        {"Id", "AccountId", "ContactId", "Role", "IsPrimary", "IsDeleted", "SystemModstamp"}
    ),
    "Account": frozenset({"Id", "Name", "Website", "Billing_Entity__c", "IsPartner", "IsDeleted", "SystemModstamp"}),
    "Pricebook2": frozenset({"Id", "Name", "IsStandard", "IsActive", "IsDeleted", "SystemModstamp"}),
    "Product2": frozenset(
        {
            "Id",
            "Name",
            "ProductCode",
            "IsActive",
            "Billing_Charge__c",
            "Usage_Aggregation__c",
            "Revenue_Recognition__c",
            "IsDeleted",
            "SystemModstamp",
        }
    ),
    "PricebookEntry": frozenset(
        {
            "Id",
            "Pricebook2Id",
            "Product2Id",
            "CurrencyIsoCode",
            "UnitPrice",
            "IsActive",
            "Billing_Pricing__c",
            "IsDeleted",
            "SystemModstamp",
        }
    ),
    "Opportunity": frozenset(
        {
            "Id",
            "Name",
            "StageName",
            "Amount",
            "CloseDate",
            "CurrencyIsoCode",
            "AccountId",
            "PartnerAccountId",  # standard where Partner Relationship Management is on: the partner Account
            "Reseller_Account__c",  # a custom lookup to the reseller's Account (the demo's resellers)
            "IsDeleted",
            "IsWon",
            "SystemModstamp",
            "Billing_Start_Date__c",
            "Billing_End_Date__c",
            "Billing_Cycle__c",
            "Billing_Timing__c",
            "Payment_Terms_Days__c",
            "Auto_Charge__c",
            "Billing_Entity__c",
        }
    ),
    "OpportunityLineItem": frozenset(
        {
            "Id",
            "OpportunityId",
            "Quantity",
            "UnitPrice",
            "Discount",
            "TotalPrice",
            "ServiceDate",
            "PricebookEntryId",
            "Product2Id",
            "IsDeleted",
            "SystemModstamp",
        }
    ),
}
# (object, relationship name) -> (id field, related object): lookups such as Opportunity.Account.
LOOKUPS: dict[tuple[str, str], tuple[str, str]] = {
    ("Opportunity", "Account"): ("AccountId", "Account"),
    ("OpportunityLineItem", "Product2"): ("Product2Id", "Product2"),
    ("OpportunityLineItem", "PricebookEntry"): ("PricebookEntryId", "PricebookEntry"),
    ("PricebookEntry", "Product2"): ("Product2Id", "Product2"),
    ("OpportunityContactRole", "Contact"): ("ContactId", "Contact"),
    ("AccountContactRole", "Contact"): ("ContactId", "Contact"),
    ("AccountContactRole", "Account"): ("AccountId", "Account"),
}
# (object, child relationship name) -> (child object, its field pointing at the parent).
CHILDREN: dict[tuple[str, str], tuple[str, str]] = {
    ("Opportunity", "OpportunityLineItems"): ("OpportunityLineItem", "OpportunityId"),
    ("Product2", "PricebookEntries"): ("PricebookEntry", "Product2Id"),
    ("Account", "Opportunities"): ("Opportunity", "AccountId"),
    ("Opportunity", "OpportunityContactRoles"): ("OpportunityContactRole", "OpportunityId"),
    ("Account", "AccountContactRoles"): ("AccountContactRole", "AccountId"),
}


class SalesforceApiError(Exception):
    """An error Salesforce answers with ``[{"message": ..., "errorCode": ...}]``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(f"{code}: {message}")


def malformed(message: str) -> SalesforceApiError:
    return SalesforceApiError(400, "MALFORMED_QUERY", message)


class Table:
    """One sObject's records, its (SystemModstamp, Id) order and its delete log."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.records: dict[str, dict[str, Any]] = {}
        self.order: list[tuple[datetime, str]] = []
        self.deleted: list[tuple[datetime, str]] = []  # (deletedDate, Id), appended in time order
        self.by_parent: dict[str, dict[str, dict[str, None]]] = {}  # parent field -> parent id -> child ids

    def put(self, record: dict[str, Any], *, bulk: bool = False) -> None:
        """Add or replace a record; ``bulk`` appends to the order, which ``sort()`` then restores."""
        old = self.records.get(record["Id"])
        if old is not None:
            self._unlink(old)
        self.records[record["Id"]] = record
        if bulk:
            self.order.append((record["SystemModstamp"], record["Id"]))
        else:
            bisect.insort(self.order, (record["SystemModstamp"], record["Id"]))
        for (_, _), (child, parent_field) in CHILDREN.items():
            if child == self.name and record.get(parent_field):
                self.by_parent.setdefault(parent_field, {}).setdefault(record[parent_field], {})[record["Id"]] = None

    def sort(self) -> None:
        self.order.sort()

    def delete(self, record_id: str, when: datetime) -> dict[str, Any] | None:
        record = self.records.pop(record_id, None)
        if record is not None:
            self._unlink(record)
            self.deleted.append((when, record_id))
        return record

    def _unlink(self, record: dict[str, Any]) -> None:
        key = (record["SystemModstamp"], record["Id"])
        index = bisect.bisect_left(self.order, key)
        if index < len(self.order) and self.order[index] == key:
            del self.order[index]
        for parent_field, parents in self.by_parent.items():
            parents.get(record.get(parent_field) or "", {}).pop(record["Id"], None)

    def children_of(self, parent_field: str, parent_id: str) -> list[str]:
        return list(self.by_parent.get(parent_field, {}).get(parent_id, {}))


@dataclass
class QueryCursor:
    query: Query
    ids: list[str]
    batch_size: int
    version: str
    position: int = 0


@dataclass
class QueryPage:
    total_size: int
    done: bool
    records: list[dict[str, Any]]
    next_url: str | None


def _compare(value: Any, op: str, wanted: Any) -> bool:
    if op == "IN":
        return value in wanted
    if op == "=":
        return bool(value == wanted)
    if op == "!=":
        return bool(value != wanted)
    if value is None or wanted is None:
        return False
    if isinstance(value, date) and not isinstance(value, datetime) and isinstance(wanted, datetime):
        wanted = wanted.date()
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    try:
        return ops[op](value, wanted)
    except TypeError as exc:
        raise SalesforceApiError(
            400, "INVALID_QUERY_FILTER_OPERATOR", f"cannot compare {value!r} {op} {wanted!r}"
        ) from exc


@dataclass
class Org:
    """The org's tables, its API-usage counter, its sessions, its open query cursors and its clock."""

    api_version: str = "62.0"
    daily_api_limit: int = 5_000_000
    session_seconds: float = 7200.0
    epoch: datetime = field(default_factory=lambda: datetime.now(UTC))
    tables: dict[str, Table] = field(default_factory=lambda: {name: Table(name) for name in SCHEMA})
    api_used: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    _started: float = field(default_factory=time.monotonic)
    _cursors: OrderedDict[str, QueryCursor] = field(default_factory=OrderedDict)
    _locator_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    sessions: dict[str, float] = field(default_factory=dict)  # access token -> monotonic expiry
    _loading: bool = False

    def now(self) -> datetime:
        """The org's clock: its epoch (the seeded world's "now") plus the real time elapsed since."""
        return self.epoch + timedelta(seconds=time.monotonic() - self._started)

    def set_clock(self, when: datetime) -> None:
        """Let the clock run from ``when`` (a seeded org's time starts at its world's "now")."""
        self.epoch, self._started = when, time.monotonic()

    def advance_to(self, when: datetime) -> None:
        """Move the clock forward to ``when`` (never back), e.g. when a later world state is applied."""
        if when > self.now():
            self.set_clock(when)

    # --- queries -------------------------------------------------------------------------------

    def run(self, query: Query, batch_size: int, version: str) -> QueryPage:
        """Run a query and return its first page (a query locator keeps the rest)."""
        with self.lock:
            ids = self._matching(query)
            cursor = QueryCursor(query, ids, batch_size, version)
            locator = f"01g{self.api_version.split('.')[0]}Dm{next(self._locator_numbers):010d}"
            self._cursors[locator] = cursor
            while len(self._cursors) > OPEN_CURSORS:
                self._cursors.popitem(last=False)
            return self._page(locator, cursor)

    def more(self, locator_and_offset: str) -> QueryPage:
        """The page of an open query at ``{locator}-{offset}`` (a nextRecordsUrl's last part)."""
        locator, _, offset = locator_and_offset.rpartition("-")
        with self.lock:
            cursor = self._cursors.get(locator)
            if cursor is None or not offset.isdigit() or int(offset) > len(cursor.ids):
                raise SalesforceApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            cursor.position = int(offset)
            return self._page(locator, cursor)

    def _page(self, locator: str, cursor: QueryCursor) -> QueryPage:
        start = cursor.position
        end = min(start + cursor.batch_size, len(cursor.ids))
        table = self.tables[cursor.query.sobject]
        records = [self.render(table, table.records[i], cursor.query, cursor.version) for i in cursor.ids[start:end]
                   if i in table.records]  # fmt: skip
        done = end >= len(cursor.ids)
        next_url = None if done else f"/services/data/v{cursor.version}/query/{locator}-{end}"
        return QueryPage(len(cursor.ids), done, records, next_url)

    def _table(self, name: str) -> Table:
        if name not in self.tables:
            raise SalesforceApiError(
                400, "INVALID_TYPE", f"sObject type '{name}' is not supported. Check the name and your permissions."
            )
        return self.tables[name]

    def _check_field(self, sobject: str, name: str) -> None:
        path = name.split(".")
        if len(path) == 2 and (sobject, path[0]) in LOOKUPS:
            sobject, name = LOOKUPS[(sobject, path[0])][1], path[1]
        elif len(path) != 1:
            raise malformed(f"unsupported relationship path {name!r} on {sobject}")
        if name not in SCHEMA[sobject]:
            raise SalesforceApiError(400, "INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'")

    def _validate(self, query: Query, parent: str | None = None) -> None:
        if parent is not None:
            if (parent, query.sobject) not in CHILDREN:
                raise SalesforceApiError(
                    400, "INVALID_TYPE", f"Didn't understand relationship '{query.sobject}' in FROM part of query"
                )
            sobject = CHILDREN[(parent, query.sobject)][0]
        else:
            sobject = self._table(query.sobject).name
        for name in (*query.fields, *(c.field for c in query.where), *(f for f, _ in query.order_by)):
            self._check_field(sobject, name)
        for sub in query.subqueries:
            self._validate(sub, sobject)

    def _matching(self, query: Query) -> list[str]:
        self._validate(query)
        table = self.tables[query.sobject]
        return self._select(table, table.order, query)

    def _select(self, table: Table, order: list[tuple[datetime, str]], query: Query) -> list[str]:
        keys = order
        stamp_bounds = [c for c in query.where if c.field == "SystemModstamp" and c.op in (">=", ">", "<", "<=")]
        if stamp_bounds and all(isinstance(c.value, datetime) for c in stamp_bounds):
            low, high = 0, len(order)
            for c in stamp_bounds:  # an index range scan instead of a pass over every record
                if c.op in (">=", ">"):
                    probe = (c.value, "") if c.op == ">=" else (c.value, "\uffff")
                    low = max(low, bisect.bisect_left(order, probe))
                else:
                    probe = (c.value, "") if c.op == "<" else (c.value, "\uffff")
                    high = min(high, bisect.bisect_left(order, probe))
            keys = order[low:high]
        rest = [c for c in query.where if c not in stamp_bounds]
        ids = [i for _, i in keys if all(self._holds(table, table.records[i], c) for c in rest)]
        if query.order_by and [f for f, _ in query.order_by][:2] not in (["SystemModstamp", "Id"], ["SystemModstamp"]):
            for name, descending in reversed(query.order_by):  # stable sorts, last key first; nulls first
                values = {i: _sort_key(self._value(table, table.records[i], name)) for i in ids}
                ids.sort(key=values.__getitem__, reverse=descending)
        elif query.order_by and query.order_by[0][1]:
            ids.reverse()
        return ids if query.limit is None else ids[: query.limit]

    def _holds(self, table: Table, record: dict[str, Any], condition: Condition) -> bool:
        return _compare(self._value(table, record, condition.field), condition.op, condition.value)

    def _value(self, table: Table, record: dict[str, Any], name: str) -> Any:
        if "." not in name:
            return record.get(name)
        relation, _, field_name = name.partition(".")
        id_field, target = LOOKUPS[(table.name, relation)]
        related = self.tables[target].records.get(record.get(id_field) or "")
        return None if related is None else related.get(field_name)

    def render(self, table: Table, record: dict[str, Any], query: Query, version: str) -> dict[str, Any]:
        """A record as the query returns it: ``attributes``, then the selected columns in order."""
        out: dict[str, Any] = {"attributes": _attributes(table.name, record["Id"], version)}
        subqueries = {s.sobject: s for s in query.subqueries}
        for column in query.columns:
            if column in subqueries:
                sub = subqueries[column]
                child_name, parent_field = CHILDREN[(table.name, column)]
                child = self.tables[child_name]
                ids = child.children_of(parent_field, record["Id"])
                order = sorted((child.records[i]["SystemModstamp"], i) for i in ids)
                rows = [self.render(child, child.records[i], sub, version) for i in self._select(child, order, sub)]
                # An empty child relationship is null, not an empty result (REST API query reference).
                out[column] = {"totalSize": len(rows), "done": True, "records": rows} if rows else None
            elif "." in column:
                relation, _, field_name = column.partition(".")
                id_field, target = LOOKUPS[(table.name, relation)]
                related = self.tables[target].records.get(record.get(id_field) or "")
                if related is None:
                    out[relation] = None
                    continue
                nested = out.setdefault(relation, {"attributes": _attributes(target, related["Id"], version)})
                nested[field_name] = related.get(field_name)
            else:
                out[column] = record.get(column)
        return out

    # --- writes and the delete log -------------------------------------------------------------

    def put(self, sobject: str, record: dict[str, Any]) -> None:
        with self.lock:
            self.tables[sobject].put(record, bulk=self._loading)

    @contextmanager
    def loading(self) -> Iterator[None]:
        """Seed many new records: one sort per table at the end instead of an insort per record."""
        with self.lock:
            self._loading = True
            try:
                yield
            finally:
                self._loading = False
                for table in self.tables.values():
                    table.sort()

    def delete(self, sobject: str, record_id: str, when: datetime) -> None:
        """Delete a record; an opportunity's line items go with it (as in Salesforce)."""
        with self.lock:
            if self.tables[sobject].delete(record_id, when) is None:
                return
            for (parent, _), (child_name, parent_field) in CHILDREN.items():
                if parent == sobject and child_name == "OpportunityLineItem":
                    child = self.tables[child_name]
                    for child_id in child.children_of(parent_field, record_id):
                        child.delete(child_id, when)

    def deleted_between(self, sobject: str, start: datetime, end: datetime) -> dict[str, Any]:
        """The sObject Get Deleted answer for [start, end]."""
        table = self._table(sobject)
        now = self.now()
        earliest = now - timedelta(days=DELETE_LOG_DAYS)
        if start < earliest:
            raise SalesforceApiError(
                400,
                "INVALID_REPLICATION_DATE",
                f"startDate before org replication enabled date or older than {DELETE_LOG_DAYS} days",
            )
        if end <= start:
            raise SalesforceApiError(
                400, "INVALID_REPLICATION_DATE", "endDate must chronologically follow the startDate"
            )
        # Whole minutes up to now are covered; the next call starts at latestDateCovered (inclusive).
        covered = min(end, now).replace(second=0, microsecond=0)
        with self.lock:
            rows = [(when, i) for when, i in table.deleted if start <= when < covered]
        return {
            "deletedRecords": [{"id": i, "deletedDate": format_datetime(when)} for when, i in rows],
            "earliestDateAvailable": format_datetime(table.deleted[0][0] if table.deleted else earliest),
            "latestDateCovered": format_datetime(covered),
        }

    def updated_between(self, sobject: str, start: datetime, end: datetime) -> dict[str, Any]:
        """The sObject Get Updated answer for [start, end]."""
        table = self._table(sobject)
        if end <= start:
            raise SalesforceApiError(
                400, "INVALID_REPLICATION_DATE", "endDate must chronologically follow the startDate"
            )
        covered = min(end, self.now()).replace(second=0, microsecond=0)
        with self.lock:
            low = bisect.bisect_left(table.order, (start, ""))
            high = bisect.bisect_left(table.order, (covered, ""))
            ids = [i for _, i in table.order[low:high]]
        return {"ids": ids, "latestDateCovered": format_datetime(covered)}

    # --- sessions and limits -------------------------------------------------------------------

    def open_session(self, token: str) -> None:
        with self.lock:
            self.sessions[token] = time.monotonic() + self.session_seconds

    def expire_sessions(self) -> None:
        """End every session now: the next call answers INVALID_SESSION_ID."""
        with self.lock:
            self.sessions.clear()

    def check_session(self, token: str | None) -> None:
        with self.lock:
            expiry = self.sessions.get(token or "")
            if expiry is None or expiry < time.monotonic():
                raise SalesforceApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def count_call(self) -> None:
        with self.lock:
            if self.api_used >= self.daily_api_limit:
                raise SalesforceApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self.api_used += 1

    def limit_info(self) -> str:
        return f"api-usage={self.api_used}/{self.daily_api_limit}"


def _attributes(sobject: str, record_id: str, version: str) -> dict[str, str]:
    return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record_id}"}


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, value)


def format_datetime(value: datetime) -> str:
    """Salesforce's response format for datetimes: ``2026-11-01T00:00:00.000+0000``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def to_json(value: Any) -> str:
    """JSON text of a record tree; Decimals are written as exact JSON numbers, never through floats."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _dumps_str(value)
    if isinstance(value, Decimal):
        # Salesforce writes currency, number and percent fields as JSON doubles: 180000.0, never 180000
        text = str(value)
        return text if "." in text or "E" in text else f"{text}.0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return f'"{format_datetime(value)}"'
    if isinstance(value, date):
        return f'"{value.isoformat()}"'
    if isinstance(value, dict):
        return "{" + ",".join(f"{_dumps_str(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


_dumps_str: Callable[[str], str] = encode_basestring  # the json module's fast string writer


__all__ = ["Org", "SalesforceApiError", "SoqlError", "format_datetime", "to_json"]
