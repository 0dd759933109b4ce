"""Response bodies of the read API. Money and quantities are strings (exact decimals), never floats."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, Field


class WhoAmI(BaseModel):
    key_id: int
    key_prefix: str
    entity_ref: str
    entity_name: str
    currency: str


class PriceOut(BaseModel):
    price_ref: str
    currency: str
    pricing: dict[str, Any]


class ProductOut(BaseModel):
    product_ref: str
    name: str
    description: str | None
    prices: list[PriceOut]


class CustomerOut(BaseModel):
    customer_ref: str
    name: str
    email: str | None


class ContractLineOut(BaseModel):
    line_ref: str
    product_ref: str
    charge: str
    description: str | None
    quantity: str
    price_ref: str | None
    pricing: dict[str, Any]
    billing_timing: str | None
    start_date: date | None
    end_date: date | None
    usage_aggregation: str


class ContractOut(BaseModel):
    contract_ref: str
    customer_ref: str
    version_no: int
    effective_date: date
    currency: str
    contract_start_date: date
    contract_end_date: date | None
    cycle_length: int
    cycle_unit: str
    cycle_start_date: date
    billing_timing: str
    payment_terms_days: int
    minimum_commitment: str | None
    lines: list[ContractLineOut] | None = None


class InvoiceLineOut(BaseModel):
    line_ref: str
    kind: str
    product_ref: str
    description: str
    start_date: date
    end_date: date
    billed_days: int
    quantity: str
    amount: str
    discount_amount: str
    billed_amount: str


class InvoiceOut(BaseModel):
    document_ref: str
    number: str
    doc_type: str
    contract_ref: str
    customer_ref: str
    billing_date: date
    due_date: date
    currency: str
    status: str
    subtotal: str
    discount_total: str
    invoice_total: str
    amount_paid: str
    lines: list[InvoiceLineOut] | None = None


class UsageMoneyOut(BaseModel):
    currency: str
    billed: str
    collected: str


class UsageReportRow(BaseModel):
    group: str
    quantity: str
    events: int
    money: list[UsageMoneyOut] = Field(
        default_factory=list,
        description="Usage billed and collected for the group, per currency, on the documents dated in the range "
        "(usage is billed in arrears: a month's usage shows on the next month's document); none per day",
    )


class StatusChangeOut(BaseModel):
    """An invoice moved along its lifecycle: the pushes approving it queued (per topic), or the ones
    taking an approval back withdrew, and the document as it now is."""

    number: str
    previous_status: str
    status: str
    queued: dict[str, int]
    withdrawn: int
    invoice: InvoiceOut
