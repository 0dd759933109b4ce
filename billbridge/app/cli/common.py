"""What the command groups share: the consoles, the --json and --as-of options, opening the
configured store, printing JSON, and the import and billing steps several commands run."""

from __future__ import annotations

import calendar
import json
import re
from contextlib import AbstractContextManager, nullcontext
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from billbridge.app.cli.tables import Table, stdout_console
from billbridge.billing.currency import money_str
from billbridge.billing.model import RECORD_KINDS
from billbridge.flows import approval
from billbridge.flows.importing import ContractFileError, ImportSummary, import_file
from billbridge.flows.invoice_generation import BillingSummary
from billbridge.settings import Settings
from billbridge.store.contracts import count_contracts
from billbridge.store.db import Store, open_store

console = stdout_console()
err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Bill as of this date (YYYY-MM-DD); default today.")]


def configured_store() -> Store:
    return open_store(Settings().database)


_YMD = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


def date_problem(value: str) -> str:
    """Why ``value`` is not a date: a month or day out of range is said as such, not as a wrong format."""
    match = _YMD.fullmatch(value)
    if match:
        year, month, day = (int(part) for part in match.groups())
        if not 1 <= month <= 12:
            return f"{value!r} is not a date: month {month} is out of range (01-12)"
        if year >= 1:
            last = calendar.monthrange(year, month)[1]
            if not 1 <= day <= last:
                return f"{value!r} is not a date: day {day} is out of range for {calendar.month_name[month]} {year} (1-{last})"
    return f"{value!r} is not a date (YYYY-MM-DD)"


def parse_day(value: str, option: str) -> date:
    """The date an option names, or a usage error (exit 2) naming the option and what is wrong."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(date_problem(value), param_hint=option) from None


def parse_as_of(value: str | None, option: str = "--as-of") -> date:
    return date.today() if value is None else parse_day(value, option)


def print_json(data: Any) -> None:
    def default(value: Any) -> Any:
        if isinstance(value, (Decimal, date)):
            return str(value)
        raise TypeError(type(value).__name__)

    typer.echo(json.dumps(data, indent=2, default=default))


def import_paths(store: Store, paths: list[Path]) -> tuple[ImportSummary, dict[str, str]]:
    """Import every file that can be read: one that cannot (missing, not UTF-8, not JSON/YAML) is
    said on stderr and the next files go on. Returns the summary of the files read and, by path,
    why the others were not."""
    total = ImportSummary()
    failed: dict[str, str] = {}
    for path in paths:
        try:
            summary = import_file(store, path)
        except ContractFileError as exc:
            failed[str(path)] = str(exc)
            err.print(Text.assemble(("error:", "red"), " ", str(exc)), soft_wrap=True)
            continue
        total.counts.update(summary.counts)
        total.errors.extend(summary.errors)
    return total, failed


def fail_unread(failed: dict[str, str]) -> None:
    """After the summary of the files read, exit 2 naming the files that were not (if any)."""
    if failed:
        err.print(
            Text.assemble(("error:", "red"), f" not imported ({len(failed)} file(s)): ", ", ".join(failed)),
            soft_wrap=True,
        )
        raise typer.Exit(2)


def print_import(summary: ImportSummary) -> None:
    table = Table("records", "created", "updated", "unchanged", "quarantined", title="Contract file import")
    for section in RECORD_KINDS:  # every record list of a contract file, partners and agreements too
        table.add_row(
            section,
            *(str(summary.counts[f"{section}.{o}"]) for o in ("created", "updated", "unchanged", "quarantined")),
        )
    console.print(table)
    for error in summary.errors:
        err.print(f"[yellow]quarantined[/yellow] {error.record}: field [bold]{error.field}[/bold]: {error.message}")


def bill_as_of(store: Store, as_of: date, *, quiet: bool) -> tuple[BillingSummary, dict[str, int]]:
    """A billing run as configured (approving its drafts with ``auto_approve_invoices``), with a
    progress bar unless ``quiet``."""
    settings = Settings()
    if quiet:
        return approval.bill(store, settings, as_of)
    with store.read() as session:
        total = count_contracts(session)
    columns = (TextColumn("billing"), BarColumn(), MofNCompleteColumn(), TextColumn("contracts"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("billing", total=total)
        return approval.bill(store, settings, as_of, on_progress=lambda n: progress.advance(task, n))


def print_billing(summary: BillingSummary, queued: dict[str, int]) -> None:
    table = Table("as of", "contracts", "invoices", "credit notes", "pending adjustments", title="Billing run")
    docs = summary.documents
    table.add_row(
        str(summary.as_of),
        str(summary.contracts),
        str(docs["invoice"]),
        str(docs["credit_note"]),
        str(summary.pending_adjustments),
    )
    console.print(table)
    if summary.totals:
        totals = Table("currency", "billed", title="Billed in this run")
        for currency, amount in sorted(summary.totals.items()):
            totals.add_row(currency, money_str(amount, currency))
        console.print(totals)
    for topic, count in sorted(queued.items()):
        console.print(f"approved and queued for {topic}: {count}")
    for ref, reason in summary.failed:
        err.print(f"[yellow]quarantined[/yellow] contract {ref}: {reason}")


def working(text: str, quiet: bool) -> AbstractContextManager[object]:
    """A spinner with elapsed time on stderr while a long step runs (none under --json)."""
    return nullcontext() if quiet else err.status(text)


def print_outcomes(title: str, outcomes: dict[str, int], failures: list[tuple[Any, str]]) -> None:
    table = Table("outcome", "count", title=title)
    for outcome, count in sorted(outcomes.items()):
        table.add_row(outcome, str(count))
    console.print(table)
    for ref, reason in failures:
        err.print(f"[yellow]{ref}[/yellow]: {reason}")


def print_leased(summary: Any) -> None:
    """Messages another run holds (a killed run, until its lease runs out): said, not silent."""
    if (held := summary.leased_text()) is not None:
        err.print(f"[yellow]waiting[/yellow]: {held}", highlight=False)
