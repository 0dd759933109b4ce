"""The HubSpot sandbox: paging, batch limits, search filters and its cap, associations, archiving, errors,
and every response body checked against HubSpot's own OpenAPI specs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft7Validator, FormatChecker

from billbridge.sandbox import demo_world, specs
from billbridge.sandbox.hubspot import HubSpotSandbox
from billbridge.sandbox.hubspot.contract import nullable_properties
from billbridge.sandbox.hubspot.records import to_ms
from tests.conftest import require_contracts

SPECS = Path(__file__).resolve().parents[1] / "vendor_specs" / "hubspot"  # HubSpot's published OpenAPI specs
SPEC_FILES = {
    "deals": ("deals.json", "/crm/v3/objects/0-3"),
    "line_items": ("line_items.json", "/crm/v3/objects/line_items"),
    "companies": ("companies.json", "/crm/v3/objects/companies"),
    "products": ("products.json", "/crm/v3/objects/products"),
}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
WORLD = demo_world.generate(120, seed=11)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def sandbox(clock: Clock) -> Iterator[HubSpotSandbox]:
    with HubSpotSandbox.start(WORLD, search_cap=40, clock=clock, search_rate_per_second=None) as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults(sandbox: HubSpotSandbox) -> Iterator[None]:
    sandbox.faults.clear()
    yield
    sandbox.faults.clear()


def call(sandbox: HubSpotSandbox, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {sandbox.credentials.access_token}"}
    return requests.request(method, sandbox.url + path, headers=headers, timeout=10, **kwargs)


def spec(name: str) -> dict[str, Any]:
    """A spec as JSON Schema draft 7 reads it (OpenAPI 3.0's ``nullable`` as a null type)."""
    loaded: dict[str, Any] = json.loads((SPECS / name).read_text())
    text = json.dumps(nullable_properties(loaded)).replace(
        '"type": "string", "example": null, "nullable": true', '"type": ["string", "null"]'
    )
    as_draft7: dict[str, Any] = json.loads(text)
    return as_draft7


def check(spec_doc: dict[str, Any], path: str, method: str, response: requests.Response) -> None:
    """The response body validates against the spec's schema for its status (or the default error)."""
    responses = spec_doc["paths"][path][method]["responses"]
    entry = responses.get(str(response.status_code)) or responses["default"]
    if "$ref" in entry:
        entry = spec_doc["components"]["responses"][entry["$ref"].rsplit("/", 1)[1]]
    schema = next(iter(entry["content"].values()))["schema"]
    validator = Draft7Validator({**schema, "components": spec_doc["components"]}, format_checker=FormatChecker())
    body = response.json()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, errors
    text = json.dumps(body)
    for stamp in re.findall(r'"(?:createdAt|updatedAt|archivedAt|startedAt|completedAt)": "([^"]+)"', text):
        assert ISO_MS.match(stamp), stamp


def deal_id(sandbox: HubSpotSandbox, key: str) -> str:
    return sandbox.data.ids[key]


@pytest.mark.parametrize("object_type", list(SPEC_FILES))
def test_object_endpoints_validate_against_hubspot_specs(sandbox: HubSpotSandbox, object_type: str) -> None:
    file, base = SPEC_FILES[object_type]
    doc = spec(file)
    listed = call(sandbox, "GET", base, params={"limit": 5, "properties": "name,amount"})
    assert listed.status_code == 200 and len(listed.json()["results"]) == 5
    check(doc, base, "get", listed)
    check(doc, base, "get", call(sandbox, "GET", base, params={"limit": 500}))
    some = [r["id"] for r in listed.json()["results"]]
    read = call(
        sandbox,
        "POST",
        f"{base}/batch/read",
        json={"inputs": [{"id": i} for i in some], "properties": [], "propertiesWithHistory": []},
    )
    assert read.status_code == 200
    check(doc, f"{base}/batch/read", "post", read)
    partial = call(
        sandbox,
        "POST",
        f"{base}/batch/read",
        json={"inputs": [{"id": "1"}, {"id": some[0]}], "properties": [], "propertiesWithHistory": []},
    )
    assert partial.status_code == 207 and [r["id"] for r in partial.json()["results"]] == [some[0]]
    check(doc, f"{base}/batch/read", "post", partial)
    found = call(sandbox, "POST", f"{base}/search", json={"limit": 3, "properties": ["name"]})
    assert found.status_code == 200
    check(doc, f"{base}/search", "post", found)
    capped = call(sandbox, "POST", f"{base}/search", json={"limit": 3, "after": "40"})
    assert capped.status_code == 400
    check(doc, f"{base}/search", "post", capped)


def test_errors_validate_against_the_specs(sandbox: HubSpotSandbox, clock: Clock) -> None:
    doc = spec("deals.json")
    for kind in ("rate_limit", "server_error", "expired_auth"):
        sandbox.faults.add(kind=kind)
        answer = call(sandbox, "POST", "/crm/v3/objects/deals/search", json={"limit": 1})
        assert answer.status_code == {"rate_limit": 429, "server_error": 503, "expired_auth": 401}[kind]
        check(doc, "/crm/v3/objects/0-3/search", "post", answer)
    wrong = requests.post(sandbox.url + "/crm/v3/objects/deals/search", json={}, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401 and wrong.json()["category"] == "INVALID_AUTHENTICATION"
    check(doc, "/crm/v3/objects/0-3/search", "post", wrong)


def test_associations_and_token_endpoints_validate(sandbox: HubSpotSandbox) -> None:
    doc = spec("associations_v4.json")
    path = "/crm/v4/associations/{fromObjectType}/{toObjectType}/batch/read"
    deal = next(d for d in WORLD.live_deals)
    ids = [deal_id(sandbox, deal.key)]
    linked = call(
        sandbox, "POST", "/crm/v4/associations/deals/line_items/batch/read", json={"inputs": [{"id": ids[0]}]}
    )
    assert linked.status_code == 200
    check(doc, path, "post", linked)
    assert [t["toObjectId"] for t in linked.json()["results"][0]["to"]] == [sandbox.data.ids[x.key] for x in deal.lines]
    unknown = call(sandbox, "POST", "/crm/v4/associations/0-3/0-2/batch/read", json={"inputs": [{"id": "42"}]})
    assert unknown.status_code == 207 and unknown.json()["numErrors"] == 1
    check(doc, path, "post", unknown)
    too_many = call(
        sandbox, "POST", "/crm/v4/associations/deals/companies/batch/read", json={"inputs": [{"id": "1"}] * 1001}
    )
    assert too_many.status_code == 400
    check(doc, path, "post", too_many)
    oauth = spec("oauth_v1.json")
    creds = sandbox.credentials
    form = {
        "grant_type": "refresh_token",
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "refresh_token": creds.refresh_token,
    }
    issued = requests.post(sandbox.url + "/oauth/v1/token", data=form, timeout=10)
    assert issued.status_code == 200
    check(oauth, "/oauth/v1/token", "post", issued)
    refused = requests.post(sandbox.url + "/oauth/v1/token", data={**form, "refresh_token": "nope"}, timeout=10)
    assert refused.status_code == 400
    check(oauth, "/oauth/v1/token", "post", refused)


def test_list_pages_through_every_deal_once_at_most_100(sandbox: HubSpotSandbox) -> None:
    assert call(sandbox, "GET", "/crm/v3/objects/deals", params={"limit": 101}).status_code == 400
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 50, "properties": ["dealname", "amount"]}
        if after:
            params["after"] = after
        page = call(sandbox, "GET", "/crm/v3/objects/deals", params=params).json()
        seen += [r["id"] for r in page["results"]]
        assert all(
            set(r["properties"]) <= {"dealname", "amount", "hs_object_id", "createdate", "hs_lastmodifieddate"}
            for r in page["results"]
        )
        after = page.get("paging", {}).get("next", {}).get("after")
        if not after:
            break
    assert sorted(seen) == sorted(deal_id(sandbox, d.key) for d in WORLD.live_deals)
    assert len(seen) == len(set(seen)) == 120


def test_batch_read_takes_at_most_100_inputs(sandbox: HubSpotSandbox) -> None:
    ids = [{"id": i} for i in list(sandbox.data.tables["line_items"].live)[:101]]
    assert (
        call(
            sandbox,
            "POST",
            "/crm/v3/objects/line_items/batch/read",
            json={"inputs": ids, "properties": [], "propertiesWithHistory": []},
        ).status_code
        == 400
    )
    read = call(
        sandbox,
        "POST",
        "/crm/v3/objects/line_items/batch/read",
        json={"inputs": ids[:100], "properties": ["quantity"], "propertiesWithHistory": []},
    )
    assert read.status_code == 200 and len(read.json()["results"]) == 100


def test_batch_read_by_id_property(sandbox: HubSpotSandbox) -> None:
    read = call(
        sandbox,
        "POST",
        "/crm/v3/objects/products/batch/read",
        json={
            "inputs": [{"id": "SEATS"}],
            "idProperty": "hs_sku",
            "properties": ["hs_sku", "hs_price_eur"],
            "propertiesWithHistory": [],
        },
    )
    assert [(r["id"], r["properties"]["hs_price_eur"]) for r in read.json()["results"]] == [
        (sandbox.data.ids["SEATS"], "41.40")
    ]


def test_search_filters_on_last_modified_date(sandbox: HubSpotSandbox) -> None:
    deals = sorted(WORLD.live_deals, key=lambda d: d.modified_at)
    low, high = deals[30].modified_at, deals[60].modified_at
    body = {
        "filterGroups": [
            {
                "filters": [
                    {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(to_ms(low))},
                    {"propertyName": "hs_lastmodifieddate", "operator": "LT", "value": high.isoformat()},
                ]
            }
        ],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}],
        "properties": ["dealstage"],
        "limit": 200,
    }
    answer = call(sandbox, "POST", "/crm/v3/objects/deals/search", json=body).json()
    expected = [deal_id(sandbox, d.key) for d in deals if low <= d.modified_at < high]
    assert answer["total"] == len(expected) == 30
    assert [r["id"] for r in answer["results"]] == expected[::-1]
    won = call(
        sandbox,
        "POST",
        "/crm/v3/objects/deals/search",
        json={
            "filterGroups": [{"filters": [{"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"}]}],
            "limit": 1,
        },
    ).json()
    assert won["total"] == sum(1 for d in WORLD.live_deals if d.won)
    assert call(sandbox, "POST", "/crm/v3/objects/deals/search", json={"limit": 201}).status_code == 400


