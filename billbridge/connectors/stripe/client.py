"""The Stripe connector: one StripeClient with injected credentials, every call through the shared
retry loop, and writers that take neutral documents and return Stripe ids.

Every write carries a deterministic Idempotency-Key. Stripe replays a key's first answer for 24 hours;
past that (or after a crash between Stripe accepting a document and us recording its id) the invoice
is looked up by its ``billbridge_number`` metadata before it is created again. The lookup lists the
customer's invoices rather than using search, because Stripe's search is eventually consistent
("data is searchable in less than a minute", docs.stripe.com/search) and would miss a fresh invoice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, Literal, TypeVar

import stripe

from billbridge.billing.documents import OutboundDocument
from billbridge.connectors.errors import RetryPolicy, VendorError, call_with_retries
from billbridge.connectors.stripe import readers
from billbridge.connectors.stripe.common import PAGE_SIZE, VENDOR, content_key, plain
from billbridge.connectors.stripe.errors import classify_stripe
from billbridge.mapping import stripe as mapping

T = TypeVar("T")
ADD_LINES_CHUNK = 50  # our lines per add_lines call (Stripe documents no cap per call, 250 per invoice)
DEFAULT_TIMEOUT_SECONDS = 30.0
CALLS_PER_INVOICE_MIN = 3  # create, add_lines (up to 50 lines), finalize; +1 lookup, +1 pay when auto-charged
DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True)
class StripeInvoiceResult:
    invoice_id: str
    stripe_number: str | None  # Stripe's own invoice number (ours is in metadata)
    status: str  # draft | open | paid | void | uncollectible
    amount_due: Decimal
    hosted_invoice_url: str | None
    created: bool  # False: an invoice pushed before was found and completed


@dataclass(frozen=True)
class ChargeOutcome:
    status: Literal["paid", "declined", "pending"]
    invoice_id: str
    amount_paid: Decimal = Decimal(0)
    decline_code: str | None = None  # Stripe's decline_code (insufficient_funds, generic_decline, ...)
    message: str | None = None  # what to show a person
    charge_id: str | None = None


class StripeConflict(ValueError):
    """Stripe holds a different version of a document than the one being pushed."""


def build_client(
    api_key: str, base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> stripe.StripeClient:
    """A StripeClient that never retries by itself (retries live in call_with_retries)."""
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": base_url} if base_url else None,
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


class StripeConnector:
    """Writers and readers of one Stripe account."""

    name = VENDOR

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        client: stripe.StripeClient | None = None,
    ) -> None:
        self.client = client or build_client(api_key, base_url, timeout)
        # params are plain dicts built by mapping/stripe.py, not the SDK's TypedDicts
        self.api: Any = self.client.v1
        self.policy, self._sleep = policy, sleep
        self.api_calls = 0

    def call(self, fn: Callable[[], T]) -> T:
        """One vendor call through the shared retry loop (counted per attempt)."""

        def attempt() -> T:
            self.api_calls += 1
            return fn()

        return call_with_retries(VENDOR, attempt, classify_stripe, policy=self.policy, sleep=self._sleep)

    def _options(self, key: str) -> dict[str, Any]:
        return {"idempotency_key": key}

    # customers

    def ensure_customer(
        self,
        customer_ref: str,
        name: str,
        email: str | None,
        *,
        customer_id: str | None = None,
        entity_ref: str | None = None,
    ) -> str:
        """The Stripe customer of ``customer_ref``: the known id (updated if name/email changed), one found
        by metadata, or a new one. Returns its id."""
        fields: dict[str, Any] = {"name": name, "email": email or ""}
        meta = {mapping.METADATA_CUSTOMER: customer_ref}
        if entity_ref:
            meta["billbridge_entity"] = entity_ref
        if customer_id is None:
            customer_id = self.find_customer(customer_ref)
        if customer_id is not None:
            current = plain(self.call(lambda: self.api.customers.retrieve(customer_id)))
            if (current.get("name"), current.get("email") or "") != (name, email or ""):
                update = {**fields, "metadata": meta}
                key = content_key(f"billbridge-customer-{customer_ref}-update", update)
                self.call(lambda: self.api.customers.update(customer_id, update, self._options(key)))
            return customer_id
        create = {**fields, "metadata": meta}
        key = content_key(f"billbridge-customer-{customer_ref}-create", create)
        created = self.call(lambda: self.api.customers.create(create, self._options(key)))
        return str(created.id)

    def find_customer(self, customer_ref: str) -> str | None:
        """Best effort (search lags behind writes): the newest customer carrying our ref in metadata."""
        query = f"metadata['{mapping.METADATA_CUSTOMER}']:'{customer_ref}'"
        found = self.call(lambda: self.api.customers.search({"query": query, "limit": 1}))
        return str(found.data[0].id) if found.data else None

    def attach_default_payment_method(self, customer_id: str, payment_method: str) -> str:
        """Attach a payment method (or a test token such as pm_card_visa) and make it the invoice default."""
        key = f"billbridge-attach-{customer_id}-{payment_method}"
        pm = self.call(
            lambda: self.api.payment_methods.attach(payment_method, {"customer": customer_id}, self._options(key))
        )
        settings = {"invoice_settings": {"default_payment_method": pm.id}}
        self.call(lambda: self.api.customers.update(customer_id, settings, self._options(f"{key}-default-{pm.id}")))
        return str(pm.id)

    # invoices

    def push_invoice(self, doc: OutboundDocument, customer_id: str, *, look_up: bool = True) -> StripeInvoiceResult:
        """Create (or complete) the document's invoice: draft, lines, finalize. ``look_up=False`` skips
        the search for an earlier attempt when the caller knows there was none (saves one call)."""
        params = mapping.invoice_params(doc, customer_id)
        lines = mapping.invoice_lines(doc)
        invoice = self.find_invoice(doc, customer_id) if look_up else None
        created = invoice is None
        if invoice is None:
            key = doc.idempotency_key("invoice-create")
            invoice = plain(self.call(lambda: self.api.invoices.create(params, self._options(key))))
        version = invoice["metadata"].get(mapping.METADATA_VERSION)
        if version != str(doc.version):
            raise StripeConflict(
                f"{doc.number}: Stripe invoice {invoice['id']} holds version {version}, not {doc.version}"
            )
        if invoice["status"] == "draft":
            self._add_missing_lines(doc, invoice, lines)
            key = doc.idempotency_key("finalize")
            invoice = plain(
                self.call(
                    lambda: self.api.invoices.finalize_invoice(
                        invoice["id"], {"auto_advance": False}, self._options(key)
                    )
                )
            )
        return StripeInvoiceResult(
            invoice_id=invoice["id"],
            stripe_number=invoice.get("number"),
            status=invoice["status"],
            amount_due=mapping.from_minor(invoice["amount_due"], doc.currency),
            hosted_invoice_url=invoice.get("hosted_invoice_url"),
            created=created,
        )

    def _add_missing_lines(self, doc: OutboundDocument, invoice: dict[str, Any], lines: list[dict[str, Any]]) -> None:
        """Add the lines in fixed chunks, each under its own key; chunks already on the draft are skipped."""
        present = {line["metadata"].get(mapping.METADATA_LINE) for line in self._invoice_lines(invoice)}
        for start in range(0, len(lines), ADD_LINES_CHUNK):
            chunk = lines[start : start + ADD_LINES_CHUNK]
            refs = {line["metadata"][mapping.METADATA_LINE] for line in chunk}
            if refs <= present:
                continue
            if refs & present:
                raise StripeConflict(f"{doc.number}: draft {invoice['id']} holds part of a line chunk")
            key = doc.idempotency_key(f"add-lines-{start // ADD_LINES_CHUNK}")
            self.call(partial(self.api.invoices.add_lines, invoice["id"], {"lines": chunk}, self._options(key)))

    def _invoice_lines(self, invoice: dict[str, Any]) -> list[dict[str, Any]]:
        embedded = invoice.get("lines") or {}
        if not embedded.get("has_more"):
            return list(embedded.get("data") or [])
        invoice_id = invoice["id"]
        return list(self.paged(lambda p: self.api.invoices.line_items.list(invoice_id, p), {}))

    def find_invoice(self, doc: OutboundDocument, customer_id: str) -> dict[str, Any] | None:
        """The customer's invoice whose metadata carries this document number (any status but void)."""
        for invoice in self.paged(lambda p: self.api.invoices.list(p), {"customer": customer_id}):
            meta = invoice.get("metadata") or {}
            if meta.get(mapping.METADATA_NUMBER) == doc.number and invoice["status"] != "void":
                return invoice
        return None

    def retrieve_invoice(self, invoice_id: str) -> dict[str, Any]:
        return plain(self.call(lambda: self.api.invoices.retrieve(invoice_id)))

    def charge_invoice(self, invoice_id: str, key: str) -> ChargeOutcome:
        """Collect an open invoice with the customer's default payment method.

        A decline is an outcome (the invoice stays open); Stripe remembers it under ``key``, so a new
        attempt needs a new key (e.g. ``doc.idempotency_key(f"charge-{attempt}")``).
        """

        def pay() -> dict[str, Any] | stripe.CardError:
            try:
                return plain(self.api.invoices.pay(invoice_id, {"off_session": True}, self._options(key)))
            except stripe.CardError as exc:
                return exc

        try:
            result = self.call(pay)
        except VendorError as exc:
            cause = exc.__cause__
            # Stripe refuses to pay an invoice that is no longer open without a documented code: read it
            # (paid by an earlier attempt whose answer was lost is "paid"; void and the like are conflicts)
            if isinstance(cause, stripe.InvalidRequestError) and cause.http_status == 400:
                result = self.retrieve_invoice(invoice_id)
            else:
                raise
        if isinstance(result, stripe.CardError):
            error = result.error
            return ChargeOutcome(
                status="declined",
                invoice_id=invoice_id,
                decline_code=getattr(error, "decline_code", None) or result.code,
                message=result.user_message or str(result),
                charge_id=getattr(error, "charge", None),
            )
        if result["status"] not in ("paid", "open"):
            raise StripeConflict(f"invoice {invoice_id} is {result['status']}: nothing to collect")
        currency = str(result["currency"]).upper()
        status: Literal["paid", "pending"] = "paid" if result["status"] == "paid" else "pending"
        return ChargeOutcome(status, invoice_id, mapping.from_minor(result["amount_paid"], currency))

    def void(self, invoice_id: str, key: str) -> str:
        """Void an open invoice; returns the new status."""
        voided = self.call(lambda: self.api.invoices.void_invoice(invoice_id, None, self._options(key)))
        return str(voided.status)

    def mark_uncollectible(self, invoice_id: str, key: str) -> str:
        done = self.call(lambda: self.api.invoices.mark_uncollectible(invoice_id, None, self._options(key)))
        return str(done.status)

    # readers

    def pull_payments(self, cursor: str | None) -> Iterator[readers.PaymentPage]:
        """Pages of succeeded charges since ``cursor`` as IncomingPayments (save ``page.cursor`` after storing)."""
        return readers.pull_payments(self, cursor)

    def pull_refunds(self, cursor: str | None) -> Iterator[readers.PaymentPage]:
        """Pages of refunds since ``cursor`` as negative IncomingPayments (their own cursor)."""
        return readers.pull_refunds(self, cursor)

    def pull_disputes(self, cursor: str | None) -> Iterator[readers.PaymentPage]:
        """Disputes' withdrawals and reinstatements since ``cursor`` as payments (their own cursor)."""
        return readers.pull_disputes(self, cursor)

    def pull_subscriptions(self, cursor: str | None, *, now: float | None = None) -> Iterator[readers.SubscriptionPage]:
        """Pages of subscriptions (vendor shapes with prices, products, customer) changed since ``cursor``."""
        return readers.pull_subscriptions(self, cursor, now=int(time.time() if now is None else now))

    # paging

    def paged(self, fetch: Callable[[dict[str, Any]], Any], params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every object of a Stripe list, following ``starting_after`` while ``has_more``."""
        query = {**params, "limit": PAGE_SIZE}
        while True:
            page = self.call(lambda: fetch(dict(query)))
            items = [plain(o) for o in page.data]
            yield from items
            if not page.has_more or not items:
                return
            query["starting_after"] = items[-1]["id"]
