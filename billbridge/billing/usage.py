"""Usage aggregation over billing periods from per-day figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class DailyUsage:
    """One customer's usage of one product on one UTC day."""

    total: Decimal
    peak: Decimal
    count: int


def aggregate(per_day: Mapping[date, DailyUsage], start: date, end: date, aggregation: str) -> Decimal:
    """Aggregate daily usage over [start, end): ``sum`` of quantities, ``max`` quantity, ``count`` of events."""
    chosen = [u for day, u in per_day.items() if start <= day < end]
    if aggregation == "sum":
        return sum((u.total for u in chosen), Decimal(0))
    if aggregation == "max":
        return max((u.peak for u in chosen), default=Decimal(0))
    if aggregation == "count":
        return Decimal(sum(u.count for u in chosen))
    raise ValueError(f"unknown usage aggregation {aggregation!r}")
