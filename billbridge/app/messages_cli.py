"""``billbridge messages ...``: the messages billbridge sends customers (invoice delivery, reminders,
receipts, dunning notices): list them, read one, send the due ones, and retry an unconfirmed or
failed one after checking it did not arrive."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from billbridge.settings import Settings
from billbridge.store import messages as sql
from billbridge.store.db import Store, open_store

app = typer.Typer(
    help="Customer messages: invoice delivery, payment reminders, receipts, dunning notices.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _store() -> Store:
    return open_store(Settings().database)


def _json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command("list")
def list_messages(
    kind: Annotated[str | None, typer.Option(help="invoice, reminder, receipt or dunning.")] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer (customer_ref).")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="Only this state: waiting_contact, queued, sending, sent, unconfirmed, failed, skipped."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Messages, newest first, with their state, recipients and the server's last answer."""
    with _store().read() as session:
        rows = sql.listing(session, kind=kind, customer_ref=customer, state=status)
    if as_json:
        _json(rows)
        return
    table = Table("id", "kind", "state", "customer", "invoice", "to", "as of", "last error", title="messages")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["kind"],
            row["state"],
            row["customer_ref"],
            row["number"] or "",
            ", ".join(row["recipients"].get("to", [])),
            str(row["as_of"]),
            row["last_error"] or "",
        )
    console.print(table)


@app.command("retry")
def retry(
    message_id: Annotated[int, typer.Argument(help="The message's id (billbridge messages list).")],
    checked: Annotated[
        bool,
        typer.Option(
            "--checked",
            help="Confirm you checked that an unconfirmed message did not arrive (the SMTP server may have it).",
        ),
    ] = False,
) -> None:
    """Queue an unconfirmed or failed message again. An unconfirmed one may have reached the
    customer (the connection broke after the server was handed it): check first, then pass --checked."""
    with _store().write() as session:
        message = sql.get(session, message_id)
        if message is None:
            err.print(f"[red]error:[/red] no message {message_id}")
            raise typer.Exit(1)
        if message.state == "unconfirmed" and not checked:
            err.print(
                f"[red]error:[/red] message {message_id} is unconfirmed: the SMTP server may have accepted it "
                f"(Message-ID {message.message_id}). Check the recipient's mailbox or the server's log, then "
                "run again with --checked."
            )
            raise typer.Exit(1)
        try:
            state = sql.retry(session, message_id)
        except ValueError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    console.print(f"message {message_id}: {state}")


def print_overview(data: dict[str, Any]) -> None:
    """The messages part of ``billbridge status``."""
    if data["by_kind"]:
        table = Table("message kind", "by state", title="messages (billbridge messages list)")
        for kind, states in sorted(data["by_kind"].items()):
            table.add_row(kind, ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
        console.print(table)
    for waiting in data["waiting_for_contact"]:
        console.print(
            f"{waiting['customer_ref']} ({waiting['name']}): {waiting['messages']} message(s) wait for a billing contact"
        )
    if data["customers_without_contact"]:
        console.print("customers without a billing contact: " + ", ".join(data["customers_without_contact"]))
