"""Recurring revenue: MRR and ARR on any day, per customer, entity and currency; MRR movements per month.

MRR counts the recurring lines of contracts in force on the day, under the version in effect that
day, each at its full-period price (pricing applied to the line's quantity, or its ramp step's,
less the line's percent discount) normalised to a month: a quarterly fee counts a third, a yearly
one a twelfth, a weekly one 52/12. Usage, one-time and installment charges are not recurring
revenue. A customer's MRR is rounded to its currency once; a total is the sum of its customers'
MRR, so movements add up to the change in MRR exactly. ARR = 12 x MRR. Nothing sums currencies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal, TypeVar

from billbridge.billing.currency import round_money
from billbridge.billing.engine import Version
from billbridge.billing.model import Contract

ZERO = Decimal(0)
K = TypeVar("K")
ONE_DAY = timedelta(days=1)
_PER_MONTH = {"month": Decimal(1), "year": Decimal(1) / 12, "week": Decimal(52) / 12, "day": Decimal(365) / 12}

MovementKind = Literal["new", "expansion", "contraction", "churn", "reactivation"]
MOVEMENT_KINDS: tuple[MovementKind, ...] = ("new", "expansion", "contraction", "churn", "reactivation")


def in_force(contract: Contract, day: date) -> bool:
    return contract.contract_start_date <= day and (
        contract.contract_end_date is None or day <= contract.contract_end_date
    )


def contract_mrr(contract: Contract, day: date) -> Decimal:
    """One contract's monthly recurring revenue on ``day`` at full precision (0 when not in force)."""
    if not in_force(contract, day):
        return ZERO
    per_month = _PER_MONTH[contract.cycle_unit] / contract.cycle_length
    total = ZERO
    for line in contract.lines:
        if line.charge != "recurring" or line.pricing is None:
            continue
        if (line.start_date and day < line.start_date) or (line.end_date and day > line.end_date):
            continue
        pricing, quantity = line.pricing, line.quantity
        for step in line.ramps:
            if step.start_date <= day:
                pricing = step.pricing or pricing
                quantity = step.quantity if step.quantity is not None else quantity
        amount = pricing.amount_for(quantity)
        if line.discount is not None and line.discount.percent is not None:
            amount -= amount * line.discount.percent / 100
        total += amount * per_month
    return total


def terms_on(versions: Sequence[Version], day: date) -> Contract:
    """The terms in effect on ``day``: the latest version effective by then (the first from the start),
    as the billing engine reads a contract's timeline."""
    ordered = sorted(versions, key=lambda v: (v.effective_date, v.version_no))
    chosen = ordered[0]
    for version in ordered[1:]:
        if version.effective_date <= day:
            chosen = version
    return chosen.contract


CustomerKey = tuple[str, str, str]
"""(entity_ref, currency, customer_ref)"""


def customer_mrr(contracts: Iterable[Sequence[Version]], day: date) -> dict[CustomerKey, Decimal]:
    """MRR per customer (and entity and currency) on ``day``, each rounded to its currency; customers
    with none are left out. ``contracts``: each contract's versions."""
    totals: dict[CustomerKey, Decimal] = defaultdict(Decimal)
    for versions in contracts:
        terms = terms_on(versions, day)
        amount = contract_mrr(terms, day)
        if amount:
            totals[(terms.entity_ref, terms.currency, terms.customer_ref)] += amount
    rounded = {key: round_money(value, key[1]) for key, value in totals.items()}
    return {key: value for key, value in sorted(rounded.items()) if value}


def mrr(contracts: Iterable[Contract], day: date) -> dict[str, Decimal]:
    """Monthly recurring revenue per currency of the given terms on ``day`` (each contract as one
    version), the sum of its customers' rounded MRR."""
    per_customer = customer_mrr(([Version(1, c.contract_start_date, c)] for c in contracts), day)
    return totals_by(per_customer, lambda key: key[1])


def totals_by(per_customer: Mapping[CustomerKey, Decimal], key_of: Callable[[CustomerKey], K]) -> dict[K, Decimal]:
    """Sum customers' MRR by ``key_of(customer key)`` (e.g. the currency), in key order."""
    totals: dict[K, Decimal] = defaultdict(Decimal)
    for key, value in per_customer.items():
        totals[key_of(key)] += value
    return {k: totals[k] for k in sorted(totals)}  # type: ignore[type-var]


