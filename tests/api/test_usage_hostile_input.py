"""Hostile, odd and loosely written usage input: each event is refused on its own, naming its field,
and never costs the good events of its batch (issue 22, item 4); only the documented formats are
read (item 10)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from billbridge.billing.usage_reports import group_usage
from billbridge.store.models import UsageEvent
from tests.api.conftest import Api, event

EVENT = "/api/usage/event"
BATCH = "/api/usage/events/batch"


def count(api: Api) -> int:
    with api.store.read() as session:
        return session.scalar(select(func.count()).select_from(UsageEvent)) or 0


def post(api: Api, path: str, body: Any) -> Any:
    """JSON with non-ASCII escaped, so lone surrogates travel as ``\\ud800`` as a sender may write them."""
    return api.client.post(path, content=json.dumps(body), headers=api.headers(**{"Content-Type": "application/json"}))


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"down": value}
    return value


POISON = [
    ({"timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp"),
    ({"timestamp": "9999-12-31T23:59:59-01:00"}, "timestamp"),
    ({"additional_report_data": {"n": 2**70}}, "additional_report_data.n"),
    ({"additional_report_data": {"n": [-(2**64)]}}, "additional_report_data.n[0]"),
    ({"additional_report_data": nested(300)}, "additional_report_data"),
    ({"customer_ref": "globex\ud800"}, "customer_ref"),
    ({"additional_report_data": {"note\udfff": "x"}}, "additional_report_data"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("change", "field"), POISON, ids=[str(i) for i in range(len(POISON))])
def test_a_poison_event_is_refused_alone_and_the_rest_of_the_batch_is_stored(
    api: Api, change: dict[str, Any], field: str
) -> None:
    single = post(api, EVENT, event(**change))
    assert single.status_code == 422, single.text
    assert single.json()["detail"][0]["field"].startswith(field), single.json()

    events = [event(quantity=1, event_id=f"good-{i}") for i in range(999)]
    events.insert(500, event(**change, event_id="poison"))
    response = post(api, BATCH, {"events": events})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["refused"]) == (999, 1)
    [refused] = [r for r in body["results"] if r["status"] == "refused"]
    assert refused["index"] == 500
    assert refused["errors"][0]["field"].startswith(f"events[500].{field}"), refused
    assert count(api) == 999


def test_timestamps_are_bounded_to_the_documented_range(api: Api) -> None:
    too_early = api.post(EVENT, event(timestamp="1999-12-31T23:59:59.999999Z"))
    assert too_early.status_code == 422
    assert too_early.json()["detail"][0] == {
        "field": "timestamp",
        "message": "timestamp is before 2000-01-01T00:00:00Z",
        "code": "timestamp_out_of_range",
    }
    # the first instant allowed, written with an offset that puts it on the previous local day
    assert api.post(EVENT, event(timestamp="1999-12-31T23:00:00-01:00")).status_code == 201
    ahead = (datetime.now(timezone.utc) + timedelta(days=1, minutes=5)).isoformat()
    assert api.post(EVENT, event(timestamp=ahead)).json()["detail"][0]["code"] == "timestamp_out_of_range"
    assert count(api) == 1


# Values a sender might put in any field of an event, valid or not.
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.text(st.characters(min_codepoint=0, max_codepoint=0xDFFF, exclude_categories=())),  # NUL, lone surrogates
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2026-01-15T08:00:00+23:59",
            "2026-01-15T08:00:00.9999999Z",
            "1767225600",
            "\u0663",
            "1_000",
            " 5 ",
            "1e999999",
            "-0",
        ]
    ),
    st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
    st.recursive(
        st.one_of(
            st.integers(min_value=-(2**70), max_value=2**70),
            st.text(),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(), inner, max_size=3)),
        max_leaves=20,
    ),
)
FIELDS = [
    "timestamp",
    "customer_ref",
    "customer_name",
    "usage_product_ref",
    "usage_product_name",
    "quantity",
    "additional_report_data",
    "validations",
    "event_id",
]


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(FIELDS), value=HOSTILE, whole=st.booleans())
def test_any_hostile_event_is_answered_on_its_own(api: Api, field: str, value: Any, whole: bool) -> None:
    """Property: a batch of a good event, a hostile one and a good event answers 200; the good ones
    are accepted, and the hostile one is accepted or refused with a field of its own named."""
    hostile: Any = value if whole and not isinstance(value, dict) else event(**{field: value})
    body = post(api, BATCH, {"events": [event(quantity=1), hostile, event(quantity=2)]})
    assert body.status_code == 200, body.text
    results = body.json()["results"]
    assert [results[0]["status"], results[2]["status"]] == ["accepted", "accepted"], results
    if results[1]["status"] == "refused":
        for problem in results[1]["errors"]:
            assert problem["index"] == 1 and problem["message"], problem
            assert problem.get("field", "events[1]").startswith("events[1]"), problem


@pytest.mark.slow
@pytest.mark.parametrize("quantity", ["\u0663", "1_000", " 5", "5 ", "+5", "1e3", "0x10", "5.", ".5", "Infinity", "-0"])
def test_a_quantity_string_is_written_in_plain_digits(api: Api, quantity: str) -> None:
    response = api.post(EVENT, event(quantity=quantity))
    assert response.status_code == 422, response.text
    problem = response.json()["detail"][0]
    assert problem["field"] == "quantity", problem
    assert count(api) == 0


def test_a_quantity_of_more_digits_than_python_reads_is_refused_on_quantity(api: Api) -> None:
    """A JSON integer of 100,000 digits is past int()'s 4,300-digit limit: the JSON reader must not
    answer 400 with Python's message about sys.set_int_max_str_digits, but 422 naming the field."""
    huge = "9" * 100_000
    body = json.dumps(event(quantity=0)).replace('"quantity": 0', f'"quantity": {huge}')
    response = api.client.post(EVENT, content=body, headers=api.headers(**{"Content-Type": "application/json"}))
    assert response.status_code == 422, response.text[:300]
    [problem] = response.json()["detail"]  # as 1e999999 is answered
    assert problem["field"] == "quantity" and problem["message"].endswith("quantity must be below 10^9"), problem
    in_data = json.dumps(event()).replace('"note": "User-specific note"', f'"n": {huge}')
    response = api.client.post(EVENT, content=in_data, headers=api.headers(**{"Content-Type": "application/json"}))
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "additional_report_data.n"
    assert "set_int_max_str_digits" not in response.text and count(api) == 0


