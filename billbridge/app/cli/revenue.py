"""``billbridge revenue ...``: recognise revenue, show a contract's schedule, the waterfall and the
rollforward (rich tables, JSON or CSV), and close or reopen a month."""

from __future__ import annotations

import csv
import getpass
import json
import sys
from datetime import date
from typing import Annotated, Any

import typer
from rich.console import Console

from billbridge.app.cli.tables import Table, stdout_console
from billbridge.settings import Settings
from billbridge.store import revenue as sql
from billbridge.store.db import Store, open_store

app = typer.Typer(
    help="Revenue recognition (ASC 606 / IFRS 15): schedules, waterfall, rollforward, period close.",
    no_args_is_help=True,
)
console = stdout_console()
err = Console(stderr=True)

EntityOpt = Annotated[str, typer.Option("--entity", help="The legal entity (entity_ref).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV.")]


def _store() -> Store:
    return open_store(Settings().database)


def _month(value: str, option: str) -> date:
    try:
        if len(value) != 7:
            raise ValueError(value)
        return date.fromisoformat(f"{value}-01")
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a month (YYYY-MM)", param_hint=option) from None


def _entity(store: Store, entity_ref: str) -> int:
    with store.read() as session:
        found = sql.entity_id_of(session, entity_ref)
    if found is None:
        err.print(f"[red]error:[/red] --entity: unknown legal entity {entity_ref!r}")
        raise typer.Exit(1)
    return found


def _rows(rows: list[dict[str, Any]], columns: list[str], title: str, as_json: bool, as_csv: bool) -> None:
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    console.print(table)


