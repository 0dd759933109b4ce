"""Which invoice a usage event lands on: the billing date of its period, or of its correction.

Usage is billed in arrears: the period ``[start, end)`` containing the event's UTC day is billed on
the invoice dated ``end`` (one invoice per contract and billing date). When that invoice exists
already, the engine bills what the period now owes minus what was billed, on the contract's next
billing date that has no invoice yet (a period start, a period end or the day after service ends).
These functions say the same from stored contract terms, without the engine. Pure.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from billbridge.billing.periods import CycleUnit, add_cycles, cycle_index, periods

ONE_DAY = timedelta(days=1)
DOCUMENT_NAMESPACE = uuid.UUID("6f1d7c2e-4a8b-5d3e-9f10-b1e2b3d4c5a6")


@lru_cache(maxsize=65_536)
def document_ref(contract_ref: str, billing_date: date) -> str:
    """A contract's document of one billing date, named before it exists (a UUID, stable forever).

    Invoices are unique per (contract, billing date) and get their number only when generated, so
    this ref is what the usage API answers for an upcoming invoice, and the same ref names it after.
    """
    return str(uuid.uuid5(DOCUMENT_NAMESPACE, f"{contract_ref}\x1f{billing_date.isoformat()}"))


@dataclass(frozen=True)
class VersionTerms:
    """The headline terms of one contract version, with its usage lines for the product at hand."""

    version_no: int
    effective_date: date
    contract_start_date: date
    contract_end_date: date | None
    cycle_length: int
    cycle_unit: CycleUnit
    anchor: date
    usage_lines: tuple[tuple[date | None, date | None], ...]  # (line start_date, end_date) per usage line


def _ordered(versions: Sequence[VersionTerms]) -> list[VersionTerms]:
    return sorted(versions, key=lambda v: (v.effective_date, v.version_no))


def _version_at(ordered: Sequence[VersionTerms], day: date) -> VersionTerms:
    chosen = ordered[0]
    for version in ordered[1:]:
        if version.effective_date <= day:
            chosen = version
    return chosen


def _service_end(version: VersionTerms) -> date | None:
    return version.contract_end_date + ONE_DAY if version.contract_end_date else None


def usage_billing_date(versions: Sequence[VersionTerms], day: date) -> date | None:
    """The billing date of the usage period containing ``day``, or None when the contract does not
    bill this product's usage for that day (outside service, or no usage line on the period's last day)."""
    if not versions:
        return None
    ordered = _ordered(versions)
    current = ordered[-1]
    start, end = current.contract_start_date, _service_end(current)
    if day < start or (end is not None and day >= end):
        return None
    found = [p for p in periods(current.anchor, current.cycle_length, current.cycle_unit, start, end, day + ONE_DAY)]
    period = next((p for p in reversed(found) if p.start <= day < p.end), None)
    if period is None:
        return None
    last_day = period.end - ONE_DAY
    version = _version_at(ordered, last_day)
    version_end = version.contract_end_date
    if last_day < version.contract_start_date or (version_end is not None and last_day > version_end):
        return None
    for line_start, line_end in version.usage_lines:
        if (line_start is None or line_start <= last_day) and (line_end is None or last_day <= line_end):
            return period.end
    return None


def correction_date(versions: Sequence[VersionTerms], billed_on: date, invoiced: Collection[date]) -> date | None:
    """The first billing date after ``billed_on`` with no document yet: where late usage of the
    period billed on ``billed_on`` is charged. None when the contract has no such date left (the
    engine then settles on a document dated the day of the run)."""
    current = _ordered(versions)[-1]
    start, end = current.contract_start_date, _service_end(current)
    unit, length, anchor = current.cycle_unit, current.cycle_length, current.anchor
    horizon = cycle_index(anchor, length, unit, max(billed_on, start)) + len(invoiced) + 2
    until = add_cycles(anchor, horizon, length, unit)
    candidates = {d for p in periods(anchor, length, unit, start, end, until) for d in (p.start, p.end)}
    if end is not None:
        candidates.add(end)
    return next((d for d in sorted(candidates) if d > billed_on and d not in invoiced), None)