def test_search_stops_at_the_cap(sandbox: HubSpotSandbox) -> None:
    """The sandbox here caps at 40 results per query (HubSpot: 10,000): the page that reaches it still
    offers a next page, and asking for it is a 400."""
    page = call(sandbox, "POST", "/crm/v3/objects/deals/search", json={"limit": 20, "after": "20"}).json()
    assert page["total"] == 120 and page["paging"]["next"]["after"] == "40"
    refused = call(sandbox, "POST", "/crm/v3/objects/deals/search", json={"limit": 20, "after": "40"})
    assert refused.status_code == 400 and refused.json()["category"] == "VALIDATION_ERROR"


def test_rate_limit_body_and_headers(sandbox: HubSpotSandbox) -> None:
    sandbox.faults.add(kind="rate_limit", retry_after=3)
    answer = call(sandbox, "GET", "/crm/v3/objects/deals", params={"limit": 1})
    body = answer.json()
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "3"
    assert answer.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert answer.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert (body["errorType"], body["policyName"]) == ("RATE_LIMIT", "TEN_SECONDLY_ROLLING")
    assert body["message"] == "You have reached your ten_secondly_rolling limit."


def test_tokens_expire_and_refresh(sandbox: HubSpotSandbox, clock: Clock) -> None:
    clock.now += 1801
    try:
        expired = call(sandbox, "GET", "/crm/v3/objects/deals", params={"limit": 1})
        assert expired.status_code == 401 and expired.json()["category"] == "EXPIRED_AUTHENTICATION"
        creds = sandbox.credentials
        token = requests.post(
            sandbox.url + "/oauth/v1/token",
            data={
                "grant_type": "refresh_token",
                "client_id": creds.client_id,
                "client_secret": creds.client_secret,
                "refresh_token": creds.refresh_token,
            },
            timeout=10,
        ).json()["access_token"]
        fresh = requests.get(
            sandbox.url + "/crm/v3/objects/deals", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert fresh.status_code == 200
    finally:
        clock.now -= 1801


def test_rendered_properties_are_strings(sandbox: HubSpotSandbox) -> None:
    deal = next(d for d in WORLD.live_deals if d.won and d.broken is None and d.end_date)
    obj = sandbox.data.tables["deals"].live[deal_id(sandbox, deal.key)]
    assert all(isinstance(v, str) for v in obj.properties.values())
    assert obj.properties["amount"] == str(deal.amount) and obj.properties["dealstage"] == "closedwon"
    assert obj.properties["billing_start_date"] == deal.start_date.isoformat()  # type: ignore[union-attr]
    assert ISO_MS.match(obj.properties["hs_lastmodifieddate"])
    line = sandbox.data.tables["line_items"].live[sandbox.data.ids[deal.lines[0].key]]
    assert line.properties["hs_product_id"] == sandbox.data.ids[deal.lines[0].sku]
    assert line.properties["recurringbillingfrequency"] == deal.billing_cycle


def test_changes_archive_deleted_deals_and_touch_changed_ones() -> None:
    world = demo_world.generate(80, seed=5)
    later = demo_world.changed(world, 0.4)  # 4 deletions among 32 changes
    with HubSpotSandbox.start(world) as sandbox:
        sandbox.apply(later)
        deleted = {sandbox.data.ids[d.key] for d in later.deals.values() if d.deleted}
        assert deleted
        archived = call(sandbox, "GET", "/crm/v3/objects/deals", params={"archived": "true", "limit": 100}).json()
        check(
            spec("deals.json"),
            "/crm/v3/objects/0-3",
            "get",
            call(sandbox, "GET", "/crm/v3/objects/deals", params={"archived": "true"}),
        )
        assert {r["id"] for r in archived["results"]} == deleted
        assert all(r["archived"] and ISO_MS.match(r["archivedAt"]) for r in archived["results"])
        since = to_ms(later.now)
        body = {
            "filterGroups": [
                {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(since)}]}
            ],
            "limit": 200,
        }
        touched = {r["id"] for r in call(sandbox, "POST", "/crm/v3/objects/deals/search", json=body).json()["results"]}
        expected = {sandbox.data.ids[d.key] for d in later.live_deals if d.modified_at == later.now}
        assert touched == expected and expected


