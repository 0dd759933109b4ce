"""``billbridge monitors ...``: add monitors from files, list them, show their values per customer and
day (net or increment; tables, JSON or CSV), backfill, snapshot and remove them."""

from __future__ import annotations

import csv
import json
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from billbridge.app.cli.common import parse_day
from billbridge.app.cli.tables import Table, stdout_console
from billbridge.mapping.monitor_file import parse_monitors, schema_text
from billbridge.settings import Settings
from billbridge.store import monitors as sql
from billbridge.store.db import Store, open_store
from billbridge.store.monitors import StoredMonitor
from billbridge.store.reference import entity_ids

if TYPE_CHECKING:  # the flows load at a command's call, not at `billbridge --help`
    from billbridge.flows import monitors as flow

app = typer.Typer(help="Monitors: contract, product, invoice and usage values per customer and day, with alerts.")
console = stdout_console()
err = Console(stderr=True)

EntityOpt = Annotated[
    str | None, typer.Option("--entity", help="The monitor's legal entity (entity_ref), if names repeat.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV.")]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="The last day (YYYY-MM-DD); default today (in the entity's time zone).")
]


def _store() -> Store:
    return open_store(Settings().database)


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def _day(value: str | None, option: str) -> date | None:
    return None if value is None else parse_day(value, option)


def _monitor(store: Store, name: str, entity: str | None) -> StoredMonitor:
    from billbridge.flows import monitors as flow

    try:
        ids = None
        if entity is not None:
            with store.read() as session:
                found = entity_ids(session, [entity])
            if not found:
                raise LookupError(f"--entity: no legal entity {entity!r}")
            ids = list(found.values())
        return flow.find(store, name, ids)
    except LookupError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


