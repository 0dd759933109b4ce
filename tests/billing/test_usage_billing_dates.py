"""Where a usage event lands: the billing date of its period, and the date of a late correction."""

from __future__ import annotations

from datetime import date

from billbridge.billing.usage_billing_dates import VersionTerms, correction_date, document_ref, usage_billing_date


def terms(
    version_no: int = 1,
    effective: date = date(2026, 1, 31),
    *,
    end: date | None = None,
    lines: tuple[tuple[date | None, date | None], ...] = ((None, None),),
    cycle_length: int = 1,
) -> VersionTerms:
    return VersionTerms(
        version_no=version_no,
        effective_date=effective,
        contract_start_date=date(2026, 1, 31),
        contract_end_date=end,
        cycle_length=cycle_length,
        cycle_unit="month",
        anchor=date(2026, 1, 31),
        usage_lines=lines,
    )


def test_usage_is_billed_the_day_after_its_period_anchored_on_the_31st() -> None:
    versions = [terms()]
    assert usage_billing_date(versions, date(2026, 1, 31)) == date(2026, 2, 28)
    assert usage_billing_date(versions, date(2026, 2, 27)) == date(2026, 2, 28)
    assert usage_billing_date(versions, date(2026, 2, 28)) == date(2026, 3, 31)
    assert usage_billing_date(versions, date(2026, 1, 30)) is None  # before the contract


def test_a_partial_last_period_bills_the_day_after_service_ends() -> None:
    versions = [terms(end=date(2026, 3, 10))]
    assert usage_billing_date(versions, date(2026, 3, 5)) == date(2026, 3, 11)
    assert usage_billing_date(versions, date(2026, 3, 11)) is None


def test_no_usage_line_on_the_periods_last_day_means_no_document() -> None:
    # version 2 (from 2026-04-30) drops the usage line: April's period ends on a day without it
    versions = [terms(), terms(2, date(2026, 4, 30), lines=())]
    assert usage_billing_date(versions, date(2026, 3, 31)) == date(2026, 4, 30)
    assert usage_billing_date(versions, date(2026, 4, 30)) is None
    # like the engine, a usage line is rated only if it is in force on its period's last day
    ended_line = [terms(lines=((None, date(2026, 2, 27)),))]
    assert usage_billing_date(ended_line, date(2026, 2, 1)) == date(2026, 2, 28)
    assert usage_billing_date(ended_line, date(2026, 3, 1)) is None
    assert usage_billing_date([terms(lines=((None, date(2026, 2, 26)),))], date(2026, 2, 1)) is None


def test_a_correction_goes_to_the_first_billing_date_without_a_document() -> None:
    versions = [terms()]
    billed = {date(2026, 2, 28)}
    assert correction_date(versions, date(2026, 2, 28), billed) == date(2026, 3, 31)
    billed |= {date(2026, 3, 31), date(2026, 4, 30)}
    assert correction_date(versions, date(2026, 2, 28), billed) == date(2026, 5, 31)
    ended = [terms(end=date(2026, 3, 10))]
    assert correction_date(ended, date(2026, 2, 28), {date(2026, 2, 28)}) == date(2026, 3, 11)
    assert correction_date(ended, date(2026, 3, 11), {date(2026, 2, 28), date(2026, 3, 11)}) is None


def test_document_refs_are_stable_and_distinct() -> None:
    assert document_ref("C-1", date(2026, 2, 1)) == document_ref("C-1", date(2026, 2, 1))
    assert document_ref("C-1", date(2026, 2, 1)) != document_ref("C-1", date(2026, 3, 1))
    assert document_ref("C-1", date(2026, 2, 1)) != document_ref("C-2", date(2026, 2, 1))
