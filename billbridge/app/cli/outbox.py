"""``billbridge outbox``: deliveries waiting or failed (pushes, charges, payment entries), and retrying them."""

from __future__ import annotations

from typing import Annotated

import typer

from billbridge.app.cli.common import JsonOpt, configured_store, console, print_json
from billbridge.app.cli.tables import Table
from billbridge.app.errors import fail

app = typer.Typer(help="Deliveries waiting or failed: pushes, charges, payment entries.", no_args_is_help=True)


@app.command("list")
def outbox_list(
    topic: Annotated[str | None, typer.Option(help="Only this topic (push.quickbooks, collect.stripe, ...).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Undelivered messages with their attempts, next try and last error (parked ones wait for a person,
    leased ones for the run that claimed them: after its lease they are due again)."""
    from billbridge.store import outbox

    with configured_store().read() as session:
        rows = outbox.pending(session, topic=topic)
    if as_json:
        print_json(rows)
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


@app.command("retry")
def outbox_retry(
    ids: Annotated[list[int] | None, typer.Argument(min=1, help="Message ids (see outbox list).")] = None,
    topic: Annotated[str | None, typer.Option(help="Every undelivered message of this topic.")] = None,
) -> None:
    """Make messages due now, after the cause of their failure was fixed; the next push, collect or
    reconcile run delivers them (each still once: same idempotency keys, looked up first)."""
    from billbridge.store import outbox

    if not ids and topic is None:
        fail("name message ids or --topic")
    with configured_store().write() as session:
        chosen = list(ids or [])
        if topic is not None:
            chosen += [row["id"] for row in outbox.pending(session, topic=topic)]
        count = outbox.retry_now(session, chosen)
    console.print(f"{count} message(s) due now")
