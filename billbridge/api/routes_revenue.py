"""Read API of revenue recognition, ``/api/revenue/...``: a contract's schedule, the waterfall, the
rollforward and the month's journal entries of ``flows/revenue.py`` (what ``billbridge revenue`` shows), scoped to the API key's legal
entity and paged as the other resources. Money is a string in the currency's minor units."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from billbridge.api.auth import Auth, store_of
from billbridge.api.errors import ErrorBody, refuse
from billbridge.api.pagination import Cursor, Limit, Page, decode, encode
from billbridge.api.query import IsoDate
from billbridge.api.routes_metrics import _in_window, _range
from billbridge.flows import revenue

router = APIRouter(
    prefix="/api/revenue", tags=["Revenue"], responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}}
)

From = Annotated[IsoDate | None, Query(alias="from", description="First booked month, by any of its days")]
To = Annotated[IsoDate | None, Query(description="Last month, by any of its days (default: this month)")]


class ObligationOut(BaseModel):
    line_ref: str
    product_ref: str
    description: str
    recognition: str = Field(description="ratable, point_in_time, usage or none")
    treatment: str = Field(description="original, separate_contract, prospective (a modification) or adjustment")
    version_no: int
    start_date: str
    end_date: str
    ssp: str
    price: str
    allocated: str


class ScheduleMonthOut(BaseModel):
    month: str = Field(description="YYYY-MM")
    billed: str
    recognised: str
    catch_up: str = Field(description="The part of recognised that corrects earlier, closed months")
    deferred: str = Field(description="Deferred revenue at the month's end")
    contract_asset: str = Field(description="Contract asset (unbilled receivable) at the month's end")


class ScheduleOut(Page[ScheduleMonthOut]):
    """A contract's obligations and a page of its months."""

    contract_ref: str
    customer_ref: str
    currency: str
    obligations: list[ObligationOut]


class WaterfallRowOut(BaseModel):
    booked_month: str
    currency: str
    booked: str
    recognised: dict[str, str] = Field(description="Recognised per month (YYYY-MM) of the range")
    recognised_to_date: str
    remaining: str


class RollforwardMismatchOut(BaseModel):
    """A contract whose schedule does not agree with its invoices and credit notes in the month."""

    contract_ref: str
    billed_in_documents: str = Field(description="What its invoices and credit notes bill in the month")
    billed_in_schedule: str = Field(description="What its schedule says was billed in the month")
    opening: str
    recognised: str
    closing: str
    expected_closing: str = Field(description="opening + billed in documents - recognised")
    difference: str


class RollforwardOut(BaseModel):
    currency: str
    period: str
    deferred_revenue: dict[str, str] = Field(description="opening + billed - recognised = closing")
    contract_assets: dict[str, str] = Field(description="opening + recognised - billed = closing")
    billed: str
    billed_in_documents: str = Field(
        description="What the entity's invoices and credit notes bill in the month (the schedule's billed, checked)"
    )
    recognised: str
    balanced: bool = Field(description="The movements add up and every contract agrees with its documents")
    mismatches: list[RollforwardMismatchOut] = Field(
        description="Each contract whose schedule does not agree with its documents (empty when balanced)"
    )


class JournalLineOut(BaseModel):
    posting: str = Field(description="Debit or Credit")
    account: str = Field(description="QuickBooks account Id (revenue_accounts), or the line's role while unset")
    description: str
    amount: str


class JournalEntryOut(BaseModel):
    currency: str
    period: str = Field(description="YYYY-MM")
    doc_number: str = Field(description="The JournalEntry's DocNumber in QuickBooks")
    closed: bool
    posting: str = Field(description="not queued, queued, posted, failed, superseded or superseded (reopened)")
    error: str | None = Field(description="Why the last delivery failed (failed only)")
    removal: bool = Field(
        False, description="Nothing recognised any more: posting deletes the entry an earlier close of the month made"
    )
    lines: list[JournalLineOut]


def _offset_page(rows: list[Any], limit: int, cursor: str | None) -> tuple[list[Any], bool, str | None]:
    offset = decode(cursor)
    chosen = rows[offset : offset + limit]
    more = offset + limit < len(rows)
    return chosen, more, encode(offset + limit) if more else None


@router.get(
    "/schedule",
    response_model=ScheduleOut,
    responses={404: {"model": ErrorBody, "description": "No such contract of this legal entity"}},
)
def schedule(
    request: Request,
    principal: Auth,
    contract_ref: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Limit = 100,
    cursor: Cursor = None,
) -> ScheduleOut:
    """A contract's performance obligations (SSP, allocated price, recognition) and its months: billed,
    recognised (with catch-ups), deferred revenue and contract asset."""
    report = revenue.schedule_report(store_of(request), contract_ref, principal.entity_id)
    if report is None:
        raise refuse(404, "not_found", "no such contract", "contract_ref")
    months, more, next_cursor = _offset_page(report["months"], limit, cursor)
    return ScheduleOut(
        contract_ref=report["contract_ref"],
        customer_ref=report["customer_ref"],
        currency=report["currency"],
        obligations=[ObligationOut.model_validate(ob) for ob in report["obligations"]],
        data=[ScheduleMonthOut.model_validate(m) for m in months],
        has_more=more,
        next_cursor=next_cursor,
    )


@router.get("/waterfall", response_model=Page[WaterfallRowOut])
def waterfall(
    request: Request, principal: Auth, from_: From = None, to: To = None, limit: Limit = 100, cursor: Cursor = None
) -> Page[WaterfallRowOut]:
    """Revenue by booked month (rows) and the months it is recognised in, recognised to date and remaining."""
    first, last = _range(from_, to)
    rows = revenue.waterfall_report(store_of(request), principal.entity_id, first, last)
    chosen, more, next_cursor = _offset_page(rows, limit, cursor)
    return Page[WaterfallRowOut](
        data=[WaterfallRowOut.model_validate(r) for r in chosen], has_more=more, next_cursor=next_cursor
    )


@router.get("/rollforward", response_model=Page[RollforwardOut])
def rollforward(
    request: Request,
    principal: Auth,
    period: Annotated[IsoDate | None, Query(description="The month, by any of its days (default: this month)")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[RollforwardOut]:
    """Deferred revenue and contract assets of a month per currency: opening, movements, closing, balanced."""
    month: date = _in_window(period, "period") or revenue.today_utc()
    rows = revenue.rollforward_report(store_of(request), principal.entity_id, month)
    chosen, more, next_cursor = _offset_page(rows, limit, cursor)
    return Page[RollforwardOut](
        data=[RollforwardOut.model_validate(r) for r in chosen], has_more=more, next_cursor=next_cursor
    )


@router.get("/journal", response_model=Page[JournalEntryOut])
def journal(
    request: Request,
    principal: Auth,
    period: Annotated[IsoDate | None, Query(description="The month, by any of its days (default: this month)")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[JournalEntryOut]:
    """The month's journal entries per currency as its close posts them to QuickBooks (debits and credits
    per account) and whether each is posted: what a controller checks before and after a close."""
    month: date = _in_window(period, "period") or revenue.today_utc()
    rows = revenue.journal_report(store_of(request), request.app.state.settings, principal.entity_ref, month)
    chosen, more, next_cursor = _offset_page(rows, limit, cursor)
    return Page[JournalEntryOut](
        data=[JournalEntryOut.model_validate(r) for r in chosen], has_more=more, next_cursor=next_cursor
    )
