"""``/api/metrics/...`` and the dashboard's sign-in, sessions and pages, through FastAPI's TestClient
over a real store (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import json
import re
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from billbridge.api.app import create_app
from billbridge.api.dashboard import session as sessions
from billbridge.flows import metrics
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.settings import Settings
from billbridge.store import api_keys, dashboard_users
from billbridge.store.db import Store
from tests.api.conftest import Api, event
from tests.docs import contract, document

DAY = date(2026, 3, 1)
ENDPOINTS = [
    "mrr",
    "movements",
    "movements/customers",
    "collections",
    "aging",
    "invoices",
    "forecast",
    "products",
    "usage",
    "usage/activity",
    "customers",
]


@pytest.fixture
def billed(api: Api) -> Api:
    summary = import_document(
        api.store, document(contract("C-KW", customer="gulf", entity="kw", currency="KWD"), with_reference=False)
    )
    assert not summary.errors
    run_billing(api.store, DAY)
    return api


def test_each_metric_is_the_report_of_the_keys_entity(billed: Api) -> None:
    answer = billed.get("/api/metrics/mrr", as_of="2026-02-15")
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == [
        {
            "entity_ref": "us",
            "currency": "USD",
            "day": "2026-02-15",
            "mrr": "1200.00",
            "arr": "14400.00",
            "active_customers": 1,
            "arpa": "1200.00",
        }
    ]
    kw = billed.get("/api/metrics/mrr", token=billed.kw_token, as_of="2026-02-15").json()["data"]
    assert [(r["entity_ref"], r["mrr"]) for r in kw] == [("kw", "365.125")]
    for path in ENDPOINTS:
        params: dict[str, Any] = {"as_of": "2026-03-01"} if path in ("mrr", "aging", "forecast", "customers") else {}
        if path not in ("mrr", "aging", "forecast", "customers", "usage/activity"):
            params.update({"from": "2026-01-01", "to": "2026-03-01"})
        answer = billed.get(f"/api/metrics/{path}", **params)
        assert answer.status_code == 200, (path, answer.text)
        body = answer.json()
        assert all(row.get("entity_ref", "us") == "us" for row in body["data"]), path
    flows = billed.get("/api/metrics/collections", **{"from": "2026-01-01", "to": "2026-03-01"}).json()["data"]
    expected = metrics.collections_report(billed.store, metrics.scope(billed.store, ["us"]), date(2026, 1, 1), DAY)
    assert flows == expected.rows and [r["billed"] for r in flows] == ["1200.00", "1200.00", "1200.00"]


def test_bad_parameters_and_no_key_are_refused(billed: Api) -> None:
    answer = billed.get("/api/metrics/collections", **{"from": "2026-03-01", "to": "2026-01-01"})
    assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == "to"
    answer = billed.get("/api/metrics/aging", as_of="yesterday")
    assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == "as_of"
    # a number is not a date here (pydantic alone would read 0.0 as 1970-01-01, a Unix time)
    answer = billed.get("/api/metrics/invoices", as_of="0.0")
    assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == "as_of"
    # a forecast plans up to a year past its day: centuries ahead is refused, not planned for minutes
    answer = billed.get("/api/metrics/forecast", as_of="2600-01-01")
    assert answer.status_code == 422 and answer.json()["detail"][0]["code"] == "outside_window"
    answer = billed.get("/api/metrics/movements", **{"from": "1999-12-31"})
    assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == "from"
    assert billed.client.get("/api/metrics/mrr").status_code == 401
    spec = billed.client.get("/openapi.json").json()
    assert {f"/api/metrics/{p}" for p in ENDPOINTS} <= set(spec["paths"])
    aging = spec["paths"]["/api/metrics/aging"]["get"]
    assert aging["tags"] == ["Metrics"] and aging["description"].startswith("Accounts-receivable aging")


# ---------------------------------------------------------------------------------------------
# The dashboard
# ---------------------------------------------------------------------------------------------


class Browser:
    """A TestClient used as a browser: it keeps cookies and sends the Origin a browser sends."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def sign_in_form(self) -> str:
        page = self.client.get("/sign-in")
        assert page.status_code == 200
        return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]

    def sign_in(self, **fields: str) -> Any:
        csrf = self.sign_in_form()
        return self.client.post(
            "/sign-in", data={"csrf": csrf, **fields}, headers={"Origin": "http://testserver"}, follow_redirects=False
        )


