"""``billbridge partners ...``: list partners, show one (its referral data), a partner's statement of a
month, a month's fees per partner, the fees accrued (rich tables, JSON or CSV), and the monthly run
(accrue, close, push the Bills to QuickBooks)."""

from __future__ import annotations

import csv
import json
import sys
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console

from billbridge.app.cli.tables import Table, stdout_console
from billbridge.billing.currency import money_str
from billbridge.billing.partner_fees import statement, statement_csv
from billbridge.settings import Settings
from billbridge.store import partners as sql
from billbridge.store.db import Store, open_store
from billbridge.store.partner_reports import partner_reports

app = typer.Typer(help="Partner billing: referral partners and resellers, fees, statements.", no_args_is_help=True)
console = stdout_console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV.")]
PeriodOpt = Annotated[str, typer.Option("--period", help="The month (YYYY-MM).")]


def _store() -> Store:
    return open_store(Settings().database)


def _period(value: str) -> str:
    try:
        if len(value) != 7:
            raise ValueError(value)
        date.fromisoformat(f"{value}-01")
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a month (YYYY-MM)", param_hint="--period") from None
    return value


def _print(rows: list[dict[str, Any]], columns: list[str], title: str, as_json: bool, as_csv: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        table = Table(*columns, title=title)
        for row in rows:
            table.add_row(*(str(row.get(c, "") if row.get(c) is not None else "") for c in columns))
        console.print(table)


@app.command("list")
def list_partners(as_json: JsonOpt = False, as_csv: CsvOpt = False) -> None:
    """Every partner: kind, legal entity, currency, payment terms, referral agreements."""
    with _store().read() as session:
        rows = sql.partner_summaries(session)
    columns = ["partner_ref", "name", "kind", "entity_ref", "currency", "payment_terms_days", "agreements"]
    _print(rows, columns, "Partners", as_json, as_csv)


@app.command("show")
def show(
    partner_ref: Annotated[str, typer.Argument(help="The partner (partner_ref).")],
    as_json: JsonOpt = False,
) -> None:
    """One partner: its agreements, the customers it referred with their revenue and fees, the fees
    accrued, billed, credited and paid, and its statements."""
    with _store().read() as session:
        found = partner_reports(session, [partner_ref])
    if not found:
        err.print(f"[red]error:[/red] PARTNER: unknown partner {partner_ref!r}")
        raise typer.Exit(1)
    data = found[0].as_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    c = data["currency"]
    console.print(f"[bold]{data['name']}[/bold] ({data['partner_ref']}, {data['kind']}, {data['entity_ref']}, {c})")
    console.print(
        f"Fees accrued {data['fees_accrued']}, billed {data['fees_billed']}, credited {data['fees_credited']}, "
        f"paid {data['fees_paid']} {c}"
    )
    agreements = [
        {**a, "rule": ", ".join(f"{k} {a[k]}" for k in ("percent", "flat_fee", "months") if a.get(k) is not None)}
        for a in data["agreements"]
    ]
    _print(agreements, ["agreement_ref", "currency", "basis", "rule"], "Agreements", False, False)
    columns = ["customer_ref", "agreement_ref", "referred_on", "contract_ref", "revenue", "fees"]
    _print(data["referred_customers"], columns, "Referred customers", False, False)
    _print(data["statements"], ["period", "total", "status", "paid"], "Statements", False, False)


@app.command("fees")
def fees(period: PeriodOpt, as_json: JsonOpt = False, as_csv: CsvOpt = False) -> None:
    """Every referral partner's fees of a month: accrued, its statement's status and total, paid (a month
    never closed says which later statement took its fees)."""
    month = _period(period)
    with _store().read() as session:
        partners = [p for p in sql.load_partners(session).values() if p.kind != "reseller"]
        accrued: dict[str, Decimal] = {}
        for accrual in sql.load_accruals(session, period=month):
            accrued[accrual.partner_ref] = accrued.get(accrual.partner_ref, Decimal(0)) + accrual.fee
        every = sql.statements(session)
    closed = {s["partner_ref"]: s for s in every if s["period"] == month}
    covering: dict[str, str] = {}  # a month never closed: the first later statement billed its fees
    for s in every:  # newest first
        if s["period"] > month:
            covering[s["partner_ref"]] = s["period"]
    rows = []
    for partner in partners:
        shut = closed.get(partner.partner_ref)
        c = partner.currency
        later = covering.get(partner.partner_ref)
        rows.append(
            {
                "partner_ref": partner.partner_ref,
                "currency": c,
                "accrued": money_str(accrued.get(partner.partner_ref, Decimal(0)), c),
                "status": shut["status"] if shut else (f"on the statement of {later}" if later else "open"),
                "total": money_str(shut["total"], c) if shut else None,
                "paid": money_str(shut["paid"], c) if shut and shut["paid"] is not None else None,
            }
        )
    _print(rows, ["partner_ref", "currency", "accrued", "status", "total", "paid"], f"Fees {month}", as_json, as_csv)


@app.command("statement")
def show_statement(
    partner_ref: Annotated[str, typer.Argument(help="The partner (partner_ref).")],
    period: PeriodOpt,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """A partner's statement of a month: fees per referred customer, the total, and whether it is billed.
    A statement covers every month since the partner's previous one (months never closed are billed on
    the next statement); an open month shows what closing it now would bill."""
    month = _period(period)
    with _store().read() as session:
        partner = sql.load_partners(session, [partner_ref]).get(partner_ref)
        if partner is None:
            err.print(f"[red]error:[/red] PARTNER: unknown partner {partner_ref!r}")
            raise typer.Exit(1)
        if partner.kind == "reseller":
            err.print(
                f"[red]error:[/red] PARTNER: {partner_ref} is a reseller: it is invoiced, it earns no fees and has "
                "no fee statement (see `billbridge invoices list`)"
            )
            raise typer.Exit(1)
        mine = sql.statements(session, partner_ref)
        closed = [s for s in mine if s["period"] == month]
        later = sorted(s["period"] for s in mine if s["period"] > month)
        if closed or not later:
            first, accruals = sql.statement_accruals(session, partner_ref, month)
        else:  # a month never closed whose fees a later statement took
            first, accruals = month, sql.load_accruals(session, partner_ref=partner_ref, period=month)
    of = statement(partner_ref, month, partner.currency, accruals, first=first)
    status = closed[0]["status"] if closed else (f"on the statement of {later[0]}" if later else "open")
    rows = [
        {
            "customer_ref": line.customer_ref,
            "base": money_str(line.base, of.currency),
            "fees": money_str(line.fees, of.currency),
        }
        for line in of.lines
    ]
    if as_json:
        total = money_str(of.total, of.currency)
        body = {"partner_ref": partner_ref, "period": month, "months": of.months, "currency": of.currency}
        print(json.dumps({**body, "status": status, "total": total, "lines": rows}, indent=2))
        return
    if as_csv:  # a file on its own: each line says the months and currency, and a last line the total
        sys.stdout.write(statement_csv(of))  # as the statement e-mail's attachment
        return
    _print(rows, ["customer_ref", "base", "fees"], f"{partner.name} {of.months} ({status})", False, False)
    console.print(f"Total: {money_str(of.total, of.currency)} {of.currency}")


@app.command("accruals")
def accruals(
    period: PeriodOpt,
    partner: Annotated[str | None, typer.Option("--partner", help="Only this partner.")] = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """The fees (and reversals) accrued on a month's statements, event by event."""
    month = _period(period)
    with _store().read() as session:
        found = sql.load_accruals(session, partner_ref=partner, period=month)
    rows = [
        {
            "partner_ref": a.partner_ref,
            "agreement_ref": a.agreement_ref,
            "event_ref": a.event_ref,
            "kind": a.kind,
            "customer_ref": a.customer_ref,
            "occurred_on": a.occurred_on.isoformat(),
            "currency": a.currency,
            "base": money_str(a.base, a.currency),
            "fee": money_str(a.fee, a.currency),
        }
        for a in found
    ]
    columns = ["partner_ref", "agreement_ref", "event_ref", "kind", "customer_ref", "occurred_on", "base", "fee"]
    _print(rows, columns, f"Fees accrued {month}", as_json, as_csv)


@app.command("run")
def run(
    period: Annotated[
        str | None, typer.Option("--period", help="The month to close (YYYY-MM); default: last month.")
    ] = None,
    no_push: Annotated[
        bool, typer.Option("--no-push", help="Queue the Bills and statement e-mails, do not push or send them now.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Accrue fees, close the month's statements, push their Bills to QuickBooks (if configured) and
    e-mail each statement to its partner (if an SMTP server is)."""
    from billbridge.flows import partner_fees

    month = _period(period) if period else None
    settings = Settings()
    try:
        summary = partner_fees.run_partner_fees(open_store(settings.database), settings, period=month, push=not no_push)
    except partner_fees.PeriodNotEnded as error:
        err.print(f"[red]error:[/red] --period: {error}")
        raise typer.Exit(2) from None
    for skipped in summary.skipped:
        err.print(f"[yellow]not closed:[/yellow] {skipped['partner_ref']} {skipped['period']}: {skipped['reason']}")
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2))
        return
    console.print(partner_fees.fees_markdown(summary))
