"""The rollforward's check, pure: the month a document is carried in, and contracts whose schedule does not
agree with their documents."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from billbridge.billing.revenue_check import billed_mismatches, books_month

JAN, FEB, MAR, APR = (date(2026, m, 1) for m in (1, 2, 3, 4))


def at(day: int, month: int = 2) -> datetime:
    return datetime(2026, month, day, 12)


def test_a_document_is_carried_in_its_month_unless_made_after_that_month_closed() -> None:
    assert books_month(JAN, at(5), {}) == JAN  # nothing closed
    assert books_month(JAN, at(5), {JAN: at(10)}) == JAN  # made before January's close: in it
    assert books_month(JAN, at(15), {JAN: at(10)}) == FEB  # made after it: the first open month
    # February was closed too before the document was made: March; February closed after it saw the document
    assert books_month(JAN, at(15), {JAN: at(10), FEB: at(12)}) == MAR
    assert books_month(JAN, at(15), {JAN: at(10), FEB: at(20)}) == FEB
    assert books_month(MAR, at(15), {JAN: at(10)}) == MAR


def test_a_contract_whose_schedule_misses_a_document_is_named_with_the_difference() -> None:
    schedule = [
        (1, JAN, "USD", Decimal("1200.00"), Decimal("101.92")),
        (1, FEB, "USD", Decimal("0"), Decimal("92.05")),
        (2, FEB, "USD", Decimal("50.00"), Decimal("50.00")),
    ]
    agreeing = [(1, "USD", JAN, Decimal("1200.00")), (2, "USD", FEB, Decimal("50.00"))]
    assert billed_mismatches(schedule, agreeing, FEB) == []
    [found] = billed_mismatches(schedule, [*agreeing, (1, "USD", FEB, Decimal("-100.00"))], FEB)
    assert (found.contract_id, found.billed, found.scheduled, found.difference) == (
        1,
        Decimal("-100.00"),
        Decimal("0"),
        Decimal("-100.00"),
    )
    # opening 1,098.08 deferred, recognised 92.05: closing 1,006.03, but the documents say 906.03
    assert (found.opening, found.closing, found.expected_closing) == (
        Decimal("1098.08"),
        Decimal("1006.03"),
        Decimal("906.03"),
    )
    [missing] = billed_mismatches(schedule, [(1, "USD", JAN, Decimal("1200.00"))], FEB)  # no document for 2
    assert (missing.contract_id, missing.difference) == (2, Decimal("-50.00"))
    assert billed_mismatches(schedule, [(3, "EUR", APR, Decimal("9"))], FEB)[0].contract_id == 2  # other months aside
