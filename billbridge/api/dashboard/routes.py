"""The dashboard: server-rendered pages (Jinja2) over the same reports as the CLI and the API, with
Chart.js (vendored from its npm package, no CDN) drawing their charts from the tables' own rows.

Tabs as in seed 000: Dashboard (MRR, movements, AR aging, forecast, collections, products), Usage,
Invoices, Customers, a page per customer, Monitors and Partners. Every page needs a session (``session.py``) and shows
one legal entity the signed-in key or user may see (``?entity=``); every table downloads as CSV.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from billbridge.api.dashboard import partners as partner_pages
from billbridge.api.dashboard import session as sessions
from billbridge.billing.currency import money_display
from billbridge.flows import metrics
from billbridge.flows.metrics import Report, Scope
from billbridge.secrets import Sealer
from billbridge.settings import Settings
from billbridge.store import api_keys, dashboard_users, listings
from billbridge.store import metrics as metric_sql
from billbridge.store.db import Store

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["money"] = lambda amount, currency: money_display(amount, currency).removesuffix(f" {currency}")
router = APIRouter(include_in_schema=False)
MAX_FORM_BYTES = 8192
CUSTOMERS_PAGE = 50
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
TABS = (
    ("dashboard", "/", "Dashboard"),
    ("usage", "/usage", "Usage"),
    ("invoices", "/invoices", "Invoices"),
    ("customers", "/customers", "Customers"),
    ("monitors", "/monitors", "Monitors"),  # dashboard/monitors.py
    ("partners", "/partners", "Partners"),  # dashboard/partners.py
)


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app``: its pages and its static files (Chart.js, script, styles)."""
    from billbridge.api.dashboard import monitors

    app.include_router(router)
    app.include_router(monitors.router)
    app.mount("/static/dashboard", StaticFiles(directory=str(HERE / "static")), name="dashboard-static")


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _sealer(request: Request) -> Sealer:
    sealer: Sealer | None = getattr(request.app.state, "dashboard_sealer", None)
    if sealer is None:
        settings: Settings = request.app.state.settings
        key = settings.secret_key.get_secret_value() if settings.secret_key else None
        sealer = request.app.state.dashboard_sealer = Sealer.from_settings(key, settings.data_dir)
    return sealer


