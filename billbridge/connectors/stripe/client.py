"""The Stripe connector: one StripeClient with injected credentials, every call through the shared
``VendorClient.call``, lists paged by ``starting_after``; it speaks Stripe's objects and params only
(``vendors/stripe.py`` joins it with ``mapping/stripe.py`` to push documents and read payments).

Every write carries a deterministic Idempotency-Key (``content_key`` for those whose content may change).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TypeVar

import stripe

from billbridge.connectors.base import PushResult
from billbridge.connectors.client import DEFAULT_POLICY, VendorClient
from billbridge.connectors.errors import Classified, ErrorKind, RetryPolicy, VendorError
from billbridge.connectors.stripe import readers
from billbridge.connectors.stripe.common import PAGE_SIZE, PAGES, VENDOR, plain
from billbridge.connectors.stripe.errors import classify_stripe

T = TypeVar("T")
ADD_LINES_CHUNK = 50  # our lines per add_lines call (Stripe documents no cap per call, 250 per invoice)
DEFAULT_TIMEOUT_SECONDS = 30.0
CALLS_PER_INVOICE_MIN = 3  # create, add_lines (up to 50 lines), finalize; +1 lookup, +1 pay when auto-charged


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


class StripeConnector(VendorClient):
    """Writers and readers of one Stripe account (no pacing: Stripe's limit is far above our needs;
    no refresh: an API key does not expire)."""

    name = VENDOR
    vendor = VENDOR

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
        super().__init__(policy=policy, sleep=sleep)
        self.client = client or build_client(api_key, base_url, timeout)
        # params are plain dicts built by mapping/stripe.py, not the SDK's TypedDicts
        self.api: Any = self.client.v1

    def classify(self, exc: BaseException) -> Classified | None:
        return classify_stripe(exc)

    @property
    def api_calls(self) -> int:
        """Vendor calls made (attempts, retries included)."""
        return self.calls

    def _options(self, key: str) -> dict[str, Any]:
        return {"idempotency_key": key}

    # customers

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

    def _invoice_lines(self, invoice: dict[str, Any]) -> list[dict[str, Any]]:
        embedded = invoice.get("lines") or {}
        if not embedded.get("has_more"):
            return list(embedded.get("data") or [])
        invoice_id = invoice["id"]
        return list(self.paged(lambda p: self.api.invoices.line_items.list(invoice_id, p), {}))

    def retrieve_invoice(self, invoice_id: str) -> dict[str, Any]:
        return plain(self.call(lambda: self.api.invoices.retrieve(invoice_id)))

    def send_invoice(
        self, invoice_id: str, to: Sequence[str], cc: Sequence[str], key: str, *, since: int | None = None
    ) -> PushResult:
        """Stripe e-mails its own invoice (``POST /v1/invoices/{id}/send``, which takes no
        parameters) to the Stripe customer's e-mail only: ``to`` and ``cc`` are the billing contacts
        billbridge wants it to reach, and the result's ``sent_to`` says whom Stripe mails (the
        invoice's ``customer_email``), so the caller can reach the others another way. Looked up
        first: only an open invoice is sent (paid, void or uncollectible ones are ``existing``, with
        their status); with ``since`` (an earlier attempt began then, epoch seconds) Stripe's
        ``invoice.sent`` events from then on are read and an invoice found among them is not sent
        again. The send carries ``key``, so a retry within Stripe's 24 hours replays the first
        answer even before its event shows."""
        current = self.retrieve_invoice(invoice_id)
        number = str((current.get("metadata") or {}).get("billbridge_number") or current.get("number") or invoice_id)

        def result(status: Literal["created", "existing"], invoice: dict[str, Any]) -> PushResult:
            email = invoice.get("customer_email")
            return PushResult(
                number,
                "invoice",
                status,
                invoice_id,
                vendor_status=invoice["status"],
                url=invoice.get("hosted_invoice_url"),
                sent_to=(str(email),) if email else (),
            )

        if current["status"] == "draft" or current.get("collection_method") != "send_invoice":
            what = "a draft" if current["status"] == "draft" else f"collected by {current.get('collection_method')}"
            reason = f"Stripe invoice {invoice_id} is {what}: Stripe sends only finalized send_invoice invoices"
            raise VendorError(self.vendor, Classified(ErrorKind.FATAL, reason), 0)
        if current["status"] != "open":
            return result("existing", current)
        if since is not None and self.sent_since(invoice_id, since):
            return result("existing", current)
        sent = plain(self.call(lambda: self.api.invoices.send_invoice(invoice_id, None, self._options(key))))
        return result("created", sent)

    def sent_since(self, invoice_id: str, since: int) -> bool:
        """Whether Stripe's events say it sent ``invoice_id`` at or after ``since`` (Stripe keeps events
        30 days; the invoice object itself records no sending)."""
        events = self.paged(lambda p: self.api.events.list(p), {"type": "invoice.sent", "created": {"gte": since}})
        return any(e["data"]["object"].get("id") == invoice_id for e in events)

    def void(self, invoice_id: str, key: str) -> str:
        """Void an open invoice; returns the new status."""
        voided = self.call(lambda: self.api.invoices.void_invoice(invoice_id, None, self._options(key)))
        return str(voided.status)

    def mark_uncollectible(self, invoice_id: str, key: str) -> str:
        done = self.call(lambda: self.api.invoices.mark_uncollectible(invoice_id, None, self._options(key)))
        return str(done.status)

    # readers

    def pull_subscriptions(self, cursor: str | None, *, now: float | None = None) -> Iterator[readers.SubscriptionPage]:
        """Pages of subscriptions (vendor shapes with prices, products, customer) changed since ``cursor``."""
        return readers.pull_subscriptions(self, cursor, now=int(time.time() if now is None else now))

    # paging

    def paged(self, fetch: Callable[[dict[str, Any]], Any], params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every object of a Stripe list, following ``starting_after`` while ``has_more``."""
        query = {**params, "limit": PAGE_SIZE}

        def page(after: str | None) -> tuple[list[dict[str, Any]], bool]:
            asked = dict(query) if after is None else {**query, "starting_after": after}
            found = self.call(lambda: fetch(asked), what="list")
            return [plain(o) for o in found.data], bool(found.has_more)

        for items, _more in PAGES.pages(page):
            yield from items
