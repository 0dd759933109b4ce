"""``billbridge quarantine``: the records that could not be taken in, with the field and why."""

from __future__ import annotations

from typing import Annotated

import typer

from billbridge.app.cli.common import JsonOpt, configured_store, console, print_json
from billbridge.app.cli.tables import Table
from billbridge.store import quarantine as quarantine_repo

app = typer.Typer(help="Records that could not be taken in.", no_args_is_help=True)


@app.command("list")
def quarantine_list(
    source: Annotated[str | None, typer.Option(help="Only this source")] = None, as_json: JsonOpt = False
) -> None:
    """Records kept aside with the reason, until their source fixes them."""
    with configured_store().read() as session:
        rows = quarantine_repo.list_open(session, source=source)
    if as_json:
        print_json(rows)
        return
    table = Table("source", "type", "record", "field", "reason", "seen", title="Quarantined records")
    for r in rows:
        table.add_row(
            r["source"], r["record_type"], r["record_key"], r["field"] or "-", r["reason"], str(r["seen_count"])
        )
    console.print(table)
