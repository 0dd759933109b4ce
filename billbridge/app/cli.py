"""The ``billbridge`` command (typer + rich). ``--json`` prints machine-readable output."""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager, ExitStack, nullcontext
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url

from billbridge import redaction
from billbridge.app import metrics_cli, monitors_cli, revenue_cli, user_cli
from billbridge.app.errors import Commands, fail
from billbridge.billing.currency import money_display, money_str
from billbridge.billing.engine import InvoiceDraft
from billbridge.billing.invoice_view import present, present_many
from billbridge.billing.lifecycle import InvalidTransition, check_status
from billbridge.errors import UserError
from billbridge.flows import approval
from billbridge.flows.billing_run import BillingSummary, preview
from billbridge.flows.importing import ContractFileError, ImportSummary, import_file
from billbridge.mapping.contract_file import json_schema
from billbridge.settings import CHECKOUT, Settings
from billbridge.store import api_keys
from billbridge.store import quarantine as quarantine_repo
from billbridge.store.contracts import contract_summaries, count_contracts
from billbridge.store.db import Store, open_store
from billbridge.store.invoices import get_invoice, lines_of, list_invoices
from billbridge.store.payments import mark_reviewed, payments_to_review

app = typer.Typer(
    cls=Commands, help="billbridge: quote-to-cash integration hub.", no_args_is_help=True, add_completion=False
)
contracts_app = typer.Typer(help="Contract files and contracts.", no_args_is_help=True)
invoices_app = typer.Typer(help="Invoices and credit notes.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Records that could not be taken in.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys of the usage and read API, one legal entity each.", no_args_is_help=True)
sync_app = typer.Typer(help="Pull from outside systems into the store.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Webhook events received from Stripe and QuickBooks.", no_args_is_help=True)
outbox_app = typer.Typer(help="Deliveries waiting or failed: pushes, charges, payment entries.", no_args_is_help=True)
payments_app = typer.Typer(help="Received payments: the ones waiting for a person.", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")
app.add_typer(invoices_app, name="invoices")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(apikey_app, name="apikey")
app.add_typer(sync_app, name="sync")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(outbox_app, name="outbox")
app.add_typer(payments_app, name="payments")
app.add_typer(metrics_cli.app, name="metrics")
app.add_typer(monitors_cli.app, name="monitors")
app.add_typer(user_cli.app, name="user")
app.add_typer(revenue_cli.app, name="revenue")

console = Console()
err = Console(stderr=True)
VENDORS = {"salesforce": "Salesforce", "hubspot": "HubSpot", "quickbooks": "QuickBooks", "stripe": "Stripe"}
DEMO_LOOK_AROUND = ("status", "invoices list", "quarantine list", "payments review")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Bill as of this date (YYYY-MM-DD); default today.")]
EXAMPLES = CHECKOUT / "examples" / "contracts"


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


def _store() -> Store:
    return open_store(Settings().database)


def _as_of(value: str | None) -> date:
    if value is None:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint="--as-of") from None


def _json(data: Any) -> None:
    def default(value: Any) -> Any:
        if isinstance(value, (Decimal, date)):
            return str(value)
        raise TypeError(type(value).__name__)

    typer.echo(json.dumps(data, indent=2, default=default))


def _fail(message: str) -> None:
    fail(message)


def _import_paths(store: Store, paths: list[Path]) -> ImportSummary:
    total = ImportSummary()
    for path in paths:
        try:
            summary = import_file(store, path)
        except ContractFileError as exc:
            _fail(str(exc))
        total.counts.update(summary.counts)
        total.errors.extend(summary.errors)
    return total


def _print_import(summary: ImportSummary) -> None:
    table = Table("records", "created", "updated", "unchanged", "quarantined", title="Contract file import")
    for section in ("entities", "customers", "products", "contracts"):
        table.add_row(
            section,
            *(str(summary.counts[f"{section}.{o}"]) for o in ("created", "updated", "unchanged", "quarantined")),
        )
    console.print(table)
    for error in summary.errors:
        err.print(f"[yellow]quarantined[/yellow] {error.record}: field [bold]{error.field}[/bold]: {error.message}")


