"""The dashboard's Monitors page: the entity's monitors, and per monitor a chart and table of its
values per customer and day (net or increment), the same rows as ``/api/monitors/{name}/series``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response

from billbridge.api.dashboard import routes as pages
from billbridge.flows import monitors as flow
from billbridge.flows.metrics import Report
from billbridge.store import monitors as sql

router = APIRouter(include_in_schema=False)
SHOWN_CUSTOMERS = 20  # customers charted per monitor page (a portfolio monitor covers thousands)
DEFAULT_DAYS = 30


def _customers(request: Request) -> str | None:
    return (request.query_params.get("customer") or "")[:200] or None


@router.get("/monitors")
def monitors_page(request: Request) -> Response:
    view = pages._view(request)
    if isinstance(view, Response):
        return view
    store = pages._store(request)
    with store.read() as session:
        found = sql.list_monitors(session, list(view.scope.entity_ids))
        alerts = {m.id: sql.alerts(session, m.id, limit=1) for m in found}
    rows = [
        {
            "name": m.name,
            "source": m.definition.source,
            "watches": m.definition.contract.item if m.definition.contract else m.definition.usage.product_ref,  # type: ignore[union-attr]
            "conditions": ", ".join(c.key for c in m.definition.conditions),
            "latest_alert": alerts[m.id][0]["day"] if alerts[m.id] else None,
            "description": m.definition.description,
        }
        for m in found
    ]
    report = Report(
        "monitors", "Monitors", ["name", "source", "watches", "conditions", "latest_alert", "description"], rows
    )
    return pages._html(request, "monitors.html", pages._context(view, "monitors", [("monitors", report)], monitor=None))


@router.get("/monitors/{name}")
def monitor_page(request: Request, name: str) -> Response:
    """One monitor: net (or ``?measure=increment``) per customer and day, the first customers charted."""
    view = pages._view(request)
    if isinstance(view, Response):
        return view
    store = pages._store(request)
    try:
        monitor = flow.find(store, name[:100], list(view.scope.entity_ids))
    except LookupError:
        return pages._html(request, "error.html", {"message": f"no monitor {name!r}", "session": view.session}, 404)
    increment = request.query_params.get("measure") == "increment"
    last = view.last
    first = view.first if "from" in request.query_params else last - timedelta(days=DEFAULT_DAYS - 1)
    customer = _customers(request)
    try:
        rows = flow.view(
            store, monitor, max(first, last - timedelta(days=366)), last, customer_ref=customer, increment=increment
        )
    except LookupError as exc:
        return pages._html(request, "error.html", {"message": str(exc), "session": view.session}, 404)
    chosen = sorted({r["customer_ref"] for r in rows})[:SHOWN_CUSTOMERS]
    measure = "increment" if increment else "value"
    shown: list[dict[str, Any]] = [
        {"customer_ref": r["customer_ref"], "day": r["day"], measure: r[measure]}
        for r in rows
        if r["customer_ref"] in chosen
    ]
    chart = (
        {"type": "line", "label": "day", "series_from": "customer_ref", "value": measure}
        if monitor.definition.kind == "number" or increment
        else {}
    )
    title = f"{monitor.name}: {'increment over the previous day' if increment else 'net value'} per customer"
    note = f"the first {SHOWN_CUSTOMERS} customers by customer_ref" if len(chosen) == SHOWN_CUSTOMERS else ""
    values = Report("monitor_values", title, ["customer_ref", "day", measure], shown, chart=chart, note=note)
    with store.read() as session:
        alerts = sql.alerts(session, monitor.id, limit=50)
    alert_report = Report(
        "monitor_alerts", "Alerts", ["day", "customer_ref", "condition", "value", "increment"], alerts
    )
    return pages._html(
        request,
        "monitors.html",
        pages._context(
            view,
            "monitors",
            [("monitor_values", values), ("monitor_alerts", alert_report)],
            monitor=monitor,
            increment=increment,
        ),
    )
