"""A month's recognition as a QuickBooks JournalEntry: balanced, per revenue account, valid against
Intuit's XSD."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from billbridge.mapping.journal import (
    AccountMapping,
    PeriodRevenue,
    account_problems,
    doc_number,
    journal_entry_payload,
    missing_accounts,
    same_entry,
)
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
        {("platform", "ratable"): D("900.00"), ("seats", "ratable"): D("300.00"), ("usage", "usage"): D("45.50")},
        from_deferred=D("1100.00"),
        to_contract_asset=D("145.50"),
    )
    payload = journal_entry_payload(period, ACCOUNTS)
    assert payload is not None
    assert (payload["DocNumber"], payload["TxnDate"], payload["CurrencyRef"]) == (
        "REV202611-USD-US-INC",
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
        "jp-kk",
        "JPY",
        date(2026, 2, 1),
        {("platform", "ratable"): D(-5000)},
        from_deferred=D(-5000),
        to_contract_asset=D(0),
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
        PeriodRevenue("us-inc", "USD", date(2026, 11, 1), {("platform", "ratable"): D(10)}, D(5), D(4))


def test_the_account_mapping_names_what_is_missing() -> None:
    with pytest.raises(ValidationError) as err:
        AccountMapping.model_validate({"revenue": "79", "deferred_revenue": "85"})
    assert err.value.errors()[0]["loc"] == ("contract_asset",)
    chart = {"79": {}, "86": {}}
    eu = ACCOUNTS.model_copy(update={"revenue_by_recognition": {"usage": "87"}, "revenue_by_product": {"box": "85"}})
    assert missing_accounts([ACCOUNTS, eu], chart) == {
        "80": ["revenue_by_product.usage"],
        "85": ["deferred_revenue", "revenue_by_product.box"],
        "87": ["revenue_by_recognition.usage"],
    }
    assert (
        "account 85 (deferred_revenue and revenue_by_product.box) is not in the QuickBooks chart of accounts"
        in account_problems([eu], chart)
    )
    passing = ACCOUNTS.model_copy(update={"pass_through": "91"})
    assert account_problems([passing], {"91": {"Name": "Office", "AccountType": "Expense"}})[-1] == (
        "account 91 'Office' is Expense; pass_through needs Income or Other Current Liability or Other Income"
    )
    assert missing_accounts([passing], {})["91"] == ["pass_through"]


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


def test_revenue_goes_to_the_products_account_then_the_recognition_kinds_then_the_entitys() -> None:
    accounts = AccountMapping(
        revenue="79",
        deferred_revenue="85",
        contract_asset="86",
        revenue_by_product={"setup": "81"},
        revenue_by_recognition={"usage": "80", "point_in_time": "82"},
    )
    assert accounts.revenue_account("setup", "point_in_time") == "81"
    assert accounts.revenue_account("meter", "usage") == "80"
    assert accounts.revenue_account("box", "point_in_time") == "82"
    assert accounts.revenue_account("platform", "ratable") == "79"


def test_billing_against_a_contract_asset_moves_it_back_to_deferred_revenue() -> None:
    """Invoices credit deferred revenue (their items' income account); an invoice for what was recognised
    before (in arrears, installments) relieves the contract asset instead: the entry reclassifies it."""
    period = PeriodRevenue(
        "eu-bv",
        "EUR",
        date(2026, 3, 1),
        {("seats", "ratable"): D("91.73")},
        from_deferred=D(0),
        to_contract_asset=D("91.73"),
        billed_from_asset=D("90.00"),
    )
    payload = journal_entry_payload(period, ACCOUNTS)
    assert payload is not None
    assert [
        (ln["JournalEntryLineDetail"]["PostingType"], ln["JournalEntryLineDetail"]["AccountRef"]["value"], ln["Amount"])
        for ln in payload["Line"]
    ] == [("Debit", "86", "91.73"), ("Debit", "85", "90.00"), ("Credit", "86", "90.00"), ("Credit", "79", "91.73")]
    assert totals(payload) == (D("181.73"), D("181.73"))
    assert_valid("JournalEntry", payload)
    assert PeriodRevenue.from_message(period.as_message()) == period


@given(
    amounts=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["ratable", "usage"]),
            st.decimals(min_value=-10_000, max_value=10_000, places=2),
        ),
        max_size=6,
    ),
    asset_share=st.decimals(min_value=0, max_value=1, places=2),
    billed_from_asset=st.decimals(min_value=0, max_value=10_000, places=2),
)
def test_every_entry_balances_exactly(
    amounts: list[tuple[str, str, Decimal]], asset_share: Decimal, billed_from_asset: Decimal
) -> None:
    revenue: dict[tuple[str, str], Decimal] = {}
    for product, kind, amount in amounts:
        revenue[(product, kind)] = revenue.get((product, kind), D(0)) + amount
    total = sum(revenue.values(), D(0))
    to_asset = (total * asset_share).quantize(D("0.01"))
    period = PeriodRevenue("us-inc", "USD", date(2026, 5, 1), revenue, total - to_asset, to_asset, billed_from_asset)
    payload = journal_entry_payload(period, ACCOUNTS)
    if payload is None:
        assert not any(revenue.values()) and not billed_from_asset and not to_asset
        return
    debit, credit = totals(payload)
    assert debit == credit
    assert all(D(line["Amount"]) >= 0 for line in payload["Line"])


def test_the_chart_of_accounts_check_names_each_missing_inactive_or_mistyped_account() -> None:
    chart = {
        "79": {"Id": "79", "Name": "Sales", "AccountType": "Income", "Active": True},
        "85": {"Id": "85", "Name": "Deferred Revenue", "AccountType": "Other Current Liability"},
        "86": {"Id": "86", "Name": "Prepaid", "AccountType": "Expense", "Active": True},
        "80": {"Id": "80", "Name": "Usage", "AccountType": "Income", "Active": False},
    }
    problems = account_problems([ACCOUNTS], chart)
    assert problems == [
        "account 80 'Usage' (revenue) is inactive in QuickBooks",
        "account 86 'Prepaid' is Expense; contract_asset needs Other Asset or Other Current Asset",
    ]
    assert account_problems([ACCOUNTS], {k: v for k, v in chart.items() if k != "85"})[1] == (
        "account 85 (deferred_revenue) is not in the QuickBooks chart of accounts"
    )
    fine = {**chart, "86": {**chart["86"], "AccountType": "Other Current Asset"}, "80": {**chart["80"], "Active": True}}
    assert account_problems([ACCOUNTS], fine) == []


def test_an_entity_gets_its_own_tag_in_the_doc_number_within_21_characters() -> None:
    def number(entity: str) -> str:
        return doc_number(PeriodRevenue(entity, "USD", date(2026, 11, 1), {}, D(0), D(0)))

    assert number("us-inc") == "REV202611-USD-US-INC"
    long = number("a-very-long-entity-name")
    assert len(long) <= 21 and long != number("a-very-long-entity-nam") and long.startswith("REV202611-USD-")


def test_an_entry_in_a_foreign_currency_carries_its_exchange_rate_and_a_new_rate_is_another_entry() -> None:
    period = PeriodRevenue("kw", "KWD", date(2026, 1, 1), {("platform", "ratable"): D("31.011")}, D("31.011"), D(0))
    payload = journal_entry_payload(period, ACCOUNTS, D("3.2531"))
    assert payload is not None
    assert (payload["CurrencyRef"], payload["ExchangeRate"], payload["Line"][0]["Amount"]) == (
        {"value": "KWD"},
        "3.2531",
        "31.011",
    )
    assert_valid("JournalEntry", payload)
    held = {**payload, "ExchangeRate": D("3.2531"), "Line": payload["Line"]}
    assert same_entry(held, payload)
    assert not same_entry({**held, "ExchangeRate": D("3.2400")}, payload)  # the day's rate changed: update it
    assert "ExchangeRate" not in (journal_entry_payload(period, ACCOUNTS) or {})  # home currency: no rate
