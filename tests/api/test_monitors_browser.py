"""The dashboard's Monitors page in a real headless browser (Debian's chromium through Playwright),
over the example contracts with Hooli's usage: the list, a monitor's chart and table net and as
increments, equal to the API's series; no console error or failed request."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest

from billbridge.billing.monitors import MonitorDefinition
from billbridge.flows import monitors as flow
from tests.api import test_dashboard_browser as dashboard
from tests.api.test_dashboard_browser import CHARTS, PASSWORD, SHOWN, Served
from tests.browser import chromium, screenshot

pytestmark = pytest.mark.slow  # headless Chromium
served = dashboard.served  # its fixture: the example contracts, Hooli's usage, invoices sent and paid
MONITORS = [
    {"name": "hooli-seats", "contract": {"contract_ref": "C-102-hooli", "item": "quantity", "line_ref": "seats"}},
    {"name": "fees", "contract": {"item": "billed_amount", "product_ref": "platform"}},
]


def _series(served: Served, name: str, measure: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{served.url}/api/monitors/{name}/series",
        params={"from": "2026-08-01", "to": "2026-08-31", "measure": measure},
        headers={"Authorization": f"Bearer {served.key}"},
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["rows"])


def test_the_monitors_page_in_a_browser(served: Served) -> None:
    with served.store.write() as session:
        for definition in MONITORS:
            body = {**definition, "source": "contract", "entity_ref": "us-inc"}
            flow.add_monitor(session, MonitorDefinition.model_validate(body))
    flow.snapshot(served.store, date(2026, 8, 1), date(2026, 8, 31), alerts=False)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None)
        page.goto(f"{served.url}/sign-in")
        page.fill("#sign-in-user input[name=username]", "finance")
        page.fill("#sign-in-user input[name=password]", PASSWORD)
        page.click("#sign-in-user button")
        page.wait_for_url(f"{served.url}/")
        page.goto(f"{served.url}/?entity=us-inc")
        page.click("nav a[data-tab=monitors]")  # as a person finds it
        page.wait_for_selector("#report-monitors")
        assert [r["name"] for r in page.evaluate(SHOWN, "monitors")] == ["fees", "hooli-seats"]
        screenshot(page, "monitors")
        page.goto(f"{served.url}/monitors?entity=us-inc&from=2026-08-01&to=2026-08-31")
        page.click("#report-monitors a:has-text('hooli-seats')")
        page.wait_for_selector("body[data-charts-ready=true]")
        for measure, column in (("net", "value"), ("increment", "increment")):
            if measure == "increment":
                page.click("#measure-increment")
                page.wait_for_selector("body[data-charts-ready=true]")
            shown = page.evaluate(SHOWN, "monitor_values")
            expected = _series(served, "hooli-seats", measure)
            assert shown == [
                {"customer_ref": r["customer_ref"], "day": r["day"], column: r["value"] or ""} for r in expected
            ]
            charts = page.evaluate(CHARTS)
            assert charts and charts[0]["points"] > 0 and charts[0]["width"] > 0
        # Hooli's seats go from 20 to 35 on 2026-08-16: the increment that day is 15
        assert {"customer_ref": "hooli", "day": "2026-08-16", "increment": "15"} in shown
        screenshot(page, "monitor-hooli-seats")
        assert problems == []
