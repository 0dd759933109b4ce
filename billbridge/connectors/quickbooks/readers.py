"""Reading a QuickBooks company: queries paged by start position, look-ups by a field, and the
payments changed since a cursor as vendor records (mapping them is ``mapping.quickbooks``'s work).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from billbridge.connectors.base import Stream
from billbridge.connectors.paging import ChangedSince, StartPosition
from billbridge.connectors.quickbooks.client import QuickBooksClient
from billbridge.connectors.quickbooks.connection import QuickBooksConnection, chunks, quote
from billbridge.records import RecordPage

LOOKUP_CHUNK = 30  # names / numbers per IN (...) lookup query
QUERY_PAGE = 1000  # QuickBooks' MAXRESULTS ceiling
CDC_LOOKBACK = timedelta(days=29, hours=23)  # Intuit: change data capture reaches 30 days back
CDC_MAX_OBJECTS = 1000  # Intuit: a change data capture answer holds at most 1,000 objects of an entity
CDC_PAGES = ChangedSince(
    CDC_MAX_OBJECTS, lambda row: str(row["MetaData"]["LastUpdatedTime"]) if row.get("MetaData") else None
)
PAYMENT_PAGES = StartPosition(200)
PAYMENTS = Stream(
    "payments",
    key="Id",
    cursor_field="MetaData.LastUpdatedTime",
    lag=timedelta(minutes=5),  # QuickBooks' timestamps can lag commits
    paginator=PAYMENT_PAGES,
    page_size=PAYMENT_PAGES.size,
)
PAYMENT_PAGE = PAYMENTS.page_size
EPOCH = "1970-01-01T00:00:00+00:00"


class QuickBooksReader(QuickBooksConnection):
    """The reads of one company."""

    _currency_prefs: tuple[str, bool] | None = None

    def invoice_link(self, invoice_id: str) -> str | None:
        """The invoice's sharable ``InvoiceLink`` (where the customer views and pays it online), asked
        for with ``include=invoiceLink`` as Intuit documents; None when QuickBooks gives none (online
        payment off for it, or no BillEmail)."""

        def read(qb: QuickBooksClient) -> dict[str, Any]:
            url = self._url(qb, f"invoice/{invoice_id}")
            return dict(qb.make_request("GET", url, params={"include": "invoiceLink"}))

        link = self._call(read, what="read invoice link")["Invoice"].get("InvoiceLink")
        return str(link) if link else None

    def query(self, text: str) -> dict[str, Any]:
        """One query call: the ``QueryResponse`` object."""
        result = self._call(lambda qb: qb.query(text), what="query")
        return dict(result.get("QueryResponse", {}))

    def query_all(self, entity: str, where: str | None = None, order_by: str | None = None) -> Iterator[dict[str, Any]]:
        """Every matching record, paged with STARTPOSITION / MAXRESULTS (whole records: QuickBooks
        supports no projections)."""
        text = (
            f"SELECT * FROM {entity}"
            + (f" WHERE {where}" if where else "")
            + (f" ORDERBY {order_by}" if order_by else "")
        )
        paging = StartPosition(QUERY_PAGE)
        for rows in paging.pages(lambda start: self.query(f"{text} {paging.clause(start)}").get(entity, [])):
            yield from rows

    def find(
        self, entity: str, field: str, values: Iterable[str], *, also: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """Records whose ``field`` is one of ``values`` (and meeting ``also``, a further condition),
        keyed by that field (first by Id when repeated)."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(sorted(set(values)), LOOKUP_CHUNK):
            where = f"{field} IN ({', '.join(quote(v) for v in chunk)})" + (f" AND {also}" if also else "")
            for row in sorted(self.query_all(entity, where), key=lambda r: int(r["Id"])):
                found.setdefault(str(row[field]), row)
        return found

    def currency_prefs(self) -> tuple[str, bool]:
        """The company's home currency and whether multicurrency is on (Preferences.CurrencyPrefs), read
        once per connector: neither changes under a running post (multicurrency cannot be turned off)."""
        if self._currency_prefs is None:

            def read(qb: QuickBooksClient) -> dict[str, Any]:
                return dict(qb.make_request("GET", self._url(qb, "preferences")))

            prefs = self._call(read, what="preferences")["Preferences"].get("CurrencyPrefs", {})
            home = str((prefs.get("HomeCurrency") or {}).get("value", ""))
            self._currency_prefs = (home, bool(prefs.get("MultiCurrencyEnabled")))
        return self._currency_prefs

    def exchange_rate(self, source: str, as_of: date) -> Decimal:
        """QuickBooks' own rate from ``source`` into the home currency on ``as_of`` (home units per foreign
        unit: ``GET /exchangerate?sourcecurrencycode=&asofdate=``), the rate its screens would use that day."""

        def read(qb: QuickBooksClient) -> dict[str, Any]:
            params = {"sourcecurrencycode": source, "asofdate": as_of.isoformat()}
            return dict(qb.make_request("GET", self._url(qb, "exchangerate"), params=params))

        return Decimal(str(self._call(read, what="exchange rate")["ExchangeRate"]["Rate"]))

    def payments_of(self, customer_ids: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Every Payment of these customers (PrivateNote cannot be filtered in a query)."""
        for chunk in chunks(sorted(set(customer_ids)), LOOKUP_CHUNK):
            yield from self.query_all("Payment", where=f"CustomerRef IN ({', '.join(quote(c) for c in chunk)})")

    def payment_records(
        self, since: str, linked: Callable[[dict[str, Any]], set[str]], page_size: int = PAYMENT_PAGE
    ) -> Iterator[RecordPage[dict[str, Any]]]:
        """Payments changed since ``since`` (inclusive), oldest change first, in pages, each with the
        DocNumbers of the invoices its payments are linked to (``linked``: a payment's invoice Ids, as
        the mapping reads them), each invoice read once per pull."""
        numbers: dict[str, str] = {}
        paging = PAYMENT_PAGES if page_size == PAYMENT_PAGES.size else StartPosition(page_size)
        stamp = PAYMENTS.cursor_field
        text = f"SELECT * FROM Payment WHERE {stamp} >= {quote(since)} ORDERBY {stamp}"
        for rows in paging.pages(lambda start: self.query(f"{text} {paging.clause(start)}").get("Payment", [])):
            if not rows:
                return
            wanted = {txn for p in rows for txn in linked(p)}
            unknown = wanted - numbers.keys()
            if unknown:
                found = self.find("Invoice", "Id", unknown)
                numbers |= {i: str(r.get("DocNumber", "")) for i, r in found.items()}
            newest = max(str(r["MetaData"]["LastUpdatedTime"]) for r in rows)
            yield RecordPage(list(rows), newest, related=numbers)  # related: Invoice Id -> DocNumber

    def deleted_payment_records(self, since: str) -> list[dict[str, Any]]:
        """Tombstones of the Payments deleted since ``since``: only change data capture reports them (a
        query no longer finds them), for the last 30 days."""
        changed_since = max(datetime.fromisoformat(since), datetime.now(UTC) - CDC_LOOKBACK).isoformat()

        def changes(from_time: str | None) -> list[dict[str, Any]]:
            def read(qb: QuickBooksClient) -> dict[str, Any]:
                url = self._url(qb, "cdc")
                return dict(qb.make_request("GET", url, params={"entities": "Payment", "changedSince": from_time}))

            answer = self._call(read, what="cdc")
            return [
                row
                for response in answer.get("CDCResponse", [])
                for group in response.get("QueryResponse", [])
                for row in group.get("Payment", [])
            ]

        tombstones: dict[str, dict[str, Any]] = {}
        for rows in CDC_PAGES.pages(changes, first=changed_since):
            tombstones |= {str(r.get("Id")): r for r in rows if r.get("status") == "Deleted"}
        return list(tombstones.values())
