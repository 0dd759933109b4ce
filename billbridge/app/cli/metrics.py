"""``billbridge metrics ...``: the finance metrics as tables (rich), JSON or CSV; and the headline
figures ``billbridge status`` shows. The same reports as the API and the dashboard."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from billbridge.app.cli.common import date_problem
from billbridge.app.cli.tables import Table, stdout_console
from billbridge.billing.currency import money_display
from billbridge.billing.metrics.collections import AGING_BUCKETS
from billbridge.settings import Settings
from billbridge.store.db import Store, open_store

if TYPE_CHECKING:  # the flows load at a command's call, not at `billbridge --help`
    from billbridge.flows.metrics import Report, Scope

app = typer.Typer(
    help="Finance metrics: MRR, movements, collections, aging, forecast, products, usage.", no_args_is_help=True
)
console = stdout_console()
err = Console(stderr=True)

EntityOpt = Annotated[
    list[str] | None,
    typer.Option("--entity", help="Only this legal entity (entity_ref); repeat for more. Default: all."),
]
FromOpt = Annotated[
    str | None, typer.Option("--from", help="First month or day (YYYY-MM or YYYY-MM-DD); default 11 months back.")
]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last day (YYYY-MM-DD) or month (YYYY-MM); default today.")]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="The day the figures are for (YYYY-MM-DD); default today.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV.")]


def _store() -> Store:
    return open_store(Settings().database)


def _day(value: str | None, option: str, *, end_of_month: bool = False) -> date | None:
    """A date from YYYY-MM-DD, or YYYY-MM (its first day, or last with ``end_of_month``)."""
    from billbridge.flows import metrics

    if value is None:
        return None
    try:
        if len(value) == 7:
            first = date.fromisoformat(f"{value}-01")
            return metrics.fc.month_starts(first, 1)[1] - timedelta(days=1) if end_of_month else first
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a month (YYYY-MM)", param_hint=option) from None
    try:
        return date.fromisoformat(value)
    except ValueError:
        if len(value) == 10:
            raise typer.BadParameter(date_problem(value), param_hint=option) from None
        raise typer.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD) or month (YYYY-MM)", param_hint=option
        ) from None


def _range(start: str | None, end: str | None) -> tuple[date, date]:
    from billbridge.flows import metrics

    last = _day(end, "--to", end_of_month=True) or metrics.today_utc()
    first = _day(start, "--from") or metrics.month_of(last - timedelta(days=320))
    if last < first:
        raise typer.BadParameter(f"{end} is before {start}", param_hint="--to")
    return first, last


def _scope(store: Store, entities: list[str] | None) -> Scope:
    from billbridge.flows import metrics

    try:
        return metrics.scope(store, entities)
    except LookupError as exc:
        err.print(f"[red]error:[/red] --entity: {exc}")
        raise typer.Exit(1) from None


def show(report: Report, as_json: bool, as_csv: bool) -> None:
    """Print a report as a rich table, JSON (``{"metric", "columns", "data"}``) or CSV."""
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=report.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(report.rows)
    else:
        table = Table(*report.columns, title=report.title)
        for row in report.rows:
            table.add_row(*(report.display(row, column) for column in report.columns))
        console.print(table)
        if not report.rows:
            console.print("no figures: nothing billed or contracted in this range")


def _run(build: Callable[[Store, Scope], Report], entities: list[str] | None, as_json: bool, as_csv: bool) -> None:
    store = _store()
    show(build(store, _scope(store, entities)), as_json, as_csv)


@app.command("mrr")
def mrr(entity: EntityOpt = None, as_of: AsOfOpt = None, as_json: JsonOpt = False, as_csv: CsvOpt = False) -> None:
    """MRR, ARR, active customers and ARPA per entity and currency on a day."""
    from billbridge.flows import metrics

    day = _day(as_of, "--as-of") or metrics.today_utc()
    _run(lambda s, w: metrics.mrr_report(s, w, day), entity, as_json, as_csv)


@app.command("movements")
def movements(
    entity: EntityOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    customers: Annotated[bool, typer.Option("--customers", help="List the customers behind each movement.")] = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """MRR movements per month (new, expansion, contraction, churn, reactivation) and retention."""
    from billbridge.flows import metrics

    first, last = _range(start, end)
    build = metrics.movement_customers_report if customers else metrics.movements_report
    _run(lambda s, w: build(s, w, first, last), entity, as_json, as_csv)


@app.command("collections")
def collections(
    entity: EntityOpt = None, start: FromOpt = None, end: ToOpt = None, as_json: JsonOpt = False, as_csv: CsvOpt = False
) -> None:
    """Billed, credited and collected per month."""
    from billbridge.flows import metrics

    first, last = _range(start, end)
    _run(lambda s, w: metrics.collections_report(s, w, first, last), entity, as_json, as_csv)


@app.command("aging")
def aging(entity: EntityOpt = None, as_of: AsOfOpt = None, as_json: JsonOpt = False, as_csv: CsvOpt = False) -> None:
    """Accounts-receivable aging, late invoices, DSO and collection rate on a day."""
    from billbridge.flows import metrics

    day = _day(as_of, "--as-of") or metrics.today_utc()
    _run(lambda s, w: metrics.aging_report(s, w, day), entity, as_json, as_csv)


@app.command("invoices")
def invoices(
    entity: EntityOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Invoices per billing month by status (drafts, under review, approved, sent, late, paid, void)."""
    from billbridge.flows import metrics

    first, last = _range(start, end)
    day = _day(as_of, "--as-of") or metrics.today_utc()
    _run(lambda s, w: metrics.invoices_report(s, w, day, first, last), entity, as_json, as_csv)


