"""How a document reads, for a person (the CLI) and a JSON consumer (the CLI's --json, the API).

Each line shows what its billed days cost before discount, the discount taken off (a line's own
discount, prepaid usage, or a contract discount line), and what it bills, all in the currency's
minor units, so that ``amount - discount_amount = billed_amount`` on every line. The document's
subtotal, discount total and total are the sums of those columns. Stored lines keep the full-period
price at full precision (planning needs it); this is only how they are shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from billbridge.billing.currency import money_str, round_money
from billbridge.billing.periods import prorate

ZERO = Decimal(0)


@dataclass(frozen=True)
class LineMoney:
    amount: Decimal  # before discount, for the days billed (negative on a credit line)
    discount: Decimal  # taken off ``amount``
    billed: Decimal  # what the line bills: amount - discount


def line_money(
    *,
    kind: str,
    amount: Decimal,
    discount: Decimal,
    billed_amount: Decimal,
    billed_days: int,
    period_days: int,
    sign: int,
    currency: str,
) -> LineMoney:
    """One line's money as shown. ``amount`` and ``discount`` are the stored full-period figures;
    the line billed ``round(prorated(amount - discount)) * sign``, so the discount shown is what the
    rounded, prorated amount before discount exceeds it by."""
    if kind == "discount":  # a contract discount line is all discount
        return LineMoney(ZERO, -billed_amount, billed_amount)
    gross = amount if billed_days == period_days else prorate(amount, billed_days, period_days)
    before = round_money(gross, currency) * sign
    return LineMoney(before, before - billed_amount, billed_amount)


def quantity_str(quantity: Decimal) -> str:
    """A quantity as written, without trailing zeros or an exponent: "60", "1", "0.25", "1200"."""
    text = format(quantity.normalize(), "f")
    return text if text != "-0" else "0"


def present(document: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A stored document (header and lines as the store reads them) with its money as strings in
    minor units, each line's discount, and the subtotal and discount total its lines add up to."""
    currency = str(document["currency"])
    shown = []
    subtotal = discount_total = ZERO
    for line in lines:
        money = line_money(
            kind=line["kind"],
            amount=line["amount"],
            discount=line["discount_amount"],
            billed_amount=line["billed_amount"],
            billed_days=line["billed_days"],
            period_days=line["period_days"],
            sign=line["sign"],
            currency=currency,
        )
        subtotal += money.amount
        discount_total += money.discount
        shown.append(
            {
                **{k: v for k, v in line.items() if k not in _LINE_INTERNALS},
                "quantity": quantity_str(line["quantity"]),
                "amount": money_str(money.amount, currency),
                "discount_amount": money_str(money.discount, currency),
                "billed_amount": money_str(money.billed, currency),
            }
        )
    return {
        **document,
        "subtotal": money_str(subtotal, currency),
        "discount_total": money_str(discount_total, currency),
        "invoice_total": money_str(document["invoice_total"], currency),
        **({"amount_paid": money_str(document["amount_paid"], currency)} if "amount_paid" in document else {}),
        "lines": shown,
    }


_LINE_INTERNALS = frozenset({"period_days", "sign", "invoice_id"})


def present_many(
    documents: Iterable[Mapping[str, Any]], lines: Mapping[int, Sequence[Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """:func:`present` for documents with an ``id``, their lines by that id; without the lines in
    the result (a listing)."""
    out = []
    for document in documents:
        shown = present(document, lines.get(int(document["id"]), ()))
        del shown["lines"]
        out.append(shown)
    return out
