"""Salesforce bundles -> neutral CRM records -> canonical records, on JSON fixtures shaped like the REST
API's documented query results (records with ``attributes``, relationship fields as nested records,
child subqueries as ``{"totalSize", "done", "records"}`` or null). Independent of the sandbox."""

from __future__ import annotations

import copy
import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billbridge.mapping.crm import MappingError, is_won, map_deal
from billbridge.mapping.salesforce import DEFAULT_MAPPING, SalesforceFields, bundle_to_crm
from billbridge.records import DealBundle

FIXTURES = Path(__file__).parent / "fixtures"


def _load(name: str) -> list[dict[str, Any]]:
    # simple-salesforce is built with parse_float=Decimal by the connector: numbers arrive exact
    records: list[dict[str, Any]] = json.loads((FIXTURES / name).read_text(), parse_float=Decimal)["records"]
    return records


PRODUCTS = {p["Id"]: p for p in _load("salesforce_products.json")}
WON, NO_START = _load("salesforce_opportunities.json")


def _bundle(opp: dict[str, Any]) -> DealBundle:
    """What the connector hands over: the record, its line items, its account and the products of its lines."""
    lines = (opp["OpportunityLineItems"] or {}).get("records", [])
    used = {line["Product2Id"] for line in lines}
    return DealBundle(opp, lines, opp["Account"], {pid: p for pid, p in PRODUCTS.items() if pid in used})


def test_a_won_opportunity_becomes_a_contract_with_its_terms_and_lines() -> None:
    deal, company, products = bundle_to_crm(_bundle(WON))
    assert is_won(deal, DEFAULT_MAPPING)
    mapped = map_deal(deal, company, products, DEFAULT_MAPPING)

    contract = mapped.contract
    assert contract.contract_ref == "sf-006R000000Pq1AbIAJ"
    assert contract.customer_ref == "sf-001R000000Z1Y0xYAA"
    assert contract.entity_ref == "us-inc"  # none on the opportunity: the account's
    assert contract.currency == "USD"
    assert (contract.contract_start_date, contract.contract_end_date) == (date(2026, 2, 1), date(2027, 1, 31))
    assert (contract.cycle_length, contract.cycle_unit) == (3, "month")
    assert contract.payment_terms_days == 45
    assert contract.auto_charge is True
    assert contract.effective_date == date(2026, 2, 1)  # modified 2026-01-21, before the start
    platform, seats, api = contract.lines
    assert (platform.product_ref, platform.price_ref, platform.quantity, platform.pricing) == (
        "PLATFORM",
        "PLATFORM-USD",
        Decimal(1),
        None,
    )
    assert seats.quantity == Decimal(10)
    assert seats.discount is not None and seats.discount.percent == Decimal(10)
    assert seats.start_date == date(2026, 3, 1)  # ServiceDate later than the deal start
    assert (api.charge, api.usage_aggregation) == ("usage", "max")
    assert mapped.customer.name == "Acme Corp (West)"

    by_ref = {p.product_ref: p for p in mapped.products}
    seats_usd = by_ref["SEATS"].prices[0]
    assert seats_usd.pricing.amount_for(Decimal(10)) == Decimal(450)  # no pricing JSON: the list price per unit
    assert {p.currency for p in by_ref["PLATFORM"].prices} == {"USD", "EUR"}


def test_errors_name_the_salesforce_field() -> None:
    deal, company, products = bundle_to_crm(_bundle(NO_START))
    with pytest.raises(MappingError) as caught:
        map_deal(deal, company, products, DEFAULT_MAPPING)
    assert caught.value.field == "Billing_Start_Date__c"
    assert "missing" in str(caught.value)


def test_an_opportunity_without_line_items_is_an_error_not_an_empty_contract() -> None:
    opp = copy.deepcopy(NO_START)
    opp["Billing_Start_Date__c"] = "2026-04-01"
    deal, company, products = bundle_to_crm(_bundle(opp))
    with pytest.raises(MappingError) as caught:
        map_deal(deal, company, products, DEFAULT_MAPPING)
    assert caught.value.field == "OpportunityLineItems"


