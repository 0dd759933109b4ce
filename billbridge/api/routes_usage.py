"""Usage API: one event, a batch of events, and usage reports.

Bodies are read by :func:`billbridge.api.body.read_json` rather than by FastAPI, so that numbers
stay exact decimals and a batch is validated event by event; their schemas are still published in
the OpenAPI document (``/docs``).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, FastAPI, Query, Request, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from billbridge.api import idempotency
from billbridge.api.auth import SECURITY, Auth, authenticate_request, lookups_of, store_of
from billbridge.api.body import read_json
from billbridge.api.errors import ApiError, ErrorBody, Problem, error_response, refuse
from billbridge.api.pagination import Cursor, Limit, Page, decode, encode
from billbridge.api.query import IsoDate, refuse_unknown_parameters
from billbridge.api.resource_models import UsageMoneyOut, UsageReportRow
from billbridge.api.usage_ingest import ingest
from billbridge.api.usage_models import MAX_BATCH, BatchOut, UsageEventOut
from billbridge.billing.currency import money_str
from billbridge.billing.usage_reports import UsageGroup, UsageMoney, group_money, group_usage
from billbridge.flows import metrics
from billbridge.store.usage import report_rows

router = APIRouter(prefix="/api/usage", tags=["Usage"])

LATE_POLICY = """
**Late events.** An event for a period that is already invoiced is stored and never lost: it is
charged as a correction on the contract's next invoice (billing compares what each period owes
with what was billed). The answer then has `late: true`, the invoice that billed the period as
`related_parent_document_*`, and the upcoming invoice carrying the correction as `related_document_*`.

**Related documents.** `related_document_ref` names the invoice of (contract, billing date) before
it exists; `related_document_numbers` is null until billing generates it and gives it a number.
An event no contract bills yet (usage may come before its contract) is accepted with null related
documents.