def _bill(store: Store, as_of: date, *, quiet: bool) -> tuple[BillingSummary, dict[str, int]]:
    """A billing run as configured (approving its drafts with ``auto_approve_invoices``), with a
    progress bar unless ``quiet``."""
    settings = Settings()
    if quiet:
        return approval.bill(store, settings, as_of)
    with store.read() as session:
        total = count_contracts(session)
    columns = (TextColumn("billing"), BarColumn(), MofNCompleteColumn(), TextColumn("contracts"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("billing", total=total)
        return approval.bill(store, settings, as_of, on_progress=lambda n: progress.advance(task, n))


def _print_billing(summary: BillingSummary, queued: dict[str, int]) -> None:
    table = Table("as of", "contracts", "invoices", "credit notes", "pending adjustments", title="Billing run")
    docs = summary.documents
    table.add_row(
        str(summary.as_of),
        str(summary.contracts),
        str(docs["invoice"]),
        str(docs["credit_note"]),
        str(summary.pending_adjustments),
    )
    console.print(table)
    if summary.totals:
        totals = Table("currency", "billed", title="Billed in this run")
        for currency, amount in sorted(summary.totals.items()):
            totals.add_row(currency, money_str(amount, currency))
        console.print(totals)
    for topic, count in sorted(queued.items()):
        console.print(f"approved and queued for {topic}: {count}")
    for ref, reason in summary.failed:
        err.print(f"[yellow]quarantined[/yellow] contract {ref}: {reason}")


@app.command()
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
            result, sandboxes = stack.enter_context(demo_session(deals, _as_of(as_of)))
        _print_demo(result, as_json)
        if server is not None:
            _serve_demo(server.url, api_port, sandboxes)


def _serve_demo(ui_url: str, api_port: int, sandboxes: Any) -> None:
    from billbridge.api.app import create_app
    from billbridge.app.demo_serve import serve_forever

    settings = Settings()
    store = open_store(settings.database)
    username, password = user_cli.demo_user(store)
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


def _monitor_alerts(monitors: dict[str, Any]) -> str:
    """The demo's monitor alerts per monitor (``billbridge --demo monitors list`` shows the monitors)."""
    shown = ", ".join(f"{name} {n}" for name, n in sorted(monitors.get("alerts_by_monitor", {}).items()))
    return f"{monitors.get('alerts', 0)} from {monitors.get('monitors', 0)} monitors" + (f": {shown}" if shown else "")


def _print_demo(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _json(result)
        return

    def per_vendor(counts: dict[str, int]) -> str:
        return ", ".join(f"{VENDORS.get(k, k)} {v}" for k, v in counts.items())

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
        ("ARR", money(result["arr"])),
        ("revenue recognised this month", money(result.get("recognised_revenue", {}))),
        ("deferred revenue", money(result.get("deferred_revenue", {}))),
        (
            "check: anything held twice",
            f"[red]yes[/red]: {twice}" if twice else "no: every document and payment is in QuickBooks and Stripe once",
        ),
        (
            "check: second run",
            f"[red]created[/red] {again}"
            if again
            else "created nothing (no contract, invoice, push, charge or payment entry)",
        ),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    console.print(table)
    from billbridge.app.demo import DEMO_STORE

    console.print(f"The demo's store, kept until the next demo: {Settings().data_dir / DEMO_STORE}. Look around it:")
    for command in DEMO_LOOK_AROUND:
        console.print(f"  billbridge --demo {command}", highlight=False)


@app.command()
def sandbox(
    deals: Annotated[int, typer.Option(min=1, help="Deals in each CRM sandbox.")] = 60,
    webhooks: Annotated[
        bool,
        typer.Option(help="Send Stripe's and QuickBooks' webhooks to `billbridge serve` (api_host and api_port)."),
    ] = True,
) -> None:
    """Start the four vendor sandboxes for a person to explore; print their URLs and the settings
    that point billbridge at them (with the webhook secrets `billbridge serve` verifies them with).
    Ctrl-C stops them."""
    import threading

    from billbridge.app.demo import SANDBOX_STORE, demo_world_store, running_sandboxes

    settings = Settings()
    webhooks_to = f"http://{settings.api_host}:{settings.api_port}" if webhooks else None
    try:  # Ctrl-C at any moment (even while the settings print) stops them cleanly
        store = demo_world_store(settings.data_dir, SANDBOX_STORE)
        with running_sandboxes(deals, webhooks_to=webhooks_to) as running:
            table = Table("sandbox", "URL", title="billbridge sandboxes (fault control: <url>/__sandbox__/faults)")
            table.add_row("Salesforce", running.salesforce.url)
            table.add_row("HubSpot", running.hubspot.url)
            table.add_row("QuickBooks", running.quickbooks.base_url)
            table.add_row("Stripe", running.stripe.url)
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


@app.command()
def examples(
    as_of: AsOfOpt = None,
    examples: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="Folder of contract files to import.")
    ] = EXAMPLES,
    as_json: JsonOpt = False,
) -> None:
    """Import the example contract files and generate their invoices into the store, then summarise."""
    when = _as_of(as_of)
    paths = sorted(p for p in examples.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    if not paths:
        _fail(f"no contract files in {examples}")
    store = _store()
    imported = _import_paths(store, paths)
    billed, queued = _bill(store, when, quiet=as_json)
    with store.read() as session:
        documents = list_invoices(session)
    summary = {
        "database": make_url(Settings().database).render_as_string(hide_password=True),
        "files": [p.name for p in paths],
        "import": imported.as_dict(),
        "billing": {**billed.as_dict(), "queued": queued},
        "documents_in_store": len(documents),
    }
    if as_json:
        _json(summary)
        return
    _print_import(imported)
    _print_billing(billed, queued)
    console.print(
        f"{len(documents)} documents in {summary['database']}; see them with [bold]billbridge invoices list[/bold]"
    )


@contracts_app.command("import")
def contracts_import(
    files: Annotated[list[Path], typer.Argument(help="JSON or YAML contract files.")], as_json: JsonOpt = False
) -> None:
    """Import contract files: entities, customers, products (price book) and contracts."""
    summary = _import_paths(_store(), files)
    if as_json:
        _json(summary.as_dict())
    else:
        _print_import(summary)
    if summary.errors:
        raise typer.Exit(2)


@contracts_app.command("list")
def contracts_list(as_json: JsonOpt = False) -> None:
    """Contracts with their current version."""
    with _store().read() as session:
        rows = contract_summaries(session)
    if as_json:
        _json(rows)
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


@contracts_app.command("schema")
def contracts_schema() -> None:
    """Print the JSON Schema of the contract file format."""
    _json(json_schema())


def _draft_dict(draft: InvoiceDraft) -> dict[str, Any]:
    """A planned document as ``invoices show`` shows a stored one."""
    header = {
        "doc_type": draft.doc_type,
        "billing_date": draft.billing_date,
        "due_date": draft.due_date,
        "currency": draft.currency,
        "invoice_total": draft.invoice_total,
    }
    lines = [
        {
            "line_ref": line.line_ref,
            "kind": line.kind,
            "product_ref": line.product_ref,
            "description": line.description,
            "start_date": line.span_start,
            "end_date": line.span_end - timedelta(days=1),
            "billed_days": line.billed_days,
            "quantity": line.quantity,
            "amount": line.amount,
            "discount_amount": line.discount,
            "billed_amount": line.billed_amount,
            "period_days": line.slot_days,
            "sign": line.sign,
        }
        for line in draft.lines
    ]
    return present(header, lines)


def _print_document(doc: dict[str, Any], title: str) -> None:
    """A document as ``billing.invoice_view.present`` shows it: per line, amount - discount = billed.
    The billed days go under each description, so the money columns fit an 80-column terminal."""
    table = Table("description", title=title)
    for column in ("quantity", "amount", "discount", "billed"):
        table.add_column(column, justify="right", no_wrap=True)
    for line in doc["lines"]:
        days = "day" if line["billed_days"] == 1 else "days"
        service = f"{line['start_date']} to {line['end_date']}, {line['billed_days']} {days}"
        table.add_row(
            Text(line["description"]).append(f"\n{service}", style="dim"),
            line["quantity"],
            line["amount"],
            line["discount_amount"],
            line["billed_amount"],
        )
    console.print(table)
    console.print(
        f"subtotal {doc['subtotal']}, discount {doc['discount_total']}, "
        f"invoice_total [bold]{doc['invoice_total']} {doc['currency']}[/bold], due {doc['due_date']}",
        soft_wrap=True,
    )


@invoices_app.command("preview")
def invoices_preview(
    contract: Annotated[str, typer.Option("--contract", help="contract_ref")],
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The invoices a contract would get by --as-of, without saving anything."""
    try:
        plan = preview(_store(), contract, _as_of(as_of))
    except (LookupError, ValueError) as exc:
        _fail(str(exc))
    docs = [_draft_dict(d) for d in plan.invoices]
    if as_json:
        _json({"contract_ref": contract, "documents": docs, "pending_adjustments": len(plan.pending)})
        return
    if not docs:
        console.print(f"nothing to bill for {contract} by {as_of or date.today()}")
    for doc in docs:
        _print_document(doc, f"{doc['doc_type']} dated {doc['billing_date']} (preview)")


@invoices_app.command("list")
def invoices_list(
    contract: Annotated[str | None, typer.Option("--contract", help="Only this contract_ref")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Invoices and credit notes in number order."""
    if status is not None:
        try:
            check_status(status)
        except InvalidTransition as exc:
            _fail(f"--status: {exc}")
    with _store().read() as session:
        rows = list_invoices(session, contract_ref=contract, status=status)
        shown = present_many(rows, lines_of(session, [int(r["id"]) for r in rows]))
    if as_json:
        _json(shown)
        return
    table = Table(title="Invoices and credit notes")
    table.add_column("number", no_wrap=True)  # whole: what a person types into `invoices show` and `mark`
    table.add_column("contract")
    for header in ("dated", "due"):
        table.add_column(header, no_wrap=True)
    table.add_column("status")
    table.add_column("total", justify="right", no_wrap=True)
    for r in shown:
        table.add_row(
            r["number"],
            r["contract_ref"],
            str(r["billing_date"]),
            str(r["due_date"]),
            r["status"],
            money_display(Decimal(r["invoice_total"]), r["currency"]),
        )
    console.print(table)


@invoices_app.command("show")
def invoices_show(number: str, as_json: JsonOpt = False) -> None:
    """One invoice or credit note with its lines."""
    with _store().read() as session:
        doc = get_invoice(session, number)
    if doc is None:
        _fail(f"no invoice or credit note numbered {number!r}")
        return
    doc = present(doc, doc["lines"])
    if as_json:
        _json(doc)
        return
    _print_document(doc, f"{doc['doc_type']} {doc['number']} ({doc['status']}) for {doc['customer_ref']}")


@invoices_app.command("mark")
def invoices_mark(number: str, status: str) -> None:
    """Move a document along its lifecycle: under_review, approved (queues its pushes to the
    push_targets), sent, void (before it is sent), back to draft."""
    settings = Settings()
    try:
        with open_store(settings.database).write() as session:
            change = approval.mark(session, settings, number, status)
    except (LookupError, InvalidTransition) as exc:
        _fail(str(exc))
        return
    if change.previous == change.status:
        console.print(f"{number} is {change.status} already")
        return
    console.print(f"{number}: {change.previous} -> {change.status}")
    for topic, count in sorted(change.queued.items()):
        console.print(f"queued for {topic}: {count}")
    if change.withdrawn:
        console.print(f"withdrawn: {change.withdrawn} push(es) not started")
    if not change.queued and change.status == "approved":
        console.print("queued for no push (the push_targets setting names none for it)")


@app.command()
def bill(as_of: AsOfOpt = None, as_json: JsonOpt = False) -> None:
    """Generate every invoice and credit note due by --as-of (idempotent: a rerun creates nothing);
    with auto_approve_invoices set, approve the drafts and queue their pushes."""
    summary, queued = _bill(_store(), _as_of(as_of), quiet=as_json)
    if as_json:
        _json({**summary.as_dict(), "queued": queued})
    else:
        _print_billing(summary, queued)


def _working(text: str, quiet: bool) -> AbstractContextManager[object]:
    """A spinner with elapsed time on stderr while a long step runs (none under --json)."""
    return nullcontext() if quiet else err.status(text)


def _print_outcomes(title: str, outcomes: dict[str, int], failures: list[tuple[Any, str]]) -> None:
    table = Table("outcome", "count", title=title)
    for outcome, count in sorted(outcomes.items()):
        table.add_row(outcome, str(count))
    console.print(table)
    for ref, reason in failures:
        err.print(f"[yellow]{ref}[/yellow]: {reason}")


def _print_leased(summary: Any) -> None:
    """Messages another run holds (a killed run, until its lease runs out): said, not silent."""
    if (held := summary.leased_text()) is not None:
        err.print(f"[yellow]waiting[/yellow]: {held}", highlight=False)


@app.command()
def push(
    target: Annotated[str, typer.Option("--target", help="quickbooks or stripe")],
    as_json: JsonOpt = False,
) -> None:
    """Push approved invoices and credit notes to the ERP or Stripe (each once, whatever happens)."""
    from billbridge.flows.push import push as push_documents

    settings = Settings()
    try:
        with _working(f"pushing to {target}", as_json):
            summary = push_documents(open_store(settings.database), settings, target)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        _json({"target": target, **summary.as_dict()})
    else:
        _print_outcomes(f"Push to {target}", dict(summary.outcomes), summary.failures)
        _print_leased(summary)


@app.command()
def collect(as_json: JsonOpt = False) -> None:
    """Charge due auto-charge invoices in Stripe; declines wait for their dunning date."""
    from billbridge.flows.collect import collect as collect_due

    settings = Settings()
    try:
        with _working("charging due auto-charge invoices", as_json):
            summary = collect_due(open_store(settings.database), settings)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        _json(summary.as_dict())
    else:
        _print_outcomes("Auto-charge", dict(summary.outcomes), summary.failures)
        _print_leased(summary)


@app.command()
def reconcile(
    source: Annotated[str, typer.Option("--source", help="stripe or quickbooks")],
    as_json: JsonOpt = False,
) -> None:
    """Match the payments received in Stripe or QuickBooks to invoices (each recorded once)."""
    from billbridge.flows.reconcile import reconcile as reconcile_source

    settings = Settings()
    try:
        with _working(f"reconciling payments from {source}", as_json):
            summary = reconcile_source(open_store(settings.database), settings, source)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        _json(summary.as_dict())
    else:
        outcomes = dict(summary.outcomes) | {f"entered in QuickBooks: {k}": v for k, v in summary.mirrored.items()}
        _print_outcomes(f"Reconciliation: {source}", outcomes, summary.unmatched)
        for refused in summary.quarantined:
            err.print(
                f"[yellow]quarantined[/yellow] {refused.key}: field [bold]{refused.field}[/bold]: {refused.reason}",
                highlight=False,
            )


@sync_app.command("crm")
def sync_crm_command(
    source: Annotated[str, typer.Option("--source", help="salesforce, hubspot or stripe (subscriptions)")],
    full: Annotated[
        bool, typer.Option("--full", help="Read every deal again, not only those changed since the last sync.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Pull the CRM's won deals (or Stripe's subscriptions) changed since the last sync and store them as contracts;
    quarantined deals whose missing entity, customer or product is in the store now are retried first."""
    from billbridge.flows.crm_sync import spec_for, sync_pages
    from billbridge.flows.sync_crm import connect

    settings = Settings()
    try:
        spec = spec_for(source, dates=settings.crm_dates)
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
        _json(summary.as_dict())
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


@quarantine_app.command("list")
def quarantine_list(
    source: Annotated[str | None, typer.Option(help="Only this source")] = None, as_json: JsonOpt = False
) -> None:
    """Records kept aside with the reason, until their source fixes them."""
    with _store().read() as session:
        rows = quarantine_repo.list_open(session, source=source)
    if as_json:
        _json(rows)
        return
    table = Table("source", "type", "record", "field", "reason", "seen", title="Quarantined records")
    for r in rows:
        table.add_row(
            r["source"], r["record_type"], r["record_key"], r["field"] or "-", r["reason"], str(r["seen_count"])
        )
    console.print(table)


@payments_app.command("review")
def payments_review(as_json: JsonOpt = False) -> None:
    """The review list: payments reconciliation could not (fully) apply, with the reason, oldest first."""
    with _store().read() as session:
        rows = payments_to_review(session)
    if as_json:
        _json(rows)
        return
    table = Table(title="To review")
    table.add_column("payment", no_wrap=True)  # whole: the ref to type into `payments apply`
    for header in ("customer", "amount", "unapplied", "received", "reference", "reason"):
        table.add_column(header)
    for r in rows:
        table.add_row(
            r["payment_ref"],
            r["customer_ref"] or "-",
            f"{r['amount']} {r['currency']}",
            str(r["unapplied_amount"]),
            str(r["received_on"]),
            r["reference"] or "-",
            r["review_reason"],
        )
    console.print(table)


@payments_app.command("apply")
def payments_apply(
    payment_ref: Annotated[str, typer.Argument(help="The payment, as the review list names it (stripe:ch_...).")],
    invoice: Annotated[str, typer.Argument(help="Our invoice number it pays.")],
    amount: Annotated[str | None, typer.Option(help="How much of it; default: as much as both have.")] = None,
) -> None:
    """Apply a payment's unapplied money to an open invoice by hand (a payment on the review list that
    a person recognised); queued for QuickBooks as reconciliation would."""
    from decimal import Decimal, InvalidOperation

    from billbridge.flows.reconcile import apply_payment

    try:
        share = None if amount is None else Decimal(amount)
        done = apply_payment(_store(), Settings(), payment_ref, invoice, share)
    except InvalidOperation:
        _fail(f"amount: {amount!r} is not a number")
    except (LookupError, ValueError) as exc:
        _fail(str(exc))
    console.print(f"{payment_ref}: {done.amount} applied to {invoice}")
    for books in done.queued_for:
        source = payment_ref.split(":", 1)[0]
        console.print(f"queued for {books}: the next `billbridge reconcile --source {source}` enters it there")


@payments_app.command("reviewed")
def payments_reviewed(
    payment_ref: Annotated[str, typer.Argument(help="The payment, as the review list names it (stripe:ch_...).")],
    note: Annotated[str, typer.Option("--note", help="How it was dealt with (kept with the payment).")],
) -> None:
    """Take a payment off the review list once a person has dealt with it (refunded it, applied it in
    the books, kept it as the customer's credit), saying how."""
    try:
        with _store().write() as session:
            mark_reviewed(session, payment_ref, note)
    except (LookupError, ValueError) as exc:
        _fail(str(exc))
    console.print(f"{payment_ref}: off the review list")


@apikey_app.command("create")
def apikey_create(
    entity: Annotated[str, typer.Option("--entity", help="entity_ref of the legal entity the key acts for")],
    name: Annotated[str | None, typer.Option(help="A label, e.g. the system that will use it")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    try:
        with _store().write() as session:
            row, token = api_keys.create_key(session, entity, name)
    except LookupError as exc:
        _fail(str(exc))
        return
    if as_json:
        _json({**row, "created_at": str(row["created_at"]), "key": token})
        return
    console.print(f"API key {row['prefix']} (id {row['id']}) for legal entity {entity}:")
    typer.echo(token)
    err.print("Store it now: it is not shown again. Send it as `Authorization: Bearer <key>`.")


@apikey_app.command("revoke")
def apikey_revoke(key: Annotated[str, typer.Argument(help="The key's id or prefix (bb_...)")]) -> None:
    """Revoke a key: a running API refuses it within api_cache_seconds (its key cache)."""
    try:
        with _store().write() as session:
            row = api_keys.revoke_key(session, key)
    except LookupError as exc:
        _fail(str(exc))
        return
    console.print(f"revoked {row['prefix']} (id {row['id']}, legal entity {row['entity_ref']})")


@apikey_app.command("list")
def apikey_list(as_json: JsonOpt = False) -> None:
    """Keys with their prefix, legal entity and state (never the key itself)."""
    with _store().read() as session:
        rows = api_keys.list_keys(session)
    if as_json:
        _json([{k: str(v) if isinstance(v, datetime) else v for k, v in r.items()} for r in rows])
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


@webhooks_app.command("process")
def webhooks_process(as_json: JsonOpt = False) -> None:
    """Act on stored webhook events (and retry failed ones): each action once, whatever number asked for it."""
    from billbridge.flows.webhooks import process_pending

    settings = Settings()
    summary = process_pending(open_store(settings.database), settings)
    if as_json:
        _json(summary.as_dict())
    else:
        _print_outcomes("Webhook events", dict(summary.events), summary.failures)


@webhooks_app.command("list")
def webhooks_list(
    source: Annotated[str | None, typer.Option(help="stripe or quickbooks")] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Only events not acted on yet")] = False,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Received events, newest first, with what was done about them (or the error)."""
    from billbridge.store.webhooks import list_events

    with _store().read() as session:
        rows = list_events(session, source=source, pending_only=pending, limit=limit)
    if as_json:
        _json([{k: str(v) if isinstance(v, datetime) else v for k, v in r.items()} for r in rows])
        return
    table = Table("id", "source", "type", "object", "received", "attempts", "outcome", "note / error", title="Webhooks")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["source"],
            r["event_type"],
            r["object_id"] or "-",
            str(r["received_at"])[:19],
            str(r["attempts"]),
            r["outcome"] or "pending",
            r["last_error"] or r["note"] or "",
        )
    console.print(table)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (setting api_host)")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port to listen on (setting api_port)")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="uvicorn worker processes (setting api_workers)")
    ] = None,
) -> None:
    """Run the usage and read API (uvicorn); OpenAPI docs at /docs."""
    import uvicorn

    settings = Settings()
    open_store(settings.database).dispose()  # migrate once, before any worker starts
    uvicorn.run(
        "billbridge.api.app:app_from_settings",
        factory=True,
        host=host or settings.api_host,
        port=settings.api_port if port is None else port,
        workers=workers or settings.api_workers,
        log_level="info",
        access_log=False,
    )


def main() -> None:
    app()


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """What is in the store, what waits or fails in the outbox (with the errors), open and overdue
    money, MRR, ARR, AR aging and the next 4 weeks' cash forecast, quarantined records, when each
    source last synced, and when each connection's refresh token expires (a warning from 30 days before)."""
    from billbridge.flows.credentials import credential_expiries
    from billbridge.flows.metrics import headline
    from billbridge.store.status import overview

    store = _store()
    with store.read() as session:
        data = overview(session, date.today())
    data["store"] = make_url(Settings().database).render_as_string(hide_password=True)
    data["finance"] = headline(store, date.today())
    data["credentials"] = [
        {
            "connection": c.connection,
            "refresh_token_expires_at": _iso_moment(c.expires_at),
            "hard_expires_at": _iso_moment(c.hard_expires_at),
            "days_left": c.days_left,
            "warning": c.warn,
        }
        for c in credential_expiries(store, datetime.now(UTC))
    ]
    if as_json:
        _json(data)
        return
    docs = data["documents"]
    head = Table(show_header=False, title="billbridge status")
    money = ", ".join(f"{v} {c}" for c, v in docs["receivable"].items()) or "0"
    overdue = ", ".join(f"{v} {c}" for c, v in docs["overdue"].items()) or "0"
    for label, value in [
        ("store", data["store"]),
        ("customers / contracts", f"{data['customers']} / {data['contracts']}"),
        ("documents by status", ", ".join(f"{k} {v}" for k, v in sorted(docs["by_status"].items())) or "none"),
        ("receivable (open)", money),
        (f"overdue ({docs['late']} late)", overdue),
        (
            "payments recorded / with unapplied money",
            f"{data['payments']['recorded']} / {data['payments']['with_unapplied_money']}",
        ),
        ("payments to review (billbridge payments review)", str(data["payments"]["to_review"])),
        (
            "quarantined (billbridge quarantine list)",
            ", ".join(f"{k} {v}" for k, v in data["quarantined"].items()) or "0",
        ),
    ]:
        head.add_row(label, str(value))
    console.print(head)
    metrics_cli.print_headline(data["finance"])
    if data["outbox"]:
        box = Table("outbox topic", "delivered", "due", "retrying", "parked", "latest error", title="outbox")
        for topic, counts in data["outbox"].items():
            error = counts["errors"][0]["error"] if counts["errors"] else ""
            box.add_row(topic, *(str(counts[k]) for k in ("delivered", "due", "retrying", "parked")), error)
        console.print(box)
        for topic, counts in data["outbox"].items():
            if counts["leased"]:
                console.print(f"{topic}: {counts['leased']} leased by a run (see billbridge outbox list)")
    for cred in data["credentials"]:
        if cred["warning"]:
            when = "has expired" if cred["days_left"] < 0 else f"expires in {cred['days_left']} days"
            console.print(
                f"[bold red]warning:[/] the refresh token of {cred['connection']} {when} "
                f"({cred['refresh_token_expires_at']}): connect the account again before then"
            )
    if data["credentials"]:
        creds = Table(
            "connection", "refresh token expires (UTC)", "hard expiry (UTC)", "days left", title="credentials"
        )
        for cred in data["credentials"]:
            left = "unknown" if cred["days_left"] is None else str(cred["days_left"])
            creds.add_row(cred["connection"], str(cred["refresh_token_expires_at"]), str(cred["hard_expires_at"]), left)
        console.print(creds)
    if data["cursors"]:
        synced = Table("source", "stream", "last cursor saved (UTC)", title="sync cursors")
        for cursor in data["cursors"]:
            synced.add_row(cursor["source"], cursor["stream"], str(cursor["updated_at"]))
        console.print(synced)


def _iso_moment(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None


@outbox_app.command("list")
def outbox_list(
    topic: Annotated[str | None, typer.Option(help="Only this topic (push.quickbooks, collect.stripe, ...).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Undelivered messages with their attempts, next try and last error (parked ones wait for a person,
    leased ones for the run that claimed them: after its lease they are due again)."""
    from billbridge.store import outbox

    with _store().read() as session:
        rows = outbox.pending(session, topic=topic)
    if as_json:
        _json(rows)
        return
    table = Table(
        "id", "topic", "document / payment", "attempts", "next try", "last error", title="outbox: undelivered"
    )
    for row in rows:
        if row["parked"]:
            next_try = "parked"
        elif row["leased_until"] is not None:
            next_try = f"leased by {row['leased_by']} until {str(row['leased_until'])[:19]}"
        else:
            next_try = str(row["available_at"])[:19]
        table.add_row(
            str(row["id"]),
            row["topic"],
            str(row["reference"] or row["aggregate_id"]),
            str(row["attempts"]),
            next_try,
            row["last_error"] or "",
        )
    console.print(table)


@outbox_app.command("retry")
def outbox_retry(
    ids: Annotated[list[int] | None, typer.Argument(min=1, help="Message ids (see outbox list).")] = None,
    topic: Annotated[str | None, typer.Option(help="Every undelivered message of this topic.")] = None,
) -> None:
    """Make messages due now, after the cause of their failure was fixed; the next push, collect or
    reconcile run delivers them (each still once: same idempotency keys, looked up first)."""
    from billbridge.store import outbox

    if not ids and topic is None:
        _fail("name message ids or --topic")
    with _store().write() as session:
        chosen = list(ids or [])
        if topic is not None:
            chosen += [row["id"] for row in outbox.pending(session, topic=topic)]
        count = outbox.retry_now(session, chosen)
    console.print(f"{count} message(s) due now")
