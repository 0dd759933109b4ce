"""The Stripe sandbox as a FastAPI app: Bearer secret keys, form-encoded bodies, Stripe's error bodies,
Idempotency-Key semantics, signed webhook delivery, wrapped in the shared FaultMiddleware."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from billbridge.sandbox import specs
from billbridge.sandbox.faults import ErrorResponse, FaultInjector, FaultMiddleware
from billbridge.sandbox.stripe import catalog, contract, payments
from billbridge.sandbox.stripe.forms import decode
from billbridge.sandbox.stripe.state import Saved, StripeApiError, StripeState
from billbridge.sandbox.stripe.views import expand
from billbridge.sandbox.webhooks import Redelivery, WebhookQueue

Handler = Callable[..., dict[str, Any]]
WEBHOOK_TIMEOUT_SECONDS = 5.0

ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", r"/v1/customers"): catalog.create_customer,
    ("GET", r"/v1/customers"): catalog.list_customers,
    ("GET", r"/v1/customers/search"): catalog.search_customers,
    ("GET", r"/v1/customers/(cus_\w+)"): catalog.get_customer,
    ("POST", r"/v1/customers/(cus_\w+)"): catalog.update_customer,
    ("POST", r"/v1/payment_methods/(pm_\w+)/attach"): catalog.attach_payment_method,
    ("GET", r"/v1/payment_methods/(pm_\w+)"): catalog.get_payment_method,
    ("POST", r"/v1/products"): catalog.create_product,
    ("GET", r"/v1/products"): catalog.list_products,
    ("GET", r"/v1/products/(prod_\w+)"): catalog.get_product,
    ("POST", r"/v1/prices"): catalog.create_price,
    ("GET", r"/v1/prices"): catalog.list_prices,
    ("GET", r"/v1/prices/(price_\w+)"): catalog.get_price,
    ("POST", r"/v1/subscriptions"): catalog.create_subscription,
    ("GET", r"/v1/subscriptions"): catalog.list_subscriptions,
    ("GET", r"/v1/subscriptions/(sub_\w+)"): catalog.get_subscription,
    ("POST", r"/v1/subscriptions/(sub_\w+)"): catalog.update_subscription,
    ("DELETE", r"/v1/subscriptions/(sub_\w+)"): catalog.cancel_subscription,
    ("POST", r"/v1/invoiceitems"): payments.create_invoice_item,
    ("POST", r"/v1/invoices"): payments.create_invoice,
    ("GET", r"/v1/invoices"): payments.list_invoices,
    ("GET", r"/v1/invoices/search"): payments.search_invoices,
    ("GET", r"/v1/invoices/(in_\w+)"): payments.get_invoice,
    ("GET", r"/v1/invoices/(in_\w+)/lines"): payments.list_invoice_lines,
    ("POST", r"/v1/invoices/(in_\w+)/add_lines"): payments.add_lines,
    ("POST", r"/v1/invoices/(in_\w+)/finalize"): payments.finalize_invoice,
    ("POST", r"/v1/invoices/(in_\w+)/pay"): payments.pay_invoice,
    ("POST", r"/v1/invoices/(in_\w+)/void"): payments.void_invoice,
    ("POST", r"/v1/invoices/(in_\w+)/send"): payments.send_invoice,
    ("POST", r"/v1/invoices/(in_\w+)/mark_uncollectible"): payments.mark_uncollectible,
    ("GET", r"/v1/invoice_payments"): payments.list_invoice_payments,
    ("GET", r"/v1/payment_intents/(pi_\w+)"): payments.get_payment_intent,
    ("GET", r"/v1/charges"): payments.list_charges,
    ("GET", r"/v1/charges/(ch_\w+)"): payments.get_charge,
    ("GET", r"/v1/balance_transactions/(txn_\w+)"): payments.get_balance_transaction,
    ("POST", r"/v1/refunds"): payments.create_refund,
    ("GET", r"/v1/refunds"): payments.list_refunds,
    ("GET", r"/v1/disputes"): payments.list_disputes,
    ("GET", r"/v1/disputes/(dp_\w+)"): payments.get_dispute,
    ("GET", r"/v1/events"): payments.list_events,
}
_COMPILED = [(method, pattern, re.compile(pattern + "$"), handler) for (method, pattern), handler in ROUTES.items()]


class StripeErrors:
    """Stripe's own answers for throttling, failures and bad keys (docs.stripe.com/error-codes)."""

    def rate_limited(self, retry_after: int) -> ErrorResponse:
        body = {
            "error": {
                "type": "invalid_request_error",
                "code": "rate_limit",
                "message": "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
            }
        }
        return ErrorResponse(429, body, {"Retry-After": str(retry_after), "Stripe-Should-Retry": "true"})

    def server_error(self) -> ErrorResponse:
        body = {"error": {"type": "api_error", "message": "An unknown error occurred"}}
        return ErrorResponse(500, body, {"Stripe-Should-Retry": "true"})

    def unauthorized(self) -> ErrorResponse:
        body = {"error": {"type": "invalid_request_error", "message": "Expired API Key provided: sk_test_****"}}
        return ErrorResponse(401, body)


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.payload">`` (docs.stripe.com/webhooks)."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookSender:
    """Delivers each event, signed, to one endpoint from a background thread (in event order), retried
    with backoff (``policy``) while the endpoint times out, is unreachable or answers non-2xx, as Stripe
    retries; every attempt carries the same event id and a signature of its own time."""

    def __init__(
        self, url: str, secret: str, *, clock: Callable[[], float] = time.time, policy: Redelivery | None = None
    ) -> None:
        self.url, self.secret, self.clock = url, secret, clock
        self.queue = WebhookQueue(url, policy or Redelivery(timeout=WEBHOOK_TIMEOUT_SECONDS), name="stripe-webhooks")

    @property
    def delivered(self) -> list[str]:
        """Ids of the events the endpoint took (a 2xx), in order."""
        return self.queue.delivered

    @property
    def failed(self) -> list[str]:
        """Ids of the events still refused after every attempt."""
        return self.queue.failed

    def __call__(self, event: dict[str, Any]) -> None:
        payload = json.dumps(event).encode()

        def attempt() -> tuple[bytes, dict[str, str]]:
            signature = sign(payload, self.secret, int(self.clock()))
            return payload, {"Stripe-Signature": signature, "Content-Type": "application/json"}

        self.queue.send(str(event["id"]), attempt)

    def flush(self) -> None:
        """Wait until every queued event has been delivered or has used up its attempts."""
        self.queue.flush()


