"""A month's recognised revenue -> one summarised QuickBooks JournalEntry per legal entity, currency and
month. Pure: the connector that posts it (through the outbox, exactly once) waits for the new connector
contract (issue 20).

The entry: credit revenue per revenue account (a product's own account where the account mapping names
one, else the entity's), debit deferred revenue for what recognition drew from it and debit contract
assets for what was recognised before it was billed. A negative amount (a catch-up that takes revenue
back) posts on the other side. Amounts leave as decimal strings, as the Invoice payloads do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from billbridge.billing.currency import money_str
from billbridge.billing.revenue import month_end

DOC_NUMBER_MAX = 21  # QuickBooks' DocNumber holds at most 21 characters
ZERO = Decimal(0)
AccountId = str


class AccountMapping(BaseModel):
    """QuickBooks account ids of one legal entity (configuration): revenue (optionally per product),
    deferred revenue (a liability) and contract assets (unbilled receivables)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    revenue: AccountId = Field(min_length=1, max_length=50)
    deferred_revenue: AccountId = Field(min_length=1, max_length=50)
    contract_asset: AccountId = Field(min_length=1, max_length=50)
    revenue_by_product: dict[str, AccountId] = Field(
        default_factory=dict, description="product_ref (or a product group) -> its revenue account id"
    )

    @field_validator("revenue_by_product")
    @classmethod
    def _ids(cls, value: dict[str, AccountId]) -> dict[str, AccountId]:
        for product, account in value.items():
            if not account.strip():
                raise ValueError(f"product {product!r} names no account")
        return value

    def revenue_account(self, product_ref: str) -> AccountId:
        return self.revenue_by_product.get(product_ref, self.revenue)


def missing_accounts(mappings: Mapping[str, AccountMapping], entity_refs: list[str]) -> list[str]:
    """The legal entities (by ref) the account mapping leaves out: checked at start, each named."""
    return [ref for ref in entity_refs if ref not in mappings]


@dataclass(frozen=True)
class PeriodRevenue:
    """One entity's recognition in one month and currency: revenue per product, and how much of it drew
    on deferred revenue and how much became a contract asset (the rollforward's split)."""

    entity_ref: str
    currency: str
    month: date
    revenue_by_product: Mapping[str, Decimal]
    from_deferred: Decimal
    to_contract_asset: Decimal

    def __post_init__(self) -> None:
        total = sum(self.revenue_by_product.values(), ZERO)
        if total != self.from_deferred + self.to_contract_asset:
            raise ValueError(
                f"{self.entity_ref} {self.month:%Y-%m} {self.currency}: revenue {total} is not deferred "
                f"{self.from_deferred} + contract asset {self.to_contract_asset}"
            )


def journal_key(period: PeriodRevenue) -> str:
    """The entry's identity (outbox key and DocNumber source): one per entity, currency and month."""
    return f"revenue:{period.entity_ref}:{period.currency}:{period.month:%Y-%m}"


def doc_number(period: PeriodRevenue) -> str:
    """``REV-2026-11-USD``-like, within QuickBooks' 21 characters (the entity is the company itself)."""
    return f"REV-{period.month:%Y-%m}-{period.currency}"[:DOC_NUMBER_MAX]


Posting = Literal["Debit", "Credit"]


def _line(amount: Decimal, posting: Posting, account: AccountId, description: str, currency: str) -> dict[str, Any]:
    if amount < 0:  # a negative amount posts on the other side
        amount, posting = -amount, "Credit" if posting == "Debit" else "Debit"
    return {
        "Description": description,
        "Amount": money_str(amount, currency),
        "DetailType": "JournalEntryLineDetail",
        "JournalEntryLineDetail": {"PostingType": posting, "AccountRef": {"value": account}},
    }


def journal_entry_payload(period: PeriodRevenue, accounts: AccountMapping) -> dict[str, Any] | None:
    """The JournalEntry of a month's recognition (None when nothing moved): credits per revenue account,
    debits to deferred revenue and contract assets; debits equal credits exactly."""
    c = period.currency
    credits: dict[AccountId, Decimal] = defaultdict(lambda: ZERO)
    for product, amount in sorted(period.revenue_by_product.items()):
        credits[accounts.revenue_account(product)] += amount
    lines = [
        _line(amount, "Debit", account, label, c)
        for amount, account, label in (
            (period.from_deferred, accounts.deferred_revenue, "Deferred revenue recognised"),
            (period.to_contract_asset, accounts.contract_asset, "Revenue recognised before billing"),
        )
        if amount
    ]
    lines += [
        _line(amount, "Credit", account, "Revenue recognised", c) for account, amount in credits.items() if amount
    ]
    if not lines:
        return None
    return {
        "DocNumber": doc_number(period),
        "TxnDate": month_end(period.month).isoformat(),
        "CurrencyRef": {"value": c},
        "PrivateNote": f"billbridge {journal_key(period)}",
        "Line": lines,
    }
