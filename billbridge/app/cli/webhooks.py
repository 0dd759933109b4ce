"""``billbridge webhooks``: the webhook events received from Stripe and QuickBooks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from billbridge.app.cli.common import JsonOpt, configured_store, console, print_json, print_outcomes
from billbridge.app.cli.tables import Table
from billbridge.settings import Settings
from billbridge.store.db import open_store

app = typer.Typer(help="Webhook events received from Stripe and QuickBooks.", no_args_is_help=True)


@app.command("process")
def webhooks_process(as_json: JsonOpt = False) -> None:
    """Act on stored webhook events (and retry failed ones): each action once, whatever number asked for it."""
    from billbridge.flows.webhooks import process_pending

    settings = Settings()
    summary = process_pending(open_store(settings.database), settings)
    if as_json:
        print_json(summary.as_dict())
    else:
        print_outcomes("Webhook events", dict(summary.events), summary.failures)


@app.command("list")
def webhooks_list(
    source: Annotated[str | None, typer.Option(help="stripe or quickbooks")] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Only events not acted on yet")] = False,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Received events, newest first, with what was done about them (or the error)."""
    from billbridge.store.webhooks import list_events

    with configured_store().read() as session:
        rows = list_events(session, source=source, pending_only=pending, limit=limit)
    if as_json:
        print_json([{k: str(v) if isinstance(v, datetime) else v for k, v in r.items()} for r in rows])
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
