"""Incremental reads from Stripe: payments (charges with their fees and invoices, refunds, disputes) and
subscriptions, as Stripe's own objects (``mapping/stripe.py`` turns them into payments and contracts).

Stripe lists run newest first, so a window is read to its end before its cursor may be saved: every
page but the last carries the cursor it started from. Cursors are created-timestamps read with an
inclusive bound and a lag window (``connectors.cursor.LagWindow`` over ``CHARGES.lag``, the newest
stamp only); consumers dedupe by id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from billbridge.connectors.base import Stream
from billbridge.connectors.cursor import LagWindow, epoch_window, lag_seconds
from billbridge.connectors.stripe.common import PAGE_SIZE, PAGES, plain
from billbridge.records import RecordPage

if TYPE_CHECKING:
    from billbridge.connectors.stripe.client import StripeConnector

CHARGES = Stream(
    "charges",
    key="id",
    cursor_field="created",
    lag=timedelta(seconds=300),  # objects created in the same second as the cursor, or committed late, are read again
    paginator=PAGES,
    page_size=PAGE_SIZE,
)
REFUNDS = dc_replace(CHARGES, name="refunds")
DISPUTES = dc_replace(CHARGES, name="disputes")  # their charge.dispute.funds_* events, by the event's created
SUBSCRIPTIONS = dc_replace(CHARGES, name="subscriptions")  # customer.subscription.* events, by the event's created
EVENTS_RETENTION_SECONDS = 30 * 86400  # Stripe keeps events for 30 days: older cursors need a full read
# ``types`` matches exact event names only (the ``*`` wildcard belongs to ``type``)
SUBSCRIPTION_EVENTS = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired",
    "customer.subscription.trial_will_end",
)
PAYMENT_EVENTS = ("invoice_payment.paid", "invoice.paid")
# The dispute events that move money (withdrawn when it opens, reinstated when the business wins);
# mapping.stripe.DISPUTE_MOVES says what each means, for the same names (a test keeps them equal).
DISPUTE_EVENTS = ("charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated")


@dataclass(frozen=True)
class SubscriptionRecord:
    """A subscription as Stripe holds it, with what mapping it needs (vendor shapes)."""

    subscription: dict[str, Any]
    customer: dict[str, Any] | None
    prices: dict[str, dict[str, Any]]  # price id -> price with ``tiers`` expanded
    products: dict[str, dict[str, Any]]
    # Epoch seconds of the newest event naming it (Stripe keeps no modification time on a
    # subscription); a full read gives the time of the read.
    changed_at: int | None = None


SubscriptionPage = RecordPage[SubscriptionRecord]
PaymentRecords = RecordPage[dict[str, Any]]  # charges, refunds or dispute events; related: intent id -> invoice


def charge_records(conn: StripeConnector, cursor: str | None) -> Iterator[PaymentRecords]:
    """Succeeded charges created since the cursor (with their balance transactions: the fee)."""
    return _pull(conn, cursor, conn.api.charges.list, {"expand": ["data.balance_transaction"]})


def refund_records(conn: StripeConnector, cursor: str | None) -> Iterator[PaymentRecords]:
    """Succeeded refunds created since the cursor."""
    return _pull(conn, cursor, conn.api.refunds.list, {})


def dispute_records(conn: StripeConnector, cursor: str | None) -> PaymentRecords:
    """Disputes' money movements since the cursor (``charge.dispute.funds_*`` events, kept 30 days),
    newest first, with the invoices their payment intents paid; the cursor is the newest event's time."""
    window = epoch_window(DISPUTES.lag, cursor)
    query: dict[str, Any] = {"types": list(DISPUTE_EVENTS), **_created_since(window)}
    calls = conn.api_calls
    events = list(conn.paged(conn.api.events.list, query))
    for event in events:
        window.advance(int(event["created"]))
    disputes = [e["data"]["object"] for e in events]
    invoices = _InvoiceFinder(conn).invoices_of(disputes) if disputes else {}
    return RecordPage(events, _cursor(window, cursor), related=invoices, api_calls=conn.api_calls - calls)


