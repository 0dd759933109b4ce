"""The Salesforce sandbox behaves like the REST API: paging, batch size, limits header, Get Deleted /
Updated, query errors, expired sessions. Plain HTTP over TLS here; the SDK is the connector's business."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from billbridge.sandbox.demo_world import DemoWorld, changed, generate
from billbridge.sandbox.faults import Fault
from billbridge.sandbox.salesforce import SalesforceSandbox, account_id, opportunity_id
from billbridge.sandbox.salesforce.org import format_datetime

V = "/services/data/v62.0"


class Client:
    """A bare REST client of the sandbox: a session token and GETs."""

    def __init__(self, sf: SalesforceSandbox) -> None:
        self.sf = sf
        self.http = requests.Session()
        self.http.verify, self.http.trust_env = str(sf.ca), False
        self.token = self.login()

    def login(self) -> str:
        creds = self.sf.credentials
        form = {
            "grant_type": "client_credentials",
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
        }
        response = self.http.post(f"{self.sf.url}/services/oauth2/token", data=form, timeout=10)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def get(self, path: str, headers: dict[str, str] | None = None, **params: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        return self.http.get(f"{self.sf.url}{path}", params=params, headers=headers, timeout=10)

    def query(self, soql: str, batch: int | None = None) -> requests.Response:
        headers = {"Sforce-Query-Options": f"batchSize={batch}"} if batch else None
        return self.get(f"{V}/query/", headers, q=soql)


@pytest.fixture
def world() -> DemoWorld:
    return generate(450, seed=11)


@pytest.fixture
def sandbox(world: DemoWorld) -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(world) as sf:
        yield sf


@pytest.fixture
def client(sandbox: SalesforceSandbox) -> Client:
    return Client(sandbox)


def _json(response: requests.Response) -> Any:
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)  # numbers exactly as written


def _all_pages(client: Client, soql: str, batch: int | None = None) -> list[dict[str, Any]]:
    pages = [_json(client.query(soql, batch))]
    while not pages[-1]["done"]:
        pages.append(_json(client.get(pages[-1]["nextRecordsUrl"])))
    return pages


def test_query_pages_with_next_records_url_at_the_requested_batch_size(client: Client, world: DemoWorld) -> None:
    pages = _all_pages(client, "SELECT Id FROM Opportunity ORDER BY SystemModstamp, Id", batch=200)
    assert [len(p["records"]) for p in pages] == [200, 200, 50]
    assert all(p["totalSize"] == 450 for p in pages)
    assert re.fullmatch(r"/services/data/v62\.0/query/01g\w+-200", pages[0]["nextRecordsUrl"])
    assert "nextRecordsUrl" not in pages[-1]
    ids = [r["Id"] for p in pages for r in p["records"]]
    assert sorted(ids) == sorted(opportunity_id(d.key) for d in world.live_deals)


def test_batch_size_is_2000_by_default_and_200_at_least() -> None:
    with SalesforceSandbox(generate(2050, seed=3)) as sf:
        client = Client(sf)
        default = client.query("SELECT Id FROM Opportunity").json()
        assert (len(default["records"]), default["done"]) == (2000, False)
        tiny = client.query("SELECT Id FROM Opportunity", batch=5).json()
        assert len(tiny["records"]) == 200


def test_records_carry_attributes_relationship_fields_and_child_subqueries(client: Client, world: DemoWorld) -> None:
    deal = world.live_deals[0]
    soql = (
        "SELECT Id, Amount, Account.Name, (SELECT Id, Quantity, TotalPrice FROM OpportunityLineItems) "
        "FROM Opportunity ORDER BY SystemModstamp, Id"
    )
    records = {r["Id"]: r for p in _all_pages(client, soql) for r in p["records"]}
    assert len(records) == len(world.live_deals)
    record = records[opportunity_id(deal.key)]
    assert record["attributes"] == {
        "type": "Opportunity",
        "url": f"{V}/sobjects/Opportunity/{opportunity_id(deal.key)}",
    }
    assert record["Account"]["Name"] == world.companies[deal.company_key].name
    assert record["Account"]["attributes"]["type"] == "Account"
    lines = record["OpportunityLineItems"]
    assert (lines["totalSize"], lines["done"]) == (len(deal.lines), True)
    assert sorted(x["TotalPrice"] for x in lines["records"]) == sorted(x.total for x in deal.lines)


def test_an_empty_child_relationship_is_null(client: Client, world: DemoWorld) -> None:
    with_deals = {d.company_key for d in world.live_deals}
    lonely = next(key for key in world.companies if key not in with_deals)
    records = _all_pages(client, "SELECT Id, (SELECT Id FROM Opportunities) FROM Account")[0]["records"]
    by_id = {r["Id"]: r for r in records}
    assert by_id[account_id(lonely)]["Opportunities"] is None


def test_where_on_system_modstamp_with_order_and_limit(client: Client, world: DemoWorld) -> None:
    low, high = world.now - timedelta(days=30), world.now - timedelta(days=10)
    soql = (
        f"SELECT Id, SystemModstamp FROM Opportunity WHERE SystemModstamp >= {low:%Y-%m-%dT%H:%M:%SZ} "
        f"AND SystemModstamp < {high:%Y-%m-%dT%H:%M:%SZ} ORDER BY SystemModstamp, Id"
    )
    records = [r for p in _all_pages(client, soql) for r in p["records"]]
    expected = sorted((d.modified_at, opportunity_id(d.key)) for d in world.live_deals if low <= d.modified_at < high)
    assert [r["Id"] for r in records] == [i for _, i in expected]
    assert records[0]["SystemModstamp"] == format_datetime(expected[0][0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", records[0]["SystemModstamp"])
    limited = client.query(soql.replace("ORDER BY SystemModstamp, Id", "ORDER BY SystemModstamp DESC LIMIT 3"))
    assert [r["Id"] for r in limited.json()["records"]] == [i for _, i in expected[::-1][:3]]


def test_every_response_carries_the_api_usage_and_the_limit_is_enforced() -> None:
    with SalesforceSandbox(generate(10), daily_api_limit=3) as sf:
        client = Client(sf)
        seen = [client.query("SELECT Id FROM Account").headers["Sforce-Limit-Info"] for _ in range(3)]
        assert seen == ["api-usage=1/3", "api-usage=2/3", "api-usage=3/3"]
        refused = client.query("SELECT Id FROM Account")
        assert refused.status_code == 403
        assert refused.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
        assert refused.headers["Sforce-Limit-Info"] == "api-usage=3/3"


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Opportunity WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Opportunity GROUP BY StageName", "MALFORMED_QUERY"),
        ("SELECT Id FROM Opportunity WHERE Name LIKE 'Acme%'", "MALFORMED_QUERY"),
        ("SELECT Id, Colour__c FROM Opportunity", "INVALID_FIELD"),
        ("SELECT Id FROM Lead", "INVALID_TYPE"),
    ],
)
def test_queries_outside_the_subset_fail_as_salesforce_does(client: Client, soql: str, code: str) -> None:
    response = client.query(soql)
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == code


def test_an_expired_session_answers_invalid_session_id(client: Client, sandbox: SalesforceSandbox) -> None:
    assert client.query("SELECT Id FROM Account").status_code == 200
    sandbox.org.expire_sessions()
    response = client.query("SELECT Id FROM Account")
    assert response.status_code == 401
    assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    client.token = client.login()
    assert client.query("SELECT Id FROM Account").status_code == 200


def test_sessions_expire_after_the_configured_time() -> None:
    with SalesforceSandbox(generate(5), session_seconds=0) as sf:
        response = Client(sf).query("SELECT Id FROM Account")
        assert (response.status_code, response.json()[0]["errorCode"]) == (401, "INVALID_SESSION_ID")


def test_wrong_client_credentials_are_refused(sandbox: SalesforceSandbox) -> None:
    http = requests.Session()
    http.verify, http.trust_env = str(sandbox.ca), False
    form = {"grant_type": "client_credentials", "client_id": "someone", "client_secret": "guess"}
    response = http.post(f"{sandbox.url}/services/oauth2/token", data=form, timeout=10)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_client")


def test_get_deleted_and_get_updated_after_a_later_world(
    client: Client, sandbox: SalesforceSandbox, world: DemoWorld
) -> None:
    later = changed(world, fraction=0.05)
    assert sandbox.apply(later) == sum(1 for k, d in later.deals.items() if d != world.deals[k])
    deleted = {k for k, d in later.deals.items() if d.deleted and not world.deals[k].deleted}
    touched = {k for k, d in later.deals.items() if d != world.deals[k] and not d.deleted}
    assert deleted and touched
    window = {
        "start": f"{world.now:%Y-%m-%dT%H:%M:%S}+00:00",
        "end": f"{later.now + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}+00:00",
    }

    body = client.get(f"{V}/sobjects/Opportunity/deleted/", **window).json()
    assert {r["id"] for r in body["deletedRecords"]} == {opportunity_id(k) for k in deleted}
    assert body["deletedRecords"][0]["deletedDate"] == format_datetime(later.now)
    assert set(body) == {"deletedRecords", "earliestDateAvailable", "latestDateCovered"}

    updated = client.get(f"{V}/sobjects/Opportunity/updated/", **window).json()
    assert set(updated["ids"]) == {opportunity_id(k) for k in touched}
    assert set(updated) == {"ids", "latestDateCovered"}

    query = _all_pages(client, "SELECT Id FROM Opportunity")
    assert not {opportunity_id(k) for k in deleted} & {r["Id"] for p in query for r in p["records"]}


def test_get_deleted_refuses_a_start_older_than_the_delete_log(client: Client, world: DemoWorld) -> None:
    start = world.now - timedelta(days=16)
    response = client.get(f"{V}/sobjects/Opportunity/deleted/", start=start.isoformat(), end=world.now.isoformat())
    assert (response.status_code, response.json()[0]["errorCode"]) == (400, "INVALID_REPLICATION_DATE")


def test_faults_answer_with_salesforce_bodies(client: Client, sandbox: SalesforceSandbox) -> None:
    sandbox.injector.add(Fault("rate_limit", path="/query"))
    sandbox.injector.add(Fault("server_error", path="/query"))  # the next one: the first is throttled
    throttled = client.query("SELECT Id FROM Account")
    failed = client.query("SELECT Id FROM Account")
    assert (throttled.status_code, throttled.json()[0]["errorCode"]) == (403, "REQUEST_LIMIT_EXCEEDED")
    assert failed.status_code == 503
    assert client.query("SELECT Id FROM Account").status_code == 200
