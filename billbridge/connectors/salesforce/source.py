"""Salesforce opportunities as pages of deal bundles: one relationship query, paged, incremental.

A run reads the price book once (Product2 with its PricebookEntries as a child subquery), then
opportunities with their account fields and line items (child subquery ``OpportunityLineItems``)
``WHERE SystemModstamp >= cursor - LAG ORDER BY SystemModstamp, Id``, following ``nextRecordsUrl``.
The bound is inclusive and reaches back a small lag window (a record's SystemModstamp is set when
its transaction starts, so it may appear later than records stamped after it); what was already
delivered in that window is skipped by (Id, SystemModstamp). Deletions since the last run come
from ``sobjects/Opportunity/deleted``, starting at the ``latestDateCovered`` the last run got.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from simple_salesforce import Salesforce

from billbridge.connectors.base import DealBundle, DealPage
from billbridge.connectors.salesforce.client import SalesforceClient

LAG = timedelta(minutes=5)
LINES = "OpportunityLineItems"  # child relationship of Opportunity
ENTRIES = "PricebookEntries"  # child relationship of Product2

STANDARD_COLUMNS: dict[str, tuple[str, ...]] = {
    "Opportunity": ("Id", "Name", "StageName", "Amount", "CloseDate", "CurrencyIsoCode", "AccountId", "SystemModstamp"),
    "OpportunityLineItem": (
        "Id",
        "Product2Id",
        "PricebookEntryId",
        "Quantity",
        "UnitPrice",
        "Discount",
        "TotalPrice",
        "ServiceDate",
        "SystemModstamp",
    ),
    "Account": ("Id", "Name"),
    "Product2": ("Id", "Name", "ProductCode"),
    "PricebookEntry": ("Id", "CurrencyIsoCode", "UnitPrice"),
}


def _columns(standard: Sequence[str], extra: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*standard, *extra]))


def deals_soql(extra: Mapping[str, Sequence[str]], since: datetime | None) -> str:
    """The opportunities query: deal fields, account fields, the line items subquery."""
    deal = _columns(STANDARD_COLUMNS["Opportunity"], extra.get("Opportunity", ()))
    account = [f"Account.{name}" for name in _columns(STANDARD_COLUMNS["Account"], extra.get("Account", ()))]
    line = _columns(STANDARD_COLUMNS["OpportunityLineItem"], extra.get("OpportunityLineItem", ()))
    where = f" WHERE SystemModstamp >= {soql_datetime(since)}" if since is not None else ""
    return (
        f"SELECT {', '.join(deal + account)}, (SELECT {', '.join(line)} FROM {LINES}) "
        f"FROM Opportunity{where} ORDER BY SystemModstamp, Id"
    )


def products_soql(extra: Mapping[str, Sequence[str]]) -> str:
    """The price book query: products with their entries (one per currency)."""
    product = _columns(STANDARD_COLUMNS["Product2"], extra.get("Product2", ()))
    entry = _columns(STANDARD_COLUMNS["PricebookEntry"], extra.get("PricebookEntry", ()))
    return f"SELECT {', '.join(product)}, (SELECT {', '.join(entry)} FROM {ENTRIES}) FROM Product2 ORDER BY Id"


def soql_datetime(value: datetime) -> str:
    """A SOQL datetime literal: ISO 8601 in UTC, unquoted."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_sf_datetime(text: str) -> datetime:
    """Salesforce's ``2026-11-01T00:00:00.000+0000`` (also accepts ``Z`` and ``+00:00``)."""
    text = text.replace("Z", "+00:00")
    if text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass
