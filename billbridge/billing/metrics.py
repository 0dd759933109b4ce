"""Recurring revenue of contracts: MRR and ARR per currency as of a day.

MRR counts the recurring lines of contracts in force on the day, each at its full-period price
(pricing applied to the line's quantity, less the line's percent discount) normalised to a month:
a quarterly fee counts a third, a yearly one a twelfth, a weekly one 52/12. Usage, one-time and
installment charges are not recurring revenue. ARR = 12 x MRR. Exact Decimals, rounded to the
currency at the end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from billbridge.billing.currency import round_money
from billbridge.billing.model import Contract

_PER_MONTH = {"month": Decimal(1), "year": Decimal(1) / 12, "week": Decimal(52) / 12, "day": Decimal(365) / 12}


def in_force(contract: Contract, day: date) -> bool:
    return contract.contract_start_date <= day and (
        contract.contract_end_date is None or day <= contract.contract_end_date
    )


def mrr(contracts: Iterable[Contract], day: date) -> dict[str, Decimal]:
    """Monthly recurring revenue per currency of the contracts in force on ``day``."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for contract in contracts:
        if not in_force(contract, day):
            continue
        per_month = _PER_MONTH[contract.cycle_unit] / contract.cycle_length
        for line in contract.lines:
            if line.charge != "recurring" or line.pricing is None:
                continue
            if (line.start_date and day < line.start_date) or (line.end_date and day > line.end_date):
                continue
            amount = line.pricing.amount_for(line.quantity)
            if line.discount is not None and line.discount.percent is not None:
                amount -= amount * line.discount.percent / 100
            totals[contract.currency] += amount * per_month
    return {cur: round_money(v, cur) for cur, v in sorted(totals.items())}


def arr(monthly: dict[str, Decimal]) -> dict[str, Decimal]:
    return {cur: v * 12 for cur, v in monthly.items()}
