"""Read API of partner billing, ``/api/partners``: the partners of the API key's legal entity with their
referral data (what ``billbridge partners show`` prints): agreements, referred customers with their
revenue and the fees they earned, fees accrued, billed, credited and paid, and the monthly statements.
Paged as the other resources; money is a string in the currency's minor units."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from billbridge.api.auth import Auth, store_of
from billbridge.api.errors import ErrorBody, refuse
from billbridge.api.pagination import Cursor, Limit, Page, decode, encode
from billbridge.store.partner_reports import PartnerReport, partner_reports
from billbridge.store.partners import partner_summaries

router = APIRouter(
    prefix="/api/partners", tags=["Partners"], responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}}
)


class ReferredCustomerOut(BaseModel):
    customer_ref: str
    agreement_ref: str
    referred_on: str
    contract_ref: str | None = Field(description="Only this contract earns fees; null: all the customer's")
    currency: str = Field(description="The agreement's currency")
    revenue: str = Field(
        description="What the customer paid (collected) or was invoiced (billed) since its referral: the base "
        "the fee is on (of an agreement on some products, those products' share only)"
    )
    fees: str = Field(description="The fees it earned the partner, net of reversals")


class StatementOut(BaseModel):
    id: int
    period: str = Field(description="YYYY-MM")
    currency: str
    total: str = Field(description="Negative: a VendorCredit instead of a Bill")
    status: str = Field(description="closed (its Bill waits), billed, credited or no_bill")
    paid: str | None = Field(description="Paid on its Bill, as QuickBooks' BillPayments last said; null: not read")
    closed_at: str | None


class PartnerOut(BaseModel):
    partner_ref: str
    name: str
    kind: str = Field(description="referral, reseller or both")
    entity_ref: str
    currency: str
    referred_customers: int
    fees_accrued: str
    fees_billed: str
    fees_credited: str
    fees_paid: str


class PartnerDetailOut(BaseModel):
    partner_ref: str
    name: str
    kind: str
    entity_ref: str
    currency: str
    agreements: list[dict[str, Any]] = Field(description="The referral agreements' terms (as in a contract file)")
    referred_customers: list[ReferredCustomerOut]
    statements: list[StatementOut] = Field(description="Newest first")
    fees_accrued: str
    fees_billed: str
    fees_credited: str
    fees_paid: str


PartnerRef = Annotated[str, Path(min_length=1, max_length=200)]


def _summary(report: PartnerReport) -> PartnerOut:
    data = report.as_dict()
    return PartnerOut.model_validate({**data, "referred_customers": len(report.referred)})


@router.get("", response_model=Page[PartnerOut])
def partners(request: Request, principal: Auth, limit: Limit = 100, cursor: Cursor = None) -> Page[PartnerOut]:
    """The partners of this legal entity, by partner_ref, with their fees accrued, billed, credited and paid."""
    offset = decode(cursor)
    with store_of(request).read() as session:  # reports of the page's partners only
        refs = sorted(s["partner_ref"] for s in partner_summaries(session) if s["entity_ref"] == principal.entity_ref)
        chosen = partner_reports(session, refs[offset : offset + limit], entity_refs=[principal.entity_ref])
    more = offset + limit < len(refs)
    return Page[PartnerOut](
        data=[_summary(r) for r in chosen], has_more=more, next_cursor=encode(offset + limit) if more else None
    )


@router.get(
    "/{partner_ref}",
    response_model=PartnerDetailOut,
    responses={404: {"model": ErrorBody, "description": "No such partner of this legal entity"}},
)
def partner(request: Request, principal: Auth, partner_ref: PartnerRef) -> PartnerDetailOut:
    """One partner's referral data: agreements, referred customers (revenue, fees), totals and statements."""
    with store_of(request).read() as session:
        found = partner_reports(session, [partner_ref], entity_refs=[principal.entity_ref])
    if not found:
        raise refuse(404, "not_found", "no such partner", "partner_ref")
    return PartnerDetailOut.model_validate(found[0].as_dict())
