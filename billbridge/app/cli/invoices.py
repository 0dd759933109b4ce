"""``billbridge invoices``: preview, list, show and mark invoices and credit notes."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.text import Text

from billbridge.app.cli.common import AsOfOpt, JsonOpt, configured_store, console, parse_as_of, print_json
from billbridge.app.cli.tables import Table
from billbridge.app.errors import fail
from billbridge.billing.currency import money_display
from billbridge.billing.engine import InvoiceDraft
from billbridge.billing.invoice_view import present, present_many
from billbridge.billing.lifecycle import InvalidTransition, check_status
from billbridge.settings import Settings
from billbridge.store import external_refs
from billbridge.store.db import open_store
from billbridge.store.invoices import get_invoice, lines_of, list_invoices

app = typer.Typer(help="Invoices and credit notes.", no_args_is_help=True)


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


@app.command("preview")
def invoices_preview(
    contract: Annotated[str, typer.Option("--contract", help="contract_ref")],
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The invoices a contract would get by --as-of, without saving anything."""
    from billbridge.flows.invoice_generation import preview

    try:
        plan = preview(configured_store(), contract, parse_as_of(as_of))
    except (LookupError, ValueError) as exc:
        fail(str(exc))
    docs = [_draft_dict(d) for d in plan.invoices]
    if as_json:
        print_json({"contract_ref": contract, "documents": docs, "pending_adjustments": len(plan.pending)})
        return
    if not docs:
        console.print(f"nothing to bill for {contract} by {as_of or date.today()}")
    for doc in docs:
        _print_document(doc, f"{doc['doc_type']} dated {doc['billing_date']} (preview)")


@app.command("list")
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
            fail(f"--status: {exc}")
    with configured_store().read() as session:
        rows = list_invoices(session, contract_ref=contract, status=status)
        shown = present_many(rows, lines_of(session, [int(r["id"]) for r in rows]))
    if as_json:
        print_json(shown)
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


@app.command("show")
def invoices_show(number: str, as_json: JsonOpt = False) -> None:
    """One invoice or credit note with its lines."""
    with configured_store().read() as session:
        doc = get_invoice(session, number)
        if doc is not None:
            in_quickbooks = external_refs.get_external_id(session, "quickbooks", doc["doc_type"], doc["id"])
            customer = external_refs.customer_external_ref(session, "quickbooks", doc["customer_ref"])
    if doc is None:
        fail(f"no invoice or credit note numbered {number!r}")
        return
    doc = present(doc, doc["lines"])
    doc["quickbooks"] = {
        "id": in_quickbooks,
        "customer_id": customer[0] if customer else None,
        "customer_name": customer[1] if customer else None,  # set where it is not the customer's own name
    }
    if as_json:
        print_json(doc)
        return
    _print_document(doc, f"{doc['doc_type']} {doc['number']} ({doc['status']}) for {doc['customer_ref']}")
    if customer is not None and customer[1] is not None:
        console.print(
            f"in QuickBooks the customer is {customer[1]!r} (Id {customer[0]}): a vendor or an employee "
            "holds its own name",
            soft_wrap=True,
        )


@app.command("mark")
def invoices_mark(number: str, status: str) -> None:
    """Move a document along its lifecycle: under_review, approved (queues its pushes to the
    push_targets), sent, void (before it is sent), back to draft."""
    from billbridge.flows import approval

    settings = Settings()
    try:
        with open_store(settings.database).write() as session:
            change = approval.mark(session, settings, number, status)
    except (LookupError, InvalidTransition) as exc:
        fail(str(exc))
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
