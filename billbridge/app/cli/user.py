"""``billbridge user ...``: the people who sign in to the dashboard, each seeing some legal entities."""

from __future__ import annotations

import json
import secrets
import sys
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import select

from billbridge.app.cli.tables import Table, stdout_console
from billbridge.settings import Settings
from billbridge.store import dashboard_users
from billbridge.store.db import Store, open_store
from billbridge.store.models import LegalEntity

app = typer.Typer(
    help="Dashboard users (sign in at `billbridge serve`'s /), one or more legal entities each.", no_args_is_help=True
)
console = stdout_console()
err = Console(stderr=True)


@app.command("create")
def create(
    username: Annotated[str, typer.Argument(help="The name to sign in with.")],
    entity: Annotated[
        list[str], typer.Option("--entity", help="A legal entity (entity_ref) the user sees; repeatable.")
    ],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a dashboard user; the password is asked for (or read from stdin) and stored hashed (scrypt)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        with open_store(Settings().database).write() as session:
            user = dashboard_users.create_user(session, username, password, entity)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"dashboard user {user.username} created, sees {', '.join(user.entity_refs)}")


@app.command("list")
def list_users(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Dashboard users with their legal entities (never a password)."""
    with open_store(Settings().database).read() as session:
        rows = dashboard_users.list_users(session)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("username", "entities", "created", "disabled", title="Dashboard users")
    for r in rows:
        table.add_row(
            str(r["username"]), ", ".join(r["entities"]), str(r["created_at"])[:19], str(r["disabled_at"])[:19] or "-"
        )
    console.print(table)


@app.command("disable")
def disable(username: Annotated[str, typer.Argument(help="The user to disable.")]) -> None:
    """Disable a user: their sessions stop working at their next request."""
    try:
        with open_store(Settings().database).write() as session:
            dashboard_users.disable_user(session, username)
    except LookupError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"dashboard user {username} disabled")


def demo_user(store: Store) -> tuple[str, str]:
    """A dashboard user ``demo`` seeing every legal entity, with a new random password (for
    ``demo --serve``, whose store is new each time)."""
    password = secrets.token_urlsafe(12)
    with store.write() as session:
        entities = list(session.scalars(select(LegalEntity.entity_ref)))
        user = dashboard_users.create_user(session, "demo", password, entities)
    return user.username, password
