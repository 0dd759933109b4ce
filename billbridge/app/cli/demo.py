"""``billbridge demo``, ``sandbox`` and ``examples``: the whole loop on the sandboxes, the sandboxes
alone for a person to explore, and the example contracts billed into the store."""

from __future__ import annotations

import os
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url

from billbridge.app.cli import user
from billbridge.app.cli.common import (
    AsOfOpt,
    JsonOpt,
    bill_as_of,
    configured_store,
    console,
    err,
    fail_unread,
    import_paths,
    parse_as_of,
    print_billing,
    print_import,
    print_json,
)
from billbridge.app.cli.tables import Table
from billbridge.app.errors import fail
from billbridge.billing.currency import money_display
from billbridge.settings import CHECKOUT, Settings
from billbridge.store.db import open_store
from billbridge.store.invoices import list_invoices

DEMO_LOOK_AROUND = ("status", "invoices list", "quarantine list", "payments review")
EXAMPLES = CHECKOUT / "examples" / "contracts"


def demo(
    deals: Annotated[int, typer.Option(min=1, help="Deals in each CRM sandbox.")] = 60,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Afterwards keep a Prefect server (UI), the deployments, the API and the sandboxes running."
        ),
    ] = False,
    ui_port: Annotated[int, typer.Option(min=1, max=65535, help="With --serve: the Prefect server's port.")] = 4200,
    api_port: Annotated[int, typer.Option(min=1, max=65535, help="With --serve: the billbridge API's port.")] = 8000,
) -> None:
    """The whole loop with no accounts: four vendor sandboxes, quote_to_cash on Prefect, a summary."""
    from billbridge.app.demo import demo_session, prefect_environment

    prefect_environment()

    with ExitStack() as stack:
        server = None
        if serve:
            from billbridge.app.demo_serve import PrefectServer, require_free_ports

            require_free_ports({"--ui-port": ui_port, "--api-port": api_port})

            with console.status(f"starting a Prefect server on port {ui_port}"):
                server = PrefectServer(ui_port).start()
            stack.callback(server.stop)
            os.environ["PREFECT_API_URL"] = server.api_url  # the demo's runs land in its UI
        with Progress(
            TextColumn("running quote_to_cash against the sandboxes"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=as_json,
        ) as progress:
            progress.add_task("demo", total=None)
            result, sandboxes = stack.enter_context(demo_session(deals, parse_as_of(as_of)))
        _print_demo(result, as_json)
        if server is not None:
            _serve_demo(server.url, api_port, sandboxes)


def _serve_demo(ui_url: str, api_port: int, sandboxes: Any) -> None:
    from billbridge.api.app import create_app
    from billbridge.app.demo_serve import serve_forever

    settings = Settings()
    store = open_store(settings.database)
    username, password = user.demo_user(store)
    urls = Table("what", "where", title="billbridge demo: serving (Ctrl-C stops)")
    for label, url in [
        ("billbridge dashboard (sign in as below)", f"http://127.0.0.1:{api_port}/"),
        ("Prefect UI (rerun any flow from Deployments)", ui_url),
        ("billbridge API (OpenAPI)", f"http://127.0.0.1:{api_port}/docs"),
        ("Salesforce sandbox", sandboxes.salesforce.url),
        ("HubSpot sandbox", sandboxes.hubspot.url),
        ("QuickBooks sandbox", sandboxes.quickbooks.base_url),
        ("Stripe sandbox", sandboxes.stripe.url),
    ]:
        urls.add_row(label, url)
    err.print(urls)
    err.print(f"dashboard: sign in as {username} with password {password}", highlight=False, soft_wrap=True)
    err.print("serving", highlight=False)
    serve_forever(create_app(store, settings), api_port)


def _messages_line(messages: dict[str, Any]) -> str:
    """The demo's e-mails: sent per kind, waiting ones, and the mailbox folder to read them in."""
    if not messages:
        return "none"
    sent = ", ".join(  # in words: partner_statement is "partner statement"
        f"{kind.replace('_', ' ')} {states.get('sent', 0)}" for kind, states in sorted(messages["by_kind"].items())
    )
    waiting = messages["waiting_for_contact"]
    return (
        f"sent: {sent or 'none'}; {waiting} customer(s) wait for a billing contact "
        f"(billbridge --demo messages list); read them in {messages['mailbox']}"
    )


def _partners_line(partners: dict[str, Any]) -> str:
    """The demo's partners: how many of each kind, referral fees accrued, statements (and how many were
    e-mailed to their partners) and Bills, and the invoices billed to resellers."""
    if not partners:
        return "none"
    kinds = ", ".join(f"{n} {kind}" for kind, n in partners["partners"].items()) or "none"
    fees = ", ".join(money_display(Decimal(v), c) for c, v in partners["fees_accrued"].items()) or "none"
    credits = f" and {partners['vendor_credits']} VendorCredit(s)" if partners["vendor_credits"] else ""
    return (
        f"{kinds}; referral fees accrued {fees}; {partners['statements']} statement(s) closed "
        f"({partners.get('statements_mailed', 0)} e-mailed), "
        f"{partners['bills']} Bill(s){credits} in QuickBooks; {partners['reseller_invoices']} invoice(s) "
        "billed to resellers (billbridge --demo partners list)"
    )


def _monitor_alerts(monitors: dict[str, Any]) -> str:
    """The demo's monitor alerts per monitor (``billbridge --demo monitors list`` shows the monitors)."""
    shown = ", ".join(f"{name} {n}" for name, n in sorted(monitors.get("alerts_by_monitor", {}).items()))
    return f"{monitors.get('alerts', 0)} from {monitors.get('monitors', 0)} monitors" + (f": {shown}" if shown else "")


def _print_demo(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
        return

    from billbridge.vendors.registry import display_name

    def per_vendor(counts: dict[str, int]) -> str:
        return ", ".join(f"{display_name(k)} {v}" for k, v in counts.items())

    def money(amounts: dict[str, str]) -> str:
        return ", ".join(money_display(Decimal(v), c) for c, v in sorted(amounts.items())) or "none"

    def nonzero(counts: dict[str, int]) -> str:
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if v)

    done = result["reconciled"]
    twice, again = nonzero(result["duplicates"]), nonzero(result["second_run_created"])
    table = Table(show_header=False, title=f"billbridge demo: quote to cash, as of {result['as_of']}")
    rows = [
        ("deals pulled", per_vendor(result["deals_pulled"])),
        ("contracts", result["contracts"]),
        ("invoices / credit notes", f"{result['invoices']} / {result['credit_notes']}"),
        ("sent to QuickBooks / Stripe", f"{result['pushed']['quickbooks']} / {result['pushed']['stripe']}"),
        ("card payments collected / declined", f"{result['charged']} / {result['declined']} (retried when due)"),
        ("card payments entered in QuickBooks", result["stripe_payments_in_quickbooks"]),
        ("invoices paid in full / in part", f"{result['paid']} / {result['partially_paid']}"),
        ("payments received", per_vendor(result["payments_recorded"])),
        (
            "payments matched to invoices",
            f"{done.get('matched', 0)} in full, {done.get('partly_matched', 0)} in part, "
            f"{done.get('unmatched', 0)} left for review",
        ),
        ("deals quarantined", f"{result['quarantined']} (billbridge --demo quarantine list)"),
        ("MRR", money(result["mrr"])),
        ("monitor alerts", _monitor_alerts(result.get("monitors", {}))),
        ("customer e-mails", _messages_line(result.get("messages", {}))),
        ("partners", _partners_line(result.get("partners", {}))),
        ("ARR", money(result["arr"])),
        ("revenue recognised this month", money(result.get("recognised_revenue", {}))),
        ("deferred revenue", money(result.get("deferred_revenue", {}))),
        (
            f"journal entries in QuickBooks ({result.get('closed_month')} closed)",
            f"{result.get('journal_entries', 0)} (billbridge --demo revenue journal --entity E --period "
            f"{result.get('closed_month')})"
            + "".join(
                f"; [red]not posted[/red]: {escape(why)}" for why in result.get("journal_entries_not_posted", [])
            ),
        ),
        (
            "check: anything held twice",
            f"[red]yes[/red]: {twice}"
            if twice
            else "no: every document, payment, Bill and vendor is in QuickBooks and Stripe once",
        ),
        (
            "check: second run",
            f"[red]created[/red] {again}"
            if again
            else "created nothing (no contract, invoice, push, charge, payment entry or Bill)",
        ),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    console.print(table)
    from billbridge.app.demo import DEMO_STORE

    console.print(f"The demo's store, kept until the next demo: {Settings().data_dir / DEMO_STORE}. Look around it:")
    for command in DEMO_LOOK_AROUND:
        console.print(f"  billbridge --demo {command}", highlight=False)


def sandbox(
    deals: Annotated[int, typer.Option(min=1, help="Deals in each CRM sandbox.")] = 60,
    webhooks: Annotated[
        bool,
        typer.Option(help="Send Stripe's and QuickBooks' webhooks to `billbridge serve` (api_host and api_port)."),
    ] = True,
) -> None:
    """Start the four vendor sandboxes and the SMTP server for a person to explore; print their URLs,
    the mailbox folder where the e-mails land, and the settings that point billbridge at them (with
    the webhook secrets `billbridge serve` verifies them with). Ctrl-C stops them."""
    import threading

    from billbridge.app.demo import SANDBOX_STORE, demo_world_store, running_sandboxes

    settings = Settings()
    webhooks_to = f"http://{settings.api_host}:{settings.api_port}" if webhooks else None
    try:  # Ctrl-C at any moment (even while the settings print) stops them cleanly
        store = demo_world_store(settings.data_dir, SANDBOX_STORE, deals)
        with running_sandboxes(deals, webhooks_to=webhooks_to) as running:
            table = Table("sandbox", "URL", title="billbridge sandboxes (fault control: <url>/__sandbox__/faults)")
            table.add_row("Salesforce", running.salesforce.url)
            table.add_row("HubSpot", running.hubspot.url)
            table.add_row("QuickBooks", running.quickbooks.base_url)
            table.add_row("Stripe", running.stripe.url)
            smtp = running.smtp
            user = smtp.settings()["username"]
            table.add_row("SMTP (customer e-mail)", f"smtp://127.0.0.1:{smtp.port} (STARTTLS, then AUTH as {user})")
            table.add_row("SMTP mailbox (one .eml per e-mail)", str(smtp.mailbox.folder))
            console.print(table)
            console.print(
                "Settings for billbridge in another shell (secrets included: sandbox only), with a store of its own "
                "holding the legal entities the sandboxes' deals name (emptied at each start):"
            )
            for key, value in sorted((running.env | {"BILLBRIDGE_DATABASE_URL": store}).items()):
                console.print(f"export {key}='{value}'", soft_wrap=True, highlight=False)
            if webhooks_to:
                console.print(
                    f"Stripe and QuickBooks send webhooks to {webhooks_to}/webhooks/stripe and /webhooks/quickbooks"
                )
            threading.Event().wait()
    except KeyboardInterrupt:
        err.print("sandboxes stopped")


def examples(
    as_of: AsOfOpt = None,
    examples: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="Folder of contract files to import.")
    ] = EXAMPLES,
    as_json: JsonOpt = False,
) -> None:
    """Import the example contract files and generate their invoices into the store, then summarise."""
    when = parse_as_of(as_of)
    paths = sorted(p for p in examples.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    if not paths:
        fail(f"no contract files in {examples}")
    store = configured_store()
    imported, failed = import_paths(store, paths)
    billed, queued = bill_as_of(store, when, quiet=as_json)
    with store.read() as session:
        documents = list_invoices(session)
    summary = {
        "database": make_url(Settings().database).render_as_string(hide_password=True),
        "files": [p.name for p in paths],
        "import": {**imported.as_dict(), "files_not_imported": failed},
        "billing": {**billed.as_dict(), "queued": queued},
        "documents_in_store": len(documents),
    }
    if as_json:
        print_json(summary)
    else:
        print_import(imported)
        print_billing(billed, queued)
        console.print(
            f"{len(documents)} documents in {summary['database']}; see them with [bold]billbridge invoices list[/bold]"
        )
    fail_unread(failed)
