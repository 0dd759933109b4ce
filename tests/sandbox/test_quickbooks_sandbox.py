"""The QuickBooks sandbox behaves as Intuit documents: paging, batch limit, requestid, token rotation, CDC, webhooks.

These tests speak plain HTTP (requests) to the sandbox, the way any client would, with a clock the
test moves forward instead of sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from fastapi import FastAPI, Request

from billbridge.sandbox.demo_world import generate
from billbridge.sandbox.quickbooks import QboCompany, RunningQuickBooks, TokenPolicy, start_quickbooks
from billbridge.sandbox.quickbooks.limits import QboLimits, Throttle
from billbridge.sandbox.server import SandboxServer
from tests.conftest import require_contracts

START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Api:
    qb: RunningQuickBooks
    clock: Clock
    http: requests.Session
    access_token: str = ""

    def token(self, refresh_token: str) -> requests.Response:
        return self.http.post(
            f"{self.qb.base_url}/oauth2/v1/tokens/bearer",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=(self.qb.client_id, self.qb.client_secret),
        )

    def call(self, method: str, endpoint: str, body: Any = None, **params: str) -> requests.Response:
        url = f"{self.qb.api_url_v3}/company/{self.qb.realm_id}/{endpoint}"
        headers = {"Authorization": f"Bearer {self.access_token}", "Accept": "application/json"}
        data = body if isinstance(body, str) else (None if body is None else json.dumps(body))
        return self.http.request(method, url, data=data, params={"minorversion": "75", **params}, headers=headers)

    def query(self, text: str) -> requests.Response:
        return self.call("POST", "query", text)


@pytest.fixture
def api() -> Iterator[Api]:
    clock = Clock()
    company = QboCompany(clock=clock, tokens=TokenPolicy(access_seconds=3600, grace_seconds=120))
    qb = start_quickbooks(company=company, limits=None)  # the rate limits have their own tests below
    http = requests.Session()
    http.trust_env, http.verify = False, str(qb.ca_bundle)
    client = Api(qb, clock, http)
    client.access_token = client.token(qb.refresh_token).json()["access_token"]
    yield client
    http.close()
    qb.stop()


def fault_code(response: requests.Response) -> str:
    return str(response.json()["Fault"]["Error"][0]["code"])


def make_customer(api: Api, name: str, currency: str = "USD") -> dict[str, Any]:
    response = api.call("POST", "customer", {"DisplayName": name, "CurrencyRef": {"value": currency}})
    assert response.status_code == 200, response.text
    return dict(response.json()["Customer"])


def make_item(api: Api, name: str = "SEATS") -> dict[str, Any]:
    response = api.call("POST", "item", {"Name": name, "Type": "Service", "IncomeAccountRef": {"value": "1"}})
    assert response.status_code == 200, response.text
    return dict(response.json()["Item"])


def invoice_body(customer: str, item: str, number: str, *amounts: str) -> dict[str, Any]:
    lines = [
        {"DetailType": "SalesItemLineDetail", "Amount": a, "SalesItemLineDetail": {"ItemRef": {"value": item}}}
        for a in amounts
    ]
    return {"DocNumber": number, "CustomerRef": {"value": customer}, "CurrencyRef": {"value": "USD"}, "Line": lines}


def test_discovery_document_points_at_the_sandbox(api: Api) -> None:
    doc = api.http.get(api.qb.discovery_url).json()
    assert doc["token_endpoint"] == f"{api.qb.base_url}/oauth2/v1/tokens/bearer"


def test_query_pages_with_startposition_and_maxresults(api: Api) -> None:
    for n in range(7):
        make_customer(api, f"Customer {n}")
    pages = [
        api.query(f"SELECT * FROM Customer ORDERBY DisplayName STARTPOSITION {s} MAXRESULTS 3").json()["QueryResponse"]
        for s in (1, 4, 7, 10)
    ]
    assert [len(p.get("Customer", [])) for p in pages] == [3, 3, 1, 0]
    assert [c["DisplayName"] for p in pages for c in p.get("Customer", [])] == [f"Customer {n}" for n in range(7)]
    assert pages[1]["startPosition"] == 4 and pages[1]["maxResults"] == 3
    assert pages[3] == {}  # nothing matched: no entity key at all, as QuickBooks answers
    picked = api.query("SELECT * FROM Customer WHERE DisplayName IN ('Customer 2', 'Customer 5')").json()[
        "QueryResponse"
    ]
    assert sorted(c["DisplayName"] for c in picked["Customer"]) == ["Customer 2", "Customer 5"]
    assert api.query("select count(*) from Customer").json()["QueryResponse"] == {"totalCount": 7}


def test_query_outside_the_supported_subset_is_a_parser_fault(api: Api) -> None:
    response = api.query("SELECT * FROM Customer WHERE DisplayName LIKE 'Cust%'")
    assert response.status_code == 400
    assert fault_code(response) == "4000"
    assert fault_code(api.query("SELECT * FROM Customer MAXRESULTS 1001")) == "4000"


def test_projections_and_unfilterable_properties_are_refused_as_intuit_documents(api: Api) -> None:
    """Issue 19 item 6: Intuit's "Data queries" page: projections are not supported, and only an
    entity's filterable properties may be filtered or sorted on; anything else is a 400 (4001)."""
    make_customer(api, "Filter Me")
    for text in (
        "SELECT Id, DisplayName FROM Customer",
        "SELECT * FROM Customer WHERE Notes = 'x'",
        "SELECT * FROM Payment WHERE PrivateNote = 'x'",
        "SELECT * FROM Payment WHERE DocNumber = '1'",  # the XSD: "Filter support not provided for Payment"
        "SELECT * FROM Invoice ORDERBY PrivateNote",
        "SELECT * FROM Invoice WHERE Line = 'x'",
    ):
        refused = api.query(text)
        assert (refused.status_code, fault_code(refused)) == (400, "4001"), text
    for text in (
        "SELECT * FROM Customer WHERE DisplayName = 'Filter Me' AND Active IN (true, false)",
        "SELECT * FROM Payment WHERE CustomerRef IN ('1') ORDERBY MetaData.LastUpdatedTime",
        "SELECT * FROM Invoice WHERE DocNumber IN ('A') AND TxnDate >= '2026-01-01'",
        "SELECT COUNT(*) FROM Item WHERE Name = 'SEATS'",
    ):
        assert api.query(text).status_code == 200, text