def test_quantity_strings_in_the_documented_format_are_read_exactly(api: Api) -> None:
    for quantity in ("0", "12.5", "007", "999999999.999999", "1.000000"):
        assert api.post(EVENT, event(quantity=quantity)).status_code == 201, quantity
    days = api.get("/api/usage/reports", group_by="day").json()["data"]
    assert days == [{"group": "2026-01-15", "quantity": "1000000020.499999", "events": 5, "money": []}]


@pytest.mark.parametrize(
    "stamp",
    [
        "1767225600",  # a Unix time as a string
        "2026-01-15T08:00Z",  # no seconds
        "2026-01-15_08:00:00Z",
        "2026-01-15 08:00:00Z",
        "2026-01-15T08:00:00+0100",
        "\u0662\u0660\u0662\u0666-01-15T08:00:00Z",
    ],
)
def test_a_timestamp_is_iso_8601_with_seconds_and_a_time_zone(api: Api, stamp: str) -> None:
    response = api.post(EVENT, event(timestamp=stamp))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == "timestamp"
    for stamp in ("2026-01-15T08:00:00Z", "2026-01-15t08:00:00.123456789z", "2026-01-15T08:00:00-05:30"):
        assert api.post(EVENT, event(timestamp=stamp)).status_code == 201, stamp


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("to", "0"),
        ("from", "1767225600"),
        ("to", "2026-01-15T00:00:00Z"),
        ("from", "20260115"),
        ("limit", "1_000"),
        ("limit", " 5"),
        ("limit", "5.0"),
    ],
)
def test_report_parameters_are_read_in_their_documented_format(api: Api, name: str, value: str) -> None:
    assert api.post(EVENT, event()).status_code == 201
    response = api.get("/api/usage/reports", **{name: value})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == name
    assert (
        len(api.get("/api/usage/reports", **{"from": "2026-01-15", "to": "2026-01-15", "limit": "5"}).json()["data"])
        == 1
    )


def test_months_are_written_with_four_digit_years() -> None:
    rows = [("c", "p", date(1, 1, 31), Decimal(1), 1), ("c", "p", date(2026, 1, 1), Decimal(2), 1)]
    assert [g.key for g in group_usage(rows, "month")] == ["0001-01", "2026-01"]
