"""Usage reports: events grouped by day, month, product or customer, summed exactly. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

GroupBy = Literal["day", "month", "product", "customer"]


@dataclass(frozen=True)
class UsageGroup:
    key: str  # 2026-01-31 / 2026-01 / product_ref / customer_ref
    quantity: Decimal
    events: int


def group_usage(rows: Iterable[tuple[str, str, datetime, Decimal]], group_by: GroupBy) -> list[UsageGroup]:
    """Rows of (customer_ref, product_ref, UTC timestamp, quantity) -> groups in key order."""
    totals: dict[str, list[Decimal | int]] = {}
    for customer_ref, product_ref, stamp, quantity in rows:
        if group_by == "day":
            key = stamp.date().isoformat()
        elif group_by == "month":
            key = stamp.strftime("%Y-%m")
        elif group_by == "product":
            key = product_ref
        else:
            key = customer_ref
        found = totals.setdefault(key, [Decimal(0), 0])
        found[0] += quantity
        found[1] += 1
    return [UsageGroup(key, Decimal(q), int(n)) for key, (q, n) in sorted(totals.items())]
