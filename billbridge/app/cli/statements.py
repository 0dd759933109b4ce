"""``billbridge statements ...``: statements of account (open invoices after partial payments,
credits, recent payments, aging as of a day) e-mailed to a customer's billing contacts once per
customer and day, or previewed without sending."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

import typer
from rich.console import Console

from billbridge.app.cli.common import parse_as_of
from billbridge.app.cli.tables import stdout_console
from billbridge.app.errors import fail
from billbridge.flows.message_templates import TemplateDir, template_dir
from billbridge.mapping.messages import TemplateProblem
from billbridge.settings import Settings
from billbridge.store.db import open_store

app = typer.Typer(help="Statements of account: open invoices, credits, recent payments, aging.", no_args_is_help=True)
console = stdout_console()
err = Console(stderr=True)

AsOf = Annotated[str | None, typer.Option("--as-of", help="The statement's day, YYYY-MM-DD (default: today).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _day(text: str | None) -> date:
    return parse_as_of(text)  # a bad day is a usage error (exit 2), as for every other command


def _templates(settings: Settings) -> TemplateDir | None:
    """The template files, checked before anything is made: a broken one stops the command."""
    try:
        return template_dir(settings.message_templates_dir)
    except TemplateProblem as exc:
        fail(str(exc))


@app.command("send")
def send(
    customer: Annotated[
        list[str] | None, typer.Option("--customer", help="The customer (customer_ref); may be repeated.")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every customer with something open on the day.")] = False,
    as_of: AsOf = None,
    as_json: JsonOpt = False,
) -> None:
    """Make the statement of each customer as of the day and send it (with any other queued message)
    through the configured SMTP server. Once per customer and day: asking again sends nothing."""
    from billbridge.flows.messages import send_messages
    from billbridge.flows.statements import request_statements

    if bool(customer) == every:
        fail("give --customer C (one or more) or --all")
    settings = Settings()
    _templates(settings)
    day = _day(as_of)
    store = open_store(settings.database)
    made = request_statements(store, None if every else customer, day, payment_days=settings.statement_payment_days)
    sent = send_messages(store, settings, today=day) if settings.smtp is not None else None
    if as_json:
        typer.echo(json.dumps({"requested": made.as_dict(), "sent": sent.as_dict() if sent else None}, indent=2))
    else:
        console.print("made: " + (", ".join(f"{k} {v}" for k, v in sorted(made.created.items())) or "nothing"))
        if made.already:
            console.print(f"already made for {day} (not sent again): " + ", ".join(made.already))
        if made.nothing_open:
            console.print(f"nothing open on {day}: " + ", ".join(made.nothing_open))
        if sent is None:
            console.print(
                "not sent: no SMTP server configured ([smtp] host, BILLBRIDGE_SMTP__HOST); queued", markup=False
            )
        else:
            console.print("sent: " + (", ".join(f"{k} {v}" for k, v in sorted(sent.outcomes.items())) or "nothing"))
            for mid, error in sent.failures:
                err.print(f"message {mid}: {error}", markup=False, highlight=False)
        for error in made.errors:
            err.print(f"error: {error}", markup=False, highlight=False)
    if sent is not None and sent.stopped:  # the server or the settings: the statements wait, queued
        err.print(f"error: sending stopped, the messages stay queued: {sent.stopped}", markup=False, highlight=False)
    if made.errors or (sent is not None and sent.stopped):
        raise typer.Exit(1)


@app.command("preview")
def preview(
    customer: Annotated[str, typer.Option("--customer", help="The customer (customer_ref).")],
    as_of: AsOf = None,
    as_json: JsonOpt = False,
) -> None:
    """The statement a customer would get as of the day, with its recipients; nothing is saved or sent."""
    from billbridge.app.cli.messages import _print_message
    from billbridge.flows.statements import preview_statement

    settings = Settings()
    files = _templates(settings)
    store = open_store(settings.database)
    try:
        context, text = preview_statement(
            store, customer, _day(as_of), payment_days=settings.statement_payment_days, files=files
        )
    except LookupError as exc:
        fail(str(exc))
    except TemplateProblem as exc:
        fail(f"statement of customer {customer}: {exc}")
    if as_json:
        keep = ("state", "message_id", "recipients", "language", "as_of")
        data: dict[str, Any] = {
            "customer": customer,
            **{k: context[k] for k in keep},
            "statement": context["details"]["statement"],
            "subject": text.subject,
            "text": text.text,
        }
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    _print_message(context, text.subject, text.text)