def arr(monthly: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Annual recurring revenue: 12 x MRR, per the same keys."""
    return {key: value * 12 for key, value in monthly.items()}


def change_days(versions: Sequence[Version]) -> set[date]:
    """Days on which a contract's MRR may change: its start, the day after its end, amendments'
    effective dates, lines' start and the day after their end, ramp steps."""
    days: set[date] = set()
    for version in versions:
        contract = version.contract
        days.update((version.effective_date, contract.contract_start_date))
        if contract.contract_end_date is not None:
            days.add(contract.contract_end_date + ONE_DAY)
        for line in contract.lines:
            if line.start_date:
                days.add(line.start_date)
            if line.end_date:
                days.add(line.end_date + ONE_DAY)
            days.update(step.start_date for step in line.ramps)
    return days


@dataclass(frozen=True)
class Step:
    """From ``day`` on, the customer's MRR in ``currency`` is ``mrr`` (until its next step)."""

    entity_ref: str
    currency: str
    customer_ref: str
    day: date
    mrr: Decimal
    before: Decimal

    @property
    def delta(self) -> Decimal:
        return self.mrr - self.before

    @property
    def active_delta(self) -> int:
        """+1 when the customer becomes active (MRR from 0), -1 when it stops, else 0."""
        return int(self.mrr > 0) - int(self.before > 0)


def mrr_steps(contracts: Sequence[Sequence[Version]]) -> list[Step]:
    """One customer's MRR as a step function per currency, from its contracts' versions: a step
    wherever the rounded MRR changes. MRR on a day = the sum of deltas up to that day."""
    days = sorted(set().union(*(change_days(v) for v in contracts))) if contracts else []
    steps: list[Step] = []
    current: dict[tuple[str, str, str], Decimal] = {}
    for day in days:
        now = customer_mrr(contracts, day)
        for key in sorted(set(now) | set(current)):
            before, after = current.get(key, ZERO), now.get(key, ZERO)
            if before != after:
                steps.append(Step(key[0], key[1], key[2], day, after, before))
        current = now
    return steps


def month_of(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


@dataclass(frozen=True)
class Movement:
    """A customer's MRR change over a month (end of the month before -> end of this month), classified
    as ChartMogul does: new business (first MRR ever), expansion (up), contraction (down, still
    paying), churn (to 0: no other active contract), reactivation (back after churning)."""

    entity_ref: str
    currency: str
    customer_ref: str
    month: date
    kind: MovementKind
    before: Decimal
    after: Decimal

    @property
    def amount(self) -> Decimal:
        """The signed change in MRR: negative for contraction and churn."""
        return self.after - self.before


def classify(before: Decimal, after: Decimal, paid_before: bool) -> MovementKind | None:
    """The kind of a customer's month-over-month MRR change (None: no change)."""
    if before == after:
        return None
    if before == 0:
        return "reactivation" if paid_before else "new"
    if after == 0:
        return "churn"
    return "expansion" if after > before else "contraction"


def movements(steps: Sequence[Step]) -> list[Movement]:
    """Month by month MRR movements of the customers whose steps are given (any order). A month's
    value is the MRR on its last day; a customer who goes up and down within a month counts net."""
    out: list[Movement] = []
    by_key: dict[CustomerKey, list[Step]] = defaultdict(list)
    for step in steps:
        by_key[(step.entity_ref, step.currency, step.customer_ref)].append(step)
    for key, own in sorted(by_key.items()):
        month_end_value: dict[date, Decimal] = {}
        for step in sorted(own, key=lambda s: s.day):
            month_end_value[month_of(step.day)] = step.mrr  # the last step in a month wins
        value, paid_before = ZERO, False
        for month in sorted(month_end_value):
            after = month_end_value[month]
            kind = classify(value, after, paid_before)
            if kind is not None:
                out.append(Movement(key[0], key[1], key[2], month, kind, value, after))
            paid_before = paid_before or after > 0 or value > 0
            value = after
    return out


@dataclass(frozen=True)
class MonthMovements:
    """One month's MRR movements of one entity and currency, with MRR at its start and end."""

    entity_ref: str
    currency: str
    month: date
    start_mrr: Decimal
    totals: dict[MovementKind, Decimal]
    customers: dict[MovementKind, int]

    @property
    def end_mrr(self) -> Decimal:
        return self.start_mrr + sum(self.totals.values(), ZERO)

    @property
    def net_retention(self) -> Decimal | None:
        """Net MRR retention: (start + expansion + contraction + churn) / start, the month's MRR kept
        from customers active at its start, upgrades included (None without MRR at the start)."""
        if not self.start_mrr:
            return None
        kept = self.start_mrr + self.totals["expansion"] + self.totals["contraction"] + self.totals["churn"]
        return kept / self.start_mrr

    @property
    def gross_retention(self) -> Decimal | None:
        """Gross MRR retention: (start + contraction + churn) / start, upgrades not counted."""
        if not self.start_mrr:
            return None
        return (self.start_mrr + self.totals["contraction"] + self.totals["churn"]) / self.start_mrr


MovementTotal = tuple[str, str, date, MovementKind, Decimal, int]
"""(entity_ref, currency, month, kind, signed amount, customers)"""


def month_movements(
    totals: Iterable[MovementTotal], start_mrr: Mapping[tuple[str, str], Decimal], first: date, last: date
) -> list[MonthMovements]:
    """Monthly movements of each entity and currency over the months ``first``..``last`` (first days),
    from the movement totals per month and kind and the MRR at the start of ``first``. Months with
    no movement are listed too, so MRR can be followed from month to month."""
    by_segment: dict[tuple[str, str], dict[date, list[tuple[MovementKind, Decimal, int]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for entity, currency, month, kind, amount, customers in totals:
        by_segment[(entity, currency)][month].append((kind, amount, customers))
    out: list[MonthMovements] = []
    for segment in sorted(set(by_segment) | set(start_mrr)):
        running = start_mrr.get(segment, ZERO)
        month = month_of(first)
        while month <= last:
            sums = dict.fromkeys(MOVEMENT_KINDS, ZERO)
            counts = dict.fromkeys(MOVEMENT_KINDS, 0)
            for kind, amount, customers in by_segment[segment].get(month, []):
                sums[kind] += amount
                counts[kind] += customers
            row = MonthMovements(segment[0], segment[1], month, running, sums, counts)
            out.append(row)
            running = row.end_mrr
            month = next_month(month)
    return out
