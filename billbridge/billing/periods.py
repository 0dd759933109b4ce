"""Billing cycles: cycle boundaries from an anchor date, service periods, proration.

Cycle ``k`` of an anchor is ``[add_cycles(anchor, k), add_cycles(anchor, k + 1))``.
Month and year boundaries are always computed from the anchor itself, so a
subscription anchored on the 31st bills on the last day of shorter months
and goes back to the 31st when the month allows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Context, Decimal, localcontext
from functools import lru_cache
from typing import Literal

CycleUnit = Literal["day", "week", "month", "year"]

_DAYS_PER_UNIT = {"day": 1, "week": 7}
_MONTHS_PER_UNIT = {"month": 1, "year": 12}

# Fixed context so results never depend on whatever the global one is set to.
_CTX = Context(prec=34)


def _check_cycle(cycle_length: int, cycle_unit: str) -> None:
    """Reject cycle lengths below 1 and unknown units."""
    if isinstance(cycle_length, bool) or not isinstance(cycle_length, int) or cycle_length < 1:
        raise ValueError(f"cycle_length must be an integer >= 1, got {cycle_length!r}")
    if cycle_unit not in _DAYS_PER_UNIT and cycle_unit not in _MONTHS_PER_UNIT:
        raise ValueError(f"cycle_unit must be day, week, month or year, got {cycle_unit!r}")


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _MONTH_DAYS[month - 1]


def _add_months(anchor: date, months: int) -> date:
    """``anchor`` moved by ``months``, clamped to the end of shorter months."""
    year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
    return date(year, month0 + 1, min(anchor.day, _days_in_month(year, month0 + 1)))


def add_cycles(anchor: date, n: int, cycle_length: int, cycle_unit: CycleUnit) -> date:
    """Start of cycle ``n`` (may be negative): anchor + n * cycle_length units."""
    _check_cycle(cycle_length, cycle_unit)
    return _shift(anchor, n, cycle_length, cycle_unit)


def _shift(anchor: date, n: int, cycle_length: int, cycle_unit: str) -> date:
    """:func:`add_cycles` without the argument checks, for loops that checked once."""
    if cycle_unit in _DAYS_PER_UNIT:
        return anchor + timedelta(days=n * cycle_length * _DAYS_PER_UNIT[cycle_unit])
    return _add_months(anchor, n * cycle_length * _MONTHS_PER_UNIT[cycle_unit])


def cycle_index(anchor: date, cycle_length: int, cycle_unit: CycleUnit, d: date) -> int:
    """Index ``k`` of the cycle containing ``d`` (negative before the anchor)."""
    _check_cycle(cycle_length, cycle_unit)
    if cycle_unit in _DAYS_PER_UNIT:
        return (d - anchor).days // (cycle_length * _DAYS_PER_UNIT[cycle_unit])
    months = (d.year - anchor.year) * 12 + d.month - anchor.month
    k = months // (cycle_length * _MONTHS_PER_UNIT[cycle_unit])
    # The month estimate ignores the day of month: it is off by at most one.
    while _shift(anchor, k, cycle_length, cycle_unit) > d:
        k -= 1
    while _shift(anchor, k + 1, cycle_length, cycle_unit) <= d:
        k += 1
    return k


@dataclass(frozen=True)
class Period:
    """The in-service part ``[start, end)`` of the cycle ``[full_start, full_end)``."""

    start: date
    end: date
    full_start: date
    full_end: date

    @property
    def days(self) -> int:
        """Days in service in this cycle."""
        return (self.end - self.start).days

    @property
    def full_days(self) -> int:
        """Days in the whole cycle, the proration denominator."""
        return (self.full_end - self.full_start).days

    @property
    def is_partial(self) -> bool:
        """True when service covers only part of the cycle."""
        return (self.start, self.end) != (self.full_start, self.full_end)


def periods(
    anchor: date,
    cycle_length: int,
    cycle_unit: CycleUnit,
    start: date,
    end: date | None,
    until: date,
) -> list[Period]:
    """Cycles overlapping service ``[start, end)``, clipped to it.

    ``end`` None means open ended. Only periods starting before ``until`` are
    listed, which bounds the result for open-ended service.
    """
    return list(_periods(anchor, cycle_length, cycle_unit, start, end, until))


@lru_cache(maxsize=4096)  # contracts share anchors and cycles: a billing run asks the same often
def _periods(
    anchor: date,
    cycle_length: int,
    cycle_unit: CycleUnit,
    start: date,
    end: date | None,
    until: date,
) -> tuple[Period, ...]:
    """See :func:`periods`."""
    if end is not None and end < start:
        raise ValueError(f"service end {end} is before its start {start}")
    result: list[Period] = []
    k = cycle_index(anchor, cycle_length, cycle_unit, start)
    cycle_start = _shift(anchor, k, cycle_length, cycle_unit)
    while True:
        cycle_end = _shift(anchor, k + 1, cycle_length, cycle_unit)
        clipped_start = max(cycle_start, start)
        if clipped_start >= until or (end is not None and clipped_start >= end):
            return tuple(result)
        clipped_end = cycle_end if end is None else min(cycle_end, end)
        result.append(Period(clipped_start, clipped_end, cycle_start, cycle_end))
        k, cycle_start = k + 1, cycle_end


def prorate(amount: Decimal, days: int, full_days: int) -> Decimal:
    """``amount * days / full_days`` at full (34-digit) precision, unrounded.

    A full period returns ``amount`` itself, with no division artefacts.
    """
    if isinstance(amount, bool) or not isinstance(amount, (Decimal, int)):
        raise TypeError(f"amount must be a Decimal or int, not {type(amount).__name__}")
    for name, value in (("days", days), ("full_days", full_days)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if full_days < 1 or not 0 <= days <= full_days:
        raise ValueError(f"need 0 <= days <= full_days and full_days >= 1, got {days}/{full_days}")
    amount = Decimal(amount)
    if days == full_days:
        return amount
    with localcontext(_CTX):
        return amount * days / full_days
