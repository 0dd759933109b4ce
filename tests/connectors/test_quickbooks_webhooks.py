"""Intuit's two webhook payload formats read into the same entity changes, and malformed ones named by field.

The CloudEvents sample is the shape Intuit's own sample app and SDKs document for the current
format (a JSON array, ``type`` ``qbo.<entity>.<operation>.v1``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from billbridge.connectors.quickbooks.webhooks import EntityChange, MalformedNotification, parse_notification

REALM = "310687"


def cloud_event(**overrides: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "88cd52aa-33b6-4351-9aa4-47572edbd068",
        "source": "intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=",
        "type": "qbo.payment.created.v1",
        "datacontenttype": "application/json",
        "time": "2026-05-31T21:31:25.179Z",
        "intuitentityid": "95",
        "intuitaccountid": REALM,
        "data": {},
    } | overrides


def test_cloud_events_are_read_as_entity_changes() -> None:
    payload = json.dumps(
        [
            cloud_event(),
            cloud_event(id="e2", type="qbo.creditmemo.voided.v1", intuitentityid="4"),
            cloud_event(id="e3", type="qbo.billpayment.merged.v1", intuitentityid="7"),
        ]
    ).encode()
    changes = parse_notification(payload)
    assert [(c.name, c.id, c.operation, c.realm_id) for c in changes] == [
        ("Payment", "95", "Create", REALM),
        ("CreditMemo", "4", "Void", REALM),
        ("BillPayment", "7", "Merge", REALM),
    ]
    assert changes[0].event_id == "88cd52aa-33b6-4351-9aa4-47572edbd068"
    assert changes[0].updated_at == datetime(2026, 5, 31, 21, 31, 25, 179000, tzinfo=UTC)
    assert parse_notification(b"[]") == []


def test_the_same_change_has_one_key_in_either_format_and_however_often_sent() -> None:
    at = "2026-05-31T21:31:25.179Z"
    legacy = {
        "eventNotifications": [
            {
                "realmId": REALM,
                "dataChangeEvent": {
                    "entities": [{"name": "Payment", "id": "95", "operation": "Create", "lastUpdated": at}]
                },
            }
        ]
    }
    (old,) = parse_notification(json.dumps(legacy).encode())
    (first,) = parse_notification(json.dumps([cloud_event(time=at)]).encode())
    (again,) = parse_notification(json.dumps([cloud_event(time=at, id="a-new-delivery-id")]).encode())
    assert old.key == first.key == again.key
    assert old.event_id is None
    (later,) = parse_notification(json.dumps([cloud_event(time="2026-05-31T21:40:00.000Z")]).encode())
    assert later.key != first.key
    assert EntityChange(REALM, "Payment", "95", "Update", at).key != first.key


@pytest.mark.parametrize(
    ("event", "named"),
    [
        (cloud_event(type="invoice.created"), "[1].type"),
        (cloud_event(type="qbo.invoice.created"), "[1].type"),
        (cloud_event(specversion="0.3"), "[1].specversion"),
        ({k: v for k, v in cloud_event().items() if k != "intuitentityid"}, "[1].intuitentityid"),
        (cloud_event(intuitaccountid=310687), "[1].intuitaccountid"),
        (cloud_event(time=""), "[1].time"),
        ("qbo.invoice.created.v1", "[1] is not an object"),
    ],
)
def test_a_malformed_cloud_event_is_refused_naming_its_field(event: Any, named: str) -> None:
    with pytest.raises(MalformedNotification) as refused:
        parse_notification(json.dumps([cloud_event(id="a fine one"), event]).encode())
    assert str(refused.value).startswith(named)


def test_a_payload_in_neither_format_is_refused() -> None:
    for payload in (b'"text"', b"42", b'{"events": []}'):
        with pytest.raises(MalformedNotification):
            parse_notification(payload)
