"""Reading a QuickBooks company: queries paged by start position, look-ups by a field, and the
payments changed since a cursor as vendor records (mapping them is ``mapping.quickbooks``'s work).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from billbridge.connectors.paging import StartPosition
from billbridge.connectors.quickbooks.client import QuickBooksClient
from billbridge.connectors.quickbooks.connection import QuickBooksConnection, chunks, quote

LOOKUP_CHUNK = 30  # names / numbers per IN (...) lookup query
QUERY_PAGE = 1000  # QuickBooks' MAXRESULTS ceiling
PAYMENT_PAGE = 200
CDC_LOOKBACK = timedelta(days=29, hours=23)  # Intuit: change data capture reaches 30 days back
CURSOR_LAG = timedelta(minutes=5)  # re-read this much before the cursor: QuickBooks' timestamps can lag commits
EPOCH = "1970-01-01T00:00:00+00:00"


@dataclass(frozen=True)
class PaymentRecords:
    """One page of Payment records as QuickBooks holds them, with what mapping them needs."""

    records: list[dict[str, Any]]
    cursor: str  # the newest LastUpdatedTime in this page: store it after the page is safely stored
    doc_numbers: dict[str, str] = field(default_factory=dict)  # QuickBooks Invoice Id -> its DocNumber


class QuickBooksReader(QuickBooksConnection):
    """The reads of one company."""

    def query(self, text: str) -> dict[str, Any]:
        """One query call: the ``QueryResponse`` object."""
        result = self._call(lambda qb: qb.query(text), what="query")
        return dict(result.get("QueryResponse", {}))

    def query_all(
        self, entity: str, select: str = "*", where: str | None = None, order_by: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every matching record, paged with STARTPOSITION / MAXRESULTS."""
        text = (
            f"SELECT {select} FROM {entity}"
            + (f" WHERE {where}" if where else "")
            + (f" ORDERBY {order_by}" if order_by else "")
        )
        paging = StartPosition(QUERY_PAGE)
        for rows in paging.pages(lambda start: self.query(f"{text} {paging.clause(start)}").get(entity, [])):
            yield from rows

    def find(self, entity: str, field: str, values: Iterable[str], select: str = "*") -> dict[str, dict[str, Any]]:
        """Records whose ``field`` is one of ``values``, keyed by that field (first by Id when repeated)."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(sorted(set(values)), LOOKUP_CHUNK):
            where = f"{field} IN ({', '.join(quote(v) for v in chunk)})"
            for row in sorted(self.query_all(entity, select, where), key=lambda r: int(r["Id"])):
                found.setdefault(str(row[field]), row)
        return found

    def payments_of(self, customer_ids: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Every Payment of these customers (PrivateNote cannot be filtered in a query)."""
        for chunk in chunks(sorted(set(customer_ids)), LOOKUP_CHUNK):
            yield from self.query_all("Payment", where=f"CustomerRef IN ({', '.join(quote(c) for c in chunk)})")

    def payment_records(
        self, since: str, linked: Callable[[dict[str, Any]], set[str]], page_size: int = PAYMENT_PAGE
    ) -> Iterator[PaymentRecords]:
        """Payments changed since ``since`` (inclusive), oldest change first, in pages, each with the
        DocNumbers of the invoices its payments are linked to (``linked``: a payment's invoice Ids, as
        the mapping reads them), each invoice read once per pull."""
        numbers: dict[str, str] = {}
        paging = StartPosition(page_size)
        text = (
            f"SELECT * FROM Payment WHERE MetaData.LastUpdatedTime >= {quote(since)} ORDERBY MetaData.LastUpdatedTime"
        )
        for rows in paging.pages(lambda start: self.query(f"{text} {paging.clause(start)}").get("Payment", [])):
            if not rows:
                return
            wanted = {txn for p in rows for txn in linked(p)}
            unknown = wanted - numbers.keys()
            if unknown:
                found = self.find("Invoice", "Id", unknown, "Id, DocNumber")
                numbers |= {i: str(r.get("DocNumber", "")) for i, r in found.items()}
            yield PaymentRecords(list(rows), max(str(r["MetaData"]["LastUpdatedTime"]) for r in rows), numbers)

    def deleted_payment_records(self, since: str) -> list[dict[str, Any]]:
        """Tombstones of the Payments deleted since ``since``: only change data capture reports them (a
        query no longer finds them), for the last 30 days."""
        changed_since = max(datetime.fromisoformat(since), datetime.now(UTC) - CDC_LOOKBACK).isoformat()

        def read(qb: QuickBooksClient) -> dict[str, Any]:
            url = self._url(qb, "cdc")
            return dict(qb.make_request("GET", url, params={"entities": "Payment", "changedSince": changed_since}))

        answer = self._call(read, what="cdc")
        return [
            row
            for response in answer.get("CDCResponse", [])
            for group in response.get("QueryResponse", [])
            for row in group.get("Payment", [])
            if row.get("status") == "Deleted"
        ]
