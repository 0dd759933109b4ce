"""The finance metrics as reports: the store's summaries (kept fresh by ``metrics_refresh.py``)
fed to the pure metrics, shaped as tables the CLI, the API and the dashboard all show (one report
per metric, the same figures)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from billbridge.billing.currency import money_display, money_str, round_money
from billbridge.billing.metrics import collections as coll
from billbridge.billing.metrics import forecast as fc
from billbridge.billing.metrics import products as prod
from billbridge.billing.metrics.contracts import contract_value, customer_contracts
from billbridge.billing.metrics.recurring import (
    MOVEMENT_KINDS,
    month_movements,
    month_of,
    next_month,
)
from billbridge.billing.usage_periods import from_micros
from billbridge.flows.metrics_refresh import CHANGE_LAG as CHANGE_LAG
from billbridge.flows.metrics_refresh import day_window as day_window
from billbridge.flows.metrics_refresh import refresh as refresh
from billbridge.flows.metrics_refresh import today_utc as today_utc
from billbridge.store import metrics as sql
from billbridge.store.contracts import load_timelines
from billbridge.store.db import Store


@dataclass
class Report:
    """A metric as a table: ``rows`` hold JSON-ready values (money as strings in minor units, with
    the row's ``currency``); ``money`` names the money columns, ``chart`` how the dashboard draws it."""

    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    money: tuple[str, ...] = ()
    chart: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def display(self, row: dict[str, Any], column: str) -> str:
        """A cell for a person: money with thousands separators, the rest as text."""
        value = row.get(column)
        if value is None or value == "":
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if column in self.money and "currency" in row:  # the row names its currency once
            return money_display(Decimal(value), row["currency"]).removesuffix(f" {row['currency']}")
        return str(value)

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.name, "title": self.title, "columns": self.columns, "data": self.rows}


@dataclass(frozen=True)
class Scope:
    """The legal entities a report covers (the CLI's --entity, an API key's, a dashboard user's)."""

    entity_ids: tuple[int, ...]
    entity_refs: tuple[str, ...]


def scope(store: Store, refs: Iterable[str] | None = None) -> Scope:
    """The entities named (all when None); LookupError names an unknown one."""
    wanted = None if refs is None else list(refs)
    with store.read() as session:
        rows = sql.entity_rows(session, wanted)
    if wanted is not None:
        missing = sorted(set(wanted) - {r for _, r, _, _ in rows})
        if missing:
            raise LookupError(f"unknown legal entity {', '.join(repr(m) for m in missing)}")
    return Scope(tuple(i for i, _, _, _ in rows), tuple(r for _, r, _, _ in rows))


def _fresh(store: Store) -> None:
    """The summaries every report but the forecast reads, up to date."""
    refresh(store, parts=("mrr", "documents"))


def _ratio(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(Decimal("0.0001")))


def mrr_report(store: Store, where: Scope, day: date) -> Report:
    """MRR, ARR, active customers and ARPA per entity and currency on ``day``."""
    _fresh(store)
    with store.read() as session:
        rows = sql.mrr_on(session, where.entity_ids, day)
    out = []
    for entity, currency, amount, active in rows:
        if not amount and not active:
            continue
        arpa = round_money(amount / active, currency) if active else None
        out.append(
            {
                "entity_ref": entity,
                "currency": currency,
                "day": day.isoformat(),
                "mrr": money_str(amount, currency),
                "arr": money_str(amount * 12, currency),
                "active_customers": active,
                "arpa": money_str(arpa, currency) if arpa is not None else None,
            }
        )
    return Report(
        "mrr",
        f"MRR and ARR on {day}",
        ["entity_ref", "currency", "mrr", "arr", "active_customers", "arpa"],
        out,
        money=("mrr", "arr", "arpa"),
    )


