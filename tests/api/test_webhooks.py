"""Webhook endpoints refuse forged, stale and malformed deliveries (keeping only the signed ones, as
refused, for people to see) and store each event once however often it is delivered."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from billbridge.api.app import create_app
from billbridge.app.settings import QuickBooksSettings, Settings, StripeSettings
from billbridge.sandbox.quickbooks import sign_webhook
from billbridge.sandbox.stripe import sign
from billbridge.store import webhooks as inbox
from billbridge.store.db import Store
from billbridge.store.models import WebhookEvent

SECRET = "whsec_endpoint"
VERIFIER = "intuit-verifier-token"
REALM = "9130350000000000"


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "webhooks_inline": False,
        "stripe": StripeSettings(api_key=SecretStr("sk_test_x"), webhook_secret=SecretStr(SECRET)),
        "quickbooks": QuickBooksSettings(
            client_id="c",
            client_secret=SecretStr("s"),
            realm_id=REALM,
            webhook_verifier_token=SecretStr(VERIFIER),
        ),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def client(store: Store, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(store, settings(tmp_path))) as test_client:
        yield test_client


def stripe_event(event_id: str = "evt_1", event_type: str = "charge.succeeded") -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": 1764576000,
            "data": {"object": {"id": "ch_1", "object": "charge", "amount": 1250}},
        }
    ).encode()


def post_stripe(client: TestClient, payload: bytes, header: str | None) -> Any:
    headers = {"Content-Type": "application/json"} | ({"Stripe-Signature": header} if header else {})
    return client.post("/webhooks/stripe", content=payload, headers=headers)


def stored(store: Store) -> list[dict[str, Any]]:
    with store.read() as session:
        return inbox.list_events(session)


def refusal(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["detail"][0]["code"]


def test_stripe_refuses_forged_stale_and_malformed_deliveries(client: TestClient, store: Store) -> None:
    payload, now = stripe_event(), int(time.time())
    old_header = sign(payload, SECRET, now - 330)  # well outside: the test may cross a second boundary
    cases = {
        "other secret": (payload, sign(payload, "whsec_someone_else", now)),
        "tampered body": (payload.replace(b"1250", b"9999"), sign(payload, SECRET, now)),
        "no header": (payload, None),
        "garbage header": (payload, "v1=deadbeef"),
        "stale": (payload, old_header),
        "from the future": (payload, sign(payload, SECRET, now + 330)),
        # A validly signed old header with a fresh timestamp appended: stripe-python checks the first.
        "second timestamp": (payload, f"{old_header},t={now}"),
        "not JSON": (b"not json", sign(b"not json", SECRET, now)),
        "not an event": (b'{"object": "charge"}', sign(b'{"object": "charge"}', SECRET, now)),
        "no type": (b'{"object": "event", "id": "evt_9"}', sign(b'{"object": "event", "id": "evt_9"}', SECRET, now)),
        "not UTF-8": (b"\xff\xfe", sign(b"\xff\xfe", SECRET, now)),
    }
    responses = {name: post_stripe(client, body, header) for name, (body, header) in cases.items()}
    answers = {name: refusal(response) for name, response in responses.items()}
    assert answers == {
        "other secret": (400, "bad_signature"),
        "tampered body": (400, "bad_signature"),
        "no header": (400, "missing_signature"),
        "garbage header": (400, "bad_signature"),
        "stale": (400, "outside_window"),
        "from the future": (400, "outside_window"),
        "second timestamp": (400, "bad_signature"),
        "not JSON": (400, "malformed_payload"),
        "not an event": (400, "malformed_payload"),
        "no type": (400, "malformed_payload"),
        "not UTF-8": (400, "malformed_payload"),
    }
    # Nothing of the forged, stale or unverifiable ones; the signed ones billbridge cannot read are
    # kept as refused, with the reason given in the answer.
    assert sorted((r["outcome"], r["note"]) for r in stored(store)) == sorted(
        ("refused", responses[name].json()["detail"][0]["message"]) for name in ("not JSON", "not an event", "no type")
    )
    # Within the window (either way) it is taken.
    assert post_stripe(client, payload, sign(payload, SECRET, now - 290)).status_code == 200


def test_stripe_stores_each_event_once_however_often_it_comes(client: TestClient, store: Store) -> None:
    first, second = stripe_event("evt_1"), stripe_event("evt_2", "invoice.paid")
    answers = [
        post_stripe(client, body, sign(body, SECRET, int(time.time()) - lag)).json()
        for body, lag in ((first, 0), (second, 0), (first, 5), (second, 60), (first, 120))
    ]
    assert [a["new"] for a in answers] == [1, 1, 0, 0, 0]
    assert [a["duplicates"] for a in answers] == [0, 0, 1, 1, 1]
    rows = stored(store)
    assert sorted((r["event_id"], r["event_type"], r["object_id"]) for r in rows) == [
        ("evt_1", "charge.succeeded", "ch_1"),
        ("evt_2", "invoice.paid", "ch_1"),
    ]


def notification(*entities: tuple[str, str, str, str], realm: str = REALM) -> bytes:
    changes = [{"name": n, "id": i, "operation": op, "lastUpdated": at} for n, i, op, at in entities]
    return json.dumps({"eventNotifications": [{"realmId": realm, "dataChangeEvent": {"entities": changes}}]}).encode()


def post_intuit(client: TestClient, payload: bytes, signature: str | None) -> Any:
    headers = {"Content-Type": "application/json"} | ({"intuit-signature": signature} if signature else {})
    return client.post("/webhooks/quickbooks", content=payload, headers=headers)


def test_quickbooks_stores_each_entity_change_once(client: TestClient, store: Store) -> None:
    at = "2026-12-01T07:00:00.000+00:00"
    payload = notification(
        ("Payment", "41", "Create", at), ("Invoice", "7", "Update", at), ("Payment", "41", "Create", at)
    )
    answer = post_intuit(client, payload, sign_webhook(payload, VERIFIER))
    assert answer.status_code == 200 and answer.json() == {"received": 3, "new": 2, "duplicates": 1}
    # Intuit retries the whole notification; a later change of the same payment is a new event.
    later = notification(("Payment", "41", "Create", at), ("Payment", "41", "Update", "2026-12-01T07:05:00.000+00:00"))
    assert post_intuit(client, later, sign_webhook(later, VERIFIER)).json() == {
        "received": 2,
        "new": 1,
        "duplicates": 1,
    }
    rows = sorted((r["event_type"], r["object_id"]) for r in stored(store))
    assert rows == [("Invoice.Update", "7"), ("Payment.Create", "41"), ("Payment.Update", "41")]


def test_quickbooks_refuses_forged_and_malformed_notifications(client: TestClient, store: Store) -> None:
    payload = notification(("Payment", "41", "Create", "2026-12-01T07:00:00.000+00:00"))
    no_id = json.dumps(
        {"eventNotifications": [{"realmId": REALM, "dataChangeEvent": {"entities": [{"name": "Payment"}]}}]}
    ).encode()
    cases = {
        "other token": (payload, sign_webhook(payload, "someone-else")),
        "tampered body": (payload.replace(b"41", b"42"), sign_webhook(payload, VERIFIER)),
        "no signature": (payload, None),
        "not base64": (payload, "not base64!"),
        "not JSON": (b"{", sign_webhook(b"{", VERIFIER)),
        "no entity id": (no_id, sign_webhook(no_id, VERIFIER)),
    }
    answers = {name: post_intuit(client, body, sig) for name, (body, sig) in cases.items()}
    assert {name: refusal(a) for name, a in answers.items()} == {
        "other token": (400, "bad_signature"),
        "tampered body": (400, "bad_signature"),
        "no signature": (400, "missing_signature"),
        "not base64": (400, "bad_signature"),
        "not JSON": (400, "malformed_payload"),
        "no entity id": (400, "malformed_payload"),
    }
    assert (
        "eventNotifications[0].dataChangeEvent.entities[0].id" in answers["no entity id"].json()["detail"][0]["message"]
    )
    assert sorted((r["outcome"], r["note"]) for r in stored(store)) == sorted(
        ("refused", answers[name].json()["detail"][0]["message"]) for name in ("not JSON", "no entity id")
    )


def cloud_events(*entities: tuple[str, str, str, str], realm: str = REALM) -> bytes:
    """Intuit's current format: a JSON array of CloudEvents, one per change (a fresh id per delivery)."""
    return json.dumps(
        [
            {
                "specversion": "1.0",
                "id": f"{time.time_ns()}-{n}",
                "source": "intuit.abc=",
                "type": f"qbo.{name.lower()}.{op}.v1",
                "datacontenttype": "application/json",
                "time": at,
                "intuitentityid": entity_id,
                "intuitaccountid": realm,
                "data": {},
            }
            for n, (name, entity_id, op, at) in enumerate(entities)
        ]
    ).encode()


