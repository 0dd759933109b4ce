"""Product allocation and usage and cash: billed and collected money per product and month.

Billed: the non-void invoice and credit note lines of the product, by billing month. Collected:
each line's share of what its invoice received, in proportion to its billed amount
(:func:`collected_per_line`); a paid invoice's lines are collected in full. A product's group is its charge kind (recurring, usage, one_time,
installments), as products carry no other grouping.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from billbridge.billing.currency import allocate, round_money

ZERO = Decimal(0)


def collected_per_line(billed: Sequence[Decimal], amount_paid: Decimal, currency: str) -> list[Decimal]:
    """Each line's share of what its invoice received: billed x paid / total, discount lines taking
    their negative share, rounded so the lines sum exactly to ``amount_paid`` (charges and discounts
    each split by the largest-remainder method). A paid invoice's lines collect what they billed."""
    total = sum(billed, ZERO)
    if amount_paid == 0 or total == 0:
        return [ZERO] * len(billed)
    charges = sum((b for b in billed if b > 0), ZERO)
    charged = round_money(charges * amount_paid / total, currency)
    out = [ZERO] * len(billed)
    for sign, share in ((1, charged), (-1, charged - amount_paid)):
        positions = [i for i, b in enumerate(billed) if b * sign > 0]
        if positions and share:
            parts = allocate(share, [abs(billed[i]) for i in positions], currency)
            for i, part in zip(positions, parts, strict=True):
                out[i] = part * sign
    return out


@dataclass(frozen=True)
class ProductMonth:
    """Billed and collected for one product (``product_ref``; "" for discounts and true-ups) and
    charge kind in one month, entity and currency."""

    entity_ref: str
    currency: str
    month: date
    product_ref: str
    kind: str
    billed: Decimal
    collected: Decimal


def product_allocation(rows: Iterable[ProductMonth], by: str = "product") -> list[ProductMonth]:
    """Per month, the rows summed by product (``by="product"``) or by product group (``by="group"``,
    the charge kind; ``product_ref`` then holds the group)."""
    totals: dict[tuple[str, str, date, str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    for r in rows:
        name = r.product_ref if by == "product" else r.kind
        sums = totals[(r.entity_ref, r.currency, r.month, name, r.kind)]
        sums[0] += r.billed
        sums[1] += r.collected
    return [ProductMonth(*key, billed, collected) for key, (billed, collected) in sorted(totals.items())]


@dataclass
class UsageMonth:
    """Usage and cash of one customer and usage product in one month: the quantity used (the events'
    sum), the usage billed for it and the part collected."""

    entity_ref: str
    currency: str
    month: date
    customer_ref: str
    product_ref: str
    quantity: Decimal = ZERO
    events: int = 0
    billed: Decimal = ZERO
    collected: Decimal = ZERO


UsageKey = tuple[str, str, date, str, str]
"""(entity_ref, currency, month, customer_ref, product_ref)"""


def usage_and_cash(
    used: Iterable[tuple[UsageKey, Decimal, int]], charged: Iterable[tuple[UsageKey, Decimal, Decimal]]
) -> list[UsageMonth]:
    """Usage per key (quantity, events) joined with what was billed and collected for it (billed,
    collected); either side may be missing for a key."""
    out: dict[UsageKey, UsageMonth] = {}
    for key, quantity, events in used:
        row = out.setdefault(key, UsageMonth(*key))
        row.quantity += quantity
        row.events += events
    for key, billed, collected in charged:
        row = out.setdefault(key, UsageMonth(*key))
        row.billed += billed
        row.collected += collected
    return [out[k] for k in sorted(out)]
