"""A month's recognition as a QuickBooks JournalEntry: balanced, per revenue account, valid against
Intuit's XSD."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from billbridge.mapping.journal import AccountMapping, PeriodRevenue, journal_entry_payload, missing_accounts
from tests.qbo_xsd import assert_valid

D = Decimal
ACCOUNTS = AccountMapping(revenue="79", deferred_revenue="85", contract_asset="86", revenue_by_product={"usage": "80"})


def totals(payload: dict) -> tuple[Decimal, Decimal]:
    by = {"Debit": D(0), "Credit": D(0)}
    for line in payload["Line"]:
        by[line["JournalEntryLineDetail"]["PostingType"]] += D(line["Amount"])
    return by["Debit"], by["Credit"]


def test_a_months_recognition_is_one_balanced_entry_per_revenue_account() -> None:
    period = PeriodRevenue(
        "us-inc",
        "USD",
        date(2026, 11, 1),
        {"platform": D("900.00"), "seats": D("300.00"), "usage": D("45.50")},
        from_deferred=D("1100.00"),
        to_contract_asset=D("145.50"),
    )
    payload = journal_entry_payload(period, ACCOUNTS)
    assert payload is not None
    assert (payload["DocNumber"], payload["TxnDate"], payload["CurrencyRef"]) == (
        "REV-2026-11-USD",
        "2026-11-30",
        {"value": "USD"},
    )
    lines = [
        (
            line["JournalEntryLineDetail"]["PostingType"],
            line["JournalEntryLineDetail"]["AccountRef"]["value"],
            line["Amount"],
        )
        for line in payload["Line"]
    ]
    assert lines == [
        ("Debit", "85", "1100.00"),
        ("Debit", "86", "145.50"),
        ("Credit", "79", "1200.00"),
        ("Credit", "80", "45.50"),
    ]
    assert totals(payload) == (D("1245.50"), D("1245.50"))
    assert_valid("JournalEntry", payload)


def test_a_negative_catch_up_posts_on_the_other_side_and_nothing_moved_is_no_entry() -> None:
    period = PeriodRevenue(
        "jp-kk", "JPY", date(2026, 2, 1), {"platform": D(-5000)}, from_deferred=D(-5000), to_contract_asset=D(0)
    )
    payload = journal_entry_payload(period, ACCOUNTS)
    assert payload is not None
    assert [(line["JournalEntryLineDetail"]["PostingType"], line["Amount"]) for line in payload["Line"]] == [
        ("Credit", "5000"),
        ("Debit", "5000"),
    ]
    assert_valid("JournalEntry", payload)
    assert journal_entry_payload(PeriodRevenue("jp-kk", "JPY", date(2026, 2, 1), {}, D(0), D(0)), ACCOUNTS) is None


def test_revenue_must_be_what_deferred_revenue_and_contract_assets_gave() -> None:
    with pytest.raises(ValueError, match="is not deferred"):
        PeriodRevenue("us-inc", "USD", date(2026, 11, 1), {"platform": D(10)}, D(5), D(4))


def test_the_account_mapping_names_what_is_missing() -> None:
    with pytest.raises(ValidationError) as err:
        AccountMapping.model_validate({"revenue": "79", "deferred_revenue": "85"})
    assert err.value.errors()[0]["loc"] == ("contract_asset",)
    assert missing_accounts({"us-inc": ACCOUNTS}, ["us-inc", "eu-bv"]) == ["eu-bv"]


def test_the_xsd_check_refuses_what_quickbooks_would() -> None:
    with pytest.raises(AssertionError, match="has no element"):
        assert_valid("JournalEntry", {"Lines": []})
    bad = {
        "Line": [
            {
                "Amount": "1.00",
                "DetailType": "JournalEntryLineDetail",
                "JournalEntryLineDetail": {"PostingType": "Sideways", "AccountRef": {"value": "1"}},
            }
        ]
    }
    with pytest.raises(AssertionError, match="XSD"):
        assert_valid("JournalEntry", bad)
