"""``billbridge sync``: pull contracts from the CRMs and Stripe subscriptions into the store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from billbridge.app.cli.common import JsonOpt, console, err, print_json
from billbridge.app.cli.tables import Table
from billbridge.settings import Settings
from billbridge.store.db import open_store

app = typer.Typer(help="Pull from outside systems into the store.", no_args_is_help=True)


@app.command("crm")
def sync_crm_command(
    source: Annotated[str, typer.Option("--source", help="salesforce, hubspot or stripe (subscriptions)")],
    full: Annotated[
        bool, typer.Option("--full", help="Read every deal again, not only those changed since the last sync.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Pull the CRM's won deals (or Stripe's subscriptions) changed since the last sync and store them as contracts;
    quarantined deals whose missing entity, customer or product is in the store now are retried first."""
    from billbridge.flows.crm_pages import spec_for, sync_pages
    from billbridge.flows.sync_crm import connect

    settings = Settings()
    try:
        spec = spec_for(source, dates=settings.crm_dates, settings=settings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--source") from None
    store = open_store(settings.database)
    crm = connect(source, settings)  # before the progress line: a missing setting is said on its own
    columns = (TextColumn(f"syncing {source}"), TextColumn("{task.completed} deals"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=as_json) as progress:
        task = progress.add_task("sync", total=None)
        summary = sync_pages(
            store,
            spec,
            crm,
            on_page=lambda s: progress.update(task, completed=s.deals_pulled),
            writer_process=settings.crm_sync_writer,
            full=full,
        )
    if as_json:
        print_json(summary.as_dict())
        return
    table = Table("deals pulled", "not won", "created", "updated", "unchanged", "ended", "quarantined", "API calls")
    c = summary.counts
    table.title = f"CRM sync: {source}"
    table.add_row(
        str(summary.deals_pulled),
        str(summary.not_won),
        *(str(c[f"contracts.{k}"]) for k in ("created", "updated", "unchanged", "ended", "quarantined")),
        str(summary.api_calls),
    )
    console.print(table)
    if summary.retried:
        console.print(f"{summary.retried} quarantined deal(s) retried: the store now has what they lacked")
    for error in summary.errors:
        err.print(f"[yellow]quarantined[/yellow] {error.key}: field [bold]{error.field}[/bold]: {error.message}")
