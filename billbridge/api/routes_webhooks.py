"""Webhook endpoints: ``POST /webhooks/<vendor>`` for each vendor the registry gives a ``Webhook``
(``stripe``, ``quickbooks``).

The signature is the authentication (no API key). Each delivery is verified on its raw bytes,
stored once per event in the inbox (``store/webhooks.py``) and answered 200 at once; acting on it
happens afterwards (``flows/webhooks.py``). A redelivery answers 200 and stores nothing, so the
vendor stops retrying. Refusals: 400 for a forged, stale or malformed delivery (``code`` says
which), 503 while the endpoint's secret is not configured (the vendor retries, so nothing is lost
once it is). A signed delivery that cannot be taken (malformed, or with a value the inbox cannot
hold: a 500-character type, a NUL in an id) is kept as ``refused`` with the reason, for people to see.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from billbridge.api.body import read_raw
from billbridge.api.errors import ErrorBody, refuse
from billbridge.connectors.base import WebhookRefused
from billbridge.settings import Settings
from billbridge.store import webhooks as inbox
from billbridge.store.db import Store
from billbridge.store.webhooks import InboxEvent
from billbridge.vendors.registry import Webhook, webhooks

router = APIRouter(prefix="/webhooks", tags=["Webhooks"])


class Received(BaseModel):
    received: int  # events in the delivery
    new: int  # stored now
    duplicates: int  # stored before: nothing more happens


class Unusable(ValueError):
    """A signed delivery billbridge cannot take (malformed, or a value the inbox cannot hold): the
    message names the field."""


@dataclass(frozen=True)
class Source:
    """A vendor's webhook: where its secret is configured, how a delivery is authenticated and how
    it becomes events."""

    name: str
    setting: str  # the environment variable naming the secret, for the 503 message
    secret: Callable[[Settings], str | None]
    verify: Callable[[bytes, Headers, str], None]  # raises ApiError (400): forged or stale, nothing is kept
    read: Callable[[bytes], list[InboxEvent]]  # raises Unusable: signed, but not events billbridge can take


def _reader(name: str, webhook: Webhook) -> Callable[[bytes], list[InboxEvent]]:
    """A vendor's delivery as inbox events (the registry's ``parse``); Unusable when it is malformed."""

    def read(body: bytes) -> list[InboxEvent]:
        try:
            events = webhook.parse(body)
        except WebhookRefused as exc:
            raise Unusable(str(exc)) from None
        return [InboxEvent(name, e.event_id, e.event_type, e.object_id, e.occurred_at, e.payload) for e in events]

    return read


def _verifier(webhook: Webhook) -> Callable[[bytes, Headers, str], None]:
    """A vendor's signature check (the registry's) as the endpoint runs it: 400 naming the header."""

    def verify(body: bytes, headers: Headers, secret: str) -> None:
        signature = headers.get(webhook.header)
        if not signature:
            raise refuse(400, "missing_signature", f"no {webhook.header} header", webhook.header)
        try:
            webhook.verify(body, signature, secret)
        except WebhookRefused as exc:
            field = webhook.header if exc.code != "malformed_payload" else None
            raise refuse(400, exc.code, str(exc), field) from None

    return verify


SOURCES: dict[str, Source] = {
    name: Source(name, webhook.setting, webhook.secret, _verifier(webhook), _reader(name, webhook))
    for name, webhook in webhooks().items()
}


def _events(source: Source, body: bytes) -> list[InboxEvent]:
    """The delivery's events; Unusable if it is malformed or any of them cannot be stored as it is."""
    events = source.read(body)
    for n, event in enumerate(events):
        problem = inbox.unstorable(event)
        if problem is not None:
            raise Unusable(f"[{n}] {problem}" if len(events) > 1 else problem)
    return events


def _store_events(store: Store, events: list[InboxEvent]) -> set[str]:
    with store.write() as session:
        return inbox.receive(session, events)


def _keep_refused(store: Store, source: str, body: bytes, reason: str) -> None:
    with store.write() as session:
        inbox.keep_refused(session, source, body, reason)


async def receive(request: Request, source: Source) -> JSONResponse:
    settings: Settings = request.app.state.settings
    secret = source.secret(settings)
    if secret is None:
        raise refuse(503, "webhook_not_configured", f"the {source.name} webhook secret is not set ({source.setting})")
    body = await read_raw(request, request.app.state.max_body_bytes)
    source.verify(body, request.headers, secret)
    store: Store = request.app.state.store
    try:
        events = _events(source, body)
    except Unusable as exc:
        # Signed, so the vendor sent it: kept visible as refused, and a 400 that says why.
        await run_in_threadpool(_keep_refused, store, source.name, body, str(exc))
        raise refuse(400, "malformed_payload", str(exc)) from None
    new = await run_in_threadpool(_store_events, store, events) if events else set()
    worker = request.app.state.webhook_worker
    if new and worker is not None:
        worker.wake()
    answer = Received(received=len(events), new=len(new), duplicates=len(events) - len(new))
    return JSONResponse(answer.model_dump())


_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "Forged, stale or malformed: `code` says which (a signed but malformed delivery is kept, "
        "as refused, for people to see)",
    },
    413: {"model": ErrorBody, "description": "Body over the size limit"},
    503: {"model": ErrorBody, "description": "The secret for this endpoint is not configured (the vendor retries)"},
}


def _documented(header: str, description: str, body: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The signature header and the JSON body, for /docs (the route reads the raw bytes itself)."""
    return {
        "parameters": [
            {
                "name": header,
                "in": "header",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
                "description": description,
            }
        ],
        "requestBody": {
            "required": True,
            "description": body,
            "content": {"application/json": {"schema": schema or {"type": "object"}}},
        },
    }


def _endpoint(source: Source) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        return await receive(request, source)

    return endpoint


# One endpoint per vendor that sends webhooks (the registry's ``Webhook``): POST /webhooks/<vendor>.
for _name, _webhook in webhooks().items():
    _summary, _signature, _body = _webhook.docs
    router.add_api_route(
        f"/{_name}",
        _endpoint(SOURCES[_name]),
        methods=["POST"],
        response_model=Received,
        responses=_RESPONSES,
        summary=_summary,
        description=f"Verified with `{_webhook.header}` ({_webhook.setting}); one event per change.",
        name=f"{_name}_webhook",
        openapi_extra=_documented(
            _webhook.header, _signature, _body, dict(_webhook.body_schema) if _webhook.body_schema else None
        ),
    )
