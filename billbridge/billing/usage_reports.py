"""Usage reports: per-day usage grouped by day, month, product or customer, summed exactly. Pure."""

from __future__ import annotations

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