def test_every_property_intuits_xsd_calls_filterable_in_qbo_is_filterable() -> None:
    """The sandbox's table of filterable properties holds every element Intuit's XSD annotates
    "Filterable: ALL" or "Filterable: QBO" for the entities it serves (inherited ones included), but
    Payment's DocNumber, which the same annotation says has no filter support for Payment."""
    from billbridge.sandbox.quickbooks.query import FILTERABLE
    from tests.qbo_xsd import filterable_in_qbo

    require_contracts()
    assert filterable_in_qbo("Invoice") >= {"DocNumber", "TxnDate", "MetaData.LastUpdatedTime"}  # it reads them
    for entity, allowed in FILTERABLE.items():
        missing = filterable_in_qbo(entity) - allowed - ({"DocNumber"} if entity == "Payment" else set())
        assert not missing, f"{entity}: {sorted(missing)}"


def test_quoted_names_round_trip_through_a_query(api: Api) -> None:
    make_customer(api, "O'Brien & Sons")
    found = api.query("SELECT * FROM Customer WHERE DisplayName = 'O\\'Brien & Sons'").json()["QueryResponse"]
    assert [c["DisplayName"] for c in found["Customer"]] == ["O'Brien & Sons"]


def test_batch_answers_each_bid_and_refuses_more_than_30(api: Api) -> None:
    customer, item = make_customer(api, "Batch Co"), make_item(api)
    items = [
        {
            "bId": f"b{n}",
            "operation": "create",
            "Invoice": invoice_body(customer["Id"], item["Id"], f"INV-{n}", "10.00"),
        }
        for n in range(31)
    ]
    too_many = api.call("POST", "batch", {"BatchItemRequest": items})
    assert too_many.status_code == 400
    assert api.query("SELECT COUNT(*) FROM Invoice").json()["QueryResponse"]["totalCount"] == 0
    items[29]["Invoice"]["CustomerRef"] = {"value": "999"}  # one bad operation fails alone
    answer = api.call("POST", "batch", {"BatchItemRequest": items[:30]}).json()["BatchItemResponse"]
    assert [a["bId"] for a in answer] == [f"b{n}" for n in range(30)]
    assert fault_code_of(answer[29]) == "2500"
    assert all("Invoice" in a for a in answer[:29])
    assert api.query("SELECT COUNT(*) FROM Invoice").json()["QueryResponse"]["totalCount"] == 29


def fault_code_of(answer: dict[str, Any]) -> str:
    return str(answer["Fault"]["Error"][0]["code"])


def test_requestid_replays_the_first_answer(api: Api) -> None:
    first = api.call("POST", "customer", {"DisplayName": "Once"}, requestid="req-1")
    again = api.call("POST", "customer", {"DisplayName": "Once, edited"}, requestid="req-1")
    assert again.json()["Customer"] == first.json()["Customer"]
    assert api.query("SELECT COUNT(*) FROM Customer").json()["QueryResponse"]["totalCount"] == 1
    fresh = api.call("POST", "customer", {"DisplayName": "Once"}, requestid="req-2")
    assert fault_code(fresh) == "6240"  # a new request: the duplicate name is refused


def test_amounts_are_exact_decimal_numbers(api: Api) -> None:
    customer, item = make_customer(api, "Exact"), make_item(api)
    response = api.call("POST", "invoice", invoice_body(customer["Id"], item["Id"], "EX-1", "0.10", "0.20"))
    assert '"TotalAmt": 0.30' in response.text
    assert response.json(parse_float=Decimal)["Invoice"]["TotalAmt"] == Decimal("0.30")
    wrong = invoice_body(customer["Id"], item["Id"], "EX-2", "10.00")
    wrong["Line"][0]["SalesItemLineDetail"] |= {"Qty": "3", "UnitPrice": "3.33"}
    assert fault_code(api.call("POST", "invoice", wrong)) == "6070"


def test_sparse_update_needs_the_current_sync_token(api: Api) -> None:
    customer = make_customer(api, "Sparse")
    updated = api.call(
        "POST", "customer", {"Id": customer["Id"], "SyncToken": "0", "sparse": True, "CompanyName": "Sparse Ltd"}
    ).json()["Customer"]
    assert (updated["SyncToken"], updated["DisplayName"], updated["CompanyName"]) == ("1", "Sparse", "Sparse Ltd")
    stale = api.call(
        "POST", "customer", {"Id": customer["Id"], "SyncToken": "0", "sparse": True, "CompanyName": "Late"}
    )
    assert fault_code(stale) == "5010"