def movements_report(store: Store, where: Scope, first: date, last: date) -> Report:
    """MRR movements per month with MRR at each month's start and end and net and gross retention."""
    _fresh(store)
    with store.read() as session:
        start = {
            (e, c): amount
            for e, c, amount, _ in sql.mrr_on(session, where.entity_ids, month_of(first) - timedelta(days=1))
        }
        totals = sql.movement_totals(session, where.entity_ids, first, last)
    months = month_movements(totals, start, first, last)  # type: ignore[arg-type]
    rows = []
    for m in months:
        row: dict[str, Any] = {
            "entity_ref": m.entity_ref,
            "currency": m.currency,
            "month": m.month.strftime("%Y-%m"),
            "start_mrr": money_str(m.start_mrr, m.currency),
        }
        for kind in MOVEMENT_KINDS:
            row[kind] = money_str(m.totals[kind], m.currency)
        row["end_mrr"] = money_str(m.end_mrr, m.currency)
        row["net_retention"] = _ratio(m.net_retention)
        row["gross_retention"] = _ratio(m.gross_retention)
        rows.append(row)
    return Report(
        "movements",
        f"MRR movements {first:%Y-%m} to {last:%Y-%m}",
        [
            "entity_ref",
            "currency",
            "month",
            "start_mrr",
            *MOVEMENT_KINDS,
            "end_mrr",
            "net_retention",
            "gross_retention",
        ],
        rows,
        money=("start_mrr", *MOVEMENT_KINDS, "end_mrr"),
        chart={"type": "stacked", "label": "month", "series": list(MOVEMENT_KINDS), "line": "end_mrr"},
    )


def movement_customers_report(store: Store, where: Scope, first: date, last: date) -> Report:
    """The customers behind each month's movements."""
    _fresh(store)
    with store.read() as session:
        found = sql.movements_of(session, where.entity_ids, first, last)
    rows = [
        {
            "entity_ref": m.entity_ref,
            "currency": m.currency,
            "month": m.month.strftime("%Y-%m"),
            "customer_ref": m.customer_ref,
            "kind": m.kind,
            "before": money_str(m.before, m.currency),
            "after": money_str(m.after, m.currency),
            "change": money_str(m.amount, m.currency),
        }
        for m in found
    ]
    return Report(
        "movement_customers",
        "Customers behind the MRR movements",
        ["entity_ref", "currency", "month", "customer_ref", "kind", "before", "after", "change"],
        rows,
        money=("before", "after", "change"),
    )


def customer_mrr_report(store: Store, where: Scope, customer_ref: str, first: date, last: date) -> Report:
    """One customer's MRR at the end of each month from ``first``'s to ``last``'s (the last: on ``last``)."""
    _fresh(store)
    with store.read() as session:
        ids = sql.customer_ids_by_ref(session, [customer_ref])
        steps = sql.mrr_history(session, ids[customer_ref]) if customer_ref in ids else []
    rows = []
    for currency in sorted({c for c, _, _ in steps}):
        own = [(d, m) for c, d, m in steps if c == currency]
        month = month_of(first)
        while month <= last:
            end = min(last, next_month(month) - timedelta(days=1))
            value = next((m for d, m in reversed(own) if d <= end), Decimal(0))
            rows.append({"currency": currency, "month": month.strftime("%Y-%m"), "mrr": money_str(value, currency)})
            month = next_month(month)
    return Report(
        "mrr_history",
        f"MRR of {customer_ref} per month",
        ["currency", "month", "mrr"],
        rows,
        money=("mrr",),
        chart={"type": "bar", "label": "month", "series": ["mrr"]},
    )


def collections_report(store: Store, where: Scope, first: date, last: date) -> Report:
    """Billed, credited and collected per month."""
    _fresh(store)
    with store.read() as session:
        groups = sql.document_groups(session, where.entity_ids)
        received = sql.collected(session, where.entity_ids, month_of(first), last)
    flows = coll.monthly_flows(groups, received, first, last)
    rows = [
        {
            "entity_ref": f.entity_ref,
            "currency": f.currency,
            "month": f.month.strftime("%Y-%m"),
            "billed": money_str(f.billed, f.currency),
            "credited": money_str(f.credited, f.currency),
            "collected": money_str(f.collected, f.currency),
        }
        for f in flows
    ]
    return Report(
        "collections",
        f"Billed, credited and collected {first:%Y-%m} to {last:%Y-%m}",
        ["entity_ref", "currency", "month", "billed", "credited", "collected"],
        rows,
        money=("billed", "credited", "collected"),
        chart={"type": "bar", "label": "month", "series": ["billed", "collected", "credited"]},
    )


