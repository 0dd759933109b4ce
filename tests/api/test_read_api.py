"""Read API: whoami, products, customers, contracts, invoices and usage reports, paged and scoped."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from tests.api.conftest import Api, event
from tests.docs import DISCOUNTED, contract, document


def all_pages(api: Api, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        response = api.get(path, limit=limit, **({"cursor": cursor} if cursor else {}), **params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"data", "has_more", "next_cursor"}
        assert len(page["data"]) <= limit
        items += page["data"]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return items
        cursor = page["next_cursor"]
    raise AssertionError("paging never ended")


def test_whoami_names_the_keys_entity(api: Api) -> None:
    body = api.get("/api/auth/whoami").json()
    assert (body["entity_ref"], body["currency"]) == ("us", "USD") and body["key_prefix"].startswith("bb_")
    assert api.get("/api/auth/whoami", token=api.kw_token).json()["entity_ref"] == "kw"
    assert api.client.get("/api/auth/whoami").status_code == 401


def test_customers_and_contracts_are_scoped_and_paged(api: Api) -> None:
    more = [contract(f"C-{i}", customer="initech" if i % 2 else "globex") for i in range(5)]
    more.append(contract("C-KW", customer="gulf", entity="kw", currency="KWD"))
    import_document(api.store, document(*more))
    assert [c["customer_ref"] for c in all_pages(api, "/api/customers", 1)] == ["globex", "initech"]
    assert [c["customer_ref"] for c in all_pages(api, "/api/customers", 5, token=api.kw_token)] == ["gulf"]
    contracts = all_pages(api, "/api/contracts", 2)
    assert sorted(c["contract_ref"] for c in contracts) == sorted(["C-USAGE", *(f"C-{i}" for i in range(5))])
    assert [c["contract_ref"] for c in all_pages(api, "/api/contracts", 2, customer_ref="initech")] == ["C-1", "C-3"]
    one = api.get("/api/contracts/C-USAGE").json()
    assert [(line["line_ref"], line["charge"]) for line in one["lines"]] == [
        ("platform", "recurring"),
        ("api", "usage"),
    ]
    assert one["lines"][0]["quantity"] == "1"
    assert api.get("/api/contracts/C-KW").status_code == 404  # another entity's contract
    assert api.get("/api/customers/gulf").status_code == 404
    assert api.get("/api/customers/globex").json()["name"] == "Globex"


def test_products_are_those_the_entity_sells(api: Api) -> None:
    us = {p["product_ref"]: p for p in all_pages(api, "/api/products", 1)}
    assert set(us) == {"platform", "seats", "api"}
    assert [p["currency"] for p in us["platform"]["prices"]] == ["USD"]
    assert us["api"]["prices"][0]["pricing"] == {"model": "per_unit", "unit_price": "0.002"}
    kw = all_pages(api, "/api/products", 10, token=api.kw_token)
    assert [(p["product_ref"], [x["currency"] for x in p["prices"]]) for p in kw] == [("platform", ["KWD"])]


def test_invoices_list_and_get_with_money_as_strings(api: Api) -> None:
    import_document(api.store, document(contract("C-KW", customer="gulf", entity="kw", currency="KWD")))
    run_billing(api.store, date(2026, 3, 1))
    invoices = all_pages(api, "/api/invoices", 1)
    assert [i["number"] for i in invoices] == ["US-INV-1", "US-INV-2", "US-INV-3"]
    assert invoices[0]["invoice_total"] == "1200.00" and isinstance(invoices[0]["amount_paid"], str)
    detail = api.get("/api/invoices/US-INV-1").json()
    assert detail["lines"][0]["billed_amount"] == "1200.00"
    assert api.get("/api/invoices/KW-INV-1").status_code == 404
    kw = api.get("/api/invoices/KW-INV-1", token=api.kw_token).json()
    assert kw["invoice_total"] == "365.125"
    assert api.get("/api/invoices", status="sent").json()["data"] == []


def test_usage_reports_group_exactly_and_page(api: Api) -> None:
    events = [
        event(timestamp="2026-01-15T10:00:00Z", quantity="0.1"),
        event(timestamp="2026-01-15T11:00:00Z", quantity="0.2"),
        event(timestamp="2026-01-16T11:00:00Z", quantity=3),
        event(timestamp="2026-02-01T00:00:00Z", quantity=4, usage_product_ref="seats"),
        event(timestamp="2026-02-01T00:00:00Z", quantity=5, customer_ref="initech"),
    ]
    assert api.post("/api/usage/events/batch", {"events": events}).json()["accepted"] == 5
    api.post(
        "/api/usage/event",
        event(customer_ref="gulf", validations={"currency": "KWD", "entity_ref": "kw"}),
        token=api.kw_token,
    )

    days = all_pages(api, "/api/usage/reports", 2, group_by="day")
    assert [(d["group"], d["quantity"], d["events"]) for d in days] == [
        ("2026-01-15", "0.3", 2),
        ("2026-01-16", "3", 1),
        ("2026-02-01", "9", 2),
    ]
    months = api.get("/api/usage/reports", group_by="month", customer_ref="globex", usage_product_ref="api").json()
    assert [(m["group"], m["quantity"]) for m in months["data"]] == [("2026-01", "3.3")]
    ranged = api.get("/api/usage/reports", group_by="customer", **{"from": "2026-01-16", "to": "2026-02-01"}).json()
    assert [(r["group"], r["quantity"]) for r in ranged["data"]] == [("globex", "7"), ("initech", "5")]
    products = api.get("/api/usage/reports", group_by="product").json()["data"]
    assert [(p["group"], p["events"]) for p in products] == [("api", 4), ("seats", 1)]
    bad = api.get("/api/usage/reports", group_by="week")
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "group_by"
    assert api.get("/api/usage/reports", cursor="garbage!").status_code == 422
    assert api.get("/api/usage/reports", **{"from": "2026-02-01", "to": "2026-01-01"}).status_code == 422


def test_invoices_show_discounts_and_money_in_minor_units(api: Api) -> None:
    """The same document as `invoices show` gives (tests/app/test_cli_invoices.py, worked by hand):
    every discount, and amounts in cents however precisely they were priced."""
    import_document(api.store, document(DISCOUNTED))
    run_billing(api.store, date(2026, 1, 15), contract_refs=["C-D"])
    [listed] = api.get("/api/invoices", contract_ref="C-D").json()["data"]
    assert (listed["subtotal"], listed["discount_total"], listed["invoice_total"], listed["amount_paid"]) == (
        "80.61",
        "11.06",
        "69.55",
        "0.00",
    )
    one = api.get(f"/api/invoices/{listed['number']}").json()
    assert [(x["quantity"], x["amount"], x["discount_amount"], x["billed_amount"]) for x in one["lines"]] == [
        ("3", "74.03", "7.40", "66.63"),
        ("6000", "6.58", "0.00", "6.58"),
        ("1", "0.00", "3.66", "-3.66"),
    ]


@pytest.mark.slow
def test_every_cursor_the_schema_allows_is_answered_with_a_page(api: Api) -> None:
    """A cursor is a position in digits (it was an opaque token the schema could not describe, so
    schema-valid cursors got a 422); past the end it is an empty page."""
    schema = api.client.get("/openapi.json").json()
    [cursor] = [p for p in schema["paths"]["/api/customers"]["get"]["parameters"] if p["name"] == "cursor"]
    assert cursor["schema"]["anyOf"][0]["pattern"] == "^[0-9]{1,18}$"
    first = api.get("/api/customers", limit=1).json()
    assert first["has_more"] and first["next_cursor"].isdigit()
    assert api.get("/api/customers", limit=1, cursor=first["next_cursor"]).json()["data"] != first["data"]
    for position in ("0", "999999999999999999"):
        for path in ("/api/customers", "/api/contracts", "/api/products", "/api/invoices", "/api/usage/reports"):
            response = api.get(path, cursor=position)
            assert response.status_code == 200, (path, response.text)
    assert api.get("/api/customers", cursor="999999999999999999").json()["data"] == []
    for bad in ("garbage!", "-1", "1" * 19):
        response = api.get("/api/customers", cursor=bad)
        assert response.status_code == 422 and response.json()["detail"][0]["field"] == "cursor"


def test_an_unknown_or_repeated_query_parameter_is_refused(api: Api) -> None:
    """``?customer=globex`` (for customer_ref) used to be ignored: every contract came back."""
    misspelt = api.get("/api/contracts", customer="globex")
    assert misspelt.status_code == 422
    assert misspelt.json()["detail"][0] == {
        "field": "customer",
        "message": "'customer' is not a query parameter of this operation",
        "code": "unknown_parameter",
    }
    twice = api.client.get("/api/contracts?customer_ref=globex&customer_ref=initech", headers=api.headers())
    assert twice.status_code == 422 and twice.json()["detail"][0]["code"] == "repeated_parameter"
    assert api.get("/api/auth/whoami", verbose="1").status_code == 422
    posted = api.client.post("/api/usage/event?dry_run=1", json=event(), headers=api.headers())
    assert posted.status_code == 422 and posted.json()["detail"][0]["field"] == "dry_run"
    assert api.get("/api/contracts", customer_ref="globex").status_code == 200


def test_a_nul_in_the_url_is_a_documented_400(api: Api) -> None:
    for url in ("/api/customers/glo%00bex", "/api/contracts?customer_ref=%00", "/api/auth/whoami?x=%00"):
        response = api.client.get(url, headers=api.headers())
        assert response.status_code == 400 and response.json()["detail"][0]["code"] == "bad_url", url
    schema = api.client.get("/openapi.json").json()
    operations = [op for item in schema["paths"].values() for op in item.values()]
    assert all("400" in op["responses"] for op in operations)
    customer = schema["paths"]["/api/customers/{customer_ref}"]["get"]["parameters"][0]
    assert customer["schema"]["pattern"] == "^[^\\x00]*$"


def test_a_batch_item_of_any_kind_is_valid_in_the_schema_and_answered_on_its_own(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()["components"]["schemas"]["BatchIn"]
    assert schema["additionalProperties"] is False
    assert {} in schema["properties"]["events"]["items"]["anyOf"]
    body = api.post("/api/usage/events/batch", {"events": [42, "x", None, event()]})
    assert body.status_code == 200
    assert [r["status"] for r in body.json()["results"]] == ["refused", "refused", "refused", "accepted"]
