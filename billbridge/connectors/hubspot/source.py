"""HubSpot deals as pages of ``DealBundle``s: an incremental search by hs_lastmodifieddate, then batch reads per page.

Per search page (up to 200 deals): one associations v4 read for line items and one for companies,
line items in batches of 100, and the companies and products not yet read in this run (cached).
Billing contacts: one v4 read of the deals' contacts (with their association labels), one of the
contacts of the companies not yet asked whose deal has none under the label, and the contacts in
batches of 100.
Archived deals come last, from the v3 list with ``archived=true``, as deletions.

The cursor (JSON) holds the highest hs_lastmodifieddate and archivedAt seen, and the id ->
timestamp of records seen within the lag window: the next pull starts ``LAG_MS`` before the
cursor (inclusive) and skips what it has already seen at the same timestamp.

HubSpot's search stops at 10,000 results per query (asking for more is a 400). The pull never asks:
when the next page would cross the cap it starts a new date window at the last timestamp it read
(the records sharing that timestamp come again and are skipped as seen). Should one millisecond hold
more than the cap, that millisecond is walked by hs_object_id instead (``CappedSearch``, a paginator
whose token is the query and the page within it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from billbridge.connectors.base import Stream
from billbridge.connectors.cursor import LagWindow, lag_ms
from billbridge.connectors.hubspot.client import ASSOCIATIONS_BATCH_SIZE, HubSpotClient, Json
from billbridge.connectors.paging import AfterCursor, Paginator
from billbridge.records import DealBundle, RecordPage
from billbridge.settings import HubSpotSettings, Settings

DEALS = Stream(
    "deals",
    key="id",
    cursor_field="hs_lastmodifieddate",
    lag=timedelta(minutes=1),  # the search index trails writes
    paginator=AfterCursor(stop_when_empty=True),  # a search page past the results comes back empty
    page_size=200,  # search: at most 200 per page
)
ARCHIVED_DEALS = Stream(
    "archived deals", key="id", cursor_field="archivedAt", lag=DEALS.lag, paginator=AfterCursor(), page_size=100
)
SEARCH_PAGE_SIZE = DEALS.page_size
SEARCH_RESULT_CAP = 10_000  # search: no query pages past its first 10,000 results
LAG_MS = lag_ms(DEALS.lag)
MODIFIED = DEALS.cursor_field


def modified_ms(record: Json) -> int:
    """hs_lastmodifieddate (ISO 8601 with Z, or epoch milliseconds) as epoch milliseconds."""
    value = str(record["properties"].get(MODIFIED) or record.get("updatedAt"))
    if value.isdigit():
        return int(value)
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def _archived_ms(record: Json) -> int:
    value = str(record.get("archivedAt") or record.get("updatedAt"))
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass
class HubSpotCursor:
    """Two lag windows over epoch milliseconds: deals by hs_lastmodifieddate, archived deals by archivedAt."""

    deals: LagWindow[int] = field(default_factory=lambda: LagWindow(LAG_MS))
    archived: LagWindow[int] = field(default_factory=lambda: LagWindow(LAG_MS))

    @classmethod
    def decode(cls, text: str | None) -> HubSpotCursor:
        if not text:
            return cls()
        raw = json.loads(text)
        return cls(
            LagWindow(LAG_MS, raw.get("modified"), dict(raw.get("seen", {}))),
            LagWindow(LAG_MS, raw.get("archived"), dict(raw.get("gone", {}))),
        )

    def encode(self) -> str:
        body = {
            "modified": self.deals.newest,
            "archived": self.archived.newest,
            "seen": self.deals.recent(),
            "gone": self.archived.recent(),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class SearchWindow:
    """One query of the deals search and the page within it: deals modified from ``low`` on (None:
    all), or, while one millisecond ``same`` holding more than the cap is walked, that millisecond's
    deals after id ``last_id``; ``after`` is HubSpot's cursor within the query (None: its first page)."""

    low: int | None
    same: int | None = None
    last_id: str = "0"
    after: str | None = None

    def filters(self) -> list[Json]:
        if self.same is not None:
            return [
                {"propertyName": MODIFIED, "operator": "EQ", "value": str(self.same)},
                {"propertyName": "hs_object_id", "operator": "GT", "value": self.last_id},
            ]
        return [] if self.low is None else [{"propertyName": MODIFIED, "operator": "GTE", "value": str(self.low)}]

    def sort(self) -> str:
        return "hs_object_id" if self.same is not None else MODIFIED


