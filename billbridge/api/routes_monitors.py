"""Monitors API, ``/api/monitors``: create (with an ``Idempotency-Key``), list, read and delete the
monitors of the API key's legal entity, and read their values per customer and day (net or
increment) as a day's rows or a series. Another entity's monitors do not exist here (404)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session

from billbridge.api import idempotency
from billbridge.api.auth import Auth, store_of
from billbridge.api.body import check_texts, read_json
from billbridge.api.errors import ApiError, ErrorBody, problems_of, refuse
from billbridge.api.query import IsoDate
from billbridge.api.write_models import request_body
from billbridge.billing.monitors import NAME_PATTERN, MonitorDefinition
from billbridge.flows import metrics
from billbridge.flows import monitors as flow
from billbridge.store import monitors as sql
from billbridge.store.api_answers import Answer
from billbridge.store.api_keys import Principal
from billbridge.store.db import Store

router = APIRouter(
    prefix="/api/monitors", tags=["Monitors"], responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}}
)
MAX_SERIES_DAYS = 3660

NamePath = Annotated[str, Path(min_length=1, max_length=100, pattern=NAME_PATTERN)]
CustomerQ = Annotated[str | None, Query(min_length=1, max_length=200, description="Only this customer (customer_ref)")]
Measure = Annotated[
    Literal["net", "increment"], Query(description="The net value, or the increment over the previous day")
]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "No such monitor or customer"}}


class MonitorOut(MonitorDefinition):
    """A monitor as defined, with when it was created."""

    created_at: str


class MonitorList(BaseModel):
    data: list[MonitorOut]


class ValueRow(BaseModel):
    customer_ref: str
    day: str = Field(description="YYYY-MM-DD")
    value: str | None = Field(
        description="A decimal, a date (YYYY-MM-DD) or a text; the increment: a decimal (days for dates)"
    )


class ValuesOut(BaseModel):
    monitor: str
    measure: Literal["net", "increment"]
    rows: list[ValueRow]


class AlertOut(BaseModel):
    day: str
    customer_ref: str
    condition: str
    value: str
    increment: str | None


class AlertList(BaseModel):
    data: list[AlertOut]


class SecretOut(BaseModel):
    webhook_secret: str = Field(description="The HMAC-SHA256 key of the monitor's webhook signatures")


def _monitor(store: Store, principal: Principal, name: str) -> sql.StoredMonitor:
    try:
        return flow.find(store, name, [principal.entity_id])
    except LookupError:
        raise refuse(404, "not_found", f"no monitor {name!r}", "name") from None


def _out(monitor: sql.StoredMonitor) -> dict[str, Any]:
    return MonitorOut.model_validate(monitor.as_dict()).model_dump(mode="json", exclude_none=True)


def _in_window(day: date | None, field: str) -> date | None:
    if day is not None:
        earliest, latest = metrics.day_window()
        if not earliest <= day <= latest:
            raise refuse(422, "outside_window", f"`{field}` must be from {earliest} to {latest}", field)
    return day


@router.post(
    "",
    status_code=201,
    response_model=MonitorOut,
    responses={
        201: {"model": MonitorOut, "description": "Created (or, replayed, created before)"},
        403: {"model": ErrorBody, "description": "For another legal entity"},
        409: {
            "model": ErrorBody,
            "description": "The name is taken, or the idempotency key was used for another request",
        },
        400: {"model": ErrorBody, "description": "Malformed JSON"},
        413: {"model": ErrorBody, "description": "Body over the size limit"},
    },
    summary="Create a monitor",
    openapi_extra={**request_body("MonitorIn"), "parameters": [idempotency.openapi_parameter("request")]},
)
async def create(request: Request, principal: Auth) -> Response:
    """A monitor of the key's legal entity (``entity_ref`` may be left out). What it names must be in the
    store; an item the watched line's pricing model lacks is refused (422) listing the items it has."""
    body = await read_json(request, request.app.state.max_body_bytes)
    if not isinstance(body, dict):
        raise refuse(422, "not_an_object", "the body must be a JSON object", None)
    check_texts(body)
    given = {**body, "entity_ref": body.get("entity_ref", principal.entity_ref)}
    if given["entity_ref"] != principal.entity_ref:
        raise refuse(403, "other_entity", f"this API key is for {principal.entity_ref}", "entity_ref")
    try:
        definition = MonitorDefinition.model_validate(given)
    except ValidationError as exc:
        raise ApiError(422, problems_of(exc)) from None

    def work(session: Session) -> Answer:
        try:
            flow.add_monitor(session, definition)
        except flow.MonitorRefused as exc:
            status, code = (409, "exists") if exc.field == "name" else (422, "refused")
            raise refuse(status, code, str(exc), exc.field) from None
        [monitor] = sql.list_monitors(session, [principal.entity_id], name=definition.name)
        return Answer(201, _out(monitor))

    key = idempotency.header_key(request)
    fingerprint = idempotency.fingerprint("POST", request.url.path, body)
    answer, replayed = await run_in_threadpool(
        idempotency.answer_once, store_of(request), key, principal.entity_id, fingerprint, work
    )
    headers = {"Location": f"{request.url.path}/{answer.body.get('name', '')}"}
    if replayed:
        headers[idempotency.REPLAYED_HEADER] = "true"
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


