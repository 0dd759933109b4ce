"""A month's recognised revenue -> one summarised QuickBooks JournalEntry per legal entity, currency and
month, and the checks of the accounts it names against the company's chart of accounts. Pure: the
connector posts it (``vendors/quickbooks.py``), through the outbox, exactly once.

Invoices billbridge pushes post to deferred revenue (their items' income account is the deferred
revenue account), so the entry moves what was recognised out of it: credit revenue per revenue account
(a product's own account, else its recognition kind's, else the entity's), debit deferred revenue for
what recognition drew from it, debit contract assets for what was recognised before it was billed, and
reclassify what was billed against an earlier contract asset (debit deferred revenue, credit contract
assets), since its invoice credited deferred revenue too. A negative amount (a catch-up that takes
revenue back) posts on the other side. Amounts leave as decimal strings, as the Invoice payloads do.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
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
Role = Literal["revenue", "deferred_revenue", "contract_asset", "pass_through"]

# Intuit's AccountTypeEnum (Finance.xsd) values each role may post to.
ACCOUNT_TYPES: dict[Role, frozenset[str]] = {
    "revenue": frozenset({"Income", "Other Income"}),
    "deferred_revenue": frozenset({"Other Current Liability", "Long Term Liability"}),
    # not Accounts Receivable: QuickBooks wants a customer on every A/R journal line
    "contract_asset": frozenset({"Other Current Asset", "Other Asset"}),
    # revenue someone else recognises: income, or what is owed on to them
    "pass_through": frozenset({"Income", "Other Income", "Other Current Liability"}),
}


class AccountMapping(BaseModel):
    """QuickBooks account ids one legal entity posts revenue to: revenue (optionally per product, then per
    recognition kind), deferred revenue (a liability) and contract assets (unbilled receivables)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    revenue: AccountId = Field(min_length=1, max_length=50)
    deferred_revenue: AccountId = Field(min_length=1, max_length=50)
    contract_asset: AccountId = Field(min_length=1, max_length=50)
    revenue_by_product: dict[str, AccountId] = Field(
        default_factory=dict, description="product_ref (or a product group) -> its revenue account id"
    )
    revenue_by_recognition: dict[str, AccountId] = Field(
        default_factory=dict, description="recognition kind (ratable, point_in_time, usage) -> revenue account id"
    )
    pass_through: AccountId | None = Field(
        default=None, min_length=1, max_length=50, description="where `recognition: none` lines post"
    )

    @field_validator("revenue_by_product", "revenue_by_recognition")
    @classmethod
    def _ids(cls, value: dict[str, AccountId]) -> dict[str, AccountId]:
        for product, account in value.items():
            if not account.strip():
                raise ValueError(f"{product!r} names no account")
        return value

    def revenue_account(self, product_ref: str, recognition: str = "") -> AccountId:
        """The product's own account, else its recognition kind's, else the entity's revenue account."""
        return self.revenue_by_product.get(product_ref) or self.revenue_by_recognition.get(recognition, self.revenue)

    def keys(self) -> dict[str, AccountId]:
        """Every account this mapping names, by its key in ``[revenue_accounts]`` (``revenue_by_product.setup``)."""
        out = {
            "revenue": self.revenue,
            "deferred_revenue": self.deferred_revenue,
            "contract_asset": self.contract_asset,
        }
        out |= {f"revenue_by_product.{product}": account for product, account in self.revenue_by_product.items()}
        out |= {f"revenue_by_recognition.{kind}": account for kind, account in self.revenue_by_recognition.items()}
        if self.pass_through is not None:
            out["pass_through"] = self.pass_through
        return out

    def roles(self) -> dict[AccountId, set[Role]]:
        """Every account this mapping names, with what it is used for."""
        out: dict[AccountId, set[Role]] = defaultdict(set)
        out[self.deferred_revenue].add("deferred_revenue")
        out[self.contract_asset].add("contract_asset")
        for account in (self.revenue, *self.revenue_by_product.values(), *self.revenue_by_recognition.values()):
            out[account].add("revenue")
        if self.pass_through is not None:
            out[self.pass_through].add("pass_through")
        return out