def test_line_errors_name_the_line_item_field() -> None:
    opp = copy.deepcopy(WON)
    opp["OpportunityLineItems"]["records"][1]["Quantity"] = Decimal(-10)
    deal, company, products = bundle_to_crm(_bundle(opp))
    with pytest.raises(MappingError) as caught:
        map_deal(deal, company, products, DEFAULT_MAPPING)
    assert caught.value.field == "OpportunityLineItem.Quantity"
    assert "00kR000000Ln1AbIAJ" in str(caught.value)


def test_amount_must_match_the_line_items() -> None:
    opp = copy.deepcopy(WON)
    opp["Amount"] = Decimal("1605.01")
    deal, company, products = bundle_to_crm(_bundle(opp))
    with pytest.raises(MappingError) as caught:
        map_deal(deal, company, products, DEFAULT_MAPPING)
    assert caught.value.field == "Amount"


def test_custom_field_names_are_configuration() -> None:
    fields = SalesforceFields(start_date="Contract_Start__c", billing_cycle="Invoice_Frequency__c")
    opp = copy.deepcopy(WON)
    opp["Contract_Start__c"] = opp.pop("Billing_Start_Date__c")
    opp["Invoice_Frequency__c"] = "annually"
    opp["Billing_Cycle__c"] = "monthly"  # no longer the configured field: ignored
    deal, company, products = bundle_to_crm(_bundle(opp), fields=fields)
    contract = map_deal(deal, company, products, DEFAULT_MAPPING).contract
    assert contract.contract_start_date == date(2026, 2, 1)
    assert (contract.cycle_length, contract.cycle_unit) == (1, "year")
    assert "Contract_Start__c" in fields.columns()["Opportunity"]


def test_only_closed_won_counts_as_won() -> None:
    opp = copy.deepcopy(WON)
    opp["StageName"] = "Closed Lost"
    deal, _, _ = bundle_to_crm(_bundle(opp))
    assert not is_won(deal, DEFAULT_MAPPING)


def test_a_sync_wide_cache_reads_each_product_version_once() -> None:
    cache: dict[object, object] = {}
    _, _, first = bundle_to_crm(_bundle(WON), cache)
    _, _, second = bundle_to_crm(_bundle(copy.deepcopy(WON)), cache)
    assert all(first[pid] is second[pid] for pid in first) and len(cache) == 3


def test_an_account_name_longer_than_the_store_keeps_is_refused_naming_the_field() -> None:
    opp = copy.deepcopy(WON)
    opp["Account"]["Name"] = "N" * 301
    deal, company, products = bundle_to_crm(_bundle(opp))
    with pytest.raises(MappingError) as error:
        map_deal(deal, company, products, DEFAULT_MAPPING)
    assert error.value.field == "Account.Name" and "at most 300 characters" in str(error.value)


def test_a_products_revenue_recognition_comes_from_product2_and_is_checked() -> None:
    deal, company, products = bundle_to_crm(_bundle(WON))
    by_ref = {p.product_ref: p for p in map_deal(deal, company, products, DEFAULT_MAPPING).products}
    assert (by_ref["API-CALLS"].recognition, by_ref["PLATFORM"].recognition) == ("usage", None)

    opp = copy.deepcopy(WON)
    broken = {
        pid: dict(p, Revenue_Recognition__c="usage") if p["ProductCode"] == "PLATFORM" else p
        for pid, p in PRODUCTS.items()
    }
    lines = (opp["OpportunityLineItems"] or {}).get("records", [])
    used = {line["Product2Id"] for line in lines}
    bundle = DealBundle(opp, lines, opp["Account"], {pid: p for pid, p in broken.items() if pid in used})
    deal, company, products = bundle_to_crm(bundle)
    with pytest.raises(MappingError) as err:
        map_deal(deal, company, products, DEFAULT_MAPPING)
    assert err.value.field == "Product2.Revenue_Recognition__c"
    assert "does not suit a recurring charge" in str(err.value)
