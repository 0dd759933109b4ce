"""``billbridge apikey``: create, revoke and list the API keys of the usage and read API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from billbridge.app.cli.common import JsonOpt, configured_store, console, err, print_json
from billbridge.app.cli.tables import Table
from billbridge.app.errors import fail
from billbridge.store import api_keys

app = typer.Typer(help="API keys of the usage and read API, one legal entity each.", no_args_is_help=True)


@app.command("create")
def apikey_create(
    entity: Annotated[str, typer.Option("--entity", help="entity_ref of the legal entity the key acts for")],
    name: Annotated[str | None, typer.Option(help="A label, e.g. the system that will use it")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    try:
        with configured_store().write() as session:
            row, token = api_keys.create_key(session, entity, name)
    except LookupError as exc:
        fail(str(exc))
        return
    if as_json:
        print_json({**row, "created_at": str(row["created_at"]), "key": token})
        return
    console.print(f"API key {row['prefix']} (id {row['id']}) for legal entity {entity}:")
    typer.echo(token)
    err.print("Store it now: it is not shown again. Send it as `Authorization: Bearer <key>`.")


@app.command("revoke")
def apikey_revoke(key: Annotated[str, typer.Argument(help="The key's id or prefix (bb_...)")]) -> None:
    """Revoke a key: a running API refuses it within api_cache_seconds (its key cache)."""
    try:
        with configured_store().write() as session:
            row = api_keys.revoke_key(session, key)
    except LookupError as exc:
        fail(str(exc))
        return
    console.print(f"revoked {row['prefix']} (id {row['id']}, legal entity {row['entity_ref']})")


@app.command("list")
def apikey_list(as_json: JsonOpt = False) -> None:
    """Keys with their prefix, legal entity and state (never the key itself)."""
    with configured_store().read() as session:
        rows = api_keys.list_keys(session)
    if as_json:
        print_json([{k: str(v) if isinstance(v, datetime) else v for k, v in r.items()} for r in rows])
        return
    table = Table("id", "prefix", "entity_ref", "name", "created_at", "revoked_at", title="API keys")
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["prefix"]),
            str(r["entity_ref"]),
            str(r["name"] or "-"),
            str(r["created_at"]),
            str(r["revoked_at"] or "-"),
        )
    console.print(table)
