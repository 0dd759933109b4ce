"""POST /api/usage/event and /api/usage/events/batch against the real app and store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from billbridge.api.app import create_app
from billbridge.billing.usage_billing_dates import document_ref
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.settings import Settings
from billbridge.store import api_keys
from billbridge.store.models import UsageEvent
from billbridge.store.usage_aggregates import period_usage
from tests.api.conftest import USAGE_CONTRACT, Api, event
from tests.docs import contract, document

EVENT = "/api/usage/event"
BATCH = "/api/usage/events/batch"


def stored(api: Api) -> list[tuple[str, Decimal, str | None]]:
    with api.store.read() as session:
        rows = session.execute(
            select(UsageEvent.event_ref, UsageEvent.quantity, UsageEvent.idempotency_key).order_by(UsageEvent.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def count(api: Api) -> int:
    with api.store.read() as session:
        return session.scalar(select(func.count()).select_from(UsageEvent)) or 0


def test_single_event_answers_with_the_upcoming_invoice(api: Api) -> None:
    response = api.post(EVENT, event(quantity="999999999.999999"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) >= {
        "event_ref",
        "related_document_ref",
        "related_document_numbers",
        "related_parent_document_ref",
        "related_parent_document_numbers",
    }
    # January's usage is billed in arrears on the invoice dated 2026-02-01, not generated yet.
    assert body["related_document_ref"] == document_ref("C-USAGE", date(2026, 2, 1))
    assert body["related_document_billing_date"] == "2026-02-01"
    assert body["related_document_numbers"] is None
    assert body["related_parent_document_ref"] is None and body["late"] is False
    [(event_ref, quantity, key)] = stored(api)
    assert event_ref == body["event_ref"] and key is None
    assert quantity == Decimal("999999999.999999")  # exactly: Decimal(float) would end in ...99904632568359375


def test_a_json_float_is_read_exactly(api: Api) -> None:
    raw = (
        b'{"timestamp": "2026-01-15T08:00:00Z", "customer_ref": "globex", "usage_product_ref": "api", '
        b'"quantity": 999999999.999999, "validations": {"currency": "USD", "entity_ref": "us"}}'
    )
    response = api.client.post(EVENT, content=raw, headers=api.headers(**{"Content-Type": "application/json"}))
    assert response.status_code == 201, response.text
    assert stored(api)[0][1] == Decimal("999999999.999999")  # not Decimal(float(...)): 999999999.99999904632568359375


def test_usage_without_a_contract_is_accepted_with_no_related_document(api: Api) -> None:
    response = api.post(EVENT, event(customer_ref="initech"))  # initech has no contract
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["related_document_ref"] is None and body["related_parent_document_ref"] is None
    assert count(api) == 1
    # before the contract starts: stored too, billed by no one
    response = api.post(EVENT, event(timestamp="2025-12-31T23:59:59Z"))
    assert response.status_code == 201 and response.json()["related_document_ref"] is None


def test_batch_answers_each_event_and_stores_the_accepted_ones(api: Api) -> None:
    events = [
        event(event_id="e-1", quantity=5),
        event(event_id="e-2", quantity=-1),
        event(event_id="e-3", customer_ref="nobody"),
        event(event_id="e-4", usage_product_ref="nothing"),
        event(event_id="e-5", timestamp="2026-02-03T00:00:00+01:00", quantity="2.5"),
    ]
    response = api.post(BATCH, {"events": events})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["refused"]) == (2, 0, 3)
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["accepted", "refused", "refused", "refused", "accepted"]
    assert body["results"][1]["errors"][0]["field"] == "events[1].quantity"
    assert "negative" in body["results"][1]["errors"][0]["message"]
    assert body["results"][2]["errors"][0] == {
        "field": "events[2].customer_ref",
        "message": "unknown customer",
        "code": "unknown_customer",
        "index": 2,
    }
    assert body["results"][3]["errors"][0]["field"] == "events[3].usage_product_ref"
    # 2026-02-03T00:00+01:00 is 2026-02-02 in UTC: February's usage, billed on 2026-03-01
    assert body["results"][4]["event"]["related_document_billing_date"] == "2026-03-01"
    assert [(q, k) for _, q, k in stored(api)] == [(Decimal(5), "1:e-1"), (Decimal("2.5"), "1:e-5")]


def test_replays_count_once_in_the_same_batch_and_later(api: Api) -> None:
    first = api.post(EVENT, event(quantity=7), **{"Idempotency-Key": "evt-1"})
    assert first.status_code == 201
    again = api.post(EVENT, event(quantity=7), **{"Idempotency-Key": "evt-1"})
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["event_ref"] == first.json()["event_ref"]

    batch = [event(event_id="evt-1", quantity=7), event(event_id="b-1"), event(event_id="b-1"), event(event_id="b-2")]
    body = api.post(BATCH, {"events": batch}).json()
    assert (body["accepted"], body["duplicates"], body["refused"]) == (2, 2, 0)
    results = body["results"]
    assert results[0]["event"]["event_ref"] == first.json()["event_ref"]
    assert results[2]["status"] == "duplicate" and results[2]["event"]["event_ref"] == results[1]["event"]["event_ref"]
    body = api.post(BATCH, {"events": batch}).json()  # the whole batch again: nothing new
    assert (body["accepted"], body["duplicates"]) == (0, 4)
    assert count(api) == 3


def test_single_events_reach_the_day_rows_once(api: Api) -> None:
    """Single events are stored with their day row in one step (one statement on PostgreSQL): a
    replay or a refused key reuse adds nothing, and the day is the UTC day."""
    posts = [
        (event(quantity="1.5"), "d-1", 201),
        (event(quantity="1.5"), "d-1", 200),  # replay
        (event(quantity=9), "d-1", 409),  # the key for another event
        (event(quantity="0.25", timestamp="2026-01-15T23:30:00Z"), "d-2", 201),
        (event(quantity=4, timestamp="2026-01-16T00:30:00+02:00"), "d-3", 201),  # 2026-01-15 in UTC
        (event(quantity=2, timestamp="2026-01-16T08:00:00Z"), None, 201),
    ]
    for body, key, status in posts:
        headers = {"Idempotency-Key": key} if key else {}
        assert api.post(EVENT, body, **headers).status_code == status
    days = api.get("/api/usage/reports", group_by="day").json()["data"]
    assert [(d["group"], d["quantity"], d["events"]) for d in days] == [
        ("2026-01-15", "5.75", 3),
        ("2026-01-16", "2", 1),
    ]
    assert count(api) == 4


@pytest.mark.slow
def test_a_day_total_beyond_64_bits_of_micro_units_stays_exact(api: Api) -> None:
    """11,000 maximal events on one day are 10,999,999,999,999.989 units: 1.1 x 10^19 micro-units,
    past a signed 64-bit integer. The day's row, the report, billing's aggregate and the invoice
    line keep it exact (PostgreSQL answered 500; SQLite's sum became a float)."""
    most = "999999999.999999"
    for batch in range(11):
        body = api.post(BATCH, {"events": [event(quantity=most, event_id=f"m-{batch}-{i}") for i in range(1000)]})
        assert body.status_code == 200 and body.json()["accepted"] == 1000, body.text[:300]
    single = api.post(EVENT, event(quantity="0.011", timestamp="2026-01-15T23:00:00Z"))  # one statement on PostgreSQL
    assert single.status_code == 201, single.text
    total = Decimal(most) * 11_000 + Decimal("0.011")
    assert total == Decimal("11000000000000.000000")
    [day] = api.get("/api/usage/reports", group_by="day").json()["data"]
    assert (Decimal(day["quantity"]), day["events"]) == (total, 11_001)
    with api.store.read() as session:
        [(key, usage)] = period_usage(session, None, date(2026, 1, 1), date(2026, 2, 1)).items()
    assert (usage.total, usage.peak, usage.events) == (total, Decimal(most), 11_001)

    run_billing(api.store, date(2026, 2, 1))
    january = {i["billing_date"]: i for i in api.get("/api/invoices").json()["data"]}["2026-02-01"]
    [line] = [li for li in api.get(f"/api/invoices/{january['number']}").json()["lines"] if li["kind"] == "usage"]
    assert Decimal(line["quantity"]) == total
    assert Decimal(line["billed_amount"]) == Decimal("22000000000.00")  # at 0.002 a call


@pytest.mark.slow
def test_a_bad_idempotency_key_header_is_refused(api: Api) -> None:
    for key in ("has space", "x" * 151):
        response = api.post(EVENT, event(), **{"Idempotency-Key": key})
        assert response.status_code == 422 and response.json()["detail"][0]["field"] == "Idempotency-Key"
    response = api.post(EVENT, event(event_id="a"), **{"Idempotency-Key": "b"})
    assert response.status_code == 422 and response.json()["detail"][0]["code"] == "key_mismatch"
    assert count(api) == 0


def test_a_key_reused_for_another_event_is_refused(api: Api) -> None:
    assert api.post(EVENT, event(quantity=1), **{"Idempotency-Key": "k"}).status_code == 201
    response = api.post(EVENT, event(quantity=2), **{"Idempotency-Key": "k"})
    assert response.status_code == 409
    assert response.json()["detail"][0]["code"] == "idempotency_conflict"
    body = api.post(BATCH, {"events": [event(event_id="x", quantity=1), event(event_id="x", quantity=3)]}).json()
    assert [r["status"] for r in body["results"]] == ["accepted", "refused"]
    assert count(api) == 2


def test_a_key_reused_with_other_report_data_is_a_conflict(api: Api) -> None:
    """The report data is part of the event (``distinct`` aggregations count its values): the same
    key with other data is a 409, not a replay that drops the new data."""
    key = {"Idempotency-Key": "d-1"}
    assert api.post(EVENT, event(additional_report_data={"user": "a"}), **key).status_code == 201
    same = api.post(EVENT, event(additional_report_data={"user": "a"}), **key)
    assert same.status_code == 200 and same.json()["replayed"] is True
    for data in ({"user": "b"}, {"user": "a", "more": 1}, None):
        other = api.post(EVENT, event(additional_report_data=data), **key)
        assert other.status_code == 409, (data, other.text)
        assert other.json()["detail"][0] == {
            "field": "event_id",
            "message": "this idempotency key was already used for a different event",
            "code": "idempotency_conflict",
        }
    batch = [event(event_id="x", additional_report_data={"user": "a"}), event(event_id="x", additional_report_data={})]
    assert [r["status"] for r in api.post(BATCH, {"events": batch}).json()["results"]] == ["accepted", "refused"]
    # numbers and text come back from either store as they went in: an identical replay is a replay
    raw = (
        b'{"timestamp": "2026-01-15T08:00:00Z", "customer_ref": "globex", "usage_product_ref": "api", "quantity": 1, '
        b'"event_id": "r-1", "validations": {"currency": "USD", "entity_ref": "us"}, "additional_report_data": '
        b'{"ratio": 0.1, "big": 1e300, "huge": 1e400, "n": -9223372036854775808, "list": [1.5, "\\u00e9", null, true]}}'
    )
    headers = api.headers(**{"Content-Type": "application/json"})
    statuses = [api.client.post(EVENT, content=raw, headers=headers).status_code for _ in range(2)]
    assert statuses == [201, 200]
    assert count(api) == 3


def test_idempotency_keys_are_per_legal_entity(api: Api) -> None:
    kw_event = event(customer_ref="gulf", validations={"currency": "KWD", "entity_ref": "kw"}, quantity=1)
    us = api.post(EVENT, event(quantity=1), **{"Idempotency-Key": "same"})
    kw = api.post(EVENT, kw_event, token=api.kw_token, **{"Idempotency-Key": "same"})
    assert (us.status_code, kw.status_code) == (201, 201)
    assert us.json()["event_ref"] != kw.json()["event_ref"]


def test_authentication(api: Api) -> None:
    assert api.client.post(EVENT, json=event()).status_code == 401
    response = api.post(EVENT, event(), token="bb_nope_nope")
    assert response.status_code == 401 and response.json()["detail"][0]["code"] == "invalid_api_key"
    wrong_entity = api.post(EVENT, event(validations={"currency": "USD", "entity_ref": "kw"}))
    assert wrong_entity.status_code == 403
    assert wrong_entity.json()["detail"][0]["field"] == "validations.entity_ref"
    wrong_currency = api.post(EVENT, event(validations={"currency": "EUR", "entity_ref": "us"}))
    assert wrong_currency.status_code == 403
    assert wrong_currency.json()["detail"][0]["field"] == "validations.currency"
    # another entity's customer does not exist for this key
    foreign = api.post(EVENT, event(customer_ref="gulf"))
    assert foreign.status_code == 422 and foreign.json()["detail"][0]["code"] == "unknown_customer"
    assert count(api) == 0


def test_a_key_revoked_in_this_process_is_refused_at_once(api: Api) -> None:
    """However long keys are cached, a revocation committed by this process reaches its caches at
    once (it took up to api_cache_seconds: 49 requests in 5 seconds); one rolled back changes nothing."""
    with TestClient(create_app(api.store, Settings(api_cache_seconds=60))) as client:
        us, kw = api.headers(), api.headers(api.kw_token)
        assert client.get("/api/auth/whoami", headers=us).status_code == 200  # cached for a minute
        assert client.get("/api/auth/whoami", headers=kw).status_code == 200
        with api.store.read() as session:
            prefixes = {row["entity_ref"]: str(row["prefix"]) for row in api_keys.list_keys(session)}
        with pytest.raises(RuntimeError), api.store.write() as session:
            api_keys.revoke_key(session, prefixes["kw"])
            raise RuntimeError("rolled back")
        with api.store.write() as session:
            api_keys.revoke_key(session, prefixes["us"])
        response = client.post(EVENT, json=event(), headers=us)
        assert response.status_code == 401 and response.json()["detail"][0]["code"] == "invalid_api_key"
        assert client.get("/api/auth/whoami", headers=us).status_code == 401
        assert client.get("/api/auth/whoami", headers=kw).status_code == 200
    assert count(api) == 0


@pytest.mark.slow
def test_a_key_revoked_by_another_process_is_refused_within_api_cache_seconds(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    """`billbridge apikey revoke` runs in its own process: a server's cache lets the key through for
    at most api_cache_seconds after that (the bound the README gives), then refuses it."""
    cache_seconds = 3.0
    with TestClient(create_app(api.store, Settings(api_cache_seconds=cache_seconds))) as client:
        headers = api.headers()
        assert client.get("/api/auth/whoami", headers=headers).status_code == 200
        cached_at = time.monotonic()
        prefix = client.get("/api/auth/whoami", headers=headers).json()["key_prefix"]
        env = {**os.environ, "BILLBRIDGE_DATABASE_URL": database_url, "BILLBRIDGE_CONFIG": str(tmp_path / "none.toml")}
        command = [str(Path(sys.executable).with_name("billbridge")), "apikey", "revoke", prefix]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and f"revoked {prefix}" in done.stdout, done.stdout + done.stderr
        while client.get("/api/auth/whoami", headers=headers).status_code == 200:
            assert time.monotonic() - cached_at < cache_seconds + 0.5, "still accepted past api_cache_seconds"
            time.sleep(0.05)
    assert count(api) == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"quantity": -1}, "quantity", "negative"),
        ({"quantity": "ten"}, "quantity", "numeric string"),
        ({"quantity": True}, "quantity", "number"),
        ({"quantity": None}, "quantity", "number"),
        ({"quantity": "NaN"}, "quantity", "numeric string"),
        ({"quantity": "1000000000"}, "quantity", "below"),
        ({"quantity": "0.0000001"}, "quantity", "decimal places"),
        ({"timestamp": "yesterday"}, "timestamp", "datetime"),
        ({"timestamp": "2026-01-15T08:00:00"}, "timestamp", "timezone"),
        ({"timestamp": 1767225600}, "timestamp", "ISO 8601"),
        ({"timestamp": "2999-01-01T00:00:00Z"}, "timestamp", "future"),
        ({"customer_ref": ""}, "customer_ref", "at least 1"),
        ({"customer_ref": "nobody"}, "customer_ref", "unknown customer"),
        ({"usage_product_ref": "nothing"}, "usage_product_ref", "unknown usage product"),
        ({"validations": {"currency": "usd", "entity_ref": "us"}}, "validations.currency", "pattern"),
        ({"quantiy": 3}, "quantiy", "Extra inputs"),
        ({"additional_report_data": {"note": "a\x00b"}}, "additional_report_data.note", "NUL"),
        ({"event_id": "has space"}, "event_id", "pattern"),
    ],
)
def test_bad_input_is_refused_with_the_field_and_nothing_is_stored(
    api: Api, change: dict[str, Any], field: str, words: str
) -> None:
    response = api.post(EVENT, event(**change))
    assert response.status_code == 422, response.text
    problem = response.json()["detail"][0]
    assert problem["field"] == field and words.lower() in problem["message"].lower(), problem
    body = api.post(BATCH, {"events": [event(), event(**change)]}).json()
    assert body["results"][1]["errors"][0]["field"] == f"events[1].{field}"
    assert count(api) == 1  # only the good event of the batch


