"""What a partner's statement e-mail says (``statement_details``) and its CSV attachment
(``statement_csv``): the fees accrued and the reversals add up to the statement's total, and the CSV's
``(total)`` line says the same, whatever the accruals (hypothesis, in minor units of USD and JPY)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from billbridge.billing.partner_fees import (
    Accrual,
    partner_bill,
    statement,
    statement_csv,
    statement_details,
    statement_of_details,
)

CUSTOMERS = ("hooli", "initech", "globex")
QUANTUM = {"USD": Decimal("0.01"), "JPY": Decimal(1)}


@st.composite
def accruals(draw: st.DrawFn) -> tuple[str, list[Accrual]]:
    currency = draw(st.sampled_from(sorted(QUANTUM)))
    made = []
    for n in range(draw(st.integers(1, 12))):
        fee = draw(st.integers(-500_000, 500_000)) * QUANTUM[currency]
        base = draw(st.integers(-5_000_000, 5_000_000)) * QUANTUM[currency]
        customer = draw(st.sampled_from(CUSTOMERS))
        period = draw(st.sampled_from(("2026-09", "2026-10", "2026-11")))
        made.append(Accrual("a", "nw", f"e{n}", "fee", customer, date(2026, 9, 1), period, currency, base, fee))
    return currency, made


@given(accruals())
def test_fees_and_reversals_add_up_to_the_total_and_the_csv_says_it(drawn: tuple[str, list[Accrual]]) -> None:
    currency, made = drawn
    of = statement("nw", "2026-11", currency, made, first="2026-09")
    bill = partner_bill(3, "NW", None, 30, of)
    details = statement_details(bill, [a.fee for a in made], 30, billed=of.total != 0)
    kept = details["statement"]
    assert Decimal(kept["fees"]) + Decimal(kept["reversals"]) == Decimal(kept["total"]) == of.total
    assert Decimal(kept["fees"]) >= 0 >= Decimal(kept["reversals"])
    assert sum((Decimal(x["fees"]) for x in kept["lines"]), Decimal(0)) == of.total
    again = statement_of_details(details)
    assert again == of  # the message keeps the statement as closed: its CSV is the CLI's
    *lines, total = statement_csv(again).splitlines()[1:]
    assert len(lines) == len(of.lines) and total.split(",")[2:] == [
        "(total)",
        str(sum((x.base for x in of.lines), Decimal(0)).quantize(QUANTUM[currency])),
        str(of.total.quantize(QUANTUM[currency])),
    ]
