"""Read API of reseller data, ``/api/resellers``: per reseller (or distributor) invoiced by the API key's
legal entity, its end customers, its contracts and what it was invoiced per currency (invoices less
credit notes, voided ones left out). Money is a string in the currency's minor units."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from billbridge.api.auth import Auth, store_of
from billbridge.api.errors import ErrorBody
from billbridge.api.pagination import Cursor, Limit, Page, decode, encode
from billbridge.billing.currency import money_str
from billbridge.store.resellers import reseller_revenue

router = APIRouter(
    prefix="/api/resellers", tags=["Resellers"], responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}}
)


class ResellerOut(BaseModel):
    partner_ref: str
    end_customers: list[str] = Field(description="customer_ref of each end customer billed through it")
    contracts: int = Field(description="Contracts on its documents")
    revenue: dict[str, str] = Field(description="Invoiced less credited, per currency")


@router.get("", response_model=Page[ResellerOut])
def resellers(request: Request, principal: Auth, limit: Limit = 100, cursor: Cursor = None) -> Page[ResellerOut]:
    """The resellers and distributors this legal entity invoices, by partner ref."""
    with store_of(request).read() as session:
        rows = reseller_revenue(session, principal.entity_ref)
    offset = decode(cursor)
    chosen = rows[offset : offset + limit]
    more = offset + limit < len(rows)
    return Page[ResellerOut](
        data=[
            ResellerOut(
                partner_ref=r["partner_ref"],
                end_customers=r["end_customers"],
                contracts=r["contracts"],
                revenue={cur: money_str(total, cur) for cur, total in r["revenue"].items()},
            )
            for r in chosen
        ],
        has_more=more,
        next_cursor=encode(offset + limit) if more else None,
    )