@app.command("add")
def add(
    path: Annotated[
        Path, typer.Argument(help="A monitor file (YAML or JSON): one monitor, a list, or monitors: [...]")
    ],
) -> None:
    """Add the monitors of a file; each is checked against the store on its own (a refused one names its field)."""
    from billbridge.flows import monitors as flow
    from billbridge.flows.importing import ContractFileError, read_document

    try:
        parsed = parse_monitors(read_document(path))
    except ContractFileError as exc:
        _fail(str(exc))
    store = _store()
    problems = [(e.record, e.field, e.message) for e in parsed.errors]
    added: list[str] = []
    sealer = flow.sealer_of(Settings())
    for definition in parsed.definitions:
        try:
            with store.write() as session:
                flow.add_monitor(session, definition)
        except flow.MonitorRefused as exc:
            problems.append((f"monitors ({definition.name})", exc.field or "(monitor)", str(exc)))
            continue
        added.append(definition.name)
        console.print(f"added monitor [bold]{definition.name}[/bold] ({definition.source}, {definition.entity_ref})")
        if definition.webhook_url:
            secret = flow.webhook_secret(sealer, definition.entity_ref, definition.name)
            console.print(
                f"  webhook signing secret for {definition.webhook_url}: {secret}", highlight=False, soft_wrap=True
            )
    for record, field, message in problems:
        err.print(f"[red]refused[/red] {record}: {field}: {message}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)


@app.command("list")
def list_command(as_json: JsonOpt = False) -> None:
    """Every monitor with what it watches and its conditions."""
    store = _store()
    with store.read() as session:
        monitors = sql.list_monitors(session)
    if as_json:
        typer.echo(json.dumps([m.as_dict() for m in monitors], indent=2))
        return
    table = Table("entity", "name", "source", "watches", "conditions", "webhook", title="Monitors")
    for m in monitors:
        d = m.definition
        table.add_row(
            m.entity_ref,
            m.name,
            d.source,
            _watches(m),
            ", ".join(c.key for c in d.conditions),
            "yes" if d.webhook_url else "",
        )
    console.print(table)


def _watches(monitor: StoredMonitor) -> str:
    d = monitor.definition
    if d.contract is not None:
        c = d.contract
        scope = (
            f"contract {c.contract_ref}"
            if c.contract_ref
            else f"customer {c.customer_ref}"
            if c.customer_ref
            else "portfolio"
        )
        line = f" line {c.line_ref}" if c.line_ref else f" product {c.product_ref}" if c.product_ref else ""
        return f"{c.item} of {scope}{line}"
    assert d.usage is not None
    u = d.usage
    window = f"last {u.window_days} days" if u.window == "rolling" else "billing period"
    return f"{u.aggregation or 'declared'} of {u.product_ref} over the {window}"


@app.command("show")
def show(
    name: str,
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer (customer_ref).")] = None,
    day: Annotated[str | None, typer.Option("--date", help="One day (YYYY-MM-DD); default the entity's today.")] = None,
    increment: Annotated[
        bool, typer.Option("--increment", help="The change over the previous day instead of the net value.")
    ] = False,
    start: Annotated[str | None, typer.Option("--from", help="First day of a series.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day of a series (default: --date or today).")] = None,
    entity: EntityOpt = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """A monitor's values per customer on a day, or a series (--from/--to): net, or --increment."""
    from billbridge.flows import monitors as flow

    store = _store()
    monitor = _monitor(store, name, entity)
    last = _day(end, "--to") or _day(day, "--date") or flow.today_in(monitor.timezone)
    first = _day(start, "--from") or last
    if last < first:
        raise typer.BadParameter(f"{end} is before {start}", param_hint="--to")
    try:
        rows = flow.view(store, monitor, first, last, customer_ref=customer, increment=increment)
    except LookupError as exc:
        _fail(f"--customer: {exc}")
    shown = [
        {"customer_ref": r["customer_ref"], "day": r["day"], "value": r["increment"] if increment else r["value"]}
        for r in rows
    ]
    if as_json:
        typer.echo(
            json.dumps(
                {"monitor": monitor.name, "measure": "increment" if increment else "net", "rows": shown}, indent=2
            )
        )
        return
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=["customer_ref", "day", "value"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(shown)
        return
    title = f"{monitor.name}: {'increment' if increment else 'net value'} ({_watches(monitor)})"
    table = Table("customer", "day", "increment" if increment else "value", title=title)
    for r in shown:
        table.add_row(r["customer_ref"], r["day"], "" if r["value"] is None else r["value"])
    console.print(table)
    if not shown:
        console.print(
            "no values kept for these days: run `billbridge monitors backfill` or wait for the daily snapshot"
        )


@app.command("backfill")
def backfill(
    name: str,
    days: Annotated[int, typer.Option("--days", min=1, max=3660, help="How many days back, up to --as-of.")] = 90,
    as_of: AsOfOpt = None,
    alerts: Annotated[
        bool, typer.Option("--alerts/--no-alerts", help="Raise the alerts of past crossings too.")
    ] = False,
    entity: EntityOpt = None,
) -> None:
    """Compute a monitor's values for past days from what the contracts, invoices and usage say about them."""
    from billbridge.flows import monitors as flow

    store = _store()
    monitor = _monitor(store, name, entity)
    last = _day(as_of, "--as-of") or flow.today_in(monitor.timezone)
    summary = flow.snapshot(
        store,
        last - timedelta(days=days - 1),
        last,
        names=[monitor.name],
        entity_ids=[monitor.entity_id],
        alerts=alerts,
    )
    _print_summary(summary)


@app.command("snapshot")
def snapshot(
    as_of: AsOfOpt = None,
    days: Annotated[int, typer.Option("--days", min=1, max=3660, help="Days up to --as-of.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """What the daily deployment does: every monitor's values for the day, its alerts raised and delivered."""
    from billbridge.flows import monitors as flow

    store = _store()
    last = _day(as_of, "--as-of")
    summary = flow.snapshot(store, last - timedelta(days=days - 1), last) if last else flow.snapshot_today(store, days)
    summary.relayed = flow.relay_alerts(store, Settings(), events=flow.prefect_api_configured())
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
        return
    _print_summary(summary)


def _print_summary(summary: flow.SnapshotSummary) -> None:
    table = Table("", "", title=f"Monitors, {summary.first} to {summary.last}")
    rows: list[tuple[str, Any]] = [
        ("monitors evaluated", summary.monitors),
        ("values (customer and day)", summary.values),
        ("values written (new or changed)", summary.written),
        ("alerts triggered", len(summary.alerts)),
    ]
    rows += [(f"{topic}", n) for topic, n in sorted(summary.relayed.items())]
    for label, value in rows:
        table.add_row(label, str(value))
    console.print(table)
    for a in summary.alerts[:50]:
        console.print(
            f"alert: {a['monitor']} {a['customer_ref']} on {a['day']}: {a['condition']['when']} {a['condition']['value']} "
            f"(value {a['value']}, increment {a['increment']})",
            highlight=False,
        )
    for monitor, reason in summary.failed:
        err.print(f"[yellow]not evaluated[/yellow] {monitor}: {reason}", highlight=False)


@app.command("remove")
def remove(name: str, entity: EntityOpt = None) -> None:
    """Remove a monitor with its values and alerts."""
    store = _store()
    monitor = _monitor(store, name, entity)
    with store.write() as session:
        sql.remove_monitor(session, monitor.id)
    console.print(f"removed monitor {monitor.name} ({monitor.entity_ref})")


@app.command("automation")
def automation(
    url: Annotated[str, typer.Argument(help="Where notifications go: a Slack incoming webhook or any JSON endpoint.")],
    slack: Annotated[bool, typer.Option("--slack", help="The URL is a Slack incoming webhook.")] = False,
) -> None:
    """Create the example Prefect Automation: every monitor alert (event billbridge.monitor.triggered)
    sent as a notification. Needs PREFECT_API_URL (the Prefect server the deployments run on)."""
    from billbridge.flows import monitors as flow

    if not flow.prefect_api_configured():
        _fail("set PREFECT_API_URL to the Prefect server the deployments run on")
    block_id, automation_id = flow.create_example_automation(url, slack=slack)
    console.print(f"automation {flow.AUTOMATION_NAME!r} ({automation_id}) notifies through block {block_id}")


@app.command("schema")
def schema() -> None:
    """The JSON Schema of a monitor definition."""
    typer.echo(schema_text())