def test_missing_fields_and_non_objects(api: Api) -> None:
    body = event()
    del body["quantity"]
    response = api.post(EVENT, body)
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "quantity"
    assert api.post(EVENT, [event()]).status_code == 422
    result = api.post(BATCH, {"events": [42]}).json()["results"][0]
    assert result["status"] == "refused" and result["errors"][0]["code"] == "not_an_object"
    assert api.post(BATCH, [event()]).status_code == 422
    assert api.post(BATCH, {"events": [event()], "more": 1}).status_code == 422
    assert count(api) == 0


def test_malformed_json_and_oversized_bodies(api: Api) -> None:
    headers = api.headers(**{"Content-Type": "application/json"})
    for raw in (b'{"timestamp": ', b"\xff\xfe", b'{"quantity": NaN}', b"[" * 100_000):
        response = api.client.post(EVENT, content=raw, headers=headers)
        assert response.status_code == 400, raw[:20]
        assert response.json()["detail"][0]["code"] == "malformed_json"
    big = {"events": [event(additional_report_data={"pad": "x" * 5000})] * 1000}
    response = api.post(BATCH, big)
    assert response.status_code == 413
    response = api.post(BATCH, {"events": [event()] * 1001})
    assert response.status_code == 422 and "at most 1000" in response.json()["detail"][0]["message"]
    assert count(api) == 0