def _created_since(window: LagWindow[int]) -> dict[str, Any]:
    """The list filter that reads the window again (inclusive; Stripe refuses bounds before 0)."""
    start = window.start_from(0)
    return {} if start is None else {"created": {"gte": start}}


def _cursor(window: LagWindow[int], cursor: str | None) -> str | None:
    """The cursor after a read: the newest stamp seen, or the one read from when there was none."""
    return str(window.newest) if window.newest else cursor


def _pull(
    conn: StripeConnector, cursor: str | None, fetch: Callable[[dict[str, Any]], Any], params: dict[str, Any]
) -> Iterator[PaymentRecords]:
    """Read a created-ordered list since ``cursor`` in pages; only the last page carries the new cursor."""
    window = epoch_window(CHARGES.lag, cursor)  # refunds share it (REFUNDS.lag)
    query = {**params, **_created_since(window)}
    batch: list[dict[str, Any]] = []
    calls = conn.api_calls
    finder = _InvoiceFinder(conn)
    for record in conn.paged(fetch, query):
        window.advance(int(record["created"]))
        if record["status"] == "succeeded":
            batch.append(record)
        if len(batch) == PAGE_SIZE:
            invoices = finder.invoices_of(batch)
            yield RecordPage(batch, cursor, related=invoices, api_calls=conn.api_calls - calls)
            batch, calls = [], conn.api_calls
    invoices = finder.invoices_of(batch)
    yield RecordPage(batch, _cursor(window, cursor), related=invoices, api_calls=conn.api_calls - calls)