def aging_report(store: Store, where: Scope, day: date) -> Report:
    """AR aging on ``day`` with receivable, late invoices, DSO and collection rate."""
    _fresh(store)
    with store.read() as session:
        groups = sql.document_groups(session, where.entity_ids)
    aged = {(a.entity_ref, a.currency): a for a in coll.aging(groups, day)}
    rows = []
    for c in coll.collections(groups, day):
        a = aged.get((c.entity_ref, c.currency)) or coll.Aging(c.entity_ref, c.currency, day)
        row: dict[str, Any] = {"entity_ref": c.entity_ref, "currency": c.currency, "day": day.isoformat()}
        for bucket in coll.AGING_BUCKETS:
            row[bucket] = money_str(a.buckets[bucket], c.currency)
        row.update(
            {
                "receivable": money_str(c.receivable, c.currency),
                "late_invoices": c.late_invoices,
                "late": money_str(c.late, c.currency),
                "dso_days": str(c.dso) if c.dso is not None else None,
                "collection_rate": _ratio(c.collection_rate),
            }
        )
        rows.append(row)
    return Report(
        "aging",
        f"Accounts receivable aging on {day}",
        [
            "entity_ref",
            "currency",
            *coll.AGING_BUCKETS,
            "receivable",
            "late_invoices",
            "late",
            "dso_days",
            "collection_rate",
        ],
        rows,
        money=(*coll.AGING_BUCKETS, "receivable", "late"),
        chart={"type": "stacked", "label": "entity_ref", "series": list(coll.AGING_BUCKETS)},
    )


def invoices_report(store: Store, where: Scope, day: date, first: date, last: date) -> Report:
    """Invoices per billing month by their status on ``day`` (late split out)."""
    _fresh(store)
    with store.read() as session:
        groups = sql.document_groups(session, where.entity_ids)
    rows = []
    for s in coll.status_over_time(groups, day, first, last):
        row: dict[str, Any] = {"entity_ref": s.entity_ref, "currency": s.currency, "month": s.month.strftime("%Y-%m")}
        row.update(s.counts)
        row["total"] = money_str(sum(s.amounts.values(), Decimal(0)), s.currency)
        rows.append(row)
    return Report(
        "invoices",
        f"Invoice status over time (as of {day})",
        ["entity_ref", "currency", "month", *coll.STATUS_COLUMNS, "total"],
        rows,
        money=("total",),
        chart={"type": "stacked", "label": "month", "series": list(coll.STATUS_COLUMNS)},
    )


def forecast_report(store: Store, where: Scope, day: date, period: str = "week") -> Report:
    """The cash inflow forecast from ``day``: 13 weeks or 12 months."""
    refresh(store, day)
    with store.read() as session:
        expected = sql.expected_cash(session, where.entity_ids)
        usage = sql.usage_billed_since(session, where.entity_ids, day - timedelta(days=fc.RUN_RATE_DAYS))
    receivables = [
        fc.Receivable(entity, currency, "", expected_day, amount, source)
        for entity, currency, source, expected_day, amount, _ in expected
    ]
    rates = {(e, c): fc.run_rate(amount) for e, c, amount in usage}
    rows = []
    for f in fc.forecast(day, receivables, fc.Delays({}, {}), rates):
        for bucket in f.weeks if period == "week" else f.months:
            share = bucket.invoiced_share
            rows.append(
                {
                    "entity_ref": f.entity_ref,
                    "currency": f.currency,
                    "from": bucket.start.isoformat(),
                    "to": (bucket.end - timedelta(days=1)).isoformat(),
                    **{source: money_str(bucket.amounts[source], f.currency) for source in fc.SOURCES},
                    "total": money_str(bucket.total, f.currency),
                    "invoiced_share": _ratio(share),
                }
            )
    return Report(
        "forecast",
        f"Cash inflow forecast from {day}, by {period}",
        ["entity_ref", "currency", "from", "to", *fc.SOURCES, "total", "invoiced_share"],
        rows,
        money=(*fc.SOURCES, "total"),
        chart={"type": "stacked", "label": "from", "series": list(fc.SOURCES)},
    )


