"""The FastAPI application: ``create_app(store)``, and the factory `billbridge serve` runs."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Receive, Scope, Send

from billbridge import redaction
from billbridge.api import (
    errors,
    routes_metrics,
    routes_monitors,
    routes_partners,
    routes_resellers,
    routes_resources,
    routes_revenue,
    routes_usage,
    routes_webhooks,
    routes_write,
    write_models,
)
from billbridge.api.dashboard import routes as dashboard
from billbridge.api.lookups import Lookups
from billbridge.api.query import declared_parameters_only
from billbridge.api.usage_models import BatchIn, UsageEventIn
from billbridge.api.webhook_worker import WebhookWorker
from billbridge.settings import Settings
from billbridge.store.db import Store, open_store

DESCRIPTION = """billbridge's usage event API, read API and write API. Authenticate with an API key from
`billbridge apikey create --entity REF`, sent as `Authorization: Bearer <key>`; everything is scoped
to the key's legal entity. Money and quantities are strings in answers (exact decimals, money in the
currency's minor units). Every POST takes an `Idempotency-Key`; an update (PUT, PATCH) needs
`If-Match` with the ETag of the version it changes. The webhook endpoints (`/webhooks/...`) take no
API key: the vendor's signature authenticates them. The finance metrics (`/api/metrics/...`) are
the figures of the dashboard served at `/`."""


NO_NUL = r"^[^\x00]*$"


class _NoNulInUrl:
    """Refuse URLs whose path or query carries a NUL byte (no database can store or compare it).
    The OpenAPI document says so: every operation has a 400, and every string in a URL is NO_NUL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "") or b"\x00" in unquote_to_bytes(scope.get("query_string", b""))
        ):
            body = b'{"detail":[{"message":"the URL must not contain NUL bytes","code":"bad_url"}]}'
            await send(
                {"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def create_app(store: Store, settings: Settings | None = None) -> FastAPI:
    """The API over ``store`` (opened and migrated by the caller).

    With ``settings.webhooks_inline`` a background thread acts on stored webhook events
    (``app.state.webhook_worker``; stopped on shutdown). Credentials in the logs of the vendor calls
    they make are redacted (``billbridge.redaction``).
    """
    redaction.install()
    settings = settings or Settings()
    worker = WebhookWorker(lambda: _process_webhooks(store, settings)) if settings.webhooks_inline else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if worker is not None:
            worker.stop()

    app = FastAPI(
        title="billbridge API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(declared_parameters_only)],
    )
    app.state.store = store
    app.state.settings = settings
    app.state.max_body_bytes = settings.api_max_body_bytes
    app.state.lookups = Lookups(settings.api_cache_seconds)
    app.state.webhook_worker = worker
    errors.install(app)
    app.include_router(routes_usage.router)  # first: the hot path is matched before the read API
    app.include_router(routes_resources.router)
    app.include_router(routes_write.router)
    app.include_router(routes_webhooks.router)
    app.include_router(routes_metrics.router)
    app.include_router(routes_monitors.router)
    app.include_router(routes_revenue.router)
    app.include_router(routes_partners.router)
    app.include_router(routes_resellers.router)
    dashboard.install(app)
    app.router.routes[0:0] = routes_usage.plain_routes()  # matched first (see plain_routes)
    app.add_middleware(_NoNulInUrl)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (UsageEventIn, BatchIn):
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            components.update(write_models.components())
            _document_nul_refusal(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _document_nul_refusal(schema: dict[str, Any]) -> None:
    """What _NoNulInUrl refuses, in the document: a 400 on every operation, and strings in paths and
    queries that hold no NUL (so a request the document calls valid never gets that 400)."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            if "400" in responses:
                responses["400"]["description"] += "; or a NUL byte in the URL"
            else:
                responses["400"] = {
                    "description": "A NUL byte in the URL",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                }
            for parameter in operation.get("parameters", []):
                if parameter.get("in") in ("path", "query"):
                    _no_nul(parameter.get("schema", {}))


def _no_nul(schema: dict[str, Any]) -> None:
    if schema.get("type") == "string":
        schema.setdefault("pattern", NO_NUL)
    for branch in schema.get("anyOf", []):
        _no_nul(branch)


def _process_webhooks(store: Store, settings: Settings) -> object:
    from billbridge.flows.webhooks import process_pending  # imports Prefect: only once a webhook came in

    return process_pending(store, settings)


def app_from_settings() -> routes_usage.UsageFastLane:
    """What uvicorn runs (``factory=True``): the configured store, migrated on start, behind the
    usage endpoints' fast lane (:class:`routes_usage.UsageFastLane`).

    Everything loaded so far (modules, compiled statements, the app) lives as long as the
    process, so it is moved out of the garbage collector's sight (``gc.freeze``): otherwise each
    collection walks all of it again, and a 1,000-event batch, which allocates enough to trigger
    dozens of collections, spent 15 of its 51 us of CPU per event in them (measured in-process with
    ``gc.callbacks``; 2 us once frozen). Cycles made by requests are still collected.
    """
    settings = Settings()
    app = routes_usage.UsageFastLane(create_app(open_store(settings.database), settings), workers=settings.api_workers)
    gc.collect()
    gc.freeze()
    return app
