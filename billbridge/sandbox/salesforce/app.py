"""The Salesforce REST API sandbox as a FastAPI app: OAuth token, SOQL query with paging, Get Deleted / Updated.

Follows the REST API Developer Guide: query results page with ``nextRecordsUrl``
(``/services/data/vNN.0/query/01g...-2000``), 2,000 records per batch unless the
``Sforce-Query-Options: batchSize=N`` header asks for fewer (200 at least); every response carries
``Sforce-Limit-Info: api-usage=used/limit``; errors are ``[{"message": ..., "errorCode": ...}]``
(INVALID_SESSION_ID with 401, REQUEST_LIMIT_EXCEEDED with 403, MALFORMED_QUERY with 400).
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from billbridge.sandbox.faults import ErrorResponse, FaultInjector, FaultMiddleware
from billbridge.sandbox.salesforce.org import MAX_BATCH_SIZE, MIN_BATCH_SIZE, Org, SalesforceApiError, to_json
from billbridge.sandbox.salesforce.soql import SoqlError, parse, parse_datetime

_VERSION = re.compile(r"^v(\d{2,3}\.0)$")
_BATCH_SIZE = re.compile(r"batchSize=(\d+)")


class SalesforceErrors:
    """Salesforce's own answers to throttling, failures and expired sessions (for FaultMiddleware)."""

    def rate_limited(self, retry_after: int) -> ErrorResponse:
        # Salesforce answers the org's request limit with 403 and no Retry-After header.
        return ErrorResponse(403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])

    def server_error(self) -> ErrorResponse:
        return ErrorResponse(503, [{"message": "Service Unavailable", "errorCode": "SERVER_UNAVAILABLE"}])

    def unauthorized(self) -> ErrorResponse:
        return ErrorResponse(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])


def _error(exc: SalesforceApiError, org: Org) -> Response:
    return JSONResponse(
        [{"message": exc.message, "errorCode": exc.code}],
        status_code=exc.status,
        headers={"Sforce-Limit-Info": org.limit_info()},
    )


def create_app(org: Org, credentials: dict[str, str], injector: FaultInjector | None = None) -> Any:
    """The sandbox app over ``org``; ``credentials`` holds client_id/client_secret and username/password."""
    app = FastAPI(title="Salesforce sandbox", openapi_url=None, docs_url=None, redoc_url=None)

    def api_call(request: Request, version: str) -> str:
        """Check version and session, count the call; returns the API version without the v."""
        match = _VERSION.match(version)
        if match is None:
            raise SalesforceApiError(404, "NOT_FOUND", "The requested resource does not exist")
        auth = request.headers.get("authorization", "")
        org.check_session(auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None)
        org.count_call()
        return match.group(1)

    def answer(body: Any) -> Response:
        return Response(to_json(body), media_type="application/json", headers={"Sforce-Limit-Info": org.limit_info()})

    @app.exception_handler(SalesforceApiError)
    async def salesforce_error(request: Request, exc: SalesforceApiError) -> Response:
        return _error(exc, org)

    @app.post("/services/oauth2/token")
    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        grant = form.get("grant_type")
        client_ok = (form.get("client_id"), form.get("client_secret")) == (
            credentials["client_id"],
            credentials["client_secret"],
        )
        user_ok = (form.get("username"), form.get("password")) == (credentials["username"], credentials["password"])
        if grant not in ("client_credentials", "password"):
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "grant type not supported"}, 400
            )
        if not client_ok:
            return JSONResponse({"error": "invalid_client", "error_description": "invalid client credentials"}, 400)
        if grant == "password" and not user_ok:
            return JSONResponse({"error": "invalid_grant", "error_description": "authentication failure"}, 400)
        access_token = f"00DDm0000000001!{secrets.token_urlsafe(24)}"
        org.open_session(access_token)
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "access_token": access_token,
                "instance_url": base,
                "id": f"{base}/id/00DDm0000000001AAA/005Dm0000000001AAA",
                "token_type": "Bearer",
                "issued_at": str(int(org.now().timestamp() * 1000)),
                "signature": secrets.token_urlsafe(32),
                "scope": "api",
            }
        )

    def query(request: Request, version: str, q: str) -> Response:
        api = api_call(request, version)
        try:
            parsed = parse(q)
        except SoqlError as exc:
            raise SalesforceApiError(400, "MALFORMED_QUERY", str(exc)) from exc
        options = _BATCH_SIZE.search(request.headers.get("sforce-query-options", ""))
        batch = MAX_BATCH_SIZE if options is None else max(MIN_BATCH_SIZE, min(MAX_BATCH_SIZE, int(options.group(1))))
        return _page(org.run(parsed, batch, api))

    def query_more(request: Request, version: str, locator: str) -> Response:
        api_call(request, version)
        return _page(org.more(locator))

    def _page(page: Any) -> Response:
        body: dict[str, Any] = {"totalSize": page.total_size, "done": page.done}
        if page.next_url:
            body["nextRecordsUrl"] = page.next_url
        body["records"] = page.records
        return answer(body)

    def window(request: Request, version: str, sobject: str, kind: str) -> Response:
        api_call(request, version)
        try:
            start = parse_datetime(request.query_params["start"])
            end = parse_datetime(request.query_params["end"])
        except (KeyError, ValueError) as exc:
            raise SalesforceApiError(400, "MALFORMED_QUERY", "start and end must be ISO 8601 date-times") from exc
        if kind == "deleted":
            return answer(org.deleted_between(sobject, start, end))
        return answer(org.updated_between(sobject, start, end))

    # simple-salesforce requests ``query/?q=`` and ``deleted/?start=`` with a trailing slash.
    for suffix in ("", "/"):
        app.add_api_route(f"/services/data/{{version}}/query{suffix}", query, methods=["GET"])
        for kind in ("deleted", "updated"):
            app.add_api_route(
                f"/services/data/{{version}}/sobjects/{{sobject}}/{kind}{suffix}",
                _bind_window(window, kind),
                methods=["GET"],
            )
    app.add_api_route("/services/data/{version}/query/{locator}", query_more, methods=["GET"])
    return FaultMiddleware(app, injector or FaultInjector(), SalesforceErrors())


def _bind_window(window: Any, kind: str) -> Any:
    def route(request: Request, version: str, sobject: str) -> Response:
        return window(request, version, sobject, kind)

    return route
