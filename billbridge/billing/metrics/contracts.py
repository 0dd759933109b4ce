"""Contract values per customer: active contracts, total, annual and remaining contract value, renewals.

Values are what the billing engine would bill for the contract's fixed charges over its term
(recurring, one-time, installments, discounts and minimum-commitment true-ups; usage is variable
consideration and counts 0), planned by :func:`billbridge.billing.engine.plan_invoices` itself, so
they follow the same proration, ramps and amendments as the invoices.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal

from billbridge.billing.currency import round_money
from billbridge.billing.engine import Version, plan_invoices
from billbridge.billing.metrics.recurring import in_force, terms_on

ZERO = Decimal(0)
ONE_DAY = timedelta(days=1)
RENEWAL_WINDOW_DAYS = 90


def _one_year_after(day: date) -> date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)


@dataclass(frozen=True)
class ContractValue:
    """One contract's value as of ``today``.

    - ``tcv`` (total contract value): the fixed charges of the whole term.
    - ``acv`` (annual contract value): TCV per year of term (TCV itself for a term of a year or less).
    - ``rcv`` (remaining contract value): the part of TCV billed after ``today``.
    - ``renewal_date``: the day after the term ends (None for an evergreen contract).
    An evergreen contract has no end: it is valued over its service so far plus the twelve months
    after ``today`` (its first year at least).
    """

    contract_ref: str
    entity_ref: str
    customer_ref: str
    currency: str
    start: date
    end: date | None
    active: bool
    tcv: Decimal
    acv: Decimal
    rcv: Decimal

    @property
    def renewal_date(self) -> date | None:
        return self.end + ONE_DAY if self.end is not None else None


def contract_value(contract_ref: str, versions: Sequence[Version], today: date) -> ContractValue:
    """The value of one contract's versions as of ``today`` (see :class:`ContractValue`)."""
    current = max(versions, key=lambda v: (v.effective_date, v.version_no)).contract
    start, end = current.contract_start_date, current.contract_end_date
    term_end = end or max(_one_year_after(start), _one_year_after(today)) - ONE_DAY
    # Planned as billbridge would bill it (a Stripe subscription too: its value is the same), to the
    # day after the term so in-arrears periods are in.
    valued = [
        replace(
            v,
            contract=v.contract.model_copy(
                update={"billed_by": "billbridge", "contract_end_date": v.contract.contract_end_date or term_end}
            ),
        )
        for v in versions
    ]
    plan = plan_invoices(contract_ref, valued, term_end + ONE_DAY)
    tcv = sum((draft.invoice_total for draft in plan.invoices), ZERO)
    rcv = sum((draft.invoice_total for draft in plan.invoices if draft.billing_date > today), ZERO)
    years = Decimal((term_end - start).days + 1) / Decimal(365)
    acv = round_money(tcv / years, current.currency) if years > 1 else tcv
    return ContractValue(
        contract_ref=contract_ref,
        entity_ref=current.entity_ref,
        customer_ref=current.customer_ref,
        currency=current.currency,
        start=start,
        end=end,
        active=in_force(terms_on(versions, today), today),
        tcv=tcv,
        acv=acv,
        rcv=rcv,
    )


@dataclass(frozen=True)
class CustomerContracts:
    """One customer's contracts in one currency: how many are active, their summed values, and the
    first renewal within ``RENEWAL_WINDOW_DAYS`` of today."""

    entity_ref: str
    currency: str
    customer_ref: str
    contracts: int
    active_contracts: int
    tcv: Decimal
    acv: Decimal
    rcv: Decimal
    renewals: tuple[tuple[str, date], ...]  # (contract_ref, renewal date) within the window


def customer_contracts(values: Iterable[ContractValue], today: date) -> list[CustomerContracts]:
    """Contract values summed per customer and currency, with renewals due in the next 90 days."""
    grouped: dict[tuple[str, str, str], list[ContractValue]] = defaultdict(list)
    for value in values:
        grouped[(value.entity_ref, value.currency, value.customer_ref)].append(value)
    horizon = today + timedelta(days=RENEWAL_WINDOW_DAYS)
    out = []
    for (entity, currency, customer), own in sorted(grouped.items()):
        renewals = sorted(
            ((v.contract_ref, v.renewal_date) for v in own if v.renewal_date and today < v.renewal_date <= horizon),
            key=lambda r: (r[1], r[0]),
        )
        out.append(
            CustomerContracts(
                entity_ref=entity,
                currency=currency,
                customer_ref=customer,
                contracts=len(own),
                active_contracts=sum(1 for v in own if v.active),
                tcv=sum((v.tcv for v in own), ZERO),
                acv=sum((v.acv for v in own if v.active), ZERO),
                rcv=sum((v.rcv for v in own), ZERO),
                renewals=tuple((ref, day) for ref, day in renewals if day is not None),
            )
        )
    return out
