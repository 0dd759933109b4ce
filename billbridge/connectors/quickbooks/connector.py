"""Writers and readers for QuickBooks Online: customers, items, invoices and credit memos out; payments in.

Every HTTP call goes through ``call_with_retries`` with ``classify_quickbooks``; a 401 refreshes the
token once through the ``TokenKeeper`` and rebuilds the python-quickbooks client (its OAuth session
holds the old token). Writes go through the batch endpoint, 30 operations at a time, each batch with a
deterministic ``requestid`` so a retry after a lost answer is replayed, not re-executed.

python-quickbooks' ``BatchManager`` cannot carry a requestid (``batch_operation`` posts without one)
and makes random ``bId`` values, so batches are posted with the same client's ``make_request``, which
does pass ``request_id``. The payloads are plain dicts from ``mapping/quickbooks.py``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, Literal, TypeVar

from billbridge.billing.documents import IncomingPayment, OutboundDocument
from billbridge.connectors.errors import ErrorKind, RetryPolicy, VendorError, call_with_retries
from billbridge.connectors.pacing import Pacer
from billbridge.connectors.quickbooks.client import (
    VENDOR,
    OAuthClient,
    QuickBooksClient,
    QuickBooksConfig,
    classify_quickbooks,
)
from billbridge.connectors.quickbooks.tokens import IssuedTokens, TokenKeeper, TokenStore
from billbridge.mapping.fields import Refused, map_each, record_id
from billbridge.mapping.quickbooks import (
    CustomerSpec,
    amendments_in,
    customer_payload,
    customer_spec,
    document_payload,
    item_payload,
    linked_invoice_ids,
    note_key,
    payment_amended,
    payment_deleted,
    payment_from_qbo,
    payment_note,
    payment_payload,
    qbo_entity,
)

T = TypeVar("T")
BATCH_LIMIT = 30  # Intuit: at most 30 operations in one batch request
LOOKUP_CHUNK = 30  # names / numbers per IN (...) lookup query
QUERY_PAGE = 1000  # QuickBooks' MAXRESULTS ceiling
PAYMENT_PAGE = 200
CDC_LOOKBACK = timedelta(days=29, hours=23)  # Intuit: change data capture reaches 30 days back
CDC_MAX_OBJECTS = 1000  # Intuit: a change data capture answer holds at most 1,000 objects of an entity
CURSOR_LAG = timedelta(minutes=5)  # re-read this much before the cursor: QuickBooks' timestamps can lag commits
_REQUEST_ID_NS = uuid.UUID("6f9d5f8e-1f8b-4a8c-9d0e-0b1b2b3c4d5e")
_EPOCH = "1970-01-01T00:00:00+00:00"
STALE_OBJECT = "5010"  # Intuit's error code for an update with an outdated SyncToken
DUPLICATE_NAME = "6240"  # Intuit: a Customer (Vendor, Employee) or Item of that name exists
DUPLICATE_DOC_NUMBER = "6140"  # Intuit: the DocNumber is used (with duplicate-number checking on)

PushStatus = Literal["created", "existing", "failed"]


@dataclass(frozen=True)
class PushResult:
    number: str
    doc_type: str
    status: PushStatus
    external_id: str | None = None  # the QuickBooks Id, to store as an external reference
    sync_token: str | None = None
    error: str | None = None
    retriable: bool = False  # failed, but trying again later may work (throttled, down, outcome unknown)


@dataclass(frozen=True)
class PaymentToRecord:
    """A payment collected elsewhere, to enter in QuickBooks against the invoices it paid there."""

    payment: IncomingPayment
    customer_id: str  # the QuickBooks customer
    invoice_ids: Mapping[str, str]  # our invoice number -> QuickBooks Invoice Id


@dataclass(frozen=True)
class AmendmentToRecord:
    """A change to a payment we entered in QuickBooks, to make on that Payment: a refund or dispute
    withdrawal taking money back from its invoices, or its unapplied money applied by hand."""

    change_ref: str  # unique per change (listed in the Payment's PrivateNote once made)
    payment_id: str  # the QuickBooks Payment that entered the payment
    lines: Mapping[str, Decimal]  # QuickBooks Invoice Id -> change of the amount applied to it
    total_change: Decimal  # change of the payment's total (a refund: negative; an application: 0)


@dataclass(frozen=True)
class PaymentPage:
    payments: list[IncomingPayment]
    cursor: str  # the newest LastUpdatedTime in this page: store it after the page is safely stored
    refused: list[Refused] = field(default_factory=list)  # payments the mapping could not read (to quarantine)


@dataclass(frozen=True)
class _Write:
    key: str  # idempotency key of this write
    entity: str
    payload: dict[str, Any]
    operation: Literal["create", "update"] = "create"


@dataclass(frozen=True)
class _Written:
    record: dict[str, Any] | None
    error: str | None = None
    retriable: bool = False
    codes: frozenset[str] = frozenset()  # Intuit's error codes of a refused write


def _quote(value: str) -> str:
    """A string literal of QuickBooks' query language (backslash escapes a quote)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batch_request_id(keys: Iterable[str]) -> str:
    """A 36-character requestid (Intuit's batch limit) determined by the writes the batch carries."""
    return str(uuid.uuid5(_REQUEST_ID_NS, "\n".join(keys)))


