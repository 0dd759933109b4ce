"""The ``billbridge`` command (typer + rich). ``--json`` prints machine-readable output.

One module per command group (``contracts``, ``invoices``, ``payments``, ...) and for the top-level
commands (``demo``, ``run``: bill, push, collect, reconcile; ``serve``: serve, status); a new group is
a module with its own ``app`` and one ``add_typer`` line below."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from billbridge import redaction
from billbridge.app.cli import (
    apikey,
    contracts,
    demo,
    invoices,
    messages,
    metrics,
    monitors,
    outbox,
    partners,
    payments,
    quarantine,
    revenue,
    run,
    serve,
    statements,
    sync,
    user,
    webhooks,
)
from billbridge.app.errors import Commands
from billbridge.errors import UserError
from billbridge.settings import Settings

app = typer.Typer(
    cls=Commands, help="billbridge: quote-to-cash integration hub.", no_args_is_help=True, add_completion=False
)
app.command()(demo.demo)
app.command()(demo.sandbox)
app.command()(demo.examples)
app.command()(run.bill)
app.command()(run.push)
app.command()(run.collect)
app.command()(run.reconcile)
app.command()(serve.serve)
app.command()(serve.status)
app.add_typer(contracts.app, name="contracts")
app.add_typer(invoices.app, name="invoices")
app.add_typer(quarantine.app, name="quarantine")
app.add_typer(apikey.app, name="apikey")
app.add_typer(sync.app, name="sync")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(outbox.app, name="outbox")
app.add_typer(payments.app, name="payments")
app.add_typer(metrics.app, name="metrics")
app.add_typer(monitors.app, name="monitors")
app.add_typer(user.app, name="user")
app.add_typer(revenue.app, name="revenue")
app.add_typer(messages.app, name="messages")
app.add_typer(statements.app, name="statements")
app.add_typer(partners.app, name="partners")


@app.callback()
def choose_store(
    store: Annotated[
        str | None,
        typer.Option("--store", help="This store (a database URL) instead of database_url, for this command."),
    ] = None,
    demo_store: Annotated[
        bool, typer.Option("--demo", help="The store `billbridge demo` left (demo.db in the data folder).")
    ] = False,
) -> None:
    """Options of every command: which store it works on."""
    redaction.install()  # whatever a command's vendor libraries log, no credential is in it
    if store is not None and demo_store:
        raise typer.BadParameter("give --store or --demo, not both", param_hint="--demo")
    if demo_store:
        from billbridge.app.demo import DEMO_STORE

        path = Settings().data_dir / DEMO_STORE
        if not path.exists():
            raise UserError(f"no demo store at {path}: run `billbridge demo` first")
        store = f"sqlite:///{path}"
    if store is not None:  # through the environment, so the processes a command starts see it too
        os.environ["BILLBRIDGE_DATABASE_URL"] = store


def main() -> None:
    app()