@app.command("recognize")
def recognize(
    through: Annotated[
        str | None, typer.Option("--through", help="Recognise through this day (YYYY-MM-DD); default today.")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Rebuild every schedule, changed or not.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild the revenue schedules of contracts whose terms or documents changed."""
    from billbridge.flows import revenue

    try:
        day = date.fromisoformat(through) if through else revenue.today_utc()
    except ValueError:
        raise typer.BadParameter(f"{through!r} is not a date (YYYY-MM-DD)", param_hint="--through") from None
    store = _store()
    summary = revenue.with_balances(revenue.rebuild(store, day, full=full), store).as_dict()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console.print(f"{summary['rebuilt']} of {summary['contracts']} schedules rebuilt through {summary['through']}")
    for label, key in (("recognised", "recognised"), ("deferred", "deferred"), ("contract assets", "contract_assets")):
        for currency, amount in summary[key].items():
            console.print(f"  {label} {amount} {currency}", highlight=False)
    for failure in summary["failed"]:
        err.print(f"[yellow]not recognised:[/yellow] {failure['reason']}", highlight=False)


OBLIGATION_COLUMNS = [
    "line_ref",
    "product_ref",
    "recognition",
    "treatment",
    "start_date",
    "end_date",
    "ssp",
    "price",
    "allocated",
]
MONTH_COLUMNS = ["month", "billed", "recognised", "catch_up", "deferred", "contract_asset"]


@app.command("schedule")
def schedule(
    contract: Annotated[str, typer.Option("--contract", help="The contract (contract_ref).")],
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """A contract's obligations (SSP, allocated price, recognition) and its monthly schedule with billed,
    recognised, deferred revenue and contract asset balances."""
    from billbridge.flows import revenue

    report = revenue.schedule_report(_store(), contract)
    if report is None:
        err.print(f"[red]error:[/red] --contract: unknown contract {contract!r}")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    if as_csv:  # one table: the obligations first, then the months, told apart by ``section``
        rows = [{"section": "obligation", **ob} for ob in report["obligations"]]
        rows += [{"section": "month", **m} for m in report["months"]]
        _rows(rows, ["section", *OBLIGATION_COLUMNS, *MONTH_COLUMNS], "", False, True)
        return
    _rows(
        report["obligations"],
        OBLIGATION_COLUMNS,
        f"{report['contract_ref']}: performance obligations ({report['currency']})",
        False,
        False,
    )
    _rows(report["months"], MONTH_COLUMNS, "schedule", False, False)
    if not report["months"]:
        console.print("no schedule yet: run `billbridge revenue recognize`")


@app.command("waterfall")
def waterfall(
    entity: EntityOpt,
    start: Annotated[str, typer.Option("--from", help="First booked month (YYYY-MM).")],
    end: Annotated[str, typer.Option("--to", help="Last month (YYYY-MM).")],
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Revenue by booked month (rows) and the month it is recognised in (columns), recognised to date and
    remaining, as Stripe Revenue Recognition lays out its waterfall."""
    from billbridge.flows import revenue

    first, last = _month(start, "--from"), _month(end, "--to")
    if last < first:
        raise typer.BadParameter(f"{end} is before {start}", param_hint="--to")
    store = _store()
    rows = revenue.waterfall_report(store, _entity(store, entity), first, last)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    months, month = [], first
    while month <= last:
        months.append(month.strftime("%Y-%m"))
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    flat = [{**{k: v for k, v in r.items() if k != "recognised"}, **r["recognised"]} for r in rows]
    columns = ["booked_month", "currency", "booked", *months, "recognised_to_date", "remaining"]
    _rows(flat, columns, f"revenue waterfall, {entity}", False, as_csv)


@app.command("rollforward")
def rollforward(
    entity: EntityOpt,
    period: Annotated[str, typer.Option("--period", help="The month (YYYY-MM).")],
    as_json: JsonOpt = False,
) -> None:
    """Opening deferred revenue + billed - recognised = closing deferred revenue, and the same for contract
    assets, per currency, what was billed checked against the invoices and credit notes themselves. Exits 1
    naming each contract and currency where they do not agree, and the difference."""
    from billbridge.flows import revenue

    store = _store()
    rows = revenue.rollforward_report(store, _entity(store, entity), _month(period, "--period"))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        table = Table("currency", "balance", "opening", "+", "-", "closing", "balanced", title=f"rollforward {period}")
        for r in rows:
            d, a = r["deferred_revenue"], r["contract_assets"]
            table.add_row(
                r["currency"],
                "deferred revenue",
                d["opening"],
                d["billed"],
                d["recognised"],
                d["closing"],
                str(r["balanced"]),
            )
            table.add_row(
                r["currency"],
                "contract assets",
                a["opening"],
                a["recognised"],
                a["billed"],
                a["closing"],
                str(r["balanced"]),
            )
        console.print(table)
    if not all(r["balanced"] for r in rows):
        for r in rows:
            for m in r["mismatches"]:
                err.print(
                    f"[red]error:[/red] {m['contract_ref']} {r['currency']}: the invoices and credit notes bill "
                    f"{m['billed_in_documents']} in {period}, the schedule {m['billed_in_schedule']}; its closing "
                    f"balance is {m['closing']}, opening + billed - recognised {m['expected_closing']} (difference "
                    f"{m['difference']}): run `billbridge revenue recognize`, or reopen a closed month",
                    highlight=False,
                )
            if not r["balanced"] and not r["mismatches"]:
                err.print(f"[red]error:[/red] {r['currency']}: the movements do not add up to the closing balances")
        err.print("[red]error:[/red] the rollforward does not balance")
        raise typer.Exit(1)


@app.command("journal")
def journal(
    entity: EntityOpt,
    period: Annotated[str, typer.Option("--period", help="The month (YYYY-MM).")],
    as_json: JsonOpt = False,
) -> None:
    """The month's journal entries, one per currency, as the close posts them (accounts from
    revenue_accounts, or each line's role while unset), and whether each is queued, posted or failed."""
    from billbridge.flows import revenue

    settings = Settings()
    store = open_store(settings.database)
    _entity(store, entity)
    entries = revenue.journal_report(store, settings, entity, _month(period, "--period"))
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        console.print(f"nothing recognised in {period}")
    for entry in entries:
        removal = " (nothing recognised: removes the earlier close's entry)" if entry["removal"] else ""
        title = f"{entry['doc_number']} ({entry['currency']}): {entry['posting']}{removal}"
        table = Table("account", "description", "debit", "credit", title=title)
        for ln in entry["lines"]:
            debit = ln["amount"] if ln["posting"] == "Debit" else ""
            table.add_row(ln["account"], ln["description"], debit, "" if debit else ln["amount"])
        console.print(table)
        if entry["error"]:
            err.print(f"[red]error:[/red] {entry['error']}", highlight=False)


@app.command("close")
def close(
    entity: EntityOpt,
    period: Annotated[str, typer.Option("--period", help="The month (YYYY-MM).")],
    reopen: Annotated[bool, typer.Option("--reopen", help="Reopen the month instead (recorded).")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why it is reopened, or closed with --force (recorded).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Close even though contracts could not be recognised or the rollforward does not agree "
            "(what was accepted is recorded with the close).",
        ),
    ] = False,
    by: Annotated[
        str | None, typer.Option("--by", help="Who closes or reopens it (recorded; default: your login name).")
    ] = None,
) -> None:
    """Close a month: its recognised amounts never change afterwards (later changes land in the first open
    month as catch-ups). Refused for a month that has not ended, and while a contract of the entity could
    not be recognised or the month's rollforward does not agree with the documents, unless --force. With
    --reopen, open it again."""
    from billbridge.flows import revenue

    settings = Settings()
    store = open_store(settings.database)
    month = _month(period, "--period")
    _entity(store, entity)
    ledger = revenue.ledger_of(settings)
    try:
        done = revenue.close(
            store, entity, month, reopen=reopen, reason=reason, ledger=ledger, force=force, actor=by or _login()
        )
    except sql.PeriodError as exc:
        err.print(f"[red]error:[/red] --period: {exc}", highlight=False)
        raise typer.Exit(1) from None
    for problem in done.accepted:
        err.print(f"[yellow]accepted (--force):[/yellow] {problem}", highlight=False)
    console.print(f"{entity} {period} {'reopened' if reopen else 'closed'}{' (forced)' if done.accepted else ''}")
    if done.drafts:
        console.print(
            f"warning: {len(done.drafts)} invoice(s) or credit note(s) dated in {period} are still drafts, not "
            f"pushed to the ledger: {', '.join(done.drafts[:10])}{' ...' if len(done.drafts) > 10 else ''}",
            highlight=False,
        )
    if ledger is not None and not reopen:
        console.print(f"journal entries queued for {ledger}: `billbridge revenue post` posts them")


def _login() -> str | None:
    """The login name of who runs the command, recorded with a close or reopening."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for the uid (a container)
        return None


@app.command("periods")
def periods(entity: EntityOpt, as_json: JsonOpt = False) -> None:
    """The entity's closes and reopenings, oldest first: the month, what was done, by whom, when, and why
    (a reopening's reason, or what a forced close accepted)."""
    store = _store()
    entity_id = _entity(store, entity)
    with store.read() as session:
        events = sql.period_events(session, entity_id)
    rows = [
        {
            "month": e.month.strftime("%Y-%m"),
            "action": e.action,
            "forced": e.forced,
            "by": e.actor,
            "at": e.at.isoformat(),
            "reason": e.reason,
        }
        for e in events
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(f"no month of {entity} has been closed")
        return
    _rows(
        [{k: ("" if v is None else v) for k, v in r.items()} for r in rows],
        ["month", "action", "forced", "by", "at", "reason"],
        f"revenue periods, {entity}",
        False,
        False,
    )


@app.command()
def accounts() -> None:
    """Check revenue_accounts against the QuickBooks chart of accounts (each account exists, is active and
    of a type its use allows, for every legal entity): what posting checks first, before a close."""
    from billbridge.flows import revenue

    settings = Settings()
    problems = revenue.check_accounts(open_store(settings.database), settings)
    for problem in problems:
        err.print(f"[red]error:[/red] {problem}", highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print("revenue_accounts: every account is in the chart of accounts, active and of the right type")


@app.command()
def post(as_json: JsonOpt = False) -> None:
    """Post the journal entries closed months queued (revenue_accounts must be set): each once, a
    reclosed month's entry replaced. The accounts are checked against the chart of accounts first."""
    from billbridge.flows import revenue

    settings = Settings()
    store = open_store(settings.database)
    ledger = revenue.ledger_of(settings)
    if ledger is None:
        err.print("[red]error:[/red] revenue_accounts is not set: nothing is posted (see README, Revenue recognition)")
        raise typer.Exit(1)
    summary = revenue.post_journals(store, settings, ledger)
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        for outcome, n in sorted(summary.outcomes.items()):
            console.print(f"{outcome}: {n}")
        for message_id, error in summary.failures:
            err.print(f"[red]failed[/red] message {message_id}: {error}")
        if (held := summary.leased_text()) is not None:
            console.print(held)
    if summary.failures:
        raise typer.Exit(1)