class Cursor:
    """Where a pull stopped: the last SystemModstamp delivered, what was delivered in the lag window
    before it (Id -> SystemModstamp), and where the delete log was read up to."""

    since: datetime | None = None
    seen: dict[str, str] = field(default_factory=dict)
    deleted_from: datetime | None = None

    @classmethod
    def decode(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            parse_sf_datetime(data["since"]) if data.get("since") else None,
            {record_id: stamp for stamp, ids in data.get("seen", {}).items() for record_id in ids},
            parse_sf_datetime(data["deleted_from"]) if data.get("deleted_from") else None,
        )

    def encode(self) -> str:
        return json.dumps(
            {
                "since": soql_datetime(self.since) if self.since else None,
                "seen": self._seen_by_stamp(),
                "deleted_from": soql_datetime(self.deleted_from) if self.deleted_from else None,
            },
            sort_keys=True,
        )

    def _seen_by_stamp(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for record_id, stamp in sorted(self.seen.items()):
            grouped.setdefault(stamp, []).append(record_id)
        return grouped

    def delivered(self, record_id: str, stamp: str) -> bool:
        return self.seen.get(record_id) == stamp

    def advance(self, record_id: str, stamp: str) -> None:
        """Note a delivered record; forget what fell out of the lag window."""
        moment = parse_sf_datetime(stamp)
        if self.since is None or moment > self.since:
            self.since = moment
            horizon = moment - LAG
            self.seen = {i: s for i, s in self.seen.items() if parse_sf_datetime(s) >= horizon}
        self.seen[record_id] = stamp


class SalesforceSource:
    """The Salesforce ``DealSource``: ``pull(cursor)`` yields pages of opportunities with what maps them."""

    name = "salesforce"

    def __init__(
        self,
        client: SalesforceClient,
        *,
        columns: Mapping[str, Sequence[str]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client, self.columns, self.clock = client, dict(columns or {}), clock

    def pull(self, cursor: str | None) -> Iterator[DealPage]:
        state = Cursor.decode(cursor)
        calls_before = self.client.calls
        products = self.products()
        deleted_ids = self._deleted(state) if state.since is not None else []
        since = state.since - LAG if state.since is not None else None
        options = self.client.request_options()
        result = self.client.call(lambda sf: sf.query(deals_soql(self.columns, since), **options))
        while True:
            bundles = []
            for record in result["records"]:
                stamp = record["SystemModstamp"]
                if state.delivered(record["Id"], stamp):
                    continue
                bundles.append(self._bundle(record, products))
                state.advance(record["Id"], stamp)
            yield DealPage(bundles, deleted_ids, state.encode(), self.client.calls - calls_before)
            calls_before, deleted_ids = self.client.calls, []
            next_url = result.get("nextRecordsUrl")
            if result.get("done", True) or not next_url:
                return
            result = self._more(next_url)

    def products(self) -> dict[str, dict[str, Any]]:
        """The price book once per run: Product2 Id -> product with its PricebookEntries records."""
        soql = products_soql(self.columns)
        options = self.client.request_options()
        result = self.client.call(lambda sf: sf.query(soql, **options))
        products: dict[str, dict[str, Any]] = {}
        while True:
            for record in result["records"]:
                entries = self._children(record, ENTRIES)
                products[record["Id"]] = {
                    **record,
                    ENTRIES: {"totalSize": len(entries), "done": True, "records": entries},
                }
            if result.get("done", True) or not result.get("nextRecordsUrl"):
                return products
            result = self._more(result["nextRecordsUrl"])

    def _more(self, next_url: str) -> Any:
        timeout = self.client.settings.timeout_seconds
        return self.client.call(lambda sf: sf.query_more(next_url, identifier_is_url=True, timeout=timeout))

    def _children(self, record: Mapping[str, Any], relationship: str) -> list[dict[str, Any]]:
        """A child subquery's records, following its own nextRecordsUrl when Salesforce paged it."""
        result = record.get(relationship)
        rows: list[dict[str, Any]] = []
        while result:
            rows.extend(result["records"])
            if result.get("done", True) or not result.get("nextRecordsUrl"):
                break
            result = self._more(result["nextRecordsUrl"])
        return rows

    def _bundle(self, record: dict[str, Any], products: Mapping[str, dict[str, Any]]) -> DealBundle:
        lines = self._children(record, LINES)
        account = record.get("Account")
        company = {k: v for k, v in account.items() if k != "attributes"} if account else None
        used = {str(line.get("Product2Id")) for line in lines}
        return DealBundle(
            deal=record,
            lines=lines,
            company=company,
            products={pid: products[pid] for pid in used if pid in products},
        )

    def _deleted(self, state: Cursor) -> list[str]:
        """Opportunities deleted since the last run; moves ``state.deleted_from`` to what was covered.

        Salesforce keeps the delete log for 15 days: a cursor older than that fails with
        INVALID_REPLICATION_DATE (fatal), and the stream needs a full pull (cursor None).
        """
        assert state.since is not None
        end = self.clock()
        start = state.deleted_from or state.since - LAG
        if end <= start:
            return []
        params = {"start": start.isoformat(timespec="seconds"), "end": end.isoformat(timespec="seconds")}
        timeout = self.client.settings.timeout_seconds

        def get(sf: Salesforce) -> Any:
            return sf.restful("sobjects/Opportunity/deleted/", params=params, timeout=timeout)

        body = self.client.call(get)
        covered = parse_sf_datetime(body["latestDateCovered"]) if body.get("latestDateCovered") else end
        state.deleted_from = max(start, covered)
        return [row["id"] for row in body.get("deletedRecords", [])]
