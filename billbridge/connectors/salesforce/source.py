"""Salesforce opportunities as pages of deal bundles: one relationship query, paged, incremental.

A run reads the price book once (Product2 with its PricebookEntries as a child subquery), then
opportunities with their account fields and line items (child subquery ``OpportunityLineItems``)
``WHERE SystemModstamp >= cursor - LAG ORDER BY SystemModstamp, Id``, following ``nextRecordsUrl``.
The bound is inclusive and reaches back a small lag window (a record's SystemModstamp is set when
its transaction starts, so it may appear later than records stamped after it); the window is
skipped when its (Id, SystemModstamp) pairs are those already delivered (see ``Cursor``). Deletions since the last run come
from ``sobjects/Opportunity/deleted``, starting at the ``latestDateCovered`` the last run got.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from simple_salesforce import Salesforce

from billbridge.connectors.base import Stream
from billbridge.connectors.cursor import LagWindow
from billbridge.connectors.paging import NextUrl
from billbridge.connectors.salesforce.client import SalesforceClient
from billbridge.records import DealBundle, RecordPage

OPPORTUNITIES = Stream(
    "opportunities",
    key="Id",
    cursor_field="SystemModstamp",
    # SystemModstamp is set when the record's transaction starts: it may commit after later stamps
    lag=timedelta(minutes=5),
    paginator=NextUrl(),  # query results (and child subqueries) page by nextRecordsUrl until done
    page_size=2000,  # Sforce-Query-Options batchSize at most (settings.batch_size)
)
LAG = OPPORTUNITIES.lag
PAGES = OPPORTUNITIES.paginator
BOOTSTRAP = timedelta(days=14)  # how much of the 15-day delete log a full pull reads
LINES = "OpportunityLineItems"  # child relationship of Opportunity
ENTRIES = "PricebookEntries"  # child relationship of Product2
CONTACT_ROLES = "OpportunityContactRoles"  # child relationship of Opportunity: contacts with their role
CONTACT_ROLE_COLUMNS = (
    "Id",
    "Role",
    "IsPrimary",
    "ContactId",
    "Contact.Email",
    "Contact.FirstName",
    "Contact.LastName",
)

ACCOUNT_ROLES = "AccountContactRoles"  # child relationship of Account: its contacts with their role
ACCOUNT_ROLE_COLUMNS = ("Id", "AccountId", *CONTACT_ROLE_COLUMNS[1:])
ACCOUNTS_PER_ROLE_QUERY = 200  # ids in one IN list: ~4,600 characters, well under the query URL's limit

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
    "Product2": ("Id", "Name", "ProductCode", "SystemModstamp"),
    "PricebookEntry": ("Id", "CurrencyIsoCode", "UnitPrice", "SystemModstamp"),
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
        f"SELECT {', '.join(deal + account)}, (SELECT {', '.join(line)} FROM {LINES}), "
        f"(SELECT {', '.join(CONTACT_ROLE_COLUMNS)} FROM {CONTACT_ROLES}) "
        f"FROM Opportunity{where} ORDER BY SystemModstamp, Id"
    )


def account_roles_soql(account_ids: Sequence[str]) -> str:
    """The contact roles of some Accounts (AccountContactRole): a query of its own, since SOQL cannot
    nest the Account's child relationship under the Opportunity's lookup to it."""
    quoted = ", ".join(f"'{i}'" for i in account_ids)
    return (
        f"SELECT {', '.join(ACCOUNT_ROLE_COLUMNS)} FROM AccountContactRole "
        f"WHERE AccountId IN ({quoted}) ORDER BY AccountId, Id"
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
    """Where a pull stopped, small enough for the store's cursor column (well under 200 characters).

    ``delivered``: the lag window over SystemModstamp (its newest stamp is ``since``);
    ``window``: a digest of the (Id, SystemModstamp) pairs delivered in the lag window [since - LAG,
    since] (the pairs themselves would not fit the column); ``deleted_from``: where the delete log
    was read up to. The next pull re-reads the lag window: if its records are exactly those the
    digest says were delivered, they are skipped; if not (a late commit, or a page interrupted
    within one SystemModstamp), the whole window is delivered again, which storing tolerates.
    """

    delivered: LagWindow[datetime] = field(default_factory=lambda: LagWindow(LAG))
    window: str | None = None
    deleted_from: datetime | None = None

    @property
    def since(self) -> datetime | None:
        """The last SystemModstamp delivered."""
        return self.delivered.newest

    @classmethod
    def decode(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            LagWindow(LAG, parse_sf_datetime(data["since"]) if data.get("since") else None),
            data.get("window"),
            parse_sf_datetime(data["deleted_from"]) if data.get("deleted_from") else None,
        )

    def encode(self) -> str:
        seen = self.delivered.seen  # this run's deliveries within the window
        return json.dumps(
            {
                "since": soql_datetime(self.since) if self.since else None,
                "window": window_digest(seen) if seen else self.window,
                "deleted_from": soql_datetime(self.deleted_from) if self.deleted_from else None,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    def deliver(self, record_id: str, stamp: str) -> None:
        """Note a delivered record; forget what fell out of the lag window."""
        self.delivered.deliver(record_id, parse_sf_datetime(stamp))


def window_digest(pairs: Mapping[str, str] | Mapping[str, datetime]) -> str:
    """A short digest of (Id, SystemModstamp) pairs, independent of their order."""
    moments = {i: s if isinstance(s, datetime) else parse_sf_datetime(s) for i, s in pairs.items()}
    text = "\n".join(f"{i}@{moment.isoformat()}" for i, moment in sorted(moments.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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

    def pull(self, cursor: str | None) -> Iterator[RecordPage[DealBundle]]:
        state = Cursor.decode(cursor)
        calls_before = self.client.calls
        products = self.products()
        deleted_ids = self._deleted(state)
        old_since = state.since
        pending: list[dict[str, Any]] | None = [] if old_since is not None else None  # the re-read window
        options = self.client.request_options()
        since = old_since - LAG if old_since is not None else None
        soql = deals_soql(self.columns, since)

        def fetch(next_url: str | None) -> Any:
            return self.client.call(lambda sf: sf.query(soql, **options)) if next_url is None else self._more(next_url)

        for result in PAGES.pages(fetch):
            last = PAGES.next_token(result, None) is None
            bundles: list[DealBundle] = []
            for record in result["records"]:
                if pending is not None and old_since is not None:
                    if parse_sf_datetime(record["SystemModstamp"]) <= old_since:
                        pending.append(record)
                        continue
                    bundles += self._settle(pending, state, products)
                    pending = None
                bundles.append(self._bundle(record, products))
                state.deliver(record["Id"], record["SystemModstamp"])
            if pending is not None and last:
                bundles += self._settle(pending, state, products)
                pending = None
            if self.client.settings.account_contact_roles:
                bundles = self._with_account_roles(bundles)
            yield RecordPage(
                bundles, state.encode(), deleted_ids=deleted_ids, api_calls=self.client.calls - calls_before
            )
            calls_before, deleted_ids = self.client.calls, []

    def _settle(
        self, window: list[dict[str, Any]], state: Cursor, products: Mapping[str, dict[str, Any]]
    ) -> list[DealBundle]:
        """The re-read lag window: nothing if it holds exactly what was delivered, else all of it."""
        pairs = {r["Id"]: r["SystemModstamp"] for r in window}
        again = not pairs or window_digest(pairs) != state.window
        for record in window:
            state.deliver(record["Id"], record["SystemModstamp"])
        return [self._bundle(r, products) for r in window] if again and pairs else []

    def _with_account_roles(self, bundles: list[DealBundle]) -> list[DealBundle]:
        """The page's bundles with their Account's contact roles (``AccountContactRoles`` on the
        company, shaped as a child relationship result), read in queries of up to 200 accounts."""
        ids = sorted({str(b.company["Id"]) for b in bundles if b.company and b.company.get("Id")})
        roles: dict[str, list[dict[str, Any]]] = {}
        options = self.client.request_options()
        for start in range(0, len(ids), ACCOUNTS_PER_ROLE_QUERY):
            soql = account_roles_soql(ids[start : start + ACCOUNTS_PER_ROLE_QUERY])

            def fetch(next_url: str | None, soql: str = soql) -> Any:
                if next_url is None:
                    return self.client.call(lambda sf: sf.query(soql, **options))
                return self._more(next_url)

            for result in PAGES.pages(fetch):
                for row in result["records"]:
                    roles.setdefault(str(row["AccountId"]), []).append(row)
        out = []
        for bundle in bundles:
            if bundle.company and bundle.company.get("Id"):
                mine = roles.get(str(bundle.company["Id"]), [])
                result = {"totalSize": len(mine), "done": True, "records": mine} if mine else None
                bundle = replace(bundle, company={**bundle.company, ACCOUNT_ROLES: result})
            out.append(bundle)
        return out

    def products(self) -> dict[str, dict[str, Any]]:
        """The price book once per run: Product2 Id -> product with its PricebookEntries records."""
        soql = products_soql(self.columns)
        options = self.client.request_options()

        def fetch(next_url: str | None) -> Any:
            return self.client.call(lambda sf: sf.query(soql, **options)) if next_url is None else self._more(next_url)

        products: dict[str, dict[str, Any]] = {}
        for result in PAGES.pages(fetch):
            for record in result["records"]:
                entries = self._children(record, ENTRIES)
                products[record["Id"]] = {
                    **record,
                    ENTRIES: {"totalSize": len(entries), "done": True, "records": entries},
                }
        return products

    def _more(self, next_url: str) -> Any:
        timeout = self.client.settings.timeout_seconds
        return self.client.call(lambda sf: sf.query_more(next_url, identifier_is_url=True, timeout=timeout))

    def _children(self, record: Mapping[str, Any], relationship: str) -> list[dict[str, Any]]:
        """A child subquery's records, following its own nextRecordsUrl when Salesforce paged it."""
        first = record.get(relationship)
        if not first:
            return []
        rows: list[dict[str, Any]] = []
        for result in PAGES.pages(lambda next_url: first if next_url is None else self._more(next_url)):
            rows.extend(result["records"])
        return rows

    def _bundle(self, record: dict[str, Any], products: Mapping[str, dict[str, Any]]) -> DealBundle:
        lines = self._children(record, LINES)
        if record.get(CONTACT_ROLES):  # every page of the roles, in the shape of a one-page result
            roles = self._children(record, CONTACT_ROLES)
            record = {**record, CONTACT_ROLES: {"totalSize": len(roles), "done": True, "records": roles}}
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

        A full pull reads the last ``BOOTSTRAP`` of the log: it starts the delete cursor on the
        server's clock (``latestDateCovered``), not on the newest SystemModstamp, which in a quiet
        org is older than the log, and after a cursor reset it ends what was deleted meanwhile.
        Salesforce keeps the delete log for 15 days: a cursor older than that fails with
        INVALID_REPLICATION_DATE (fatal), and the stream needs a full pull (cursor None).
        """
        end = self.clock()
        if state.since is None or state.deleted_from is None and end - state.since > BOOTSTRAP:
            start = end - BOOTSTRAP
        else:
            start = state.deleted_from or state.since - LAG
        if end.replace(microsecond=0) <= start.replace(microsecond=0):  # the API takes whole seconds
            return []
        params = {"start": start.isoformat(timespec="seconds"), "end": end.isoformat(timespec="seconds")}
        timeout = self.client.settings.timeout_seconds

        def get(sf: Salesforce) -> Any:
            return sf.restful("sobjects/Opportunity/deleted/", params=params, timeout=timeout)

        body = self.client.call(get)
        covered = parse_sf_datetime(body["latestDateCovered"]) if body.get("latestDateCovered") else end
        # The server's clock may lag ours: what it covered is where the next run starts.
        state.deleted_from = covered if state.since is None else max(start, covered)
        return [row["id"] for row in body.get("deletedRecords", [])]