def test_quickbooks_cloud_events_are_stored_once_per_change(client: TestClient, store: Store) -> None:
    at = "2026-12-01T07:00:00.000Z"
    payload = cloud_events(("Payment", "41", "created", at), ("Invoice", "7", "updated", at))
    assert post_intuit(client, payload, sign_webhook(payload, VERIFIER)).json() == {
        "received": 2,
        "new": 2,
        "duplicates": 0,
    }
    again = cloud_events(("Payment", "41", "created", at), ("Payment", "41", "updated", "2026-12-01T07:05:00.000Z"))
    assert post_intuit(client, again, sign_webhook(again, VERIFIER)).json() == {
        "received": 2,
        "new": 1,
        "duplicates": 1,
    }
    rows = sorted((r["event_type"], r["object_id"]) for r in stored(store))
    assert rows == [("Invoice.Update", "7"), ("Payment.Create", "41"), ("Payment.Update", "41")]
    with store.read() as session:
        payload_of = {t: p for t, p in session.execute(select(WebhookEvent.event_type, WebhookEvent.payload))}
    # What the worker checks the company by, and the event's own id for tracing.
    assert json.loads(payload_of["Payment.Create"])["realmId"] == REALM
    assert json.loads(payload_of["Payment.Create"])["eventId"]

    malformed = cloud_events(("Payment", "42", "created", at)).replace(b"qbo.payment", b"quickbooks.payment")
    answer = post_intuit(client, malformed, sign_webhook(malformed, VERIFIER))
    assert refusal(answer) == (400, "malformed_payload")
    assert answer.json()["detail"][0]["message"].startswith("[0].type")
    assert [r["outcome"] for r in stored(store)] == ["refused", None, None, None]