def test_requests_the_spec_refuses_are_refused_and_recorded(sandbox: HubSpotSandbox) -> None:
    """A body HubSpot's spec refuses (inputs as bare strings) is a 400 and a recorded violation."""
    require_contracts()
    answer = call(
        sandbox, "POST", "/crm/v3/objects/deals/batch/read", json={"inputs": ["1"], "propertiesWithHistory": []}
    )
    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR"
    seen = specs.take_violations()
    assert len(seen) == 1 and "batch/read" in seen[0]


def test_unset_requested_properties_come_back_as_null(sandbox: HubSpotSandbox) -> None:
    listed = call(sandbox, "GET", "/crm/v3/objects/companies", params={"limit": 1, "properties": "name,no_such"})
    assert listed.json()["results"][0]["properties"]["no_such"] is None


def test_a_generic_client_pages_through_with_hubspots_public_api_only(sandbox: HubSpotSandbox) -> None:
    """Issue 19 item 11: what a third-party client (dlt's HubSpot source, say) does first: read the
    properties, list every deal with its associations page by page, follow the full-URL next link,
    read associations in batch; all through the SDK, nothing billbridge-specific."""
    from hubspot import HubSpot

    sdk = HubSpot(access_token=sandbox.credentials.access_token, host=sandbox.url, retry=False)
    names = [p.name for p in sdk.crm.properties.core_api.get_all("deals").results]
    assert {"dealname", "amount", "closedate", "hs_lastmodifieddate"} <= set(names)
    deals = sdk.crm.deals.get_all(properties=names, associations=["line_items", "companies"])
    live = {deal_id(sandbox, d.key): d for d in WORLD.live_deals}
    assert sorted(d.id for d in deals) == sorted(live) and len(deals) == 120
    for deal in deals:
        world = live[deal.id]
        lines = [a.id for a in deal.associations["line_items"].results]
        assert lines == [sandbox.data.ids[x.key] for x in world.lines]
        assert [a.id for a in deal.associations["companies"].results] == [sandbox.data.ids[world.company_key]]
        assert deal.properties["dealname"] == world.name
    first = call(sandbox, "GET", "/crm/v3/objects/deals", params={"limit": 100, "properties": "dealname"}).json()
    link = first["paging"]["next"]["link"]
    assert link.startswith(sandbox.url + "/crm/v3/objects/deals?")
    rest = requests.get(link, headers={"Authorization": f"Bearer {sandbox.credentials.access_token}"}, timeout=10)
    assert len(first["results"]) + len(rest.json()["results"]) == 120 and "paging" not in rest.json()
    assert set(rest.json()["results"][0]["properties"]) >= {"dealname"}
    linked = sdk.crm.associations.v4.batch_api.get_page(
        "deals", "line_items", batch_input_public_fetch_associations_batch_request={"inputs": [{"id": deals[0].id}]}
    )
    assert [str(t.to_object_id) for t in linked.results[0].to] == [
        a.id for a in deals[0].associations["line_items"].results
    ]