@dataclass(frozen=True)
class CappedSearch(Paginator[Json, SearchWindow]):
    """The deals search as one list, though no query pages past ``cap`` results: within a query,
    ``DEALS.paginator`` (HubSpot's ``paging.next.after``); where the next page would cross the cap, a
    new query from the last timestamp read (the deals sharing it come again, skipped as seen by the
    cursor), or, when that timestamp is the query's own start (a cap's worth of deals in one
    millisecond), that millisecond by id, then on from the next millisecond."""

    cap: int

    def next_token(self, page: Json, token: SearchWindow | None) -> SearchWindow | None:
        window = token or SearchWindow(None)
        after = DEALS.paginator.next_token(page, window.after)
        if after is None:  # the query is read to its end
            return None if window.same is None else SearchWindow(window.same + 1)
        if int(after) < self.cap:
            return replace(window, after=str(after))
        last = page["results"][-1]
        if window.same is not None:
            return replace(window, last_id=str(last["id"]), after=None)
        at = modified_ms(last)
        if window.low is None or at > window.low:
            return SearchWindow(at)
        return SearchWindow(window.low, same=at)


class HubSpotSource:
    """``DealSource`` for HubSpot. ``page_size`` and ``search_cap`` default to HubSpot's limits."""

    name = "hubspot"

    def __init__(
        self,
        settings: HubSpotSettings,
        *,
        client: HubSpotClient | None = None,
        page_size: int = SEARCH_PAGE_SIZE,
        search_cap: int = SEARCH_RESULT_CAP,
        group_size: int = ASSOCIATIONS_BATCH_SIZE,
    ) -> None:
        if search_cap % page_size:
            raise ValueError("the search cap must be a whole number of pages")
        self.settings = settings
        self.client = client or HubSpotClient(settings)
        self.page_size, self.search_cap, self.group_size = page_size, search_cap, group_size

    def pull(self, cursor: str | None) -> Iterator[RecordPage[DealBundle]]:
        state = HubSpotCursor.decode(cursor)
        products: dict[str, Json] = {}
        companies: dict[str, Json] = {}
        self._company_contacts: dict[str, list[str]] = {}  # company id -> its labelled contacts (this run)
        self._contacts: dict[str, Json] = {}  # contact id -> contact (this run)
        calls = self.client.calls
        for deals in self._groups(self._search(state.deals.start())):
            fresh = []
            for deal in deals:  # a deal read twice (the lag window, a new search window) counts once
                if state.deals.delivered(str(deal["id"]), modified_ms(deal)):
                    continue
                fresh.append(deal)
                state.deals.deliver(str(deal["id"]), modified_ms(deal))
            bundles = self._bundles(fresh, companies, products)
            yield RecordPage(bundles, cursor=state.encode(), api_calls=self.client.calls - calls)
            calls = self.client.calls
        deleted = self._archived(state)
        yield RecordPage([], deleted_ids=deleted, cursor=state.encode(), api_calls=self.client.calls - calls)

    def _groups(self, pages: Iterator[list[Json]]) -> Iterator[list[Json]]:
        """Search pages joined into groups of up to ``group_size`` deals: one v4 association read
        takes 1,000 ids, so a group costs two association calls instead of two per search page, and
        the batch reads of its lines and companies leave fewer partly filled batches."""
        group: list[Json] = []
        for deals in pages:
            group.extend(deals)
            if len(group) >= self.group_size:
                yield group[: self.group_size]
                group = group[self.group_size :]
        if group:
            yield group

    def _query(self, window: SearchWindow | None) -> Json:
        window = window or SearchWindow(None)
        body: Json = {
            "filterGroups": [{"filters": window.filters()}] if window.filters() else [],
            "sorts": [{"propertyName": window.sort(), "direction": "ASCENDING"}],
            "properties": self.settings.deal_properties,
            "limit": self.page_size,
            "after": window.after or "0",
        }
        return self.client.search("deals", body)

    def _search(self, low: int | None) -> Iterator[list[Json]]:
        for answer in CappedSearch(self.search_cap).pages(self._query, first=SearchWindow(low)):
            yield answer["results"]

    def _bundles(self, deals: list[Json], companies: dict[str, Json], products: dict[str, Json]) -> list[DealBundle]:
        if not deals:
            return []
        client, settings = self.client, self.settings
        ids = [str(d["id"]) for d in deals]
        line_ids = client.associations("deals", "line_items", ids)
        company_links = client.labelled_associations("deals", "companies", ids)
        company_ids = {i: _billed_companies(links) for i, links in company_links.items()}
        wanted_lines = [i for i in ids for i in line_ids[i]]
        lines = {str(x["id"]): x for x in client.batch_read("line_items", wanted_lines, settings.line_item_properties)}
        new_companies = sorted({c for i in ids for c in company_ids[i][:1]} - companies.keys())
        if new_companies:
            read = client.batch_read("companies", new_companies, settings.company_properties)
            companies.update({str(c["id"]): c for c in read})
        product_ids = {str(x["properties"].get("hs_product_id") or "") for x in lines.values()} - {""}
        new_products = sorted(product_ids - products.keys())
        if new_products:
            read = client.batch_read("products", new_products, settings.product_properties)
            products.update({str(p["id"]): p for p in read})
        contacts = self._billing_contacts(ids, company_ids)
        bundles = []
        for deal in deals:
            deal_lines = [lines[i] for i in line_ids[str(deal["id"])] if i in lines]
            company = company_ids[str(deal["id"])][:1]
            used = {str(x["properties"].get("hs_product_id") or "") for x in deal_lines}
            bundles.append(
                DealBundle(
                    deal=deal,
                    lines=deal_lines,
                    company=companies.get(company[0]) if company else None,
                    products={p: products[p] for p in sorted(used) if p in products},
                    labelled=_by_label(company_links[str(deal["id"])]),
                    contacts=contacts.get(str(deal["id"])),
                )
            )
        return bundles

    def _labelled(self, from_type: str, ids: list[str], label: str) -> dict[str, list[str]]:
        """The contacts associated with each record under ``label`` (one v4 read per 1,000 records)."""
        links = self.client.labelled_associations(from_type, "contacts", ids)
        return {i: [to for to, labels in found if label in labels] for i, found in links.items()}

    def _billing_contacts(self, ids: list[str], company_ids: dict[str, list[str]]) -> dict[str, list[Json]]:
        """Each deal's billing contacts: those associated with the deal under the configured label,
        else those associated so with its company (each company asked once per run), read in
        batches of 100. No label configured (None or empty): none are read and the bundles say nothing of contacts."""
        label = self.settings.billing_contact_label
        if not label:
            return {}
        on_deal = self._labelled("deals", ids, label)
        bare = sorted({c for i in ids if not on_deal[i] for c in company_ids[i][:1]} - self._company_contacts.keys())
        if bare:
            self._company_contacts.update(self._labelled("companies", bare, label))
        chosen = {
            i: on_deal[i] or [c for company in company_ids[i][:1] for c in self._company_contacts.get(company, [])]
            for i in ids
        }
        wanted = sorted({c for found in chosen.values() for c in found} - self._contacts.keys())
        if wanted:
            read = self.client.batch_read("contacts", wanted, self.settings.contact_properties)
            self._contacts.update({str(c["id"]): c for c in read})
        return {i: [self._contacts[c] for c in found if c in self._contacts] for i, found in chosen.items()}

    def _archived(self, state: HubSpotCursor) -> list[str]:
        """Deals archived since the cursor (all archived ones on a first pull)."""
        since = state.archived.start()
        deleted: list[str] = []

        def fetch(after: str | None) -> Json:
            return self.client.list_page(
                "deals", after=after, properties=[MODIFIED], archived=True, limit=ARCHIVED_DEALS.page_size
            )

        for answer in ARCHIVED_DEALS.paginator.pages(fetch):
            for deal in answer["results"]:
                at, deal_id = _archived_ms(deal), str(deal["id"])
                if (since is None or at >= since) and not state.archived.delivered(deal_id, at):
                    deleted.append(deal_id)
                    state.archived.deliver(deal_id, at)
        return deleted


PRIMARY_LABEL = "Primary"  # HubSpot's label of the deal's primary company (association type 5)


def _billed_companies(links: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """The deal's companies, the one billed first: a company associated only under another label
    (a referral partner, a reseller) comes after the primary and unlabelled ones."""
    plain = [to for to, labels in links if not set(labels) - {PRIMARY_LABEL}]
    return plain + [to for to, _ in links if to not in plain]


def _by_label(links: list[tuple[str, tuple[str, ...]]]) -> dict[str, list[str]]:
    """Company ids by the labels of their links (HubSpot's own Primary label left out)."""
    out: dict[str, list[str]] = {}
    for to, labels in links:
        for label in labels:
            if label != PRIMARY_LABEL:
                out.setdefault(label, []).append(to)
    return out


def connect(settings: Settings | None = None) -> HubSpotSource:
    """The configured connector (``flows.sync_crm`` calls this) from ``settings.hubspot`` (read
    afresh when ``settings`` is None)."""
    return HubSpotSource((settings or Settings()).vendor(HubSpotSettings))
