"""``billbridge bill``, ``push``, ``collect`` and ``reconcile``: the quote-to-cash steps, each rerunnable."""

from __future__ import annotations

from typing import Annotated

import typer

from billbridge.app.cli.common import (
    AsOfOpt,
    JsonOpt,
    bill_as_of,
    configured_store,
    err,
    parse_as_of,
    print_billing,
    print_json,
    print_leased,
    print_outcomes,
    working,
)
from billbridge.app.errors import fail
from billbridge.settings import Settings
from billbridge.store.db import open_store


def bill(as_of: AsOfOpt = None, as_json: JsonOpt = False) -> None:
    """Generate every invoice and credit note due by --as-of (idempotent: a rerun creates nothing);
    with auto_approve_invoices set, approve the drafts and queue their pushes."""
    summary, queued = bill_as_of(configured_store(), parse_as_of(as_of), quiet=as_json)
    if as_json:
        print_json({**summary.as_dict(), "queued": queued})
    else:
        print_billing(summary, queued)


def push(
    target: Annotated[str, typer.Option("--target", help="quickbooks or stripe")],
    as_json: JsonOpt = False,
) -> None:
    """Push approved invoices and credit notes to the ERP or Stripe (each once, whatever happens)."""
    from billbridge.flows.push import push as push_documents

    settings = Settings()
    try:
        with working(f"pushing to {target}", as_json):
            summary = push_documents(open_store(settings.database), settings, target)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        print_json({"target": target, **summary.as_dict()})
    else:
        print_outcomes(f"Push to {target}", dict(summary.outcomes), summary.failures)
        print_leased(summary)
        for note in summary.notes:
            err.print(f"[yellow]{note}[/yellow]", highlight=False)


def collect(as_json: JsonOpt = False) -> None:
    """Charge due auto-charge invoices in Stripe; declines wait for their dunning date."""
    from billbridge.flows.collect import collect as collect_due

    settings = Settings()
    try:
        with working("charging due auto-charge invoices", as_json):
            summary = collect_due(open_store(settings.database), settings)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        print_json(summary.as_dict())
    else:
        print_outcomes("Auto-charge", dict(summary.outcomes), summary.failures)
        print_leased(summary)


def reconcile(
    source: Annotated[str, typer.Option("--source", help="stripe or quickbooks")],
    as_json: JsonOpt = False,
) -> None:
    """Match the payments received in Stripe or QuickBooks to invoices (each recorded once)."""
    from billbridge.flows.reconcile import reconcile as reconcile_source

    settings = Settings()
    try:
        with working(f"reconciling payments from {source}", as_json):
            summary = reconcile_source(open_store(settings.database), settings, source)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        print_json(summary.as_dict())
    else:
        outcomes = dict(summary.outcomes) | {f"entered in QuickBooks: {k}": v for k, v in summary.mirrored.items()}
        print_outcomes(f"Reconciliation: {source}", outcomes, summary.unmatched)
        if summary.fees is not None and summary.fees.error is not None:
            err.print(f"[yellow]partner fees not accrued[/yellow] (the next run accrues them): {summary.fees.error}")
        for refused in summary.quarantined:
            err.print(
                f"[yellow]quarantined[/yellow] {refused.key}: field [bold]{refused.field}[/bold]: {refused.reason}",
                highlight=False,
            )