class StripeSandbox:
    """One emulated Stripe account: its state, accepted secret keys, faults and optional webhook endpoint."""

    def __init__(
        self, api_keys: tuple[str, ...] = ("sk_test_billbridge",), *, clock: Callable[[], float] = time.time
    ) -> None:
        self.api_keys = set(api_keys)
        self.state = StripeState(clock=clock)
        self.faults = FaultInjector()
        self.webhook: WebhookSender | None = None
        self.app = FaultMiddleware(self._build(), self.faults, StripeErrors())

    def send_webhooks_to(self, url: str, secret: str, *, policy: Redelivery | None = None) -> WebhookSender:
        """Send every event to ``url`` signed with ``secret``, retried as ``policy`` says."""
        self.webhook = WebhookSender(url, secret, clock=self.state.clock, policy=policy)
        self.state.listeners.append(self.webhook)
        return self.webhook

    def _build(self) -> FastAPI:
        app = FastAPI(title="Stripe sandbox")

        @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "DELETE"])
        async def dispatch(request: Request) -> JSONResponse:
            body = (await request.body()).decode()
            pairs = parse_qsl(request.url.query, keep_blank_values=True) + parse_qsl(body, keep_blank_values=True)
            return self.handle(request.method, request.url.path, decode(pairs), dict(request.headers))

        return app

    def handle(self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]) -> JSONResponse:
        key = _bearer(headers.get("authorization", ""))
        if key not in self.api_keys:
            shown = f"{key[:8]}****{key[-4:]}" if key else ""
            message = f"Invalid API Key provided: {shown}" if key else "You did not provide an API key."
            return _json(401, {"error": {"type": "invalid_request_error", "message": message}})
        idem = headers.get("idempotency-key") if method == "POST" else None
        with self.state.lock:
            if idem is None:
                status, body = self._run(method, path, params)
                return _json(status, body)
            fingerprint = json.dumps([method, path, params], sort_keys=True)
            saved = self.state.idempotency.get((key, idem))  # keys are scoped per API key (account)
            if saved is not None:
                if saved.fingerprint != fingerprint:
                    return _json(400, _idempotency_error(idem))
                return _json(saved.status, saved.body, {"Idempotent-Replayed": "true", "Idempotency-Key": idem})
            try:
                status, body = self._call(method, path, params)
            except StripeApiError as exc:
                if exc.saved:  # Stripe saves results once an endpoint has begun executing, errors included
                    self.state.idempotency[(key, idem)] = Saved(fingerprint, exc.status, exc.body)
                return _json(exc.status, exc.body, {"Idempotency-Key": idem})
            self.state.idempotency[(key, idem)] = Saved(fingerprint, status, body)
            return _json(status, body, {"Idempotency-Key": idem})

    def _run(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            return self._call(method, path, params)
        except StripeApiError as exc:
            return exc.status, exc.body

    def _call(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for route_method, route, pattern, handler in _COMPILED:
            if route_method == method and (match := pattern.match(path)):
                if specs.contracts_enabled():
                    contract.check((route_method, route), params)
                result = handler(self.state, params, *match.groups())
                return 200, expand(self.state, result, params)
        raise StripeApiError(
            404,
            {"type": "invalid_request_error", "message": f"Unrecognized request URL ({method}: {path})."},
            saved=False,
        )


def _bearer(header: str) -> str:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _idempotency_error(key: str) -> dict[str, Any]:
    return {
        "error": {
            "type": "idempotency_error",
            "message": (
                f"Keys for idempotent requests can only be used with the same parameters they were first used "
                f"with. Try using a key other than '{key}' if you meant to execute a different request."
            ),
        }
    }


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        body, status_code=status, headers={"Request-Id": f"req_sbx{time.monotonic_ns()}", **(headers or {})}
    )