@pytest.fixture
def dashboard(store: Store, tmp_path: Path) -> tuple[Browser, Store, str, Path]:
    import_document(store, document(contract("C-1"), contract("C-KW", customer="gulf", entity="kw", currency="KWD")))
    run_billing(store, DAY)
    with store.write() as session:
        _, token = api_keys.create_key(session, "us")
        dashboard_users.create_user(session, "finance", "a long password", ["us", "kw"])
    settings = Settings(webhooks_inline=False, data_dir=tmp_path / "data")
    return Browser(TestClient(create_app(store, settings))), store, token, tmp_path / "data"


@pytest.mark.slow
def test_pages_need_a_session(dashboard: tuple[Browser, Store, str, Path]) -> None:
    browser = dashboard[0]
    for path in ("/", "/usage", "/invoices", "/customers", "/customers/globex"):
        answer = browser.client.get(path, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, "/sign-in"), path
    assert browser.client.get("/csv/aging").status_code == 401


def test_sign_in_with_a_key_sets_a_strict_httponly_cookie_that_expires(
    dashboard: tuple[Browser, Store, str, Path],
) -> None:
    browser, _store, token, _ = dashboard
    answer = browser.sign_in(api_key=token)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{sessions.COOKIE}="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and f"Max-Age={sessions.SESSION_SECONDS}" in cookie
    page = browser.client.get("/")
    assert page.status_code == 200 and "MRR movements" in page.text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "kw" not in re.findall(r'<option value="([^"]+)"', page.text)  # the key's entity only


def test_a_session_older_than_its_lifetime_is_refused(dashboard: tuple[Browser, Store, str, Path]) -> None:
    browser, store, token, data_dir = dashboard
    assert browser.sign_in(api_key=token).status_code == 303
    with store.read() as session:
        key = api_keys.authenticate(session, token)
    assert key is not None
    body = {"kind": sessions.KIND, "principal": "key", "id": key.key_id, "who": "x", "entities": ["us"], "csrf": "c"}
    old = Fernet((data_dir / "secret.key").read_bytes().strip()).encrypt_at_time(
        json.dumps(body).encode(), int(time.time()) - sessions.SESSION_SECONDS - 60
    )
    browser.client.cookies.set(sessions.COOKIE, old.decode())
    assert browser.client.get("/", follow_redirects=False).status_code == 303


def test_a_revoked_key_ends_its_sessions(dashboard: tuple[Browser, Store, str, Path]) -> None:
    browser, store, token, _ = dashboard
    assert browser.sign_in(api_key=token).status_code == 303
    assert browser.client.get("/", follow_redirects=False).status_code == 200
    with store.write() as session:
        api_keys.revoke_key(session, token.split("_")[0] + "_" + token.split("_")[1])
    assert browser.client.get("/", follow_redirects=False).status_code == 303