@router.get("", response_model=MonitorList, summary="List the monitors")
def list_monitors(request: Request, principal: Auth) -> MonitorList:
    with store_of(request).read() as session:
        monitors = sql.list_monitors(session, [principal.entity_id])
    return MonitorList.model_validate({"data": [_out(m) for m in monitors]})


@router.get("/{name}", response_model=MonitorOut, responses=_NOT_FOUND, summary="Read a monitor")
def get_monitor(request: Request, principal: Auth, name: NamePath) -> MonitorOut:
    return MonitorOut.model_validate(_out(_monitor(store_of(request), principal, name)))


@router.delete("/{name}", status_code=204, response_class=Response, responses=_NOT_FOUND, summary="Delete a monitor")
def delete_monitor(request: Request, principal: Auth, name: NamePath) -> Response:
    """The monitor with its values and alerts."""
    store = store_of(request)
    monitor = _monitor(store, principal, name)
    with store.write() as session:
        sql.remove_monitor(session, monitor.id)
    return Response(status_code=204)


def _values(
    request: Request,
    principal: Principal,
    name: str,
    first: date | None,
    last: date | None,
    customer: str | None,
    measure: str,
) -> ValuesOut:
    """The rows from ``first`` (None: ``last``) to ``last`` (None: today in the entity's time zone)."""
    store = store_of(request)
    monitor = _monitor(store, principal, name)
    last = last or flow.today_in(monitor.timezone)
    first = first or last
    if last < first:
        raise refuse(422, "bad_range", "`to` is before `from`", "to")
    if (last - first).days >= MAX_SERIES_DAYS:
        raise refuse(422, "bad_range", f"a series covers at most {MAX_SERIES_DAYS} days", "from")
    try:
        rows = flow.view(store, monitor, first, last, customer_ref=customer, increment=measure == "increment")
    except LookupError as exc:
        raise refuse(404, "not_found", str(exc), "customer_ref") from None
    shown = [{**r, "value": r["increment"] if measure == "increment" else r["value"]} for r in rows]
    return ValuesOut.model_validate({"monitor": monitor.name, "measure": measure, "rows": shown})


@router.get("/{name}/values", response_model=ValuesOut, responses=_NOT_FOUND, summary="A monitor's values on a day")
def values(
    request: Request,
    principal: Auth,
    name: NamePath,
    day: Annotated[
        IsoDate | None, Query(alias="date", description="The day (default today in the entity's time zone)")
    ] = None,
    customer_ref: CustomerQ = None,
    measure: Measure = "net",
) -> ValuesOut:
    """Per customer (or one), the net value or the increment over the previous day, as kept by the
    daily snapshot (or a backfill)."""
    on = _in_window(day, "date")
    return _values(request, principal, name, on, on, customer_ref, measure)


@router.get("/{name}/series", response_model=ValuesOut, responses=_NOT_FOUND, summary="A monitor's values over days")
def series(
    request: Request,
    principal: Auth,
    name: NamePath,
    from_: Annotated[IsoDate, Query(alias="from", description="First day")],
    to: Annotated[IsoDate | None, Query(description="Last day (default today in the entity's time zone)")] = None,
    customer_ref: CustomerQ = None,
    measure: Measure = "net",
) -> ValuesOut:
    """Rows per customer and day from `from` to `to`, net or increment."""
    first = _in_window(from_, "from") or from_
    return _values(request, principal, name, first, _in_window(to, "to"), customer_ref, measure)


@router.get("/{name}/alerts", response_model=AlertList, responses=_NOT_FOUND, summary="A monitor's latest alerts")
def alerts(
    request: Request, principal: Auth, name: NamePath, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> AlertList:
    store = store_of(request)
    monitor = _monitor(store, principal, name)
    with store.read() as session:
        return AlertList.model_validate({"data": sql.alerts(session, monitor.id, limit)})


@router.get(
    "/{name}/webhook-secret",
    response_model=SecretOut,
    responses=_NOT_FOUND,
    summary="A monitor's webhook signing secret",
)
def webhook_secret(request: Request, principal: Auth, name: NamePath) -> SecretOut:
    """The key its webhook deliveries are signed with (derived from the installation's key, never stored)."""
    monitor = _monitor(store_of(request), principal, name)
    return SecretOut(
        webhook_secret=flow.webhook_secret(flow.sealer_of(request.app.state.settings), monitor.entity_ref, monitor.name)
    )
