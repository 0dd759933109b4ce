"""``billbridge messages ...``: the messages billbridge sends customers (invoice delivery, reminders,
receipts, dunning notices): list them, read one, send the due ones, and retry an unconfirmed or
failed one after checking it did not arrive."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from billbridge.app.cli.common import parse_as_of
from billbridge.app.cli.tables import Table, stdout_console
from billbridge.app.errors import fail
from billbridge.billing.model import MESSAGE_KINDS
from billbridge.flows.message_templates import TemplateDir, template_dir
from billbridge.mapping.messages import TemplateProblem
from billbridge.settings import Settings
from billbridge.store import messages as sql
from billbridge.store.db import Store, open_store

app = typer.Typer(
    help="Customer messages: invoice delivery, payment reminders, receipts, dunning notices, statements.",
    no_args_is_help=True,
)
console = stdout_console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _kind(value: str | None) -> str | None:
    """--kind checked against the message kinds: a typo would otherwise list or retry nothing, silently.
    A usage mistake, so exit 2, in one line naming the kinds there are."""
    if value is not None and value not in MESSAGE_KINDS:
        err.print(
            Text.assemble(
                ("error:", "red"), f" --kind {value!r}: not a message kind (one of {', '.join(MESSAGE_KINDS)})"
            ),
            soft_wrap=True,
        )
        raise typer.Exit(2)
    return value


def _store() -> Store:
    return open_store(Settings().database)


def _templates(settings: Settings | None = None) -> TemplateDir | None:
    """The template files (message_templates_dir), checked: a broken one stops the command, naming
    its file and line."""
    try:
        return template_dir((settings or Settings()).message_templates_dir)
    except TemplateProblem as exc:
        fail(str(exc))


def _json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command("list")
def list_messages(
    kind: Annotated[
        str | None, typer.Option(help=f"Only this kind: {', '.join(MESSAGE_KINDS)}.", callback=_kind)
    ] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer (customer_ref).")] = None,
    partner: Annotated[str | None, typer.Option(help="Only this partner's statements (partner_ref).")] = None,
    status: Annotated[
        str | None,
        typer.Option(help=f"Only this state: {', '.join(sql.STATES)}."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Messages, newest first, with their state, recipients and the server's last answer."""
    if status is not None and status not in sql.STATES:  # a typo would list nothing, silently
        fail(f"--status {status!r}: not a message state (one of {', '.join(sql.STATES)})")
    with _store().read() as session:
        rows = sql.listing(session, kind=kind, customer_ref=customer, state=status, partner_ref=partner)
    if as_json:
        _json(rows)
        return
    table = Table("id", "kind", "state", "customer / partner", "invoice", "to", "as of", "last error", title="messages")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["kind"],
            row["state"],
            row["customer_ref"] or f"partner {row['partner_ref']}",
            row["number"] or "",
            ", ".join(row["recipients"].get("to", [])),
            str(row["as_of"]),
            row["last_error"] or "",
        )
    console.print(table)


@app.command("retry")
def retry(
    message_ids: Annotated[
        list[int] | None, typer.Argument(help="The messages' ids (billbridge messages list), one or more.")
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Every failed message (only those of --kind / --customer when given).")
    ] = False,
    kind: Annotated[
        str | None, typer.Option(help=f"With --failed: only this kind ({', '.join(MESSAGE_KINDS)}).", callback=_kind)
    ] = None,
    customer: Annotated[str | None, typer.Option(help="With --failed: only this customer (customer_ref).")] = None,
    checked: Annotated[
        bool,
        typer.Option(
            "--checked",
            help="Confirm you checked that the unconfirmed messages did not arrive (the SMTP server may have them).",
        ),
    ] = False,
) -> None:
    """Queue unconfirmed or failed messages again, by id or all failed ones (--failed). An unconfirmed
    one may have reached the customer (the connection broke after the server was handed it): check
    first, then pass --checked. A message that cannot be retried is named; the others are queued."""
    if (kind or customer) and not failed:
        fail("--kind and --customer choose among failed messages: use them with --failed")
    if bool(message_ids) == failed:
        fail("give message ids, or --failed (optionally with --kind / --customer)")
    problems: list[str] = []
    queued = 0
    with _store().write() as session:
        ids = message_ids or sql.failed_ids(session, kind=kind, customer_ref=customer)
        for message_id in ids:
            message = sql.get(session, message_id)
            if message is None:
                problems.append(f"no message {message_id}")
                continue
            if message.state == "unconfirmed" and not checked:
                problems.append(
                    f"message {message_id} is unconfirmed: the SMTP server may have accepted it "
                    f"(Message-ID {message.message_id}). Check the recipient's mailbox or the server's log, then "
                    "run again with --checked."
                )
                continue
            try:
                state = sql.retry(session, message_id)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            queued += state == "queued"
            console.print(f"message {message_id}: {state}", markup=False, highlight=False)
    console.print(f"queued {queued} message(s) again" + (f", {len(problems)} not" if problems else ""))
    for problem in problems:
        err.print(Text.assemble(("error:", "red"), " ", problem), soft_wrap=True)
    if problems:
        raise typer.Exit(1)


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
    for waiting in data.get("partners_waiting_for_contact", []):
        console.print(
            f"partner {waiting['partner_ref']} ({waiting['name']}): {waiting['messages']} statement(s) wait: "
            f"{waiting['reason'] or 'no e-mail address'}",
            markup=False,
            soft_wrap=True,
        )
    if data["customers_without_contact"]:
        console.print("customers without a billing contact: " + ", ".join(data["customers_without_contact"]))


