"""``billbridge serve`` and ``status``: the API service, and what is in the store and waits in the outbox."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from billbridge.app.cli import messages, metrics
from billbridge.app.cli.common import JsonOpt, configured_store, console, print_json
from billbridge.app.cli.tables import Table
from billbridge.billing.currency import money_display
from billbridge.settings import Settings
from billbridge.store.db import open_store


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
    workers = workers or settings.api_workers
    os.environ["BILLBRIDGE_API_WORKERS"] = str(workers)  # the workers' own settings: they spread connections
    uvicorn.run(
        "billbridge.api.app:app_from_settings",
        factory=True,
        host=host or settings.api_host,
        port=settings.api_port if port is None else port,
        workers=workers,
        log_level="info",
        access_log=False,
        # uvicorn kills a worker that has not answered its supervisor's health check within 5 s
        # by default; importing the app (Prefect, SQLAlchemy, FastAPI) takes longer than that on a
        # busy 2-core machine, so workers were killed and restarted in a loop.
        timeout_worker_healthcheck=120,
    )


def status(as_json: JsonOpt = False) -> None:
    """What is in the store, what waits or fails in the outbox (with the errors), open and overdue
    money, MRR, ARR, AR aging and the next 4 weeks' cash forecast, quarantined records, when each
    source last synced, and when each connection's refresh token expires (a warning from 30 days before)."""
    from billbridge.flows.credentials import credential_expiries
    from billbridge.flows.metrics import headline
    from billbridge.store.status import overview

    store = configured_store()
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
        print_json(data)
        return
    docs = data["documents"]
    head = Table(show_header=False, title="billbridge status")
    money, overdue = _amounts(docs["receivable"]), _amounts(docs["overdue"])
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
            "partners / statements (billbridge partners list)",
            f"{', '.join(f'{k} {v}' for k, v in sorted(data['partners']['by_kind'].items())) or '0'} / "
            f"{', '.join(f'{k} {v}' for k, v in sorted(data['partners']['statements'].items())) or '0'}",
        ),
        (
            "known to a vendor under another name (a name clash)",
            ", ".join(f"{k} {v}" for k, v in sorted(data["renamed_in_vendors"].items())) or "0",
        ),
        (
            "quarantined (billbridge quarantine list)",
            ", ".join(f"{k} {v}" for k, v in data["quarantined"].items()) or "0",
        ),
    ]:
        head.add_row(label, str(value))
    console.print(head)
    metrics.print_headline(data["finance"])
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
    messages.print_overview(data["messages"])
    if data["cursors"]:
        synced = Table("source", "stream", "last cursor saved (UTC)", title="sync cursors")
        for cursor in data["cursors"]:
            synced.add_row(cursor["source"], cursor["stream"], str(cursor["updated_at"]))
        console.print(synced)


def _amounts(by_currency: dict[str, str]) -> str:
    """Money per currency as the demo summary shows it: thousands separated, in the currency's minor
    units ("1,234,567.50 USD, 3,000 JPY"); "0" when there is none."""
    return ", ".join(money_display(Decimal(v), c) for c, v in sorted(by_currency.items())) or "0"


def _iso_moment(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None
