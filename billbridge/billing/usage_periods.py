"""Usage aggregation over billing periods from per-day figures.

Billing periods are whole UTC days, so a period's aggregate follows from per-day figures: sums,
peaks and counts add up; the last value is the latest day's last; distinct values are the union
of each day's set. The store computes the per-day figures in SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Context, Decimal
from types import MappingProxyType
from typing import NamedTuple

NO_VALUES: Mapping[str, frozenset[str]] = MappingProxyType({})
LABELS = {
    "sum": "sum of quantities",
    "max": "peak quantity",
    "count": "events",
    "distinct": "distinct {property}",
    "last": "last quantity",
}


@dataclass(frozen=True)
class UsageQuery:
    """What a usage line asks of the meter: one product's aggregate over [start, end)."""

    product_ref: str
    aggregation: str
    start: date
    end: date
    usage_property: str | None = None  # distinct: the additional_report_data key whose values are counted


def usage_label(aggregation: str, usage_property: str | None = None) -> str:
    """How an invoice line names the aggregate it was rated on."""
    return LABELS[aggregation].format(property=usage_property)


class DailyUsage(NamedTuple):
    """One customer's usage of one product on one day (UTC, or the entity's for monitors; a tuple:
    millions are built per run)."""

    total: Decimal
    peak: Decimal
    events: int
    last: tuple[datetime, int, Decimal] | None = None  # (timestamp, event id, quantity) of the day's latest event
    distinct: Mapping[str, frozenset[str]] = NO_VALUES  # property -> values seen that day


def aggregate(per_day: Mapping[date, DailyUsage], query: UsageQuery) -> Decimal:
    """The query's aggregate over the days in [start, end)."""
    chosen = [u for day, u in per_day.items() if query.start <= day < query.end]
    match query.aggregation:
        case "sum":
            return sum((u.total for u in chosen), Decimal(0))
        case "max":
            return max((u.peak for u in chosen), default=Decimal(0))
        case "count":
            return Decimal(sum(u.events for u in chosen))
        case "last":
            latest = max((u.last for u in chosen if u.last is not None), default=None)
            return latest[2] if latest else Decimal(0)
        case "distinct":
            if not query.usage_property:
                raise ValueError("a distinct aggregation needs the property whose values are counted")
            seen: set[str] = set()
            for u in chosen:
                seen.update(u.distinct.get(query.usage_property, ()))
            return Decimal(len(seen))
    raise ValueError(f"unknown usage aggregation {query.aggregation!r}")


MICROS = 6
"""Usage quantities carry at most six decimal places: the store sums them as integer micro-units."""


def to_micros(quantity: Decimal) -> int:
    """``quantity`` in integer micro-units; more than six decimal places is an error."""
    scaled = quantity.scaleb(MICROS, _WIDE)
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        raise ValueError(f"quantity {quantity} has more than {MICROS} decimal places")
    return int(scaled)


def from_micros(micros: int | Decimal | None) -> Decimal:
    """Integer micro-units back to the exact quantity, without trailing zeros (PostgreSQL sums
    bigints as numeric; SQLite as int)."""
    if not micros:
        return Decimal(0)
    units, fraction = divmod(int(micros), _ONE_UNIT)
    if not fraction:
        return Decimal(units)
    # A fraction is left, so normalize never gives an exponent form; the wide context never rounds.
    return Decimal(int(micros)).scaleb(-MICROS, _WIDE).normalize(_WIDE)


_ONE_UNIT = 10**MICROS
_WIDE = Context(prec=100)