def batch_item_id(key: str) -> str:
    """A 10-character bId (Intuit: only 10 characters per bId when a requestid is given)."""
    return hashlib.sha256(key.encode()).hexdigest()[:10]


class QuickBooksConnector:
    """One QuickBooks company, seen through python-quickbooks; no store, no canonical models."""

    def __init__(
        self,
        config: QuickBooksConfig,
        tokens: TokenStore,
        *,
        worker: str | None = None,
        policy: RetryPolicy | None = None,
        pacer: Pacer | None = None,
        batch_pacer: Pacer | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.config = config
        self.policy = policy or RetryPolicy()
        self.pacer = pacer or Pacer(config.requests_per_minute, 60)
        self.batch_pacer = batch_pacer or Pacer(config.batches_per_minute, 60)
        self._sleep = sleep
        self._auth = OAuthClient(config)
        self.keeper = TokenKeeper(tokens, self._spend, worker=worker or uuid.uuid4().hex)
        self._client: QuickBooksClient | None = None
        self._access: str | None = None
        # Customers and items found or made by this connector: a push run's later batches need no look-up.
        self.customer_ids: dict[str, str] = {}
        self.item_ids: dict[str, str] = {}

    def close(self) -> None:
        """Close the HTTP sessions (the OAuth client's and the API client's)."""
        if self._client is not None:
            self._client.session.close()
            self._client = None
        self._auth.close()

    def __enter__(self) -> QuickBooksConnector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------------

    def _spend(self, refresh_token: str) -> IssuedTokens:
        def refresh() -> IssuedTokens:
            self._auth.refresh(refresh_token=refresh_token)
            return IssuedTokens(self._auth.access_token, self._auth.refresh_token, float(self._auth.expires_in))

        return self._retry(refresh, refresh_on_auth=False)

    def _qb(self) -> QuickBooksClient:
        if self._client is None:
            tokens = self.keeper.current()
            self._auth.access_token, self._auth.refresh_token = tokens.access_token, tokens.refresh_token
            self._client, self._access = QuickBooksClient.connect(self.config, self._auth), tokens.access_token
        return self._client

    def _refresh(self) -> None:
        self.keeper.refresh(stale_access=self._access)
        if self._client is not None:
            self._client.session.close()
        self._client = None  # its OAuth2Session carries the old access token

    def _retry(self, call: Callable[[], T], *, refresh_on_auth: bool = True) -> T:
        kwargs: dict[str, Any] = {"policy": self.policy, "refresh": self._refresh if refresh_on_auth else None}
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        return call_with_retries(VENDOR, call, classify_quickbooks, **kwargs)

    def _call(self, call: Callable[[QuickBooksClient], T], pacer: Pacer | None = None) -> T:
        def paced() -> T:
            (pacer or self.pacer).wait()
            return call(self._qb())

        return self._retry(paced)

    def _url(self, qb: QuickBooksClient, endpoint: str) -> str:
        return f"{qb.api_url}/company/{self.config.realm_id}/{endpoint}"

    def _poster(self, endpoint: str, body: str, request_id: str) -> Callable[[QuickBooksClient], dict[str, Any]]:
        def post(qb: QuickBooksClient) -> dict[str, Any]:
            return dict(qb.make_request("POST", self._url(qb, endpoint), body, request_id=request_id))

        return post

    # -- reading ------------------------------------------------------------------------------------

    def query(self, text: str) -> dict[str, Any]:
        """One query call: the ``QueryResponse`` object."""
        result = self._call(lambda qb: qb.query(text))
        return dict(result.get("QueryResponse", {}))

    def query_all(
        self, entity: str, select: str = "*", where: str | None = None, order_by: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every matching record, paged with STARTPOSITION / MAXRESULTS."""
        start = 1
        while True:
            text = (
                f"SELECT {select} FROM {entity}"
                + (f" WHERE {where}" if where else "")
                + (f" ORDERBY {order_by}" if order_by else "")
            )
            rows = self.query(f"{text} STARTPOSITION {start} MAXRESULTS {QUERY_PAGE}").get(entity, [])
            yield from rows
            if len(rows) < QUERY_PAGE:
                return
            start += QUERY_PAGE

    def _find(self, entity: str, field: str, values: Iterable[str], select: str = "*") -> dict[str, dict[str, Any]]:
        """Records whose ``field`` is one of ``values``, keyed by that field (first by Id when repeated)."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(sorted(set(values)), LOOKUP_CHUNK):
            where = f"{field} IN ({', '.join(_quote(v) for v in chunk)})"
            for row in sorted(self.query_all(entity, select, where), key=lambda r: int(r["Id"])):
                found.setdefault(str(row[field]), row)
        return found

    def find_documents(self, docs: Sequence[OutboundDocument]) -> dict[str, dict[str, Any]]:
        """Our documents already in QuickBooks, by DocNumber: the lookup after an uncertain outcome."""
        found: dict[str, dict[str, Any]] = {}
        for entity in sorted({qbo_entity(d) for d in docs}):
            found.update(self._find(entity, "DocNumber", [d.number for d in docs if qbo_entity(d) == entity]))
        return found

    # -- writing ------------------------------------------------------------------------------------

    def _batch(self, writes: Sequence[_Write]) -> dict[str, _Written]:
        """Create ``writes`` through the batch endpoint, 30 per call; the outcome per idempotency key."""
        out: dict[str, _Written] = {}
        for chunk in _chunks(writes, BATCH_LIMIT):
            by_bid = {batch_item_id(w.key): w for w in chunk}
            items = [{"bId": bid, "operation": w.operation, w.entity: w.payload} for bid, w in by_bid.items()]
            body = json.dumps({"BatchItemRequest": items}, sort_keys=True)
            rid = batch_request_id(w.key + "\t" + json.dumps(w.payload, sort_keys=True) for w in chunk)
            try:
                answer = self._call(self._poster("batch", body, rid), self.batch_pacer)
            except VendorError as exc:
                retriable = exc.classified.kind == ErrorKind.RETRIABLE
                out.update({w.key: _Written(None, str(exc), retriable) for w in chunk})
                continue
            for item in answer.get("BatchItemResponse", []):
                write = by_bid[item["bId"]]
                if "Fault" in item:
                    errors = item["Fault"].get("Error", [{}])
                    text = "; ".join(f"{e.get('code')} {e.get('Message')}: {e.get('Detail')}" for e in errors)
                    codes = frozenset(str(e.get("code")) for e in errors)
                    # 5010: an update named an old SyncToken (the record changed since it was read): read again
                    out[write.key] = _Written(None, text, retriable=STALE_OBJECT in codes, codes=codes)
                else:
                    out[write.key] = _Written(item[write.entity])
            for write in chunk:  # QuickBooks answers every bId; if not, the outcome is unknown
                out.setdefault(write.key, _Written(None, "no answer for this batch item", retriable=True))
        return out

    def _ensure(self, writes: Mapping[str, _Write]) -> tuple[dict[str, str], dict[str, _Written]]:
        """Create ``writes`` (by our ref): the new Ids, and the failures."""
        results = self._batch(list(writes.values()))
        outcomes = {ref: results[w.key] for ref, w in writes.items()}
        ids = {ref: str(o.record["Id"]) for ref, o in outcomes.items() if o.record is not None}
        return ids, {ref: o for ref, o in outcomes.items() if o.record is None}

    def _find_or_create(
        self, entity: str, name_field: str, names: Mapping[str, str], write: Callable[[str], _Write]
    ) -> tuple[dict[str, str], dict[str, _Written]]:
        """Ids by our ref of the ``entity`` records named ``names[ref]`` (names are unique in a
        company): looked up by name, created (``write(ref)``) when missing. A create refused because
        the name exists (6240) means another run made it since the look-up: it is looked up again
        and used, so concurrent pushes converge. The name may also be taken by a record queries do
        not return (an inactive customer, a vendor, an employee): that one stays a failure."""
        found = self._find(entity, name_field, names.values())
        ids = {ref: str(found[name]["Id"]) for ref, name in names.items() if name in found}
        created, failed = self._ensure({ref: write(ref) for ref in names if ref not in ids})
        taken = [ref for ref, outcome in failed.items() if DUPLICATE_NAME in outcome.codes]
        again = self._find(entity, name_field, {names[ref] for ref in taken}) if taken else {}
        for ref in taken:
            if names[ref] in again:
                created[ref] = str(again[names[ref]]["Id"])
                del failed[ref]
            else:
                hidden = "the name belongs to an inactive record, a vendor or an employee (queries do not return them)"
                failed[ref] = replace(failed[ref], error=f"{failed[ref].error} ({hidden}: rename one)")
        return ids | created, failed

    def _ensure_customers(self, customers: Sequence[CustomerSpec]) -> tuple[dict[str, str], dict[str, _Written]]:
        payloads = {c.customer_ref: customer_payload(c) for c in customers}
        return self._find_or_create(
            "Customer",
            "DisplayName",
            {ref: payload["DisplayName"] for ref, payload in payloads.items()},
            lambda ref: _Write(f"billbridge-customer-{ref}-create", "Customer", payloads[ref]),
        )

    def _ensure_items(self, items: Mapping[str, str]) -> tuple[dict[str, str], dict[str, _Written]]:
        account = self.config.income_account_id
        return self._find_or_create(
            "Item",
            "Name",
            {sku: sku for sku in items},
            lambda sku: _Write(f"billbridge-item-{sku}-create", "Item", item_payload(sku, items[sku], account)),
        )

    def ensure_customers(self, customers: Sequence[CustomerSpec]) -> dict[str, str]:
        """QuickBooks customer Ids by our customer ref: looked up by DisplayName, created when missing."""
        ids, failed = self._ensure_customers(customers)
        if failed:
            raise QuickBooksWriteError({ref: o.error for ref, o in failed.items()})
        return ids

    def ensure_items(self, items: Mapping[str, str]) -> dict[str, str]:
        """QuickBooks item Ids by SKU (``items``: SKU -> description): looked up by Name, created when missing."""
        ids, failed = self._ensure_items(items)
        if failed:
            raise QuickBooksWriteError({sku: o.error for sku, o in failed.items()})
        return ids

    def push_documents(
        self,
        docs: Sequence[OutboundDocument],
        *,
        customer_ids: Mapping[str, str] | None = None,
        item_ids: Mapping[str, str] | None = None,
        look_up_first: bool = True,
    ) -> list[PushResult]:
        """Create invoices and credit memos, once each; one PushResult per document, in order.

        ``look_up_first`` finds documents already in QuickBooks by DocNumber (an earlier attempt whose
        answer was lost) and reports them ``existing`` instead of creating them again; pass False only
        for documents never attempted before. Customers and items missing from ``customer_ids`` /
        ``item_ids``, and not found or made earlier by this connector, are ensured first (looked up, then
        created); a document whose customer or item could not be made fails alone.
        """
        customers = {**self.customer_ids, **(customer_ids or {})}
        missing = {d.customer_ref: customer_spec(d) for d in docs if d.customer_ref not in customers}
        new_customers, customer_failures = self._ensure_customers(list(missing.values())) if missing else ({}, {})
        self.customer_ids.update(new_customers)
        customers.update(new_customers)
        known_items = {**self.item_ids, **(item_ids or {})}
        skus = {ln.product_ref: ln.description for d in docs for ln in d.lines if ln.product_ref not in known_items}
        new_items, item_failures = self._ensure_items(skus) if skus else ({}, {})
        self.item_ids.update(new_items)
        known_items.update(new_items)
        existing = self.find_documents(docs) if look_up_first else {}
        results: dict[str, PushResult] = {}
        writes: list[_Write] = []
        for doc in docs:
            record = existing.get(doc.number)
            blocker = customer_failures.get(doc.customer_ref) or next(
                (item_failures[ln.product_ref] for ln in doc.lines if ln.product_ref in item_failures), None
            )
            if record is not None:
                results[doc.number] = PushResult(
                    doc.number, doc.doc_type, "existing", str(record["Id"]), str(record["SyncToken"])
                )
            elif blocker is not None:
                error = f"customer or item not in QuickBooks: {blocker.error}"
                results[doc.number] = PushResult(
                    doc.number, doc.doc_type, "failed", error=error, retriable=blocker.retriable
                )
            else:
                try:
                    payload = document_payload(doc, customer_id=customers[doc.customer_ref], item_ids=known_items)
                except (ValueError, KeyError) as exc:
                    results[doc.number] = PushResult(doc.number, doc.doc_type, "failed", error=f"cannot map: {exc!r}")
                    continue
                writes.append(_Write(doc.idempotency_key("qbo-create"), qbo_entity(doc), payload))
        written = self._batch(writes)
        # 6140: the DocNumber is taken (an earlier attempt whose answer was lost made it): look it up
        taken = [
            d
            for d in docs
            if d.number not in results and DUPLICATE_DOC_NUMBER in written[d.idempotency_key("qbo-create")].codes
        ]
        found = self.find_documents(taken) if taken else {}
        for doc in docs:
            if doc.number in results:
                continue
            outcome = written[doc.idempotency_key("qbo-create")]
            if doc.number in found:
                record = found[doc.number]
                results[doc.number] = PushResult(
                    doc.number, doc.doc_type, "existing", str(record["Id"]), str(record["SyncToken"])
                )
            elif outcome.record is None:
                results[doc.number] = PushResult(
                    doc.number, doc.doc_type, "failed", error=outcome.error, retriable=outcome.retriable
                )
            else:
                results[doc.number] = PushResult(
                    doc.number, doc.doc_type, "created", str(outcome.record["Id"]), str(outcome.record["SyncToken"])
                )
        return [results[d.number] for d in docs]

    def record_payments(self, payments: Sequence[PaymentToRecord], *, look_up_first: bool = True) -> list[PushResult]:
        """Enter payments (collected by Stripe, say) in QuickBooks, once each, so its receivables are right.

        A recorded payment carries ``payment_note`` in its PrivateNote; ``look_up_first`` searches the
        customers' payments for it (PrivateNote cannot be filtered in a query) before creating again.
        """
        existing: dict[str, dict[str, Any]] = {}
        if look_up_first:
            customers = {p.customer_id for p in payments}
            for chunk in _chunks(sorted(customers), LOOKUP_CHUNK):
                where = f"CustomerRef IN ({', '.join(_quote(c) for c in chunk)})"
                existing |= {note_key(r.get("PrivateNote")): r for r in self.query_all("Payment", where=where)}
        results: dict[str, PushResult] = {}
        writes: dict[str, _Write] = {}
        for item in payments:
            ref, note = item.payment.payment_ref, payment_note(item.payment)
            if note in existing:
                found = existing[note]
                results[ref] = PushResult(ref, "payment", "existing", str(found["Id"]), str(found["SyncToken"]))
                continue
            try:
                payload = payment_payload(item.payment, customer_id=item.customer_id, invoice_ids=item.invoice_ids)
            except (ValueError, KeyError) as exc:
                results[ref] = PushResult(ref, "payment", "failed", error=f"cannot map: {exc!r}")
                continue
            writes[ref] = _Write(f"billbridge-payment-{item.payment.source}-{ref}-qbo-record", "Payment", payload)
        created, failed = self._ensure(writes)
        for ref, ident in created.items():
            results[ref] = PushResult(ref, "payment", "created", ident, "0")
        for ref, outcome in failed.items():
            results[ref] = PushResult(ref, "payment", "failed", error=outcome.error, retriable=outcome.retriable)
        return [results[p.payment.payment_ref] for p in payments]

    def record_amendments(self, changes: Sequence[AmendmentToRecord]) -> list[PushResult]:
        """Make changes to the Payments that entered our payments (refunds taken off, money applied by
        hand), so their invoices stand in QuickBooks as they do here. Each once: the Payments are read
        first, and a change their PrivateNote lists is made already ("existing"); the rest of a
        Payment's changes go in one sparse update naming the SyncToken read, which a concurrent
        change makes fail as stale (retriable)."""
        found = self._find("Payment", "Id", {c.payment_id for c in changes})
        results: dict[str, PushResult] = {}
        pending: dict[str, list[AmendmentToRecord]] = {}
        for change in changes:
            record = found.get(change.payment_id)
            if record is None:
                error = f"QuickBooks has no Payment {change.payment_id} to change"
                results[change.change_ref] = PushResult(change.change_ref, "payment", "failed", error=error)
            elif change.change_ref in amendments_in(record.get("PrivateNote")):
                results[change.change_ref] = PushResult(
                    change.change_ref, "payment", "existing", str(record["Id"]), str(record["SyncToken"])
                )
            else:
                pending.setdefault(change.payment_id, []).append(change)
        writes: dict[str, _Write] = {}
        for payment_id, mine in pending.items():
            record, body = found[payment_id], {}
            try:
                for change in mine:  # one update carrying all of them (two would name the same SyncToken)
                    body = payment_amended(record, change.change_ref, change.lines, change.total_change)
                    record = {**record, **body}
            except ValueError as exc:
                for change in mine:
                    results[change.change_ref] = PushResult(change.change_ref, "payment", "failed", error=str(exc))
                continue
            refs = ",".join(c.change_ref for c in mine)
            writes[payment_id] = _Write(f"billbridge-amend-{payment_id}-{refs}", "Payment", body, "update")
        updated, failed = self._ensure(writes)
        for payment_id, mine in pending.items():
            for change in mine:
                ref = change.change_ref
                if payment_id in updated:
                    results[ref] = PushResult(ref, "payment", "created", updated[payment_id])
                elif payment_id in failed:
                    outcome = failed[payment_id]
                    results[ref] = PushResult(
                        ref, "payment", "failed", error=outcome.error, retriable=outcome.retriable
                    )
        return [results[c.change_ref] for c in changes]

    # -- payments -------------------------------------------------------------------------------------

    def pull_payments(self, cursor: str | None, *, page_size: int = PAYMENT_PAGE) -> Iterator[PaymentPage]:
        """Payments changed since ``cursor`` (inclusive, minus a lag window), oldest change first, in pages.

        Each payment's invoice links are mapped back to our DocNumbers; the caller dedupes by
        ``payment_ref`` (and ``extra["sync_token"]`` for edits) and stores ``page.cursor`` after the page.
        """
        since = _EPOCH if cursor is None else (datetime.fromisoformat(cursor) - CURSOR_LAG).isoformat()
        newest = cursor
        for page in self._payment_pages(since, page_size):
            newest = page.cursor if newest is None else max(newest, page.cursor)
            yield page
        if cursor is not None:  # a first pull has nothing recorded that could have been deleted
            deleted = self.deleted_payments(since)
            if deleted:
                times = [p.extra["deleted"] for p in deleted]
                yield PaymentPage(deleted, max([newest or cursor, *times]))

    def deleted_payments(self, since: str) -> list[IncomingPayment]:
        """Payments deleted in QuickBooks since ``since``: only change data capture reports them (a
        query no longer finds them), for the last 30 days."""
        changed_since = max(datetime.fromisoformat(since), datetime.now(UTC) - CDC_LOOKBACK).isoformat()
        tombstones: dict[str, dict[str, Any]] = {}
        while True:  # an answer of CDC_MAX_OBJECTS may be cut short: ask again from its newest change

            def read(qb: QuickBooksClient, changed_since: str = changed_since) -> dict[str, Any]:
                url = self._url(qb, "cdc")
                return dict(qb.make_request("GET", url, params={"entities": "Payment", "changedSince": changed_since}))

            answer = self._call(read)
            rows = [
                row
                for response in answer.get("CDCResponse", [])
                for group in response.get("QueryResponse", [])
                for row in group.get("Payment", [])
            ]
            tombstones |= {str(r.get("Id")): r for r in rows if r.get("status") == "Deleted"}
            stamps = [datetime.fromisoformat(str(r["MetaData"]["LastUpdatedTime"])) for r in rows if r.get("MetaData")]
            if len(rows) < CDC_MAX_OBJECTS or not stamps or max(stamps) <= datetime.fromisoformat(changed_since):
                break  # complete (or 1,000 changes within one instant: nothing narrower can be asked)
            changed_since = max(stamps).isoformat()
        deleted, _unreadable = map_each(list(tombstones.values()), payment_deleted, lambda t: record_id(t, "Id"))
        return deleted  # a tombstone without a readable Id names nothing to take back

    def _payment_pages(self, since: str, page_size: int) -> Iterator[PaymentPage]:
        numbers: dict[str, str] = {}  # QuickBooks Invoice Id -> our DocNumber, read once per pull
        start = 1
        while True:
            text = f"SELECT * FROM Payment WHERE MetaData.LastUpdatedTime >= {_quote(since)} ORDERBY MetaData.LastUpdatedTime STARTPOSITION {start} MAXRESULTS {page_size}"
            rows = self.query(text).get("Payment", [])
            if not rows:
                return
            wanted = {txn for p in rows for txn in linked_invoice_ids(p)}
            unknown = wanted - numbers.keys()
            if unknown:
                numbers |= {
                    i: str(r.get("DocNumber", ""))
                    for i, r in self._find("Invoice", "Id", unknown, "Id, DocNumber").items()
                }
            payments, refused = map_each(
                rows, partial(payment_from_qbo, doc_numbers=numbers), partial(record_id, field="Id")
            )
            yield PaymentPage(payments, max(str(r["MetaData"]["LastUpdatedTime"]) for r in rows), refused)
            if len(rows) < page_size:
                return
            start += page_size


class QuickBooksWriteError(Exception):
    """Customers or items that could not be created (the documents that need them cannot be pushed)."""

    def __init__(self, failed: Mapping[str, str | None]) -> None:
        self.failed = dict(failed)
        super().__init__("QuickBooks refused: " + "; ".join(f"{k}: {v}" for k, v in self.failed.items()))