class _InvoiceFinder:
    """payment intent -> the invoice it paid, for one pull.

    At this API version charges and payment intents no longer name their invoice; the link is the
    invoice_payment, created when the invoice is finalized (so not near the charge in time). At payment
    time Stripe emits ``invoice_payment.paid`` (intent -> invoice id) and ``invoice.paid`` (the invoice
    with our metadata), so reading those events over the pages' time span answers for every page; the
    span read so far is remembered, as pages run back in time and their windows overlap. What the events
    miss (they are kept 30 days; refunds come long after their payment) is asked for one by one."""

    def __init__(self, conn: StripeConnector) -> None:
        self.conn = conn
        self.covered: tuple[int, int] | None = None
        self.invoice_of_intent: dict[str, str] = {}
        self.invoices: dict[str, dict[str, Any]] = {}

    def invoices_of(self, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        intents = {str(r["payment_intent"]) for r in records if r.get("payment_intent")}
        if not intents:
            return {}
        created = [int(r["created"]) for r in records]
        lag = lag_seconds(CHARGES.lag)  # a payment's events may be stamped up to the lag either side of it
        self._read_events(min(created) - lag, max(created) + lag)
        found = {
            intent: self.invoices[invoice]
            for intent in intents
            if (invoice := self.invoice_of_intent.get(intent)) is not None and invoice in self.invoices
        }
        for intent in sorted(intents - found.keys()):
            single = {"payment": {"type": "payment_intent", "payment_intent": intent}, "expand": ["data.invoice"]}
            for payment in self.conn.paged(self.conn.api.invoice_payments.list, single):
                if isinstance(payment.get("invoice"), dict):
                    found[intent] = payment["invoice"]
        return found

    def _read_events(self, low: int, high: int) -> None:
        spans = [(low, high)]
        if self.covered is not None:
            done_low, done_high = self.covered
            spans = [(a, b) for a, b in ((low, min(high, done_low - 1)), (max(low, done_high + 1), high)) if a <= b]
            self.covered = (min(low, done_low), max(high, done_high))
        else:
            self.covered = (low, high)
        for start, end in spans:
            query = {"types": list(PAYMENT_EVENTS), "created": {"gte": start, "lte": end}}
            for event in self.conn.paged(self.conn.api.events.list, query):
                obj = event["data"]["object"]
                if event["type"] == "invoice.paid":
                    self.invoices.setdefault(obj["id"], obj)  # newest first
                elif intent := (obj.get("payment") or {}).get("payment_intent"):
                    self.invoice_of_intent.setdefault(intent, obj["invoice"])


def pull_subscriptions(conn: StripeConnector, cursor: str | None, *, now: int) -> Iterator[SubscriptionPage]:
    """Every subscription on the first run (and when the cursor is older than Stripe keeps events);
    afterwards the latest state of each subscription named by ``customer.subscription.*`` events."""
    state = json.loads(cursor) if cursor else None
    if state is None or now - int(state["events_since"]) > EVENTS_RETENTION_SECONDS:
        yield from _full_subscriptions(conn, now)
        return
    since = int(state["events_since"])
    window = LagWindow(lag_seconds(SUBSCRIPTIONS.lag), since)
    latest: dict[str, dict[str, Any]] = {}
    changed: dict[str, int] = {}
    query = {"types": list(SUBSCRIPTION_EVENTS), **_created_since(window)}
    calls = conn.api_calls
    for event in conn.paged(lambda p: conn.api.events.list(p), query):
        window.advance(int(event["created"]))
        sub = event["data"]["object"]
        latest.setdefault(sub["id"], sub)  # newest first: the first event seen holds the latest state
        changed.setdefault(sub["id"], int(event["created"]))
    resolver = _Resolver(conn)
    records = [resolver.record(sub, changed[sub_id]) for sub_id, sub in latest.items()]
    yield RecordPage(records, json.dumps({"events_since": window.newest}), api_calls=conn.api_calls - calls)


def _full_subscriptions(conn: StripeConnector, now: int) -> Iterator[SubscriptionPage]:
    calls = conn.api_calls
    marker = conn.call(lambda: conn.api.events.list({"limit": 1}))  # events from here on are news
    events_since = int(marker.data[0].created) if marker.data else 0
    resolver = _Resolver(conn)
    records: list[SubscriptionRecord] = []
    query = {"status": "all", "expand": ["data.customer"]}
    for sub in conn.paged(lambda p: conn.api.subscriptions.list(p), query):
        records.append(resolver.record(sub, now))
        if len(records) == PAGE_SIZE:
            yield RecordPage(records, None, api_calls=conn.api_calls - calls)
            records, calls = [], conn.api_calls
    yield RecordPage(records, json.dumps({"events_since": events_since}), api_calls=conn.api_calls - calls)


class _Resolver:
    """Fetches (once per pull) the tiers of tiered prices, products and customers subscriptions name.
    Tiers need ``expand[]=tiers`` on the price itself: the path from a subscription list
    (data.items.data.price.tiers) is deeper than the four levels Stripe expands."""

    def __init__(self, conn: StripeConnector) -> None:
        self.conn = conn
        self.prices: dict[str, dict[str, Any]] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self.customers: dict[str, dict[str, Any]] = {}

    def record(self, sub: dict[str, Any], changed_at: int | None = None) -> SubscriptionRecord:
        conn = self.conn
        prices, products = {}, {}
        for item in (sub.get("items") or {}).get("data") or []:
            price = item["price"]
            if price["id"] not in self.prices:
                if price.get("billing_scheme") == "tiered":
                    price = plain(conn.call(partial(conn.api.prices.retrieve, price["id"], {"expand": ["tiers"]})))
                self.prices[price["id"]] = price
            prices[price["id"]] = self.prices[price["id"]]
            product_id = str(price["product"])
            if product_id not in self.products:
                self.products[product_id] = plain(conn.call(partial(conn.api.products.retrieve, product_id)))
            products[product_id] = self.products[product_id]
        customer = sub.get("customer")
        if isinstance(customer, str):
            if customer not in self.customers:
                self.customers[customer] = plain(conn.call(partial(conn.api.customers.retrieve, customer)))
            return SubscriptionRecord(sub, self.customers[customer], prices, products, changed_at)
        return SubscriptionRecord(sub, customer if isinstance(customer, dict) else None, prices, products, changed_at)