@app.command("forecast")
def forecast(
    entity: EntityOpt = None,
    as_of: AsOfOpt = None,
    monthly: Annotated[bool, typer.Option("--monthly", help="12 months instead of 13 weeks.")] = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Cash inflow forecast: open invoices, invoices still to come and usage, by week or month."""
    from billbridge.flows import metrics

    day = _day(as_of, "--as-of") or metrics.today_utc()
    period = "month" if monthly else "week"
    _run(lambda s, w: metrics.forecast_report(s, w, day, period), entity, as_json, as_csv)


@app.command("products")
def products(
    entity: EntityOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    groups: Annotated[
        bool, typer.Option("--groups", help="Per product group (charge kind) instead of product.")
    ] = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Billed and collected per product (or product group) and month."""
    from billbridge.flows import metrics

    first, last = _range(start, end)
    by = "group" if groups else "product"
    _run(lambda s, w: metrics.products_report(s, w, first, last, by), entity, as_json, as_csv)


@app.command("usage")
def usage(
    entity: EntityOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    activity: Annotated[
        bool, typer.Option("--activity", help="The latest usage events instead (late ones marked).")
    ] = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Usage and cash per usage product, customer and month: quantity, billed, collected."""
    from billbridge.flows import metrics

    first, last = _range(start, end)
    if activity:
        _run(lambda s, w: metrics.activity_report(s, w), entity, as_json, as_csv)
    else:
        _run(lambda s, w: metrics.usage_report(s, w, first, last), entity, as_json, as_csv)


@app.command("customers")
def customers(
    entity: EntityOpt = None,
    as_of: AsOfOpt = None,
    customer: Annotated[
        list[str] | None, typer.Option("--customer", help="Only this customer_ref; repeatable.")
    ] = None,
    after: Annotated[str, typer.Option(help="Customers after this customer_ref (paging).")] = "",
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Customers per page.")] = 100,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Per customer: active contracts, total, annual and remaining contract value, renewals in 90 days."""
    from billbridge.flows import metrics

    day = _day(as_of, "--as-of") or metrics.today_utc()
    _run(
        lambda s, w: metrics.customers_report(s, w, day, customer_refs=customer, after=after, limit=limit),
        entity,
        as_json,
        as_csv,
    )


@app.command("refresh")
def refresh(as_json: JsonOpt = False) -> None:
    """Rebuild the metric summaries whose sources changed (the flows do it after each run)."""
    from billbridge.flows import metrics

    settings = Settings()
    done = metrics.refresh(open_store(settings.database), workers=settings.billing_workers)
    if as_json:
        typer.echo(json.dumps({part: round(seconds, 3) for part, seconds in done.items()}))
        return
    console.print(", ".join(f"{part} {seconds:.2f} s" for part, seconds in done.items()) or "all up to date")


def print_headline(data: dict[str, Any]) -> None:
    """The status page's finance table: one row per entity and currency."""
    table = Table("entity", "MRR", "ARR", *AGING_BUCKETS, "next 4 weeks", title="finance (receivable by days past due)")
    aging_of = {(a["entity_ref"], a["currency"]): a for a in data["aging"]}
    mrr_of = {(m["entity_ref"], m["currency"]): m for m in data["mrr"]}
    cash_of = {(f["entity_ref"], f["currency"]): f["total"] for f in data["forecast_4_weeks"]}
    for entity, currency in sorted(set(aging_of) | set(mrr_of) | set(cash_of)):
        a, m = aging_of.get((entity, currency), {}), mrr_of.get((entity, currency), {})

        def money(value: str | None, cur: str = currency) -> str:
            return money_display(Decimal(value), cur).removesuffix(f" {cur}") if value is not None else "-"

        table.add_row(
            f"{entity} {currency}",
            money(m.get("mrr")),
            money(m.get("arr")),
            *(money(a.get(bucket)) for bucket in AGING_BUCKETS),
            money(cash_of.get((entity, currency))),
        )
    console.print(table)