def products_report(store: Store, where: Scope, first: date, last: date, by: str = "product") -> Report:
    """Billed and collected per product (or product group) and month."""
    _fresh(store)
    with store.read() as session:
        found = sql.product_months(session, where.entity_ids, first, last)
    rows_in = [prod.ProductMonth(e, c, m, p, k, billed, collected) for e, c, m, p, k, _, billed, collected in found]
    rows = [
        {
            "entity_ref": r.entity_ref,
            "currency": r.currency,
            "month": r.month.strftime("%Y-%m"),
            "product": r.product_ref or "(discounts and true-ups)",
            "group": r.kind,
            "billed": money_str(r.billed, r.currency),
            "collected": money_str(r.collected, r.currency),
        }
        for r in prod.product_allocation(rows_in, by)
    ]
    return Report(
        "products",
        f"Billed and collected per {'product' if by == 'product' else 'product group'}",
        ["entity_ref", "currency", "month", "product", "group", "billed", "collected"],
        rows,
        money=("billed", "collected"),
        chart={"type": "stacked", "label": "month", "series_from": "product", "value": "billed"},
    )


def usage_report(store: Store, where: Scope, first: date, last: date) -> Report:
    """Usage and cash per usage product and customer and month: quantity, billed, collected."""
    _fresh(store)
    with store.read() as session:
        used = sql.usage_quantities(session, where.entity_ids, first, last)
        billed = sql.product_months(session, where.entity_ids, first, last, usage_only=True)
        currencies = {ref: cur for _, ref, _, cur in sql.entity_rows(session, where.entity_refs)}
    rows_in = prod.usage_and_cash(
        (((e, currencies[e], m, c, p), from_micros(q), n) for e, m, c, p, q, n in used),
        (((e, cur, m, c, p), b, col) for e, cur, m, p, _k, c, b, col in billed),
    )
    rows = [
        {
            "entity_ref": u.entity_ref,
            "currency": u.currency,
            "month": u.month.strftime("%Y-%m"),
            "customer_ref": u.customer_ref,
            "product": u.product_ref,
            "quantity": str(u.quantity),
            "events": u.events,
            "billed": money_str(u.billed, u.currency),
            "collected": money_str(u.collected, u.currency),
        }
        for u in rows_in
    ]
    return Report(
        "usage",
        "Usage and cash",
        ["entity_ref", "currency", "month", "customer_ref", "product", "quantity", "events", "billed", "collected"],
        rows,
        money=("billed", "collected"),
        chart={"type": "bar", "label": "month", "series": ["billed", "collected"], "sum": True},
    )


def usage_money(
    store: Store, where: Scope, first: date | None, last: date | None, customer_ref: str | None, product_ref: str | None
) -> list[tuple[str, date, str, str, Decimal, Decimal]]:
    """(currency, billing month, customer_ref, product_ref, billed, collected) of the usage lines on
    documents billed from ``first``'s month to ``last`` (None: no bound), for ``/api/usage/reports``."""
    _fresh(store)
    with store.read() as session:
        rows = sql.product_months(session, where.entity_ids, first or date.min, last or date.max, usage_only=True)
    return [
        (c, m, customer, p, billed, collected)
        for _e, c, m, p, _k, customer, billed, collected in rows
        if customer_ref in (None, customer) and product_ref in (None, p)
    ]


