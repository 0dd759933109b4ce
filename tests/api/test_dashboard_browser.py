"""The dashboard in a real headless browser (Debian's chromium through Playwright) against a real
API server over a store filled with the example contracts, their usage, invoices sent and paid:
sign in, every tab, the figures shown equal the API's, the charts drew data, no console error or
failed request, and an unsigned request is refused. Screenshots: bench/out/screenshots/."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from billbridge.api.app import create_app
from billbridge.flows.importing import import_file
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.partner_fees import accrue_fees
from billbridge.settings import Settings
from billbridge.store import api_keys, dashboard_users
from billbridge.store.db import Store, open_store
from billbridge.store.invoices import list_invoices
from billbridge.store.outbound_documents import set_status
from billbridge.store.payments import record_payment
from tests.browser import chromium, screenshot
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2026-11-22"
PERIOD = {"entity": "us-inc", "from": "2026-01-01", "to": AS_OF, "as_of": AS_OF}
PASSWORD = "dashboard test password"
API_OF = {  # the dashboard's tables and the endpoint (with parameters) that answers the same
    "mrr": ("mrr", {"as_of": AS_OF}),
    "movements": ("movements", {"from": "2026-01-01", "to": AS_OF}),
    "aging": ("aging", {"as_of": AS_OF}),
    "forecast": ("forecast", {"as_of": AS_OF}),
    "collections": ("collections", {"from": "2026-01-01", "to": AS_OF}),
    "product_groups": ("products", {"from": "2026-01-01", "to": AS_OF, "by": "group"}),
    "invoices": ("invoices", {"from": "2026-01-01", "to": AS_OF, "as_of": AS_OF}),
    "usage": ("usage", {"from": "2026-01-01", "to": AS_OF}),
    "activity": ("usage/activity", {}),
    "customers": ("customers", {"as_of": AS_OF}),
}
TABS = {"dashboard": "/", "usage": "/usage", "invoices": "/invoices", "customers": "/customers"}


@dataclass
class Served:
    url: str
    store: Store
    key: str


def _usage(client: httpx.Client, key: str) -> None:
    """Hooli's API calls, a batch a month (billed in arrears on its usage line)."""
    events = [
        {
            "timestamp": f"2026-{month:02d}-{day:02d}T10:00:00Z",
            "customer_ref": "hooli",
            "customer_name": "Hooli",
            "usage_product_ref": "api-calls",
            "usage_product_name": "API calls",
            "quantity": 1000 * month + day,
            "validations": {"currency": "USD", "entity_ref": "us-inc"},
        }
        for month in range(6, 12)
        for day in (3, 17)
    ]
    answer = client.post("/api/usage/events/batch", json={"events": events}, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200 and answer.json()["accepted"] == len(events), answer.text


def _send_and_pay(store: Store) -> None:
    """us-inc's invoices before October are sent; most paid, one in part, the rest left open (late)."""
    with store.read() as session:
        documents = [d for d in list_invoices(session) if d["entity_ref"] == "us-inc" and d["doc_type"] == "invoice"]
    sent = [d for d in documents if d["billing_date"] < date(2026, 10, 1)]
    with store.write() as session:
        for d in sent:
            for status in ("approved", "sent"):
                set_status(session, d["number"], status, lambda _: ())  # pushed nowhere
    with store.write() as session:
        for n, d in enumerate(sent):
            share = d["invoice_total"] if n % 3 else (d["invoice_total"] / 2).quantize(Decimal("0.01"))
            if n % 4 != 3 and share > 0:
                record_payment(
                    session,
                    payment_ref=f"test:{d['number']}",
                    currency="USD",
                    amount=share,
                    received_on=min(d["due_date"], date(2026, 11, 20)),
                    allocations=[(d["number"], share)],
                    customer_ref=d["customer_ref"],
                )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    store = open_store(f"sqlite:///{tmp_path / 'dashboard.db'}")
    for path in sorted((ROOT / "examples" / "contracts").glob("*.yaml")):
        import_file(store, path)
    with store.write() as session:
        _, key = api_keys.create_key(session, "us-inc", "browser test")
        dashboard_users.create_user(session, "finance", PASSWORD, ["us-inc", "eu-bv", "jp-kk", "kw-wll"])
    app = create_app(store, Settings(webhooks_inline=False, data_dir=tmp_path / "data"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.config.port}"
    with httpx.Client(base_url=url) as client:
        _usage(client, key)
    run_billing(store, date.fromisoformat(AS_OF))
    _send_and_pay(store)
    try:
        yield Served(url, store, key)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.dispose()


def _api(served: Served, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{served.url}/api/metrics/{path}", params=params, headers={"Authorization": f"Bearer {served.key}"}
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


SHOWN = """(name) => [...document.querySelectorAll(`#report-${name} tbody tr`)].map((tr) =>
  Object.fromEntries([...tr.querySelectorAll('td[data-column]')].map((td) => [td.dataset.column, td.dataset.value])))"""
CHARTS = """() => [...document.querySelectorAll('canvas')].map((c) => ({
  report: c.closest('section').dataset.report, width: c.width, height: c.height,
  points: c.chart ? c.chart.data.datasets.reduce((n, d) => n + d.data.filter((v) => v !== 0).length, 0) : 0 }))"""


def test_the_dashboard_in_a_browser(served: Served) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        page.on("response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None)

        # Unsigned: the page sends to the sign-in form, a table download is refused.
        page.goto(f"{served.url}/invoices")
        assert page.url == f"{served.url}/sign-in"
        refused = page.request.get(f"{served.url}/csv/aging")
        assert refused.status == 401
        problems.clear()  # that 401 was asked for
        screenshot(page, "sign-in")

        page.fill("#sign-in-user input[name=username]", "finance")
        page.fill("#sign-in-user input[name=password]", PASSWORD)
        page.click("#sign-in-user button")
        page.wait_for_url(f"{served.url}/")
        query = "&".join(f"{k}={v}" for k, v in PERIOD.items())
        for tab, path in TABS.items():
            page.goto(f"{served.url}{path}?{query}")
            page.wait_for_selector("body[data-charts-ready=true]")
            sections = page.eval_on_selector_all("section[data-report]", "(all) => all.map((s) => s.dataset.report)")
            assert sections, tab
            for name in sections:
                endpoint, params = API_OF[name]
                expected = _api(served, endpoint, params)
                shown = page.evaluate(SHOWN, name)
                columns = set(shown[0]) if shown else set()
                assert shown == [
                    {c: "" if row.get(c) is None else str(row[c]) for c in columns if c in row} for row in expected
                ], (tab, name)
            charts = page.evaluate(CHARTS)
            if tab != "customers":
                assert charts and all(c["width"] > 0 and c["height"] > 0 for c in charts), tab
                assert any(c["points"] > 0 for c in charts), (tab, charts)
            screenshot(page, f"tab-{tab}")

        # MRR, receivable and a forecast shown are the API's figures, as a person reads them
        mrr = _api(served, "mrr", {"as_of": AS_OF})[0]
        page.goto(f"{served.url}/?{query}")
        page.wait_for_selector("body[data-charts-ready=true]")
        assert page.inner_text("#report-mrr td[data-column=mrr]") == f"{Decimal(mrr['mrr']):,}"
        receivable = Decimal(_api(served, "aging", {"as_of": AS_OF})[0]["receivable"])
        assert receivable > 0 and page.inner_text("#report-aging td[data-column=receivable]") == f"{receivable:,}"

        # A customer's own page, from the Customers tab
        page.goto(f"{served.url}/customers?{query}")
        page.click("#report-customers a:has-text('hooli')")
        page.wait_for_selector("body[data-charts-ready=true]")
        assert "C-102-hooli" in page.inner_text("#report-contracts")
        assert page.locator("#report-payments tbody tr").count() > 0
        assert page.evaluate(CHARTS)[0]["points"] > 0  # the MRR history
        screenshot(page, "customer-hooli")

        download = page.request.get(f"{served.url}/csv/aging?{query}")
        assert download.status == 200 and download.text().splitlines()[0].startswith("entity_ref,currency,current")

        # Partners: the referral partner's fees and referred customers, as /api/partners says them
        accrue_fees(served.store, as_of=date.fromisoformat(AS_OF))
        page.click("nav a[data-tab=partners]")
        page.wait_for_selector("#report-referrals")
        northwind = httpx.get(
            f"{served.url}/api/partners/northwind", headers={"Authorization": f"Bearer {served.key}"}
        ).json()
        assert Decimal(northwind["fees_accrued"]) > 0  # hooli paid: 20% and the flat fee
        shown_partners = {p["partner_ref"]: p for p in page.evaluate(SHOWN, "partners")}
        assert set(shown_partners) == {"northwind", "channel-one"}  # the referral partner and the reseller
        assert shown_partners["northwind"]["fees_accrued"] == northwind["fees_accrued"]
        referred = page.evaluate(SHOWN, "referrals")
        assert [(r["agreement_ref"], r["revenue"], r["fees"]) for r in referred] == [
            (r["agreement_ref"], r["revenue"], r["fees"]) for r in northwind["referred_customers"]
        ]
        customers = page.eval_on_selector_all("#report-referrals tbody a", "(all) => all.map((a) => a.textContent)")
        assert customers == [r["customer_ref"] for r in northwind["referred_customers"]]  # linked to their pages
        screenshot(page, "tab-partners")
        assert problems == []
