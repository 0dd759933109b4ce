"""``billbridge payments``: received payments waiting for a person (review, apply, mark reviewed)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import typer

from billbridge.app.cli.common import JsonOpt, configured_store, console, print_json
from billbridge.app.cli.tables import Table
from billbridge.app.errors import fail
from billbridge.settings import Settings
from billbridge.store.payments import mark_reviewed, payments_to_review

app = typer.Typer(help="Received payments: the ones waiting for a person.", no_args_is_help=True)


@app.command("review")
def payments_review(as_json: JsonOpt = False) -> None:
    """The review list: payments reconciliation could not (fully) apply, with the reason, oldest first."""
    with configured_store().read() as session:
        rows = payments_to_review(session)
    if as_json:
        print_json(rows)
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


@app.command("apply")
def payments_apply(
    payment_ref: Annotated[str, typer.Argument(help="The payment, as the review list names it (stripe:ch_...).")],
    invoice: Annotated[str, typer.Argument(help="Our invoice number it pays.")],
    amount: Annotated[str | None, typer.Option(help="How much of it; default: as much as both have.")] = None,
) -> None:
    """Apply a payment's unapplied money to an open invoice by hand (a payment on the review list that
    a person recognised); queued for QuickBooks as reconciliation would."""
    from decimal import InvalidOperation

    from billbridge.flows.reconcile import apply_payment

    try:
        share = None if amount is None else Decimal(amount)
        done = apply_payment(configured_store(), Settings(), payment_ref, invoice, share)
    except InvalidOperation:
        fail(f"amount: {amount!r} is not a number")
    except (LookupError, ValueError) as exc:
        fail(str(exc))
    console.print(f"{payment_ref}: {done.amount} applied to {invoice}")
    for books in done.queued_for:
        source = payment_ref.split(":", 1)[0]
        console.print(f"queued for {books}: the next `billbridge reconcile --source {source}` enters it there")


@app.command("reviewed")
def payments_reviewed(
    payment_ref: Annotated[str, typer.Argument(help="The payment, as the review list names it (stripe:ch_...).")],
    note: Annotated[str, typer.Option("--note", help="How it was dealt with (kept with the payment).")],
) -> None:
    """Take a payment off the review list once a person has dealt with it (refunded it, applied it in
    the books, kept it as the customer's credit), saying how."""
    try:
        with configured_store().write() as session:
            mark_reviewed(session, payment_ref, note)
    except (LookupError, ValueError) as exc:
        fail(str(exc))
    console.print(f"{payment_ref}: off the review list")