def test_associations_page_per_input_with_after() -> None:
    """Issue 19 item 9: each input's links are paged; the input's ``after`` asks for the next page."""
    world = demo_world.generate(10, seed=3)
    deal = next(d for d in world.live_deals if len(d.lines) > 1)
    with HubSpotSandbox.start(world, associations_page=1) as sandbox:
        path = "/crm/v4/associations/deals/line_items/batch/read"
        deal_id, seen, after = sandbox.data.ids[deal.key], [], None
        while True:
            one: dict[str, Any] = {"id": deal_id} | ({"after": after} if after else {})
            result = call(sandbox, "POST", path, json={"inputs": [one]}).json()["results"][0]
            assert len(result["to"]) == 1
            seen += [t["toObjectId"] for t in result["to"]]
            after = result.get("paging", {}).get("next", {}).get("after")
            if not after:
                break
        assert seen == [sandbox.data.ids[x.key] for x in deal.lines]


def test_search_has_its_own_limit_per_token() -> None:
    """Issue 19 item 10: more than 5 searches a second with one token are a 429 of their own."""
    with HubSpotSandbox.start(demo_world.generate(10, seed=2)) as sandbox:
        answers = [call(sandbox, "POST", "/crm/v3/objects/deals/search", json={"limit": 1}) for _ in range(8)]
        assert [a.status_code for a in answers].count(429) >= 1
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.json()["policyName"] == "SECONDLY" and sandbox.app.state.search_throttled >= 1
        assert call(sandbox, "GET", "/crm/v3/objects/deals", params={"limit": 1}).status_code == 200
