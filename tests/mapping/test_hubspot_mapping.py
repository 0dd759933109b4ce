"""HubSpot deal bundles -> neutral CRM records -> contracts, on a fixture built from HubSpot's documented examples."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billbridge.mapping.crm import MappingError, is_won, map_deal
from billbridge.mapping.hubspot import DEFAULT_MAPPING, HubSpotProperties, bundle_to_crm
from billbridge.records import DealBundle

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "hubspot_deal_bundle.json").read_text())


def bundle(edit: Callable[[dict[str, Any]], None] | None = None) -> DealBundle:
    raw = copy.deepcopy(FIXTURE)
    if edit:
        edit(raw)
    return DealBundle(raw["deal"], raw["lines"], raw["company"], raw["products"])


def test_the_documented_deal_becomes_a_contract() -> None:
    deal, company, products = bundle_to_crm(bundle())
    assert is_won(deal, DEFAULT_MAPPING)
    mapped = map_deal(deal, company, products, DEFAULT_MAPPING)
    contract = mapped.contract
    assert (contract.contract_ref, contract.customer_ref) == ("hs-512", "hs-9001")
    assert (contract.entity_ref, contract.currency) == ("us-inc", "USD")  # no entity named: by currency
    # The deal names no start date or cycle: its line items' recurring-billing properties give them.
    assert (contract.contract_start_date, contract.contract_end_date) == (date(2020, 1, 1), date(2021, 12, 31))
    assert (contract.cycle_length, contract.cycle_unit) == (1, "month")
    assert (contract.payment_terms_days, contract.auto_charge) == (45, True)
    assert contract.effective_date == date(2020, 1, 1)  # changed 2019-12-07, before the start
    service, usage = contract.lines
    assert (service.line_ref, service.product_ref, service.quantity) == ("1001", "123456", Decimal(2))
    assert service.price_ref == "123456-USD" and service.pricing is None  # the list price, not an override
    assert service.discount is not None and service.discount.percent == Decimal(10)
    assert (usage.charge, usage.price_ref, usage.usage_aggregation) == ("usage", "API-CALLS-USD", "sum")
    assert mapped.customer.name == "HubSpot"
    assert sorted(p.product_ref for p in mapped.products) == ["123456", "API-CALLS"]
    euro = next(p for p in mapped.products if p.product_ref == "123456").prices
    assert {p.currency for p in euro} == {"EUR", "USD"}


def test_deal_properties_win_over_line_items_and_entities_come_from_the_deal() -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["deal"]["properties"].update(
            {"billing_start_date": "2020-02-01", "billing_cycle": "quarterly", "legal_entity": "eu-bv"}
        )

    deal, company, products = bundle_to_crm(bundle(edit))
    contract = map_deal(deal, company, products, DEFAULT_MAPPING).contract
    assert (contract.contract_start_date, contract.cycle_length, contract.entity_ref) == (date(2020, 2, 1), 3, "eu-bv")
    assert contract.lines[0].start_date == date(2020, 1, 1)  # the line's own start differs from the deal's


def test_a_price_on_the_line_overrides_the_list_price() -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["lines"][0]["properties"].update({"price": "5000.00", "amount": "9000.00"})
        raw["deal"]["properties"]["amount"] = "9000.00"

    deal, company, products = bundle_to_crm(bundle(edit))
    line = map_deal(deal, company, products, DEFAULT_MAPPING).contract.lines[0]
    assert line.pricing is not None and line.pricing.amount_for(Decimal(1)) == Decimal("5000.00")


def _drop_start(raw: dict[str, Any]) -> None:
    for line in raw["lines"]:
        del line["properties"]["hs_recurring_billing_start_date"]


def _drop_product(raw: dict[str, Any]) -> None:
    del raw["lines"][0]["properties"]["hs_product_id"]


def _set(part: str, name: str, value: str, index: int = 0) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        target = raw[part][index] if part == "lines" else raw[part]
        target["properties"][name] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        (_drop_start, "billing_start_date", "missing"),
        (_set("deal", "deal_currency_code", "XYZ"), "deal_currency_code", "unknown currency 'XYZ'"),
        (_set("lines", "quantity", "-2"), "quantity", "line 1001: quantity -2 is negative"),
        (_set("lines", "hs_product_id", "999"), "hs_product_id", "line 1001: unknown product '999'"),
        (_drop_product, "hs_product_id", "line 1001: names no product"),
        (_set("lines", "hs_product_id", ""), "hs_product_id", "line 1001: names no product"),
        (_set("deal", "amount", "10900.00"), "amount", "line items add up to 10800.00 USD, the deal says 10900.00"),
        (_set("deal", "billing_cycle", "fortnightly"), "billing_cycle", "unknown billing cycle 'fortnightly'"),
        (_set("lines", "recurringbillingfrequency", "hourly"), "line_items.recurringbillingfrequency", "unknown"),
        (_set("deal", "billing_end_date", "2019-12-31"), "billing_end_date", "is before the start date"),
        (_set("deal", "auto_charge", "maybe"), "auto_charge", "expected true or false"),
        # A date property as a huge digit string: an OverflowError stopped every sync until 2026-12.
        (_set("deal", "billing_start_date", "9" * 23), "billing_start_date", "cannot read '99999999999999999999999'"),
        (_set("deal", "billing_start_date", "0"), "billing_start_date", "1970-01-01 is not a plausible date"),
        (_set("deal", "billing_end_date", "9999-12-31"), "billing_end_date", "9999-12-31 is not a plausible date"),
        (_set("lines", "quantity", "1e999999"), "quantity", "out of range"),
        (_set("lines", "price", "NaN"), "price", "not a number"),
        (_set("lines", "hs_discount_percentage", "١٠"), "hs_discount_percentage", "not a number"),
        (_set("deal", "payment_terms_days", "1_000"), "payment_terms_days", "not a number"),
        (_set("deal", "amount", {"value": 1}), "amount", "expected text, got an object"),  # type: ignore[arg-type]
        (_set("deal", "billing_timing", ["in_advance"]), "billing_timing", "got a list"),  # type: ignore[arg-type]
        (_set("deal", "legal_entity", "us-\x00inc"), "legal_entity", "NUL"),
        (_set("deal", "billing_cycle", "\ud800"), "billing_cycle", "UnicodeEncodeError"),
        (_set("deal", "hs_lastmodifieddate", "2019-13-45"), "hs_lastmodifieddate", "cannot read"),
    ],
)
def test_problems_name_the_hubspot_property(edit: Callable[[dict[str, Any]], None], field: str, message: str) -> None:
    with pytest.raises(MappingError) as error:
        deal, company, products = bundle_to_crm(bundle(edit))
        map_deal(deal, company, products, DEFAULT_MAPPING)
    assert error.value.field == field
    assert message in str(error.value)


def test_property_names_are_configurable() -> None:
    names = HubSpotProperties(deal_start_date="contract_start", deal_entity="billing_entity")

    def edit(raw: dict[str, Any]) -> None:
        raw["deal"]["properties"].update({"contract_start": "2020-03-01", "billing_entity": "uk-ltd"})

    deal, company, products = bundle_to_crm(bundle(edit), names=names)
    contract = map_deal(deal, company, products, DEFAULT_MAPPING).contract
    assert (contract.contract_start_date, contract.entity_ref) == (date(2020, 3, 1), "uk-ltd")
    with pytest.raises(ValueError):
        HubSpotProperties(deal_start="typo")  # type: ignore[call-arg]


def test_stages_other_than_closedwon_are_not_won_and_records_need_properties() -> None:
    deal, _, _ = bundle_to_crm(bundle(_set("deal", "dealstage", "contractsent")))
    assert not is_won(deal, DEFAULT_MAPPING)
    with pytest.raises(MappingError, match="deal 512"):
        bundle_to_crm(DealBundle({"id": "512"}, [], None, {}))


EPOCH_MS_2020_01_01 = "1577836800000"  # 2020-01-01T00:00:00Z, as HubSpot sends date properties at times


def test_epoch_millisecond_dates_are_utc_days_in_any_time_zone(machine_time_zone: str) -> None:
    """West of UTC, midnight UTC was read as the evening before: a billing start moved a day earlier."""
    jan_2_2am_utc = str(int(EPOCH_MS_2020_01_01) + (24 + 2) * 3600 * 1000)

    def edit(raw: dict[str, Any]) -> None:
        raw["deal"]["properties"].update(
            {"billing_start_date": EPOCH_MS_2020_01_01, "hs_lastmodifieddate": jan_2_2am_utc}
        )
        for line in raw["lines"]:
            line["properties"]["hs_recurring_billing_start_date"] = EPOCH_MS_2020_01_01

    deal, company, products = bundle_to_crm(bundle(edit))
    contract = map_deal(deal, company, products, DEFAULT_MAPPING).contract
    assert contract.contract_start_date == date(2020, 1, 1), machine_time_zone
    assert contract.effective_date == date(2020, 1, 2), machine_time_zone  # the UTC day it changed
    assert all(line.start_date is None for line in contract.lines)  # the same day as the contract's


def test_the_window_of_plausible_dates_is_configurable() -> None:
    early = bundle(_set("deal", "billing_start_date", "1999-06-01"))
    deal, company, products = bundle_to_crm(early)
    with pytest.raises(MappingError, match="1999-06-01 is not a plausible date"):
        map_deal(deal, company, products, DEFAULT_MAPPING)
    widened = DEFAULT_MAPPING.model_copy(update={"earliest_date": date(1990, 1, 1)})
    assert map_deal(deal, company, products, widened).contract.contract_start_date == date(1999, 6, 1)


def test_a_name_longer_than_the_store_keeps_is_refused_with_its_property() -> None:
    """A company name of 301 characters failed the whole page on PostgreSQL (value too long)."""
    with pytest.raises(MappingError) as error:
        deal, company, products = bundle_to_crm(bundle(_set("company", "name", "N" * 301)))
        map_deal(deal, company, products, DEFAULT_MAPPING)
    assert error.value.field == "name" and "at most 300 characters" in str(error.value)  # HubSpot's property


def test_a_products_revenue_recognition_is_a_product_property() -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["products"]["191902"]["properties"]["revenue_recognition"] = "Point-in-time"

    deal, company, products = bundle_to_crm(bundle(edit))
    by_ref = {p.product_ref: p for p in map_deal(deal, company, products, DEFAULT_MAPPING).products}
    assert (by_ref["123456"].recognition, by_ref["API-CALLS"].recognition) == ("point_in_time", None)

    def wrong(raw: dict[str, Any]) -> None:
        raw["products"]["191902"]["properties"]["revenue_recognition"] = "monthly"

    deal, company, products = bundle_to_crm(bundle(wrong))
    with pytest.raises(MappingError) as err:
        map_deal(deal, company, products, DEFAULT_MAPPING)
    assert err.value.field == "revenue_recognition" and "unknown recognition" in str(err.value)


def _with_contacts(contacts: list[dict[str, Any]] | None, billing_email: str | None = None) -> DealBundle:
    raw = copy.deepcopy(FIXTURE)
    if billing_email is not None:
        raw["company"]["properties"]["billing_email"] = billing_email
    return DealBundle(raw["deal"], raw["lines"], raw["company"], raw["products"], contacts=contacts)


def _contacts_of(found: DealBundle, names: HubSpotProperties | None = None) -> list[tuple[str, str | None, str]] | None:
    deal, company, products = bundle_to_crm(found, names=names or HubSpotProperties())
    contacts = map_deal(deal, company, products, DEFAULT_MAPPING).customer.contacts
    return None if contacts is None else [(c.email, c.name, c.language) for c in contacts]


def test_billing_contacts_their_language_and_the_company_billing_email_fallback() -> None:
    ap = {"id": "101", "properties": {"email": "ap@x.example", "firstname": "Ada", "lastname": "", "hs_language": "de"}}
    cfo = {"id": "102", "properties": {"email": "cfo@x.example", "hs_language": None, "lastname": "Ledger"}}
    assert _contacts_of(_with_contacts([ap, cfo], "billing@x.example")) == [
        ("ap@x.example", "Ada", "de"),
        ("cfo@x.example", "Ledger", "en"),
    ]
    assert _contacts_of(_with_contacts([], "billing@x.example")) == [("billing@x.example", None, "en")]
    no_email = {"id": "103", "properties": {"email": None}}
    assert _contacts_of(_with_contacts([no_email], "billing@x.example")) == [("billing@x.example", None, "en")]
    assert _contacts_of(_with_contacts([], "billing@x.example"), HubSpotProperties(company_billing_email=None)) is None
    assert _contacts_of(_with_contacts([])) is None  # HubSpot names none: the stored ones stay, else it waits
    assert _contacts_of(_with_contacts(None, "billing@x.example")) is None  # contacts not read: nothing said


@pytest.mark.parametrize(
    ("contacts", "billing_email", "field", "message"),
    [
        ([{"id": "7", "properties": {"email": "ap at x"}}], None, "contact 7 email", "malformed e-mail address"),
        ([], "ar@@x", "company 9001 billing_email", "malformed e-mail address 'ar@@x'"),
    ],
)
def test_a_malformed_address_leaves_its_contact_out_naming_record_and_field(
    contacts: list[dict[str, Any]], billing_email: str | None, field: str, message: str
) -> None:
    deal, company, products = bundle_to_crm(_with_contacts(contacts, billing_email), names=HubSpotProperties())
    mapped = map_deal(deal, company, products, DEFAULT_MAPPING)  # the deal is kept
    assert mapped.customer.contacts == []
    [dropped] = mapped.dropped_contacts
    assert dropped.field == field and message in str(dropped)


@pytest.mark.parametrize("language", ["?", "Deutsch", "xx", "zz_top", 7])
def test_an_unknown_contact_language_falls_back_to_english_naming_record_and_field_and_the_deal_is_kept(
    language: object,
) -> None:
    contacts = [
        {"id": "8", "properties": {"email": "a@x.example", "hs_language": language}},
        {"id": "9", "properties": {"email": "b@x.example", "hs_language": "fr_CH"}},
    ]
    deal, company, products = bundle_to_crm(_with_contacts(contacts, None), names=HubSpotProperties())
    mapped = map_deal(deal, company, products, DEFAULT_MAPPING)  # the deal is kept, both contacts too
    assert [(c.email, c.language) for c in mapped.customer.contacts or []] == [
        ("a@x.example", "en"),
        ("b@x.example", "fr-CH"),
    ]
    [warning] = mapped.dropped_contacts
    assert warning.field == "contact 8 hs_language"
    assert f"unknown language {str(language)!r}" in warning.message and "written in en" in warning.message