def test_late_event_is_a_correction_on_the_next_invoice(api: Api) -> None:
    assert api.post(EVENT, event(quantity=1000, event_id="jan-1")).status_code == 201
    run_billing(api.store, date(2026, 2, 1))  # invoices 2026-01-01 (platform) and 2026-02-01 (Jan usage)
    invoices = {i["billing_date"]: i for i in api.get("/api/invoices").json()["data"]}
    january = invoices["2026-02-01"]

    late = api.post(EVENT, event(timestamp="2026-01-20T10:00:00Z", quantity=500, event_id="jan-late"))
    assert late.status_code == 201, late.text
    body = late.json()
    assert body["late"] is True
    assert body["related_parent_document_ref"] == january["document_ref"]
    assert body["related_parent_document_numbers"] == january["number"]
    assert body["related_document_ref"] == document_ref("C-USAGE", date(2026, 3, 1))
    assert body["related_document_numbers"] is None

    # the replay of the first event, stored before billing, now names the invoice that billed it
    replay = api.post(EVENT, event(quantity=1000, event_id="jan-1")).json()
    assert replay["related_document_numbers"] == january["number"] and replay["late"] is False

    run_billing(api.store, date(2026, 3, 1))
    march = api.get("/api/invoices", contract_ref="C-USAGE", status="draft").json()["data"][-1]
    assert march["document_ref"] == body["related_document_ref"] and march["billing_date"] == "2026-03-01"
    replay = api.post(EVENT, event(timestamp="2026-01-20T10:00:00Z", quantity=500, event_id="jan-late")).json()
    assert (replay["late"], replay["related_document_numbers"]) == (True, march["number"])
    lines = api.get(f"/api/invoices/{march['number']}").json()["lines"]
    usage = [line for line in lines if line["kind"] == "usage"]
    # January is re-rated on March's invoice: 1,500 calls instead of 1,000, at 0.002 (credit 2.00, charge 3.00)
    january_lines = sorted(Decimal(u["billed_amount"]) for u in usage if u["start_date"] == "2026-01-01")
    assert january_lines == [Decimal("-2.00"), Decimal("3.00")]