def _html(request: Request, template: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/sign-in", status_code=303, headers=SECURITY_HEADERS)


@dataclass(frozen=True)
class View:
    """What a page shows: the session, the entity chosen and the dates asked for."""

    session: sessions.Session
    entity_ref: str
    scope: Scope
    day: date
    first: date
    last: date
    query: dict[str, str]
    after: str = ""  # the Customers tab's page: customers after this customer_ref
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # what its tables share

    def link(self, path: str, **extra: str) -> str:
        return f"{path}?{urlencode({**self.query, **extra})}"


def _date(value: str | None) -> date | None:
    """A day from the page's query; one that is not a date, or outside the days reports are
    asked for (metrics.day_window), falls back to the page's default."""
    try:
        day = date.fromisoformat(value) if value else None
    except ValueError:
        return None
    earliest, latest = metrics.day_window()
    return day if day is not None and earliest <= day <= latest else None


def _view(request: Request) -> View | Response:
    """The request's view, or the response that refuses it (sign in first; an entity not theirs)."""
    found = sessions.current(request, _sealer(request), _store(request))
    if found is None:
        return _to_sign_in()
    params = request.query_params
    entity = params.get("entity") or found.entity_refs[0]
    if entity not in found.entity_refs:
        return _html(
            request, "error.html", {"message": f"you do not see legal entity {entity!r}", "session": found}, 403
        )
    day = _date(params.get("as_of")) or metrics.today_utc()
    last = _date(params.get("to")) or day
    first = _date(params.get("from")) or metrics.month_of(last - timedelta(days=320))
    if first > last:
        first = metrics.month_of(last)
    where = metrics.scope(_store(request), [entity])
    query = {"entity": entity, "as_of": day.isoformat(), "from": first.isoformat(), "to": last.isoformat()}
    return View(found, entity, where, day, first, last, query, params.get("after", "")[:200])


Builder = Callable[[Store, View], Report]
REPORTS: dict[str, Builder] = {
    "mrr": lambda s, v: metrics.mrr_report(s, v.scope, v.day),
    "movements": lambda s, v: metrics.movements_report(s, v.scope, v.first, v.last),
    "movement_customers": lambda s, v: metrics.movement_customers_report(s, v.scope, v.first, v.last),
    "aging": lambda s, v: metrics.aging_report(s, v.scope, v.day),
    "forecast": lambda s, v: metrics.forecast_report(s, v.scope, v.day, "week"),
    "forecast_monthly": lambda s, v: metrics.forecast_report(s, v.scope, v.day, "month"),
    "collections": lambda s, v: metrics.collections_report(s, v.scope, v.first, v.last),
    "products": lambda s, v: metrics.products_report(s, v.scope, v.first, v.last),
    "product_groups": lambda s, v: metrics.products_report(s, v.scope, v.first, v.last, "group"),
    "invoices": lambda s, v: metrics.invoices_report(s, v.scope, v.day, v.first, v.last),
    "usage": lambda s, v: metrics.usage_report(s, v.scope, v.first, v.last),
    "activity": lambda s, v: metrics.activity_report(s, v.scope),
    "customers": lambda s, v: metrics.customers_report(s, v.scope, v.day, after=v.after, limit=CUSTOMERS_PAGE),
    "partners": lambda s, v: partner_pages.partners_report(s, v.entity_ref, v.memo),
    "referrals": lambda s, v: partner_pages.referrals_report(s, v.entity_ref, v.memo),
    "partner_statements": lambda s, v: partner_pages.statements_report(s, v.entity_ref, v.memo),
}
"""Every table the dashboard shows, by name (its CSV link is /csv/<name>)."""

PAGES: dict[str, tuple[str, ...]] = {
    "dashboard": ("mrr", "movements", "aging", "forecast", "collections", "product_groups"),
    "usage": ("usage", "activity"),
    "invoices": ("invoices", "aging", "collections"),
    "customers": ("customers",),
    "partners": ("partners", "referrals", "partner_statements"),
}


def _page(request: Request, tab: str) -> Response:
    view = _view(request)
    if isinstance(view, Response):
        return view
    store = _store(request)
    reports = [(name, REPORTS[name](store, view)) for name in PAGES[tab]]
    return _html(request, "page.html", _context(view, tab, reports))


def _context(view: View, tab: str, reports: list[tuple[str, Report]], **extra: Any) -> dict[str, Any]:
    return {"view": view, "session": view.session, "tab": tab, "tabs": TABS, "reports": reports, **extra}


@router.get("/")
def dashboard(request: Request) -> Response:
    return _page(request, "dashboard")


@router.get("/usage")
def usage(request: Request) -> Response:
    return _page(request, "usage")


@router.get("/invoices")
def invoices(request: Request) -> Response:
    return _page(request, "invoices")


@router.get("/customers")
def customers(request: Request) -> Response:
    return _page(request, "customers")


@router.get("/partners")
def partners(request: Request) -> Response:
    return _page(request, "partners")


@router.get("/customers/{customer_ref}")
def customer(request: Request, customer_ref: str) -> Response:
    """One customer: MRR history, contracts (with their value), invoices, payments, usage."""
    view = _view(request)
    if isinstance(view, Response):
        return view
    store = _store(request)
    entity_id = view.scope.entity_ids[0]
    with store.read() as db:
        found = listings.customers(db, entity_id, customer_ref=customer_ref)
        if not found:
            return _html(
                request,
                "error.html",
                {"message": f"no customer {customer_ref!r} in {view.entity_ref}", "session": view.session},
                404,
            )
        customer_id = int(found[0]["id"])
        contracts = listings.contracts(db, entity_id, customer_ref=customer_ref, limit=500)
        documents = listings.invoices(db, entity_id, customer_ref=customer_ref, limit=500)
        payments = metric_sql.customer_payments(db, customer_id)
    value = metrics.customers_report(store, view.scope, view.day, customer_refs=[customer_ref])
    used = metrics.usage_report(store, view.scope, view.first, view.last)
    used.rows = [r for r in used.rows if r["customer_ref"] == customer_ref]
    mrr = metrics.customer_mrr_report(store, view.scope, customer_ref, view.first, view.day)
    return _html(
        request,
        "customer.html",
        _context(
            view,
            "customers",
            [("mrr_history", mrr), ("contract_value", value), ("customer_usage", used)],
            customer=found[0],
            contracts=contracts[:500],
            documents=documents[:500],
            payments=payments,
        ),
    )


@router.get("/csv/{name}")
def download(request: Request, name: str) -> Response:
    """A dashboard table as CSV (the page's entity and dates)."""
    view = _view(request)
    if isinstance(view, Response):
        return Response("sign in first\n", status_code=401, media_type="text/plain", headers=SECURITY_HEADERS)
    build = REPORTS.get(name)
    if build is None:
        return Response(f"no table {name!r}\n", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
    report = build(_store(request), view)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=report.columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(report.rows)
    filename = f"{name}-{view.entity_ref}-{view.day.isoformat()}.csv"
    headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(out.getvalue(), media_type="text/csv", headers=headers)


# ---------------------------------------------------------------------------------------------
# Signing in and out
# ---------------------------------------------------------------------------------------------


def _sign_in_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    token = sessions.new_csrf()
    response = _html(request, "sign_in.html", {"csrf": token, "error": error, "session": None}, status)
    sessions.set_cookie(response, request, sessions.CSRF_COOKIE, token, 600)
    return response


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the only kind these forms send), at most MAX_FORM_BYTES."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


@router.get("/sign-in")
def sign_in_page(request: Request) -> Response:
    return _sign_in_page(request)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Sign in with an API key (its entity) or a dashboard user's name and password (their entities)."""
    form = await _form(request)
    if not sessions.same_origin(request) or not sessions.same(
        form.get("csrf"), request.cookies.get(sessions.CSRF_COOKIE)
    ):
        return _sign_in_page(request, "the form expired or came from elsewhere: try again", 403)
    store = _store(request)
    found: sessions.Session | None = None
    key = form.get("api_key", "").strip()
    with store.read() as db:
        if key:
            principal = api_keys.authenticate(db, key)
            if principal is not None:
                found = sessions.Session(
                    "key", principal.key_id, principal.key_prefix, (principal.entity_ref,), sessions.new_csrf()
                )
        elif form.get("username"):
            user = dashboard_users.sign_in(db, form["username"], form.get("password", ""))
            if user is not None:
                found = sessions.Session("user", user.id, user.username, user.entity_refs, sessions.new_csrf())
    if found is None:
        return _sign_in_page(request, "unknown API key, or wrong name or password", 401)
    response = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
    sessions.set_cookie(
        response, request, sessions.COOKIE, sessions.seal(_sealer(request), found), sessions.SESSION_SECONDS
    )
    response.delete_cookie(sessions.CSRF_COOKIE, path="/")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    form = await _form(request)
    found = sessions.current(request, _sealer(request), _store(request))
    if found is not None and (not sessions.same_origin(request) or not sessions.same(form.get("csrf"), found.csrf)):
        return Response(
            "refused: the form came from elsewhere\n",
            status_code=403,
            media_type="text/plain",
            headers=SECURITY_HEADERS,
        )
    response = _to_sign_in()
    response.delete_cookie(sessions.COOKIE, path="/")
    return response
