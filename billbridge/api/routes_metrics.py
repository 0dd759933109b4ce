"""Read API of the finance metrics, ``/api/metrics/...``: the reports of ``flows/metrics.py`` (the
same the CLI and the dashboard show), scoped to the API key's legal entity. Money is a string in
the currency's minor units, next to the row's ``currency``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from billbridge.api.auth import Auth, store_of
from billbridge.api.errors import ErrorBody, refuse
from billbridge.api.query import IsoDate
from billbridge.flows import metrics
from billbridge.flows.metrics import Report, Scope
from billbridge.store.db import Store

router = APIRouter(
    prefix="/api/metrics", tags=["Metrics"], responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}}
)

AsOf = Annotated[IsoDate | None, Query(alias="as_of", description="The day the figures are for (default today, UTC)")]
From = Annotated[IsoDate | None, Query(alias="from", description="First day of the range (default: 11 months back)")]
To = Annotated[IsoDate | None, Query(description="Last day of the range (default today)")]


class MetricOut(BaseModel):
    """A metric as a table: ``data`` rows have the ``columns``; money is a string with the row's currency."""

    metric: str
    title: str
    columns: list[str]
    data: list[dict[str, Any]] = Field(description="One row per entity and currency (and month, bucket, customer...)")


def _answer(request: Request, principal: Auth, build: Callable[[Store, Scope], Report]) -> MetricOut:
    where = Scope((principal.entity_id,), (principal.entity_ref,))
    return MetricOut.model_validate(build(store_of(request), where).as_dict())


def _in_window(day: date | None, field: str) -> date | None:
    """``day`` if reports may be asked for it (metrics.day_window), else a 422 naming ``field``."""
    if day is not None:
        earliest, latest = metrics.day_window()
        if not earliest <= day <= latest:
            raise refuse(422, "outside_window", f"`{field}` must be from {earliest} to {latest}", field)
    return day


def _day(as_of: date | None) -> date:
    return _in_window(as_of, "as_of") or metrics.today_utc()


def _range(start: date | None, end: date | None) -> tuple[date, date]:
    last = _in_window(end, "to") or metrics.today_utc()
    first = _in_window(start, "from") or metrics.month_of(last - timedelta(days=320))
    if last < first:
        raise refuse(422, "bad_range", "`to` is before `from`", "to")
    return first, last


@router.get("/mrr", response_model=MetricOut)
def mrr(request: Request, principal: Auth, as_of: AsOf = None) -> MetricOut:
    """MRR, ARR, active customers and ARPA on a day (see `billing/metrics/recurring.py` for definitions)."""
    day = _day(as_of)
    return _answer(request, principal, lambda s, w: metrics.mrr_report(s, w, day))


@router.get("/movements", response_model=MetricOut)
def movements(request: Request, principal: Auth, from_: From = None, to: To = None) -> MetricOut:
    """MRR movements per month (new, expansion, contraction, churn, reactivation) with MRR at the
    month's start and end and net and gross MRR retention."""
    first, last = _range(from_, to)
    return _answer(request, principal, lambda s, w: metrics.movements_report(s, w, first, last))


@router.get("/movements/customers", response_model=MetricOut)
def movement_customers(request: Request, principal: Auth, from_: From = None, to: To = None) -> MetricOut:
    """The customers behind each month's MRR movements."""
    first, last = _range(from_, to)
    return _answer(request, principal, lambda s, w: metrics.movement_customers_report(s, w, first, last))


@router.get("/collections", response_model=MetricOut)
def collections(request: Request, principal: Auth, from_: From = None, to: To = None) -> MetricOut:
    """Billed, credited and collected per month."""
    first, last = _range(from_, to)
    return _answer(request, principal, lambda s, w: metrics.collections_report(s, w, first, last))


@router.get("/aging", response_model=MetricOut)
def aging(request: Request, principal: Auth, as_of: AsOf = None) -> MetricOut:
    """Accounts-receivable aging (current, 1-30, 31-60, 61-90, over 90 days past due), late invoices,
    DSO and collection rate."""
    day = _day(as_of)
    return _answer(request, principal, lambda s, w: metrics.aging_report(s, w, day))


@router.get("/invoices", response_model=MetricOut)
def invoices(request: Request, principal: Auth, from_: From = None, to: To = None, as_of: AsOf = None) -> MetricOut:
    """Invoices per billing month by their status on `as_of` (late split out of sent and partly paid)."""
    first, last = _range(from_, to)
    day = _day(as_of)
    return _answer(request, principal, lambda s, w: metrics.invoices_report(s, w, day, first, last))


@router.get("/forecast", response_model=MetricOut)
def forecast(
    request: Request, principal: Auth, as_of: AsOf = None, period: Literal["week", "month"] = "week"
) -> MetricOut:
    """Cash inflow forecast, 13 weeks or 12 months: open invoices at their expected payment day,
    invoices the billing engine will generate, expected usage; with the share already invoiced."""
    day = _day(as_of)
    return _answer(request, principal, lambda s, w: metrics.forecast_report(s, w, day, period))


@router.get("/products", response_model=MetricOut)
def products(
    request: Request,
    principal: Auth,
    from_: From = None,
    to: To = None,
    by: Literal["product", "group"] = "product",
) -> MetricOut:
    """Billed and collected per product (or product group: the charge kind) and month."""
    first, last = _range(from_, to)
    return _answer(request, principal, lambda s, w: metrics.products_report(s, w, first, last, by))


@router.get("/usage", response_model=MetricOut)
def usage(request: Request, principal: Auth, from_: From = None, to: To = None) -> MetricOut:
    """Usage and cash per usage product, customer and month: quantity used, billed, collected."""
    first, last = _range(from_, to)
    return _answer(request, principal, lambda s, w: metrics.usage_report(s, w, first, last))


@router.get("/usage/activity", response_model=MetricOut)
def activity(request: Request, principal: Auth, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> MetricOut:
    """The latest usage events, late ones (their period was already invoiced) marked."""
    return _answer(request, principal, lambda s, w: metrics.activity_report(s, w, limit))


@router.get("/customers", response_model=MetricOut)
def customers(
    request: Request,
    principal: Auth,
    as_of: AsOf = None,
    after: Annotated[str, Query(max_length=200, description="customer_ref to continue after (paging)")] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> MetricOut:
    """Per customer: contracts, active ones, total, annual and remaining contract value, renewals in
    the next 90 days; a page of `limit` customers by customer_ref after `after`."""
    day = _day(as_of)
    return _answer(request, principal, lambda s, w: metrics.customers_report(s, w, day, after=after, limit=limit))
