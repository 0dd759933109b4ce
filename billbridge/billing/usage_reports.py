"""Usage reports: per-day usage grouped by day, month, product or customer, summed exactly, with
the money billed and collected for usage per group. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

GroupBy = Literal["day", "month", "product", "customer"]


@dataclass(frozen=True)
class UsageGroup:
    key: str  # 2026-01-31 / 2026-01 / product_ref / customer_ref
    quantity: Decimal
    events: int


def group_usage(rows: Iterable[tuple[str, str, date, Decimal, int]], group_by: GroupBy) -> list[UsageGroup]:
    """Per-day rows of (customer_ref, product_ref, UTC day, quantity, events) -> groups in key order."""
    totals: dict[str, list[Decimal | int]] = {}
    for customer_ref, product_ref, day, quantity, events in rows:
        if group_by == "day":
            key = day.isoformat()
        elif group_by == "month":
            key = day.isoformat()[:7]  # strftime("%Y") does not pad years before 1000
        elif group_by == "product":
            key = product_ref
        else:
            key = customer_ref
        found = totals.setdefault(key, [Decimal(0), 0])
        found[0] += quantity
        found[1] += events
    return [UsageGroup(key, Decimal(q), int(n)) for key, (q, n) in sorted(totals.items())]


UsageMoney = dict[str, dict[str, tuple[Decimal, Decimal]]]
"""group key -> currency -> (billed, collected)"""


def group_money(rows: Iterable[tuple[str, date, str, str, Decimal, Decimal]], group_by: GroupBy) -> UsageMoney:
    """Usage billed and collected, from rows of (currency, billing month, customer_ref, product_ref,
    billed, collected), per month (of the document: usage is billed in arrears), product or customer
    and currency. Per day there is no money: a period's usage is billed as one amount."""
    out: dict[str, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(lambda: [Decimal(0), Decimal(0)]))
    if group_by == "day":
        return {}
    for currency, month, customer_ref, product_ref, billed, collected in rows:
        key = month.strftime("%Y-%m") if group_by == "month" else product_ref if group_by == "product" else customer_ref
        sums = out[key][currency]
        sums[0] += billed
        sums[1] += collected
    return {key: {cur: (b, c) for cur, (b, c) in sorted(per.items())} for key, per in out.items()}