def test_unconfigured_secrets_answer_503_so_the_vendor_retries(store: Store, tmp_path: Path) -> None:
    app = create_app(store, settings(tmp_path, stripe=None, quickbooks=None))
    with TestClient(app) as unconfigured:
        payload = stripe_event()
        stripe_answer = post_stripe(unconfigured, payload, sign(payload, SECRET, int(time.time())))
        intuit_answer = post_intuit(unconfigured, notification(), "x")
    assert refusal(stripe_answer) == refusal(intuit_answer) == (503, "webhook_not_configured")
    assert "BILLBRIDGE_STRIPE__WEBHOOK_SECRET" in stripe_answer.json()["detail"][0]["message"]
    assert stored(store) == []


def stripe_payload(**overrides: Any) -> bytes:
    """A Stripe event with fields replaced; ``data="DEEP"`` nests its data 5,000 levels deep."""
    event = json.loads(stripe_event()) | overrides
    text = json.dumps(event)
    return text.replace('"DEEP"', "[" * 5000 + "]" * 5000).encode()


@pytest.mark.slow
def test_signed_but_odd_deliveries_are_refused_and_kept_visible(client: TestClient, store: Store) -> None:
    """Signed payloads with values no Stripe or Intuit event has answered 500 (the vendor retries a
    500 for days). They are refused with a 400 naming the field and kept, once, as refused."""
    at = "2026-12-01T07:00:00.000Z"
    stripe_cases = [  # (words of the answer, payload)
        ("created", stripe_payload(created=10**20)),
        ("created", stripe_payload(created=1e20)),
        ("event id: 304 characters", stripe_payload(id="evt_" + "x" * 300)),
        ("event type: 500 characters", stripe_payload(type="t" * 500)),
        ("event id: contains NUL", stripe_payload(id="evt_\x00")),
        ("event type: contains NUL or an unpaired surrogate", stripe_payload(type="charge.\ud800")),
        ("object id: 201 characters", stripe_payload(data={"object": {"id": "c" * 201}})),
        ("nested too deep", stripe_payload(data="DEEP")),
    ]
    intuit_cases = [
        ("object id: contains NUL or an unpaired surrogate", cloud_events(("Payment", "4\ud8001", "created", at))),
        ("object id: 300 characters", cloud_events(("Payment", "1" * 300, "created", at))),
        ("nested too deep", b"[" * 5000 + b"]" * 5000),
        ("[1] object id", cloud_events(("Payment", "41", "created", at), ("Payment", "4" * 201, "created", at))),
    ]
    now = int(time.time())
    for words, payload in stripe_cases:
        for attempt in range(2):  # the vendor retries: kept once
            answer = post_stripe(client, payload, sign(payload, SECRET, now - attempt))
            assert refusal(answer) == (400, "malformed_payload"), (words, answer.text)
            assert words in answer.json()["detail"][0]["message"], (words, answer.json())
    for words, payload in intuit_cases:
        answer = post_intuit(client, payload, sign_webhook(payload, VERIFIER))
        assert refusal(answer) == (400, "malformed_payload"), (words, answer.text)
        assert words in answer.json()["detail"][0]["message"], (words, answer.json())

    kept = stored(store)
    assert len(kept) == len(stripe_cases) + len(intuit_cases)
    assert {(r["source"], r["event_type"], r["outcome"]) for r in kept} == {
        ("stripe", "refused", "refused"),
        ("quickbooks", "refused", "refused"),
    }
    assert all(r["processed_at"] is not None and r["note"] for r in kept)
    with store.read() as session:
        assert inbox.list_events(session, pending_only=True) == []  # nothing for processing to act on
    payload = stripe_event("evt_fine")
    assert post_stripe(client, payload, sign(payload, SECRET, now)).json()["new"] == 1