def test_an_event_waiting_for_the_write_while_billing_invoices_its_period_is_late(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Billing takes the write (on SQLite, the lock) just before the event's transaction and
    invoices its period without it: the event was received after that invoice, so it is late."""
    assert api.post(EVENT, event(quantity=1000, event_id="jan-1")).status_code == 201
    real_write = api.store.queued_write_connection
    billed = []

    @contextmanager
    def billing_first() -> Iterator[Any]:
        if not billed:
            billed.append(run_billing(api.store, date(2026, 2, 1)))  # invoices January's usage
        with real_write() as connection:
            yield connection

    monkeypatch.setattr(api.store, "queued_write_connection", billing_first)
    late = [event(timestamp="2026-01-20T10:00:00Z", quantity=5, event_id=key) for key in ("a", "b")]
    body = api.post(BATCH, {"events": late}).json()
    assert billed and body["accepted"] == 2
    january = {i["billing_date"]: i for i in api.get("/api/invoices").json()["data"]}["2026-02-01"]
    answer = body["results"][0]["event"]
    assert (answer["late"], answer["related_parent_document_numbers"]) == (True, january["number"])


def test_usage_on_the_period_being_billed_names_the_existing_draft(api: Api) -> None:
    run_billing(api.store, date(2026, 1, 1))  # only the first in-advance invoice exists
    body = api.post(EVENT, event(timestamp="2026-01-31T23:59:59.999Z")).json()
    assert body["related_document_billing_date"] == "2026-02-01" and body["late"] is False
    stamp = datetime.now(timezone.utc) - timedelta(minutes=1)
    assert api.post(EVENT, event(timestamp=stamp.isoformat())).status_code == 201


def test_usage_of_a_contract_stripe_bills_names_no_billbridge_document(api: Api) -> None:
    """A Stripe subscription's metered usage is invoiced by Stripe: the billing run never makes the
    billbridge invoice an answer would name, so the event is stored with no related document."""
    stripe_billed = contract("C-STRIPE", customer="initech", lines=USAGE_CONTRACT["lines"], billed_by="stripe")
    assert import_document(api.store, document(stripe_billed)).counts["contracts.created"] == 1
    response = api.post(EVENT, event(customer_ref="initech"))
    assert response.status_code == 201, response.text
    assert response.json()["related_document_ref"] is None
    assert (
        api.post(EVENT, event()).json()["related_document_ref"] is not None
    )  # globex's own contract: billbridge bills it


def test_a_new_contract_is_seen_once_the_cache_expires(api: Api) -> None:
    with TestClient(create_app(api.store, Settings(api_cache_seconds=0.3))) as client:
        first = client.post(EVENT, json=event(customer_ref="initech"), headers=api.headers()).json()
        assert first["related_document_ref"] is None
        import_document(api.store, document(contract("C-INITECH", customer="initech", lines=USAGE_CONTRACT["lines"])))
        time.sleep(0.4)
        second = client.post(EVENT, json=event(customer_ref="initech"), headers=api.headers()).json()
        assert second["related_document_ref"] == document_ref("C-INITECH", date(2026, 2, 1))


def test_concurrent_replays_store_each_event_once(api: Api) -> None:
    """Four requests at once with the same 50 keyed events, in two orders: 50 rows, one event_ref per key."""
    from concurrent.futures import ThreadPoolExecutor

    from billbridge.api.lookups import Lookups
    from billbridge.api.usage_ingest import ingest

    with api.store.read() as session:
        principal = api_keys.authenticate(session, api.token)
    assert principal is not None
    batch = [event(event_id=f"c-{i}", quantity=i) for i in range(50)]

    def send(n: int) -> list[str]:
        order = batch if n % 2 else batch[::-1]  # overlapping keys in opposite orders
        outcomes = ingest(api.store, principal, order, lookups=Lookups(0))
        if n % 2 == 0:
            outcomes.reverse()
        assert all(o.answer is not None for o in outcomes), [o.problems for o in outcomes]
        return [o.answer["event_ref"] for o in outcomes if o.answer]

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, range(4)))
    assert all(a == answers[0] for a in answers)
    assert count(api) == 50


def test_the_fast_lane_answers_as_the_application_does(api: Api) -> None:
    """Through the fast lane (the api fixture) and through the application alone, the same
    requests get the same statuses and bodies: an event, a replay, refusals of the key, the body
    and the fields, and a query string (which the fast lane leaves to the application)."""
    direct = TestClient(create_app(api.store, Settings(webhooks_inline=False)))
    requests: list[tuple[str, Any, dict[str, str]]] = [
        (EVENT, event(event_id="lane-1"), api.headers()),
        (EVENT, event(event_id="lane-1"), api.headers()),  # a replay
        (EVENT, event(event_id="lane-1", quantity=2), api.headers()),  # the key for another event: 409
        (EVENT, event(), {}),  # no key: 401
        (EVENT, event(), api.headers("bb_nope")),  # an unknown key: 401
        (EVENT, event(quantity="-1"), api.headers()),  # a bad field: 422
        (EVENT + "?debug=1", event(), api.headers()),  # an unknown parameter: 422
        (EVENT + "?x=%00", event(), api.headers()),  # a NUL in the URL: 400
        (BATCH, {"events": [event(event_id="lane-2"), event(quantity="x")]}, api.headers()),
        (BATCH, {"events": "no"}, api.headers()),
    ]
    for path, body, headers in requests:
        laned = api.client.post(path, json=body, headers=headers)
        alone = direct.post(path, json=body, headers=headers)  # after it: a success is now a replay
        assert laned.headers["content-type"] == alone.headers["content-type"] == "application/json"
        assert laned.headers.get("www-authenticate") == alone.headers.get("www-authenticate")
        if laned.status_code >= 400:
            assert (laned.status_code, laned.json()) == (alone.status_code, alone.json()), path
        elif path == EVENT:
            assert alone.status_code == 200 and alone.json()["replayed"], alone.text
            assert laned.json()["event_ref"] == alone.json()["event_ref"]
        else:
            assert (laned.status_code, alone.status_code) == (200, 200)
            first, again = laned.json()["results"], alone.json()["results"]
            assert [r["status"] for r in first] == ["accepted", "refused"]
            assert [r["status"] for r in again] == ["duplicate", "refused"]
            assert first[0]["event"]["event_ref"] == again[0]["event"]["event_ref"]
            assert first[1] == again[1]
    bad_json = api.client.post(EVENT, content=b"{", headers={**api.headers(), "Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["detail"][0]["code"] == "malformed_json"


def test_with_several_workers_answers_end_their_connection_so_the_next_request_finds_a_free_worker(
    api: Api,
) -> None:
    """Behind `billbridge serve --workers N` (N > 1): every batch answer says ``Connection: close``, a
    keep-alive connection of single events is ended on its 100th answer (its client is then
    accepted afresh by a worker that is free), and nothing else changes: every event stored once,
    the same answers. With one worker, no connection is ever ended."""
    from billbridge.api import routes_usage
    from billbridge.api.routes_usage import UsageFastLane

    lane = UsageFastLane(api.client.app.app, workers=2)  # type: ignore[attr-defined]
    closing = routes_usage.REQUESTS_PER_CONNECTION
    with TestClient(lane) as client:
        headers = api.headers()
        batch = client.post(
            "/api/usage/events/batch",
            json={"events": [event(event_id=f"conn-b{i}") for i in range(3)]},
            headers=headers,
        )
        assert batch.status_code == 200 and batch.json()["accepted"] == 3
        assert batch.headers["connection"] == "close"
        ended = []
        for i in range(closing + 5):
            answer = client.post("/api/usage/event", json=event(event_id=f"conn-s{i}"), headers=headers)
            assert answer.status_code == 201, answer.text
            ended.append(answer.headers.get("connection") == "close")
        assert [i for i, closed in enumerate(ended) if closed] == [closing - 1]
        refused = client.post("/api/usage/event", json=event(quantity=-1), headers=headers)
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "quantity"  # refused as before
    with TestClient(UsageFastLane(api.client.app.app, workers=1)) as client:  # type: ignore[attr-defined]
        one = client.post(
            "/api/usage/events/batch", json={"events": [event(event_id="conn-b0")]}, headers=api.headers()
        )
        assert one.status_code == 200 and one.json()["duplicates"] == 1 and "connection" not in one.headers
    with api.store.read() as session:
        assert session.scalar(select(func.count()).select_from(UsageEvent)) == 3 + closing + 5
