"""``billbridge contracts``: import contract files, list contracts, print the contract file schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from billbridge.app.cli.common import (
    JsonOpt,
    configured_store,
    console,
    fail_unread,
    import_paths,
    print_import,
    print_json,
)
from billbridge.app.cli.tables import Table
from billbridge.mapping.contract_file import json_schema
from billbridge.store.contracts import contract_summaries

app = typer.Typer(help="Contract files and contracts.", no_args_is_help=True)


@app.command("import")
def contracts_import(
    files: Annotated[list[Path], typer.Argument(help="JSON or YAML contract files.")], as_json: JsonOpt = False
) -> None:
    """Import contract files: entities, customers, products (price book) and contracts."""
    summary, failed = import_paths(configured_store(), files)
    if as_json:
        print_json({**summary.as_dict(), "files_not_imported": failed})
    else:
        print_import(summary)
    fail_unread(failed)
    if summary.errors:
        raise typer.Exit(2)


@app.command("list")
def contracts_list(as_json: JsonOpt = False) -> None:
    """Contracts with their current version."""
    with configured_store().read() as session:
        rows = contract_summaries(session)
    if as_json:
        print_json(rows)
        return
    table = Table(
        "contract_ref",
        "customer_ref",
        "entity_ref",
        "version",
        "currency",
        "contract_start_date",
        "contract_end_date",
        "cycle",
    )
    for r in rows:
        table.add_row(
            str(r["contract_ref"]),
            str(r["customer_ref"]),
            str(r["entity_ref"]),
            str(r["version_no"]),
            str(r["currency"]),
            str(r["contract_start_date"]),
            str(r["contract_end_date"] or "-"),
            f"{r['cycle_length']} {r['cycle_unit']}",
        )
    console.print(table)


@app.command("schema")
def contracts_schema() -> None:
    """Print the JSON Schema of the contract file format."""
    print_json(json_schema())
