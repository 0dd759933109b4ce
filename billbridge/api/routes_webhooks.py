"""Webhook endpoints: ``POST /webhooks/stripe`` and ``POST /webhooks/quickbooks``.

The signature is the authentication (no API key). Each delivery is verified on its raw bytes,
stored once per event in the inbox (``store/webhooks.py``) and answered 200 at once; acting on it
happens afterwards (``flows/webhooks.py``). A redelivery answers 200 and stores nothing, so the
vendor stops retrying. Refusals: 400 for a forged, stale or malformed delivery (``code`` says
which), 503 while the endpoint's secret is not configured (the vendor retries, so nothing is lost
once it is).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from billbridge.api.body import read_raw
from billbridge.api.errors import ErrorBody, refuse
from billbridge.app.settings import Settings
from billbridge.connectors.quickbooks.webhooks import MalformedNotification, parse_notification
from billbridge.connectors.quickbooks.webhooks import verify_webhook as verify_intuit
from billbridge.connectors.stripe.webhooks import WebhookRefused
from billbridge.connectors.stripe.webhooks import verify_webhook as verify_stripe
from billbridge.store import webhooks as inbox
from billbridge.store.db import Store
from billbridge.store.webhooks import InboxEvent

router = APIRouter(prefix="/webhooks", tags=["Webhooks"])


class Received(BaseModel):
    received: int  # events in the delivery
    new: int  # stored now
    duplicates: int  # stored before: nothing more happens


@dataclass(frozen=True)
class Source:
    """A vendor's webhook: where its secret is configured and how a delivery becomes events."""

    name: str
    setting: str  # the environment variable naming the secret, for the 503 message
    secret: Callable[[Settings], str | None]
    events: Callable[[bytes, Headers, str], list[InboxEvent]]  # raises ApiError (400) when refused


def _stripe_secret(settings: Settings) -> str | None:
    secret = settings.stripe.webhook_secret if settings.stripe else None
    return secret.get_secret_value() if secret else None


def _stripe_events(body: bytes, headers: Headers, secret: str) -> list[InboxEvent]:
    header = headers.get("stripe-signature")
    if not header:
        raise refuse(400, "missing_signature", "no Stripe-Signature header", "Stripe-Signature")
    try:
        event = verify_stripe(body, header, secret)
    except WebhookRefused as exc:
        raise refuse(400, exc.code, str(exc), "Stripe-Signature" if exc.code != "malformed_payload" else None) from None
    obj = (event.get("data") or {}).get("object") or {}
    created = event.get("created")
    return [
        InboxEvent(
            "stripe",
            event["id"],
            event["type"],
            str(obj["id"]) if isinstance(obj, dict) and obj.get("id") else None,
            datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None,
            body.decode(),
        )
    ]


def _intuit_token(settings: Settings) -> str | None:
    token = settings.quickbooks.webhook_verifier_token if settings.quickbooks else None
    return token.get_secret_value() if token else None


def _quickbooks_events(body: bytes, headers: Headers, token: str) -> list[InboxEvent]:
    signature = headers.get("intuit-signature")
    if not signature:
        raise refuse(400, "missing_signature", "no intuit-signature header", "intuit-signature")
    if not verify_intuit(body, signature, token):
        raise refuse(400, "bad_signature", "intuit-signature does not sign this payload", "intuit-signature")
    try:
        changes = parse_notification(body)
    except MalformedNotification as exc:
        raise refuse(400, "malformed_payload", str(exc)) from None
    return [
        InboxEvent(
            "quickbooks",
            c.key,
            f"{c.name}.{c.operation}",
            c.id,
            c.updated_at,
            json.dumps(
                {
                    "realmId": c.realm_id,
                    "name": c.name,
                    "id": c.id,
                    "operation": c.operation,
                    "lastUpdated": c.last_updated,
                }
                | ({"eventId": c.event_id} if c.event_id else {})
            ),
        )
        for c in changes
    ]


SOURCES: dict[str, Source] = {
    "stripe": Source("stripe", "BILLBRIDGE_STRIPE__WEBHOOK_SECRET", _stripe_secret, _stripe_events),
    "quickbooks": Source(
        "quickbooks", "BILLBRIDGE_QUICKBOOKS__WEBHOOK_VERIFIER_TOKEN", _intuit_token, _quickbooks_events
    ),
}


def _store_events(store: Store, events: list[InboxEvent]) -> set[str]:
    with store.write() as session:
        return inbox.receive(session, events)


async def receive(request: Request, source: Source) -> JSONResponse:
    settings: Settings = request.app.state.settings
    secret = source.secret(settings)
    if secret is None:
        raise refuse(503, "webhook_not_configured", f"the {source.name} webhook secret is not set ({source.setting})")
    body = await read_raw(request, request.app.state.max_body_bytes)
    events = source.events(body, request.headers, secret)
    new = await run_in_threadpool(_store_events, request.app.state.store, events) if events else set()
    worker = request.app.state.webhook_worker
    if new and worker is not None:
        worker.wake()
    answer = Received(received=len(events), new=len(new), duplicates=len(events) - len(new))
    return JSONResponse(answer.model_dump())


_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Forged, stale or malformed: `code` says which"},
    413: {"model": ErrorBody, "description": "Body over the size limit"},
    503: {"model": ErrorBody, "description": "The secret for this endpoint is not configured (the vendor retries)"},
}


def _documented(header: str, description: str, body: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The signature header and the JSON body, for /docs (the route reads the raw bytes itself)."""
    return {
        "parameters": [
            {"name": header, "in": "header", "required": True, "schema": {"type": "string"}, "description": description}
        ],
        "requestBody": {
            "required": True,
            "description": body,
            "content": {"application/json": {"schema": schema or {"type": "object"}}},
        },
    }


@router.post(
    "/stripe",
    response_model=Received,
    responses=_RESPONSES,
    summary="Stripe webhook endpoint",
    openapi_extra=_documented("Stripe-Signature", "t=<unix time>,v1=<HMAC-SHA256>", "A Stripe event"),
)
async def stripe_webhook(request: Request) -> JSONResponse:
    """Verified with `Stripe-Signature` (the endpoint's signing secret, 5-minute window both ways)."""
    return await receive(request, SOURCES["stripe"])


@router.post(
    "/quickbooks",
    response_model=Received,
    responses=_RESPONSES,
    summary="QuickBooks webhook endpoint",
    openapi_extra=_documented(
        "intuit-signature",
        "base64 HMAC-SHA256 of the body",
        "Intuit's data change events: a JSON array of CloudEvents (the current format) or eventNotifications (legacy)",
        {"oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]},
    ),
)
async def quickbooks_webhook(request: Request) -> JSONResponse:
    """Verified with `intuit-signature` (the app's verifier token); one event per entity change."""
    return await receive(request, SOURCES["quickbooks"])