def test_refresh_tokens_rotate_and_the_old_one_dies_after_the_grace_period(api: Api) -> None:
    first = api.token(api.qb.refresh_token).json()  # the fixture already spent the initial token once
    second = api.token(first["refresh_token"]).json()
    assert first["refresh_token"] != second["refresh_token"] != api.qb.refresh_token
    api.clock.now += 60  # within the grace period the superseded token still works
    assert api.token(first["refresh_token"]).status_code == 200
    api.clock.now += 61
    late = api.token(first["refresh_token"])
    assert (late.status_code, late.json()) == (400, {"error": "invalid_grant"})
    assert api.token(second["refresh_token"]).status_code == 200  # the newest one is still good
    bad_client = api.http.post(
        f"{api.qb.base_url}/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
        auth=("x", "y"),
    )
    assert bad_client.status_code == 401


def test_access_tokens_expire(api: Api) -> None:
    assert api.query("SELECT COUNT(*) FROM Customer").status_code == 200
    api.clock.now += 3600
    expired = api.query("SELECT COUNT(*) FROM Customer")
    assert expired.status_code == 401
    fault = expired.json()["fault"]  # Intuit's 401: lowercase ``fault``, not the ``Fault`` of other errors
    assert (fault["type"], fault["error"][0]["code"]) == ("AUTHENTICATION", "3200")


def test_change_data_capture_lists_what_changed_since(api: Api) -> None:
    customer, item = make_customer(api, "CDC"), make_item(api)
    old = api.call("POST", "invoice", invoice_body(customer["Id"], item["Id"], "OLD-1", "5.00")).json()["Invoice"]
    api.clock.now += 3600 - 1
    since = datetime.fromtimestamp(api.clock.now, UTC)
    new = api.call("POST", "invoice", invoice_body(customer["Id"], item["Id"], "NEW-1", "7.00")).json()["Invoice"]
    api.qb.company.receive_payment({old["Id"]: Decimal("5.00")})  # paying touches the old invoice's balance
    answer = api.call("GET", "cdc", entities="Payment,Invoice", changedSince=since.isoformat()).json()
    responses = answer["CDCResponse"][0]["QueryResponse"]
    assert [p["TotalAmt"] for p in responses[0]["Payment"]] == [5.0]
    assert sorted(i["DocNumber"] for i in responses[1]["Invoice"]) == ["NEW-1", "OLD-1"]
    assert {i["Id"]: i["Balance"] for i in responses[1]["Invoice"]} == {old["Id"]: 0, new["Id"]: 7}
    too_old = api.call("GET", "cdc", entities="Payment", changedSince=(since - timedelta(days=31)).isoformat())
    assert too_old.status_code == 400


def test_a_deleted_payment_is_gone_from_queries_and_a_tombstone_in_change_data_capture(api: Api) -> None:
    customer, item = make_customer(api, "Deleted"), make_item(api)
    invoice = api.call("POST", "invoice", invoice_body(customer["Id"], item["Id"], "DEL-1", "5.00")).json()["Invoice"]
    payment = api.qb.company.receive_payment({invoice["Id"]: Decimal("5.00")})
    since = datetime.fromtimestamp(api.clock.now, UTC)
    stale = api.call("POST", "payment", {"Id": payment["Id"], "SyncToken": "7"}, operation="delete")
    assert stale.status_code == 400
    gone = api.call("POST", "payment", {"Id": payment["Id"], "SyncToken": "0"}, operation="delete", requestid="d1")
    assert gone.json()["Payment"] == {"domain": "QBO", "status": "Deleted", "Id": payment["Id"]}
    again = api.call("POST", "payment", {"Id": payment["Id"], "SyncToken": "0"}, operation="delete", requestid="d1")
    assert again.json()["Payment"] == gone.json()["Payment"]  # the first answer, replayed
    assert api.query(f"SELECT * FROM Payment WHERE Id = '{payment['Id']}'").json()["QueryResponse"] == {}
    assert api.call("GET", f"invoice/{invoice['Id']}").json()["Invoice"]["Balance"] == 5  # open again
    answer = api.call("GET", "cdc", entities="Payment", changedSince=since.isoformat()).json()
    (tombstone,) = answer["CDCResponse"][0]["QueryResponse"][0]["Payment"]
    assert (tombstone["Id"], tombstone["status"]) == (payment["Id"], "Deleted")


def test_webhooks_are_signed_with_the_verifier_token(api: Api) -> None:
    received: list[tuple[bytes, str]] = []
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> dict[str, str]:
        received.append((await request.body(), request.headers["intuit-signature"]))
        return {}

    with SandboxServer(receiver, name="hook") as server:
        api.qb.company.webhook.url = f"{server.url}/hook"
        customer, item = make_customer(api, "Hooked"), make_item(api)
        invoice = api.call("POST", "invoice", invoice_body(customer["Id"], item["Id"], "WH-1", "9.00")).json()[
            "Invoice"
        ]
        payment = api.qb.company.receive_payment({invoice["Id"]: Decimal("9.00")})
        api.qb.company.webhook.flush()  # sent from the webhook's queue, as Intuit sends them
    payload, signature = received[-1]
    expected = base64.b64encode(hmac.new(api.qb.webhook_verifier.encode(), payload, hashlib.sha256).digest()).decode()
    assert signature == expected
    # Intuit's current format: a JSON array of CloudEvents, one per change.
    (event,) = json.loads(payload)
    assert event | {"id": None, "time": None, "source": None} == {
        "specversion": "1.0",
        "id": None,
        "source": None,
        "type": "qbo.payment.created.v1",
        "datacontenttype": "application/json",
        "time": None,
        "intuitentityid": payment["Id"],
        "intuitaccountid": api.qb.realm_id,
        "data": {},
    }
    assert event["time"].endswith("Z") and event["source"].startswith("intuit.")
    assert [json.loads(p)[0]["type"] for p, _ in received] == [
        "qbo.customer.created.v1",
        "qbo.item.created.v1",
        "qbo.invoice.created.v1",
        "qbo.payment.created.v1",
    ]
    # The legacy eventNotifications format, for an app that still receives it.
    api.qb.company.webhook.format = "legacy"
    legacy = json.loads(api.qb.company.webhook_payload([("Payment", payment["Id"], "Create", event["time"])]))
    assert legacy["eventNotifications"][0]["realmId"] == api.qb.realm_id
    assert legacy["eventNotifications"][0]["dataChangeEvent"]["entities"] == [
        {"name": "Payment", "id": payment["Id"], "operation": "Create", "lastUpdated": event["time"]}
    ]