def test_forms_need_their_csrf_token_and_origin(dashboard: tuple[Browser, Store, str, Path]) -> None:
    browser, _store, token, _ = dashboard
    csrf = browser.sign_in_form()
    forged = browser.client.post("/sign-in", data={"csrf": "guess", "api_key": token}, follow_redirects=False)
    assert forged.status_code == 403 and sessions.COOKIE not in forged.cookies
    elsewhere = browser.client.post(
        "/sign-in",
        data={"csrf": csrf, "api_key": token},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert elsewhere.status_code == 403
    wrong = browser.sign_in(api_key="bb_nope_nope")
    assert wrong.status_code == 401 and "unknown API key" in wrong.text
    assert browser.sign_in(api_key=token).status_code == 303
    no_token = browser.client.post(
        "/sign-out", data={}, headers={"Origin": "http://testserver"}, follow_redirects=False
    )
    assert no_token.status_code == 403
    assert browser.client.get("/", follow_redirects=False).status_code == 200  # still signed in
    page = browser.client.get("/")
    token_in_page = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    out = browser.client.post(
        "/sign-out", data={"csrf": token_in_page}, headers={"Origin": "http://testserver"}, follow_redirects=False
    )
    assert out.status_code == 303
    assert browser.client.get("/", follow_redirects=False).status_code == 303


@pytest.mark.slow
def test_a_user_sees_their_entities_and_no_other(dashboard: tuple[Browser, Store, str, Path]) -> None:
    browser, store, _, _ = dashboard
    assert browser.sign_in(username="finance", password="not the password").status_code == 401
    assert browser.sign_in(username="finance", password="a long password").status_code == 303
    page = browser.client.get("/", params={"entity": "kw", "as_of": "2026-03-01"})
    assert page.status_code == 200 and "365.125" in page.text
    assert set(re.findall(r'<option value="([^"]+)"', page.text)) == {"us", "kw"}
    other = browser.client.get("/", params={"entity": "eu"})
    assert other.status_code == 403 and "you do not see legal entity &#39;eu&#39;" in other.text
    with store.write() as session:
        dashboard_users.disable_user(session, "finance")
    assert browser.client.get("/", follow_redirects=False).status_code == 303


def test_every_table_downloads_as_the_reports_csv(dashboard: tuple[Browser, Store, str, Path]) -> None:
    browser, store, token, _ = dashboard
    browser.sign_in(api_key=token)
    answer = browser.client.get("/csv/collections", params={"from": "2026-01-01", "to": "2026-03-01"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert 'filename="collections-us-' in answer.headers["content-disposition"]
    lines = answer.text.splitlines()
    assert lines[0] == "entity_ref,currency,month,billed,credited,collected"
    assert lines[1:] == [
        "us,USD,2026-01,1200.00,0.00,0.00",
        "us,USD,2026-02,1200.00,0.00,0.00",
        "us,USD,2026-03,1200.00,0.00,0.00",
    ]
    assert browser.client.get("/csv/nothing").status_code == 404
    customer = browser.client.get("/customers/globex", params={"as_of": "2026-03-01"})
    assert customer.status_code == 200 and "C-1" in customer.text and "US-INV-1" in customer.text
    assert browser.client.get("/customers/gulf").status_code == 404  # another entity's customer


@pytest.mark.slow
def test_usage_reports_carry_the_money_billed_for_the_usage(api: Api) -> None:
    events = [event(quantity=1000, event_id=f"e{n}") for n in range(3)]  # 15 January, globex, api
    assert api.post("/api/usage/events/batch", {"events": events}).json()["accepted"] == 3
    run_billing(api.store, date(2026, 2, 1))  # in arrears: January's usage on the 1 February invoice
    months = api.get("/api/usage/reports", group_by="month").json()["data"]
    assert months == [
        {"group": "2026-01", "quantity": "3000", "events": 3, "money": []},
        {
            "group": "2026-02",
            "quantity": "0",
            "events": 0,
            "money": [{"currency": "USD", "billed": "6.00", "collected": "0.00"}],
        },
    ]
    customers = api.get("/api/usage/reports", group_by="customer").json()["data"]
    assert customers == [
        {
            "group": "globex",
            "quantity": "3000",
            "events": 3,
            "money": [{"currency": "USD", "billed": "6.00", "collected": "0.00"}],
        }
    ]
    days = api.get("/api/usage/reports", group_by="day").json()["data"]
    assert [d["money"] for d in days] == [[]]  # a period's usage is billed as one amount, not per day
    other = api.get("/api/usage/reports", token=api.kw_token, group_by="customer").json()["data"]
    assert other == []


def test_the_customers_tab_pages_by_customer_ref(dashboard: tuple[Browser, Store, str, Path]) -> None:
    browser, store, token, _ = dashboard
    import_document(store, document(contract("C-2", customer="initech"), with_reference=False))
    browser.sign_in(api_key=token)
    first = browser.client.get("/customers", params={"as_of": "2026-03-01"})
    assert ">globex</a>" in first.text and ">initech</a>" in first.text
    assert "next customers after initech" in first.text
    after = browser.client.get("/customers", params={"as_of": "2026-03-01", "after": "globex"})
    assert ">globex</a>" not in after.text and ">initech</a>" in after.text