def activity_report(store: Store, where: Scope, limit: int = 50) -> Report:
    """The latest usage events, late ones marked."""
    with store.read() as session:
        events = sql.latest_usage_events(session, where.entity_ids, limit=limit)
    rows = [
        {
            "event_ref": e["event_ref"],
            "entity_ref": e["entity_ref"],
            "customer_ref": e["customer_ref"],
            "product": e["product_ref"],
            "timestamp": e["timestamp"].isoformat(sep=" ", timespec="seconds"),
            "quantity": str(e["quantity"]),
            "late": bool(e["late"]),
        }
        for e in events
    ]
    return Report(
        "activity",
        "Latest usage events",
        ["timestamp", "entity_ref", "customer_ref", "product", "quantity", "late", "event_ref"],
        rows,
    )


def customers_report(
    store: Store,
    where: Scope,
    day: date,
    *,
    customer_refs: Sequence[str] | None = None,
    after: str = "",
    limit: int = 50,
) -> Report:
    """Per customer and currency: contracts, active ones, TCV, ACV, RCV and renewals in the next 90
    days, valued by the billing engine's planner; a page of ``limit`` customers after ``after``."""
    with store.read() as session:
        ids = sql.customer_contract_ids(session, where.entity_ids, customer_refs, after, limit)
        timelines = load_timelines(session, ids)
    values = [
        contract_value(t.contract_ref, t.versions, day)
        for t in sorted(timelines.values(), key=lambda t: t.contract_ref)
        if t.versions
    ]
    rows = [
        {
            "entity_ref": c.entity_ref,
            "currency": c.currency,
            "customer_ref": c.customer_ref,
            "contracts": c.contracts,
            "active_contracts": c.active_contracts,
            "tcv": money_str(c.tcv, c.currency),
            "acv": money_str(c.acv, c.currency),
            "rcv": money_str(c.rcv, c.currency),
            "renewals_90_days": ", ".join(f"{ref} {when}" for ref, when in c.renewals),
        }
        for c in customer_contracts(values, day)
    ]
    return Report(
        "customers",
        f"Customers and contract value on {day}",
        [
            "entity_ref",
            "currency",
            "customer_ref",
            "contracts",
            "active_contracts",
            "tcv",
            "acv",
            "rcv",
            "renewals_90_days",
        ],
        rows,
        money=("tcv", "acv", "rcv"),
    )


def headline(store: Store, day: date) -> dict[str, Any]:
    """The figures ``billbridge status`` and the quote_to_cash artifact show: MRR and ARR, movements
    this month, AR aging and the next 4 weeks' forecast, per entity and currency."""
    where = scope(store)
    weeks: dict[tuple[str, str], Decimal] = {}
    for row in forecast_report(store, where, day).rows:
        if date.fromisoformat(row["from"]) < day + timedelta(weeks=4):
            key = (row["entity_ref"], row["currency"])
            weeks[key] = weeks.get(key, Decimal(0)) + Decimal(row["total"])
    return {
        "mrr": mrr_report(store, where, day).rows,
        "movements": movements_report(store, where, day, day).rows,
        "aging": aging_report(store, where, day).rows,
        "forecast_4_weeks": [{"entity_ref": e, "currency": c, "total": str(v)} for (e, c), v in sorted(weeks.items())],
    }


def headline_markdown(data: dict[str, Any], day: date) -> str:
    """:func:`headline` as the markdown of quote_to_cash's artifact."""

    def table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
        out = ["", f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        out += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
        return out if rows else ["", f"## {title}", "", "nothing yet"]

    lines = [f"# Finance metrics on {day}"]
    lines += table("MRR and ARR", data["mrr"], ["entity_ref", "currency", "mrr", "arr", "active_customers"])
    lines += table(
        f"MRR movements in {day:%Y-%m}", data["movements"], ["entity_ref", "currency", *MOVEMENT_KINDS, "end_mrr"]
    )
    lines += table("AR aging", data["aging"], ["entity_ref", "currency", *coll.AGING_BUCKETS, "receivable"])
    lines += table("Cash expected in the next 4 weeks", data["forecast_4_weeks"], ["entity_ref", "currency", "total"])
    return "\n".join(lines) + "\n"