def missing_accounts(mappings: Iterable[AccountMapping], chart: Mapping[str, Any]) -> dict[AccountId, list[str]]:
    """The accounts the mappings name that the company's chart of accounts (QuickBooks Account records by
    Id) does not hold, each with the keys naming it: what the start-up check reports, key and id."""
    out: dict[AccountId, set[str]] = defaultdict(set)
    for mapping in mappings:
        for key, account in mapping.keys().items():
            if account not in chart:
                out[account].add(key)
    return {account: sorted(keys) for account, keys in sorted(out.items())}


def account_problems(mappings: Iterable[AccountMapping], chart: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What is wrong with the accounts the mappings name, against the company's chart of accounts
    (QuickBooks Account records by Id): each missing account named with its keys, each inactive or wrongly
    typed one with its use. Empty when every account exists, is active and is of a type its use allows."""
    mappings = list(mappings)
    roles: dict[AccountId, set[Role]] = defaultdict(set)
    for mapping in mappings:
        for account, used in mapping.roles().items():
            roles[account] |= used
    missing = missing_accounts(mappings, chart)
    problems = []
    for account, used in sorted(roles.items()):
        uses = " and ".join(sorted(used))
        record = chart.get(account)
        if record is None:
            keys = " and ".join(missing[account])
            problems.append(f"account {account} ({keys}) is not in the QuickBooks chart of accounts")
            continue
        if record.get("Active") is False:
            problems.append(f"account {account} {record.get('Name')!r} ({uses}) is inactive in QuickBooks")
        kind = str(record.get("AccountType"))
        for role in sorted(used):
            if kind not in ACCOUNT_TYPES[role]:
                allowed = " or ".join(sorted(ACCOUNT_TYPES[role]))
                problems.append(f"account {account} {record.get('Name')!r} is {kind}; {role} needs {allowed}")
    return problems


@dataclass(frozen=True)
class PeriodRevenue:
    """One entity's recognition in one month and currency: revenue per (product, recognition kind), how
    much of it drew on deferred revenue and how much became a contract asset (the rollforward's split),
    and what billing took off earlier contract assets."""

    entity_ref: str
    currency: str
    month: date
    revenue: Mapping[tuple[str, str], Decimal]  # (product_ref, recognition) -> recognised
    from_deferred: Decimal
    to_contract_asset: Decimal
    billed_from_asset: Decimal = ZERO
    # The close that announced the entry (its event id; 0: none named). It names the entry's create
    # request: a month whose entry was deleted (reclosed to nothing) and later closed with an entry
    # again must not repeat the first create's request id, which QuickBooks answers from its memory
    # of that request instead of creating anything.
    close_id: int = 0

    def __post_init__(self) -> None:
        total = sum(self.revenue.values(), ZERO)
        if total != self.from_deferred + self.to_contract_asset:
            raise ValueError(
                f"{self.entity_ref} {self.month:%Y-%m} {self.currency}: revenue {total} is not deferred "
                f"{self.from_deferred} + contract asset {self.to_contract_asset}"
            )

    @property
    def revenue_by_product(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for (product, _), amount in self.revenue.items():
            out[product] += amount
        return dict(out)

    def as_message(self) -> dict[str, Any]:
        """As an outbox message's payload (JSON: amounts as strings)."""
        return {
            "entity_ref": self.entity_ref,
            "currency": self.currency,
            "month": self.month.isoformat(),
            "revenue": [[p, r, str(a)] for (p, r), a in sorted(self.revenue.items())],
            "from_deferred": str(self.from_deferred),
            "to_contract_asset": str(self.to_contract_asset),
            "billed_from_asset": str(self.billed_from_asset),
        }

    @classmethod
    def from_message(cls, payload: Mapping[str, Any]) -> PeriodRevenue:
        return cls(
            str(payload["entity_ref"]),
            str(payload["currency"]),
            date.fromisoformat(str(payload["month"])),
            {(str(p), str(r)): Decimal(a) for p, r, a in payload["revenue"]},
            Decimal(payload["from_deferred"]),
            Decimal(payload["to_contract_asset"]),
            Decimal(payload.get("billed_from_asset", "0")),
        )


def journal_key(period: PeriodRevenue) -> str:
    """The entry's identity (outbox key, PrivateNote): one per entity, currency and month."""
    return f"{entity_key(period.entity_ref)}{period.currency}:{period.month:%Y-%m}"


def entity_key(entity_ref: str) -> str:
    """What every ``journal_key`` of an entity starts with."""
    return f"revenue:{entity_ref}:"


def entity_tag(entity_ref: str) -> str:
    """Seven characters naming the entity in a DocNumber: its ref upper-cased when that fits, else a hash."""
    tag = entity_ref.upper()
    if len(tag) <= 7 and tag.isascii() and tag.replace("-", "").isalnum():
        return tag
    return hashlib.sha256(entity_ref.encode()).hexdigest()[:7].upper()


def doc_number(period: PeriodRevenue) -> str:
    """``REV202611-USD-US-INC``: month, currency and entity within QuickBooks' 21 characters (entities may
    share one company; the number is how the entry is found again)."""
    return f"REV{period.month:%Y%m}-{period.currency}-{entity_tag(period.entity_ref)}"[:DOC_NUMBER_MAX]


def note(period: PeriodRevenue) -> str:
    """The PrivateNote marking an entry as billbridge's (a person's entry with the number is not ours)."""
    return f"billbridge {journal_key(period)}"


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


def journal_entry_payload(
    period: PeriodRevenue, accounts: AccountMapping, exchange_rate: Decimal | None = None
) -> dict[str, Any] | None:
    """The JournalEntry of a month's recognition (None when nothing moved): credits per revenue account,
    debits to deferred revenue and contract assets, the billed contract assets reclassified; debits equal
    credits exactly. Amounts stay in the contract's currency; ``exchange_rate`` (home currency units per
    unit of it, for an entry in a currency other than the company's home currency) rides along as the
    entry's ExchangeRate, so QuickBooks books the home amounts at that rate."""
    c = period.currency
    credits: dict[AccountId, Decimal] = defaultdict(lambda: ZERO)
    for (product, recognition), amount in sorted(period.revenue.items()):
        credits[accounts.revenue_account(product, recognition)] += amount
    moves: tuple[tuple[Decimal, Posting, AccountId, str], ...] = (
        (period.from_deferred, "Debit", accounts.deferred_revenue, "Deferred revenue recognised"),
        (period.to_contract_asset, "Debit", accounts.contract_asset, "Revenue recognised before billing"),
        (period.billed_from_asset, "Debit", accounts.deferred_revenue, "Billed against a contract asset"),
        (period.billed_from_asset, "Credit", accounts.contract_asset, "Billed against a contract asset"),
    )
    lines = [_line(amount, posting, account, label, c) for amount, posting, account, label in moves if amount]
    lines += [
        _line(amount, "Credit", account, "Revenue recognised", c) for account, amount in credits.items() if amount
    ]
    if not lines:
        return None
    return {
        "DocNumber": doc_number(period),
        "TxnDate": month_end(period.month).isoformat(),
        "CurrencyRef": {"value": c},
        **({"ExchangeRate": str(exchange_rate)} if exchange_rate is not None else {}),
        "PrivateNote": note(period),
        "Line": lines,
    }


def same_entry(record: Mapping[str, Any], payload: Mapping[str, Any]) -> bool:
    """Whether a JournalEntry QuickBooks holds posts what ``payload`` posts (date, currency, lines)."""

    def lines(lns: Any) -> list[tuple[str, str, Decimal]]:
        return sorted(
            (
                str(ln["JournalEntryLineDetail"]["PostingType"]),
                str(ln["JournalEntryLineDetail"]["AccountRef"]["value"]),
                Decimal(str(ln["Amount"])),
            )
            for ln in lns or []
        )

    def rate(entry: Mapping[str, Any]) -> Decimal | None:
        value = entry.get("ExchangeRate")
        return None if value is None else Decimal(str(value))

    return (
        str(record.get("TxnDate")) == payload["TxnDate"]
        and (record.get("CurrencyRef") or {}).get("value") == payload["CurrencyRef"]["value"]
        and ("ExchangeRate" not in payload or rate(record) == rate(payload))
        and lines(record.get("Line")) == lines(payload["Line"])
    )