@app.command("show")
def show(
    message_id: Annotated[int, typer.Argument(help="The message's id (billbridge messages list).")],
    as_json: JsonOpt = False,
) -> None:
    """One message: its state, recipients, Message-ID, the server's last answer and its text: as it
    was sent (kept with it), or for one not sent yet as it would be rendered now."""
    from billbridge.flows.messages import rendered
    from billbridge.mapping.messages import Rendered

    files = _templates()
    with _store().read() as session:
        context = sql.sending_context(session, message_id)
    if context is None:
        err.print(f"[red]error:[/red] no message {message_id}")
        raise typer.Exit(1)
    if context["sent_text"] is not None:  # what the customer received, not the invoice as it is now
        text = Rendered(context["subject"] or "", context["sent_text"], context["sent_html"] or "")
    else:
        text = rendered(context, files=files)
    if as_json:
        keep = ("id", "kind", "state", "channel", "event_key", "message_id", "recipients", "language", "as_of")
        _json(
            {
                **{k: context[k] for k in keep},
                "last_error": context["last_error"],
                "subject": text.subject,
                "text": text.text,
            }
        )
        return
    _print_message(context, text.subject, text.text)


@app.command("preview")
def preview(
    invoice: Annotated[str, typer.Option("--invoice", help="The document's number.")],
    kind: Annotated[str, typer.Option(help="invoice, reminder, receipt or dunning.")] = "invoice",
    as_of: Annotated[str | None, typer.Option("--as-of", help="The day it would go out (default: today).")] = None,
) -> None:
    """What a message about a document would say, with its recipients; nothing is saved or sent."""

    from billbridge.flows.messages import rendered

    if kind not in ("invoice", "reminder", "dunning"):
        err.print("[red]error:[/red] --kind: invoice, reminder or dunning (a receipt is about a payment)")
        raise typer.Exit(1)
    day = parse_as_of(as_of)
    files = _templates()
    with _store().read() as session:
        context = sql.preview_context(session, invoice, kind, day)  # type: ignore[arg-type]
    if context is None:
        err.print(f"[red]error:[/red] no document {invoice!r}")
        raise typer.Exit(1)
    text = rendered(context, files=files)
    _print_message(context, text.subject, text.text)


@app.command("send")
def send(
    as_of: Annotated[str | None, typer.Option("--as-of", help="The day to plan for (default: today).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make the reminder steps that are due (deliveries, receipts and dunning notices are made with the
    events that cause them) and send every queued message through its channel, each once (what the
    send-reminders deployment does)."""

    from billbridge.flows.messages import plan_messages, send_messages

    settings = Settings()
    _templates(settings)
    store = open_store(settings.database)
    day = parse_as_of(as_of)
    plan = plan_messages(store, settings, day)
    mailers = settings.quickbooks is not None or settings.stripe is not None  # the vendors' own e-mail channels
    sent = send_messages(store, settings, today=day) if settings.smtp is not None or mailers else None
    if as_json:
        _json({"planned": plan.as_dict(), "sent": sent.as_dict() if sent else None})
        if sent is not None and sent.stopped:
            raise typer.Exit(1)
        return
    console.print("made: " + (", ".join(f"{k} {v}" for k, v in sorted(plan.created.items())) or "nothing"))
    if plan.caught_up:
        console.print("caught up: " + ", ".join(f"{k} {v}" for k, v in sorted(plan.caught_up.items())))
    for line in plan.skipped:
        console.print(line)
    if sent is None:
        console.print("not sent: no SMTP server configured ([smtp] host, BILLBRIDGE_SMTP__HOST)", markup=False)
        return
    console.print("sent: " + (", ".join(f"{k} {v}" for k, v in sorted(sent.outcomes.items())) or "nothing"))
    for mid, error in sent.failures:
        err.print(f"message {mid}: {error}")
    if sent.stopped:  # the server or the settings: the messages wait, queued, for the next run
        fail(f"sending stopped, the messages stay queued: {sent.stopped}")


def _print_message(context: dict[str, Any], subject: str, text: str) -> None:
    recipients = context["recipients"]
    console.print(f"[bold]{subject}[/bold]")
    console.print(f"to: {', '.join(recipients['to']) or '(no contact: waiting)'}")
    if recipients["cc"]:
        console.print(f"cc: {', '.join(recipients['cc'])}")
    console.print(f"state: {context['state']}  channel: {context['channel']}  Message-ID: {context['message_id']}")
    if context.get("last_error"):
        console.print(f"last answer: {context['last_error']}")
    console.print()
    console.print(text, markup=False, highlight=False)