def test_a_seeded_sandbox_has_the_price_book_as_service_items() -> None:
    world = generate(deals=6)
    qb = start_quickbooks(world=world, webhook_url="http://127.0.0.1:9/never")
    try:
        items = {i["Name"]: i for i in qb.company.all("Item")}
        assert set(items) == set(world.products)
        assert all(i["Type"] == "Service" and i["IncomeAccountRef"]["value"] == "1" for i in items.values())
        assert qb.refresh_token in qb.company.refresh_tokens and qb.webhook_verifier
        assert qb.discovery_url.startswith("https://localhost:")
    finally:
        qb.stop()


def test_journal_entries_balance_on_existing_accounts_and_read_back_as_intuits_xsd_says(api: Api) -> None:
    from datetime import date

    from billbridge.mapping.journal import AccountMapping, PeriodRevenue, journal_entry_payload
    from tests.qbo_xsd import assert_valid

    ids = {}
    for name, kind in (
        ("Deferred Revenue", "Other Current Liability"),
        ("Unbilled Receivables", "Other Current Asset"),
    ):
        made = api.call("POST", "account", {"Name": name, "AccountType": kind})
        assert made.status_code == 200, made.text
        ids[name] = made.json()["Account"]["Id"]
    accounts = AccountMapping(
        revenue="1", deferred_revenue=ids["Deferred Revenue"], contract_asset=ids["Unbilled Receivables"]
    )
    period = PeriodRevenue(
        "us-inc",
        "USD",
        date(2026, 11, 1),
        {("platform", "ratable"): Decimal("101.92")},
        Decimal("90.00"),
        Decimal("11.92"),
    )
    payload = journal_entry_payload(period, accounts)
    assert payload is not None
    created = api.call("POST", "journalentry", payload, requestid="revenue-us-inc-USD-2026-11")
    assert created.status_code == 200, created.text
    entry = created.json(parse_float=Decimal)["JournalEntry"]
    assert (entry["TotalAmt"], entry["DocNumber"], entry["TxnDate"]) == (
        Decimal("101.92"),
        "REV202611-USD-US-INC",
        "2026-11-30",
    )
    assert_valid("JournalEntry", entry)  # what QuickBooks answers is an entity of its own schema too
    again = api.call("POST", "journalentry", payload, requestid="revenue-us-inc-USD-2026-11")
    assert again.json()["JournalEntry"]["Id"] == entry["Id"]  # the same request: the first answer, no second entry
    assert api.call("GET", f"journalentry/{entry['Id']}").json()["JournalEntry"]["Id"] == entry["Id"]
    found = api.query("SELECT * FROM JournalEntry WHERE DocNumber = 'REV202611-USD-US-INC'").json()["QueryResponse"]
    assert [e["Id"] for e in found["JournalEntry"]] == [entry["Id"]]

    unbalanced = json.loads(json.dumps(payload))
    unbalanced["Line"][0]["Amount"] = "91.00"
    assert fault_code(api.call("POST", "journalentry", unbalanced)) == "6000"
    nowhere = json.loads(json.dumps(payload))
    nowhere["Line"][0]["JournalEntryLineDetail"]["AccountRef"] = {"value": "999"}
    assert fault_code(api.call("POST", "journalentry", nowhere)) == "2500"


def test_a_journal_entry_is_deleted_with_its_id_and_sync_token_alone_or_in_a_batch(api: Api) -> None:
    """Intuit's JournalEntry delete: ``operation=delete`` with a body of Id and SyncToken (a stale token is
    5010, a missing one 2020); the answer is the tombstone, status "Deleted". A batch item takes
    ``operation: delete`` the same way (the batch's OperationEnum in IntuitRestServiceDef.xsd)."""

    def entry(number: str) -> dict[str, Any]:
        line = {"DetailType": "JournalEntryLineDetail", "Amount": "10.00"}
        body = {
            "DocNumber": number,
            "Line": [
                {**line, "JournalEntryLineDetail": {"PostingType": "Debit", "AccountRef": {"value": "1"}}},
                {**line, "JournalEntryLineDetail": {"PostingType": "Credit", "AccountRef": {"value": "1"}}},
            ],
        }
        made = api.call("POST", "journalentry", body)
        assert made.status_code == 200, made.text
        return dict(made.json()["JournalEntry"])

    one, two = entry("JE-1"), entry("JE-2")
    assert fault_code(api.call("POST", "journalentry", {"Id": one["Id"]}, operation="delete")) == "2020"
    stale = api.call("POST", "journalentry", {"Id": one["Id"], "SyncToken": "3"}, operation="delete")
    assert fault_code(stale) == "5010"
    gone = api.call("POST", "journalentry", {"Id": one["Id"], "SyncToken": "0"}, operation="delete", requestid="j1")
    assert gone.json()["JournalEntry"] == {"domain": "QBO", "status": "Deleted", "Id": one["Id"]}
    assert api.call("GET", f"journalentry/{one['Id']}").status_code == 400  # object not found

    batch = {
        "BatchItemRequest": [
            {"bId": "d1", "operation": "delete", "JournalEntry": {"Id": two["Id"], "SyncToken": "0"}},
            {"bId": "d2", "operation": "delete", "JournalEntry": {"Id": one["Id"], "SyncToken": "0"}},
        ]
    }
    answers = {a["bId"]: a for a in api.call("POST", "batch", batch).json()["BatchItemResponse"]}
    assert answers["d1"]["JournalEntry"] == {"domain": "QBO", "status": "Deleted", "Id": two["Id"]}
    assert answers["d2"]["Fault"]["Error"][0]["code"] == "610"  # deleted already: not found
    assert api.query("SELECT * FROM JournalEntry").json()["QueryResponse"] == {}


