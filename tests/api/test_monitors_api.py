"""The monitors API: create with an Idempotency-Key (replayed, not done twice), refusals naming the
field, entity scoping, values and series net and increment, delete; and its OpenAPI entries."""

from __future__ import annotations

from datetime import date

from billbridge.flows import monitors as flow
from billbridge.flows.importing import import_document
from tests.api.conftest import Api

FEES = {"name": "fees", "source": "contract", "contract": {"item": "billed_amount", "line_ref": "platform"}}


def test_create_replay_list_read_values_series_and_delete(api: Api) -> None:
    created = api.post("/api/monitors", FEES, **{"Idempotency-Key": "m-1"})
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == "/api/monitors/fees"
    assert created.json()["entity_ref"] == "us" and created.json()["contract"]["item"] == "billed_amount"
    again = api.post("/api/monitors", FEES, **{"Idempotency-Key": "m-1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert api.post("/api/monitors", {**FEES, "description": "x"}, **{"Idempotency-Key": "m-1"}).status_code == 409
    taken = api.post("/api/monitors", FEES)
    assert taken.status_code == 409 and taken.json()["detail"][0]["field"] == "name"
    assert [m["name"] for m in api.get("/api/monitors").json()["data"]] == ["fees"]
    assert api.get("/api/monitors", token=api.kw_token).json()["data"] == []  # another entity's: none
    assert api.get("/api/monitors/fees", token=api.kw_token).status_code == 404

    flow.snapshot(api.store, date(2026, 3, 1), date(2026, 3, 2))
    day = api.get("/api/monitors/fees/values", date="2026-03-02", customer_ref="globex")
    assert day.status_code == 200, day.text
    [row] = day.json()["rows"]
    assert row["customer_ref"] == "globex" and row["day"] == "2026-03-02"
    increment = api.get("/api/monitors/fees/values", date="2026-03-02", measure="increment").json()
    assert increment["measure"] == "increment" and increment["rows"][0]["value"] == "0.00"
    series = api.get("/api/monitors/fees/series", **{"from": "2026-03-01", "to": "2026-03-02"}).json()
    assert [r["day"] for r in series["rows"]] == ["2026-03-01", "2026-03-02"]
    assert api.get("/api/monitors/fees/values", date="2026-03-02", customer_ref="nobody").status_code == 404
    bad = api.get("/api/monitors/fees/series", **{"from": "2026-03-02", "to": "2026-03-01"})
    assert bad.status_code == 422 and bad.json()["detail"][0] == {
        "field": "to",
        "message": "`to` is before `from`",
        "code": "bad_range",
    }
    assert api.client.delete("/api/monitors/fees", headers=api.headers()).status_code == 204
    assert api.get("/api/monitors/fees").status_code == 404


def test_bad_definitions_are_refused_naming_the_field(api: Api) -> None:
    def refused(body: dict[str, object]) -> tuple[int, dict[str, object]]:
        answer = api.post("/api/monitors", body)
        return answer.status_code, answer.json()["detail"][0]

    status, problem = refused({**FEES, "contract": {"item": "quantity", "line_ref": "platform"}})
    assert status == 422 and problem["field"] == "contract.item"
    assert "its items are amount, billed_amount, billed_days" in str(problem["message"])
    status, problem = refused({**FEES, "contract": {"item": "colour"}})
    assert status == 422 and problem["field"] == "contract.item"
    status, problem = refused({**FEES, "conditions": [{"when": "above", "value": "abc"}]})
    assert status == 422 and problem["field"] == "conditions[0].value"
    status, problem = refused({**FEES, "entity_ref": "kw"})
    assert status == 403 and problem["field"] == "entity_ref"
    status, problem = refused({**FEES, "contract": {"contract_ref": "C-NONE", "item": "end_date"}})
    assert status == 422 and problem["field"] == "contract.contract_ref"
    status, problem = refused({"name": "u", "source": "usage_aggregate", "usage": {"product_ref": "nope"}})
    assert status == 422 and problem["field"] == "usage.product_ref"


def test_values_default_to_today_in_the_entitys_time_zone(api: Api) -> None:
    # UTC+14 and UTC-12: at any instant at least one of them is not on UTC's date
    zones = {"kw": "Pacific/Kiritimati", "us": "Etc/GMT+12"}
    entities = [
        {"entity_ref": "us", "name": "Acme Inc.", "currency": "USD", "invoice_prefix": "US-INV-"},
        {"entity_ref": "kw", "name": "Acme W.L.L.", "currency": "KWD", "invoice_prefix": "KW-INV-"},
    ]
    document = {"entities": [{**e, "timezone": zones[str(e["entity_ref"])]} for e in entities]}
    assert not import_document(api.store, document).errors
    monitor = {"name": "api-usage", "source": "usage_aggregate", "usage": {"product_ref": "api"}}
    tokens = {"kw": api.kw_token, "us": None}
    for token in tokens.values():
        assert api.post("/api/monitors", monitor, token=token).status_code == 201
    flow.snapshot_today(api.store)
    for entity, token in tokens.items():
        rows = api.get("/api/monitors/api-usage/values", token=token).json()["rows"]
        assert rows and {r["day"] for r in rows} == {flow.today_in(zones[entity]).isoformat()}, entity


def test_the_openapi_document_has_the_monitor_operations(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths["/api/monitors"]) == {"get", "post"}
    assert set(paths["/api/monitors/{name}"]) == {"get", "delete"}
    for path in ("values", "series", "alerts", "webhook-secret"):
        assert "get" in paths[f"/api/monitors/{{name}}/{path}"]
    post = paths["/api/monitors"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/MonitorIn"}
    assert [p["name"] for p in post["parameters"]] == ["Idempotency-Key"]
    assert "entity_ref" not in schema["components"]["schemas"]["MonitorIn"]["required"]