**Idempotency.** Send `Idempotency-Key` (single event) or `event_id` (any event): the same key from
the same legal entity is stored once; sending it again, in the same batch or later, answers with the
first `event_ref` (`replayed: true`). The same key for a different event (another customer, product,
timestamp, quantity or `additional_report_data`) is refused (409).
"""

_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON"},
    401: {"model": ErrorBody, "description": "Missing, unknown or revoked API key"},
    413: {"model": ErrorBody, "description": "Body over the size limit"},
    422: {"model": ErrorBody, "description": "Field-level problems"},
}


def _json(content: Any, status: int) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _limit(request: Request) -> int:
    limit: int = request.app.state.max_body_bytes
    return limit


@router.post(
    "/event",
    summary="Report one usage event",
    description=LATE_POLICY,
    status_code=201,
    response_model=UsageEventOut,
    responses={
        200: {"model": UsageEventOut, "description": "A replay: the event was stored before"},
        403: {"model": ErrorBody, "description": "The event is for another legal entity or currency"},
        409: {"model": ErrorBody, "description": "The idempotency key was used for a different event"},
        **_BODY_ERRORS,
    },
    openapi_extra={
        "security": SECURITY,
        "parameters": [idempotency.openapi_parameter("event")],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UsageEventIn"}}},
        },
    },
)
async def post_event(request: Request) -> Response:
    refuse_unknown_parameters(request)
    principal = authenticate_request(request)
    idempotency_key = idempotency.header_key(request)
    body = await read_json(request, _limit(request))
    [outcome] = ingest(store_of(request), principal, [body], idempotency_key, lookups_of(request))
    if outcome.answer is None:
        raise ApiError(outcome.http_status, [p.model_copy(update={"index": None}) for p in outcome.problems])
    return _json(outcome.answer, outcome.http_status)


@router.post(
    "/events/batch",
    summary="Report up to 1,000 usage events",
    description="Each event is validated and answered on its own (`results[i]` answers `events[i]`); the accepted "
    "ones are stored in one transaction.\n" + LATE_POLICY,
    response_model=BatchOut,
    responses=_BODY_ERRORS,
    openapi_extra={
        "security": SECURITY,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchIn"}}},
        },
    },
)
async def post_batch(request: Request) -> Response:
    refuse_unknown_parameters(request)
    principal = authenticate_request(request)
    body = await read_json(request, _limit(request))
    if not isinstance(body, dict) or set(body) != {"events"} or not isinstance(body["events"], list):
        raise refuse(422, "bad_batch", 'the body must be {"events": [...]}', "events")
    events = body["events"]
    if len(events) > MAX_BATCH:
        raise refuse(422, "batch_too_large", f"at most {MAX_BATCH} events per request, got {len(events)}", "events")
    outcomes = ingest(store_of(request), principal, events, lookups=lookups_of(request))
    results: list[dict[str, Any]] = []
    counts = {"accepted": 0, "duplicate": 0, "refused": 0}
    for outcome in outcomes:
        counts[outcome.status] += 1
        if outcome.answer is not None:
            results.append({"index": outcome.index, "status": outcome.status, "event": outcome.answer})
        else:
            results.append(
                {
                    "index": outcome.index,
                    "status": "refused",
                    "errors": [_problem(p, outcome.index) for p in outcome.problems],
                }
            )
    return _json(
        {
            "accepted": counts["accepted"],
            "duplicates": counts["duplicate"],
            "refused": counts["refused"],
            "results": results,
        },
        200,
    )


def plain_routes() -> list[Route]:
    """The two POST endpoints as plain Starlette routes, for the application to try first.

    They authenticate, read their own bodies and answer ready-made Responses, so FastAPI's work
    per request (solving dependencies, which they have none of) was pure overhead: about 70 of
    340 us of CPU per single event, in-process. The FastAPI routes above stay, for the OpenAPI
    document; requests never reach them.
    """
    return [
        Route(f"{router.prefix}/event", post_event, methods=["POST"]),
        Route(f"{router.prefix}/events/batch", post_batch, methods=["POST"]),
    ]


class UsageFastLane:
    """An ASGI application that answers the two POST endpoints itself and hands every other
    request (and the lifespan) to ``app``, which it wraps.

    What it skips is what these two endpoints never use: FastAPI's and Starlette's middleware
    (error pages, exception handlers, the NUL check on the URL, an async exit stack) and the router.
    It takes only requests that cannot differ there: POST, the exact path, no query string (a
    query goes the long way, to be refused as it always was), no root path. Refusals are answered
    as the application's handler answers them (:func:`errors.error_response`); an unexpected
    error reaches the server, which answers 500 as the application would. FastAPI's OpenTelemetry
    instrumentation, when configured, does not see these requests.
    """

    def __init__(self, app: FastAPI, *, workers: int = 1) -> None:
        self.app = app
        self._handlers = {route.path: route.endpoint for route in plain_routes()}
        self._rebalance = workers > 1
        self._answered: dict[Any, int] = {}  # requests answered per open connection (its client address)

    def _closes(self, scope: Scope) -> bool:
        """Whether this answer ends its keep-alive connection, so that the client's next request is
        accepted afresh by whichever worker is free (only with several workers).

        A keep-alive connection stays with the worker that accepted it, and a worker accepts every
        connection waiting when it wakes: 2 batch clients landed on one of 2 workers in a third of
        the starts, 8 single-event clients split 6 to 2, and that worker's one core set the pace
        while the other idled. A worker busy with a request is not accepting, so a new connection
        goes to a free one. A batch (tens of ms of work) ends its connection every time, for a
        reconnect of about a tenth of a millisecond; single events every ``REQUESTS_PER_CONNECTION``
        requests (as nginx's ``keepalive_requests``), so that the spread corrects itself within a
        second at a cost of about 1%."""
        if not self._rebalance:
            return False
        if scope["path"].endswith("/batch"):
            return True
        client = scope.get("client")
        if client is None:  # no address to count its requests by (a Unix socket): kept open
            return False
        answered = self._answered.get(client, 0) + 1
        if answered >= REQUESTS_PER_CONNECTION:
            self._answered.pop(client, None)
            return True
        if len(self._answered) >= MAX_TRACKED_CONNECTIONS:  # connections the clients closed themselves
            self._answered.clear()
        self._answered[client] = answered
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = (
            self._handlers.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("query_string")
            else None
        )
        if handler is None or scope.get("root_path") or self.app.root_path:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app  # Request.app: the store, the caches, the limits
        try:
            response = await handler(Request(scope, receive))
        except ApiError as exc:
            response = error_response(exc)
        if self._closes(scope):
            response.headers["connection"] = "close"  # uvicorn then closes it once the answer is sent
        await response(scope, receive, send)


REQUESTS_PER_CONNECTION = 100
MAX_TRACKED_CONNECTIONS = 10_000


def _problem(problem: Problem, index: int) -> dict[str, Any]:
    body = problem.model_dump(exclude_none=True)
    body["index"] = index
    if problem.field:
        body["field"] = f"events[{index}].{problem.field}"
    return body


@router.get(
    "/reports",
    summary="Usage grouped by day, month, product or customer",
    response_model=Page[UsageReportRow],
    responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def usage_report(
    request: Request,
    principal: Auth,
    group_by: Literal["day", "month", "product", "customer"] = "day",
    customer_ref: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    usage_product_ref: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    from_: Annotated[IsoDate | None, Query(alias="from", description="First UTC day included")] = None,
    to: Annotated[IsoDate | None, Query(description="Last UTC day included")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[UsageReportRow]:
    """Sum of quantities (exact, as a string) and count of events per group, in group order, with the
    usage billed and collected per currency (by month, product or customer)."""
    if from_ is not None and to is not None and to < from_:
        raise refuse(422, "bad_range", "`to` is before `from`", "to")
    end = to + timedelta(days=1) if to and to < date.max else None
    with store_of(request).read() as session:
        rows = report_rows(
            session, principal.entity_id, customer_ref=customer_ref, product_ref=usage_product_ref, start=from_, end=end
        )
    quantities = {g.key: g for g in group_usage(rows, group_by)}
    money: UsageMoney = {}
    if group_by != "day":
        where = metrics.Scope((principal.entity_id,), (principal.entity_ref,))
        found = metrics.usage_money(store_of(request), where, from_, to, customer_ref, usage_product_ref)
        money = group_money(found, group_by)
    keys = sorted(set(quantities) | set(money))
    offset = decode(cursor)
    chosen = keys[offset : offset + limit]
    more = offset + limit < len(keys)
    return Page[UsageReportRow](
        data=[_report_row(key, quantities.get(key), money.get(key, {})) for key in chosen],
        has_more=more,
        next_cursor=encode(offset + limit) if more else None,
    )


def _report_row(key: str, usage: UsageGroup | None, money: dict[str, tuple[Decimal, Decimal]]) -> UsageReportRow:
    return UsageReportRow(
        group=key,
        quantity=str(usage.quantity) if usage else "0",
        events=usage.events if usage else 0,
        money=[
            UsageMoneyOut(currency=cur, billed=money_str(billed, cur), collected=money_str(collected, cur))
            for cur, (billed, collected) in money.items()
        ],
    )