def test_a_foreign_currency_journal_entry_needs_multicurrency_and_its_exchange_rate(api: Api) -> None:
    """A JournalEntry in another currency than the home one: refused without multicurrency (6000); with it,
    ExchangeRate (home units per foreign unit, Finance.xsd) is required and HomeTotalAmt is TotalAmt at that
    rate. QuickBooks' own rates are read with GET /exchangerate (the newest on or before asofdate)."""
    from tests.qbo_xsd import assert_valid

    line = {"DetailType": "JournalEntryLineDetail", "Amount": "120.500"}
    body: dict[str, Any] = {
        "CurrencyRef": {"value": "EUR"},
        "Line": [
            {**line, "JournalEntryLineDetail": {"PostingType": "Debit", "AccountRef": {"value": "1"}}},
            {**line, "JournalEntryLineDetail": {"PostingType": "Credit", "AccountRef": {"value": "1"}}},
        ],
    }
    assert fault_code(api.call("POST", "journalentry", body)) == "6000"
    assert api.call("GET", "preferences").json()["Preferences"]["CurrencyPrefs"] == {
        "MultiCurrencyEnabled": False,
        "HomeCurrency": {"value": "USD"},
    }
    assert fault_code(api.call("GET", "exchangerate", sourcecurrencycode="EUR")) == "6000"

    api.qb.company.multicurrency = True
    assert fault_code(api.call("POST", "journalentry", body)) == "2020"  # no ExchangeRate
    assert fault_code(api.call("POST", "journalentry", {**body, "ExchangeRate": "0"})) == "6000"
    assert fault_code(api.call("GET", "exchangerate", sourcecurrencycode="EUR", asofdate="2026-01-31")) == "610"
    api.qb.company.set_exchange_rate("EUR", "2026-01-15", Decimal("1.0825"))
    api.qb.company.set_exchange_rate("EUR", "2026-02-01", Decimal("1.1000"))
    rate = api.call("GET", "exchangerate", sourcecurrencycode="EUR", asofdate="2026-01-31").json(parse_float=Decimal)
    assert {k: rate["ExchangeRate"][k] for k in ("SourceCurrencyCode", "TargetCurrencyCode", "Rate", "AsOfDate")} == {
        "SourceCurrencyCode": "EUR",
        "TargetCurrencyCode": "USD",
        "Rate": Decimal("1.0825"),
        "AsOfDate": "2026-01-15",
    }
    assert_valid("ExchangeRate", rate["ExchangeRate"])
    made = api.call("POST", "journalentry", {**body, "ExchangeRate": "1.0825"})
    assert made.status_code == 200, made.text
    entry = made.json(parse_float=Decimal)["JournalEntry"]
    # 120.500 EUR x 1.0825 = 130.441... USD
    assert (entry["TotalAmt"], entry["ExchangeRate"], entry["HomeTotalAmt"]) == (
        Decimal("120.500"),
        Decimal("1.0825"),
        Decimal("130.44"),
    )
    assert_valid("JournalEntry", entry)
    home = {**body, "CurrencyRef": {"value": "USD"}, "ExchangeRate": "1.5"}
    assert fault_code(api.call("POST", "journalentry", home)) == "6000"  # the home currency's rate is 1


def test_unknown_properties_are_refused_with_2010_as_intuits_xsd_says(api: Api) -> None:
    """Issue 19: entities are checked against Intuit's XSDs; a property the schema lacks, at any depth, is 2010."""
    require_contracts()
    top = api.call("POST", "customer", {"DisplayName": "Initech", "Nickname": "ini"})
    assert top.status_code == 400 and fault_code(top) == "2010"
    assert "Customer.Nickname" in top.json()["Fault"]["Error"][0]["Detail"]
    customer = make_customer(api, "Initech")
    item = make_item(api)
    body = invoice_body(customer["Id"], item["Id"], "INV-1", "10.00")
    body["Line"][0]["SalesItemLineDetail"]["Colour"] = "blue"
    nested = api.call("POST", "invoice", body)
    assert nested.status_code == 400 and fault_code(nested) == "2010"
    assert "Invoice.Line[0].SalesItemLineDetail.Colour" in nested.json()["Fault"]["Error"][0]["Detail"]
    del body["Line"][0]["SalesItemLineDetail"]["Colour"]
    assert api.call("POST", "invoice", body).status_code == 200


def test_a_taken_doc_number_is_6140_and_doc_numbers_are_at_most_21_characters(api: Api) -> None:
    """Issue 19 item 3: duplicate DocNumber is 6140 "Duplicate Document Number Error" (with the company's
    duplicate-number checking on), not the name error 6240; Intuit's XSD caps DocNumber at 21."""
    customer, item = make_customer(api, "Hooli"), make_item(api)
    assert api.call("POST", "invoice", invoice_body(customer["Id"], item["Id"], "INV-7", "5.00")).status_code == 200
    again = api.call("POST", "invoice", invoice_body(customer["Id"], item["Id"], "INV-7", "5.00"))
    assert again.status_code == 400 and fault_code(again) == "6140"
    assert again.json()["Fault"]["Error"][0]["Message"] == "Duplicate Document Number Error"
    long = api.call("POST", "invoice", invoice_body(customer["Id"], item["Id"], "X" * 22, "5.00"))
    assert long.status_code == 400 and fault_code(long) == "2050"
    assert api.call("POST", "invoice", invoice_body(customer["Id"], item["Id"], "X" * 21, "5.00")).status_code == 200
    api.qb.company.duplicate_doc_number_check = False
    assert api.call("POST", "invoice", invoice_body(customer["Id"], item["Id"], "INV-7", "5.00")).status_code == 200


def test_change_data_capture_answers_at_most_1000_objects_per_entity(api: Api) -> None:
    """Issue 19 item 5: Intuit's cap, oldest changes first; the rest need another call."""
    since = (api.qb.company.now() - timedelta(seconds=1)).isoformat()
    with api.qb.company.lock:
        for n in range(1, 1101):
            stamp = api.qb.company._stamp()
            api.qb.company.deleted["Payment"].append(
                {"domain": "QBO", "status": "Deleted", "Id": str(n), "MetaData": {"LastUpdatedTime": stamp}}
            )
    answer = api.call("GET", "cdc", entities="Payment", changedSince=since).json()
    rows = answer["CDCResponse"][0]["QueryResponse"][0]["Payment"]
    assert len(rows) == 1000 and rows[0]["Id"] == "1" and rows[-1]["Id"] == "1000"


def test_a_403_is_intuits_xml_intuitresponse_fault(api: Api) -> None:
    """Issue 19 item 4: a realm the token is not for answers 403 in XML, whatever Accept asked."""
    url = f"{api.qb.api_url_v3}/company/123/query"
    answer = api.http.post(url, data="SELECT * FROM Customer", headers={"Authorization": f"Bearer {api.access_token}"})
    assert answer.status_code == 403 and answer.headers["content-type"].startswith("application/xml")
    assert answer.text.startswith("<?xml") and '<Fault type="AUTHORIZATION"><Error code="3100">' in answer.text


def test_display_names_are_unique_across_customers_vendors_and_employees_inactive_included(api: Api) -> None:
    """Issue 19 item 1: one DisplayName namespace for Customer, Vendor and Employee, inactive ones too,
    while ``SELECT * FROM Customer`` lists active customers only."""
    assert api.call("POST", "vendor", {"DisplayName": "Acme"}).status_code == 200
    assert api.call("POST", "employee", {"DisplayName": "Jo Bloggs"}).status_code == 200
    assert api.call("POST", "customer", {"DisplayName": "Gone Ltd", "Active": False}).status_code == 200
    for name in ("Acme", "Jo Bloggs", "Gone Ltd"):
        refused = api.call("POST", "customer", {"DisplayName": name})
        assert refused.status_code == 400 and fault_code(refused) == "6240", name
    assert api.call("POST", "vendor", {"DisplayName": "Gone Ltd"}).status_code == 400
    listed = api.query("SELECT * FROM Customer").json()["QueryResponse"].get("Customer", [])
    assert "Gone Ltd" not in {c["DisplayName"] for c in listed}
    everyone = api.query("SELECT * FROM Customer WHERE Active IN (true, false)").json()["QueryResponse"]["Customer"]
    assert "Gone Ltd" in {c["DisplayName"] for c in everyone}


def test_a_customer_name_with_a_colon_is_refused(api: Api) -> None:
    """Issue 19 item 2: Intuit's XSD business rule, "The customer name must not contain a colon"."""
    refused = api.call("POST", "customer", {"DisplayName": "Globex: EMEA"})
    assert refused.status_code == 400 and fault_code(refused) == "6000"
    assert "colon" in refused.json()["Fault"]["Error"][0]["Detail"]


def test_a_partner_is_a_vendor_and_its_fees_a_bill_as_intuits_xsd_says(api: Api) -> None:
    """Issue 17: a Vendor (its DisplayName shared with customers), a Bill to it with expense lines, found by
    DocNumber, refused without a vendor, with a negative line or a number the vendor has already; a
    BillPayment reduces its balance."""
    from datetime import date

    from billbridge.billing.partner_fees import PartnerBill, StatementLine
    from billbridge.mapping.quickbooks import bill_payload, expense_account_payload, vendor_payload
    from tests.qbo_xsd import assert_valid

    bill = PartnerBill(
        7, "northwind", "Northwind Advisors", "ap@northwind.example", "USD", "2026-11", "PF-2026-11-7",
        date(2026, 12, 1), date(2026, 12, 31),
        (StatementLine("hooli", Decimal("1000.00"), Decimal("450.00")), StatementLine("initech", Decimal("10"), Decimal("2.00"))),
        Decimal("452.00"),
    )  # fmt: skip
    made = api.call("POST", "vendor", vendor_payload(bill))
    assert made.status_code == 200, made.text
    vendor = made.json(parse_float=Decimal)["Vendor"]
    assert_valid("Vendor", vendor)
    make_customer(api, "Initech LLC")
    clash = api.call("POST", "vendor", {**vendor_payload(bill), "DisplayName": "Initech LLC"})
    assert fault_code(clash) == "6240"  # DisplayName is unique across customers and vendors
    account = api.call("POST", "account", expense_account_payload("Partner fees")).json()["Account"]
    payload = bill_payload(bill, vendor_id=vendor["Id"], account_id=account["Id"])
    created = api.call("POST", "bill", payload, requestid="bill-7")
    assert created.status_code == 200, created.text
    stored = created.json(parse_float=Decimal)["Bill"]
    assert_valid("Bill", stored)
    assert (stored["TotalAmt"], stored["Balance"], stored["DueDate"]) == (
        Decimal("452.00"),
        Decimal("452.00"),
        "2026-12-31",
    )
    assert [line["Amount"] for line in stored["Line"]] == [Decimal("450.00"), Decimal("2.00")]

    def owed() -> Decimal:  # Intuit's Vendor.Balance: what the company owes the vendor, open bills less credits
        return Decimal(str(api.call("GET", f"vendor/{vendor['Id']}").json(parse_float=Decimal)["Vendor"]["Balance"]))

    assert owed() == Decimal("452.00")
    found = api.query("SELECT * FROM Bill WHERE DocNumber = 'PF-2026-11-7'").json()["QueryResponse"]["Bill"]
    assert [b["Id"] for b in found] == [stored["Id"]]
    assert fault_code(api.call("POST", "bill", payload)) == "6140"  # the vendor's number is used
    assert fault_code(api.call("POST", "bill", {**payload, "VendorRef": {"value": "999"}, "DocNumber": "X"})) == "2500"
    negative = json.loads(json.dumps(payload))
    negative["DocNumber"], negative["Line"][0]["Amount"] = "PF-other", "-1.00"
    assert fault_code(api.call("POST", "bill", negative)) == "6000"

    api.qb.company.pay_bill(stored["Id"], Decimal("400.00"))
    [payment] = api.query("SELECT * FROM BillPayment").json(parse_float=Decimal)["QueryResponse"]["BillPayment"]
    assert_valid("BillPayment", payment)
    assert api.call("GET", f"bill/{stored['Id']}").json(parse_float=Decimal)["Bill"]["Balance"] == Decimal("52.00")
    assert owed() == Decimal("52.00")  # the refused bills above added nothing

    # As QuickBooks: a bill payment has lines, its TotalAmt is their sum, and no line pays more than the
    # bill's open balance (52.00 now); an update may re-apply what the payment itself paid.
    check = {"BankAccountRef": {"value": payment["CheckPayment"]["BankAccountRef"]["value"]}}
    pay = {"VendorRef": {"value": vendor["Id"]}, "PayType": "Check", "CheckPayment": check}

    def lines(amount: str) -> list[dict[str, Any]]:
        return [{"Amount": amount, "LinkedTxn": [{"TxnId": stored["Id"], "TxnType": "Bill"}]}]

    assert fault_code(api.call("POST", "billpayment", {**pay, "TotalAmt": "10.00"})) == "2020"  # no lines
    assert fault_code(api.call("POST", "billpayment", {**pay, "TotalAmt": "60.00", "Line": lines("60.00")})) == "6000"
    assert fault_code(api.call("POST", "billpayment", {**pay, "TotalAmt": "50.00", "Line": lines("40.00")})) == "6000"
    unlinked = [{"Amount": "10.00", "LinkedTxn": []}]
    assert fault_code(api.call("POST", "billpayment", {**pay, "TotalAmt": "10.00", "Line": unlinked})) == "6000"
    assert api.call("GET", f"bill/{stored['Id']}").json(parse_float=Decimal)["Bill"]["Balance"] == Decimal("52.00")
    raised = {**payment, "TotalAmt": "452.00", "Line": lines("452.00")}
    assert api.call("POST", "billpayment", raised).status_code == 200  # its own 400.00 plus the open 52.00
    assert api.call("GET", f"bill/{stored['Id']}").json(parse_float=Decimal)["Bill"]["Balance"] == Decimal("0.00")
    assert owed() == Decimal("0.00")  # the update took back its 400.00 and paid 452.00
    credit_body = {k: v for k, v in payload.items() if k != "DueDate"}
    credit = api.call("POST", "vendorcredit", {**credit_body, "DocNumber": "VC-1"})
    assert credit.status_code == 200, credit.text
    assert owed() == Decimal("-452.00")  # a vendor credit not yet applied: the vendor owes the company


def test_intuits_2025_rate_limits_are_enforced_per_realm() -> None:
    """Issue 19 item 8: 10 requests a second per realm, and 120 batch calls a minute; the 11th request
    within a second and the 121st batch within a minute are the throttle fault (3001, 429, Retry-After)."""
    clock = Clock()
    throttle = Throttle(QboLimits(), clock=clock)
    assert [throttle.admit("1", batch=False) for _ in range(10)] == [None] * 10
    assert throttle.admit("1", batch=False) == 1
    assert throttle.admit("2", batch=False) is None  # another realm has its own window
    clock.now += 1.0
    for second in range(12):  # 10 batch calls a second for 12 seconds: the minute's 120
        assert [throttle.admit("1", batch=True) for _ in range(10)] == [None] * 10, second
        clock.now += 1.0
    assert throttle.admit("1", batch=True) == 48  # the first batch of the minute leaves the window then
    assert throttle.admit("1", batch=False) is None  # a query is not a batch call
    assert throttle.refused == 2


def test_requests_are_throttled_per_realm_and_app_and_batches_per_realm() -> None:
    """Issue 19 item 8: Intuit's 10 a second are per realm AND app (client id): a second app on the
    same realm has its own 10; the 120 batch calls a minute are the realm's, whichever app makes them."""
    clock = Clock()
    throttle = Throttle(QboLimits(requests_per_second=10, batches_per_minute=15), clock=clock)
    assert [throttle.admit("1", batch=False, app="A") for _ in range(10)] == [None] * 10
    assert throttle.admit("1", batch=False, app="A") == 1  # app A's eleventh in the second
    assert [throttle.admit("1", batch=False, app="B") for _ in range(10)] == [None] * 10  # app B: its own 10
    assert throttle.admit("1", batch=False, app="B") == 1
    clock.now += 1.0
    assert [throttle.admit("1", batch=True, app="A") for _ in range(10)] == [None] * 10
    assert [throttle.admit("1", batch=True, app="B") for _ in range(5)] == [None] * 5
    assert throttle.admit("1", batch=True, app="B") == 60  # the realm's 15 batches of the minute: B's too
    assert throttle.admit("1", batch=False, app="B") is None  # B's request window is not full


def test_two_apps_on_one_realm_each_get_their_own_ten_a_second_over_http() -> None:
    """The same keys through the HTTP layer: the token an app was issued names the app (its client id);
    the throttle's clock is held still, so "within a second" is not left to the machine's speed."""
    qb = start_quickbooks()
    assert qb.throttle is not None
    clock = Clock()
    qb.throttle.clock = clock
    other_id, other_secret, other_refresh = qb.company.connect_app()
    http = requests.Session()
    http.trust_env, http.verify = False, str(qb.ca_bundle)

    def token(client_id: str, secret: str, refresh: str) -> str:
        answer = http.post(
            f"{qb.base_url}/oauth2/v1/tokens/bearer",
            data={"grant_type": "refresh_token", "refresh_token": refresh},
            auth=(client_id, secret),
        )
        return str(answer.json()["access_token"])

    try:
        first = token(qb.client_id, qb.client_secret, qb.refresh_token)
        second = token(other_id, other_secret, other_refresh)
        stolen = http.post(  # a refresh token spends only with the app it was issued to
            f"{qb.base_url}/oauth2/v1/tokens/bearer",
            data={"grant_type": "refresh_token", "refresh_token": other_refresh},
            auth=(qb.client_id, qb.client_secret),
        )
        url = f"{qb.api_url_v3}/company/{qb.realm_id}/query"

        def ask(access: str) -> int:
            headers = {"Authorization": f"Bearer {access}", "Accept": "application/json"}
            return http.post(url, data="SELECT * FROM Item", headers=headers).status_code

        by_first = [ask(first) for _ in range(11)]
        by_second = [ask(second) for _ in range(11)]
    finally:
        http.close()
        qb.stop()
    assert stolen.status_code == 400 and stolen.json() == {"error": "invalid_grant"}
    assert by_first == [200] * 10 + [429]
    assert by_second == [200] * 10 + [429]  # not refused from the first: its own window


def test_the_sandbox_throttles_by_default_with_intuits_fault() -> None:
    qb = start_quickbooks()
    http = requests.Session()
    http.trust_env, http.verify = False, str(qb.ca_bundle)
    try:
        token = http.post(
            f"{qb.base_url}/oauth2/v1/tokens/bearer",
            data={"grant_type": "refresh_token", "refresh_token": qb.refresh_token},
            auth=(qb.client_id, qb.client_secret),
        ).json()["access_token"]
        url = f"{qb.api_url_v3}/company/{qb.realm_id}/query"
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        answers = [http.post(url, data="SELECT * FROM Item", headers=headers) for _ in range(15)]
    finally:
        http.close()
        qb.stop()
    refused = [a for a in answers if a.status_code == 429]
    assert refused, "15 queries in well under a second: some must be refused"
    assert len(answers) - len(refused) <= 10 + 10  # at most two windows' worth if the calls spanned a second
    assert refused[0].headers["Retry-After"] == "1" and fault_code(refused[0]) == "3001"


def test_the_token_answer_reports_the_hard_expiry_and_a_refresh_after_it_is_refused(api: Api) -> None:
    """Issue 19 item 7: since 2025 a refresh token chain ends at a hard expiry whatever the refreshes
    (five years from the connection); every token answer reports the seconds left in
    ``x_refresh_token_hard_expires_in``, and a refresh after it is ``invalid_grant``."""
    hard = api.qb.company.tokens.hard_seconds
    answer = api.token(api.qb.refresh_token).json()  # within the grace period of the fixture's refresh
    assert answer["x_refresh_token_hard_expires_in"] == hard
    elapsed = 0
    while elapsed + 90 * 86400 < hard:  # a refresh every 90 days keeps the rolling expiry at bay
        api.clock.now += 90 * 86400
        elapsed += 90 * 86400
        answer = api.token(answer["refresh_token"]).json()
        assert answer["x_refresh_token_hard_expires_in"] == hard - elapsed
        assert answer["x_refresh_token_expires_in"] <= answer["x_refresh_token_hard_expires_in"]
    api.clock.now += answer["x_refresh_token_hard_expires_in"] + 1
    late = api.token(answer["refresh_token"])
    assert (late.status_code, late.json()) == (400, {"error": "invalid_grant"})
