#!/usr/bin/env python
"""Backtest of the cash inflow forecast on the demo world: forecast four weeks ahead from a past day
with only what was known then, and compare with what was collected in those four weeks.

    python bench/backtest_forecast.py                    # 300 deals, forecast from 2026-09-01
    python bench/backtest_forecast.py --deals 600 --from 2026-08-01 --json

The demo world's won deals are synced from the HubSpot sandbox into a temporary SQLite store (as
`billbridge demo` does). Each customer pays with its own habit, drawn once per customer: from 3 days
early to 45 days late, and 1 invoice in 20 not at all. Up to the forecast day, billing runs, every
invoice is sent, and the payments received before the day are recorded; the forecast is made
(``flows.metrics.forecast_report``: open invoices shifted by each customer's history, invoices the
billing engine will generate, no usage in this world). Then billing runs to the end of the window,
its invoices are sent, and the payments received in the window are recorded: the actual cash.
Printed per entity and currency: forecast (invoiced and projected), actual, and the error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from billbridge.flows import metrics
from billbridge.flows.approval import mark
from billbridge.flows.crm_pages import spec_for, sync_pages
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.sync_crm import connect
from billbridge.sandbox import demo_world
from billbridge.sandbox.hubspot import HubSpotSandbox
from billbridge.settings import Settings
from billbridge.store import metrics as sql
from billbridge.store.db import Store, open_store
from billbridge.store.invoices import list_invoices
from billbridge.store.payments import record_payment

HABITS = [-3, 0, 0, 2, 5, 10, 20, 30, 45]  # days late a customer pays, drawn once per customer
NEVER = 20  # 1 invoice in NEVER is not paid


def _draw(key: str, modulo: int) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % modulo


def paid_on(invoice: dict[str, Any]) -> date | None:
    """When the customer pays this invoice: its due date plus the customer's habit, or never."""
    if _draw(str(invoice["number"]), NEVER) == 0:
        return None
    return invoice["due_date"] + timedelta(days=HABITS[_draw(str(invoice["customer_ref"]), len(HABITS))])


def sync_world(store: Store, deals: int) -> int:
    """The demo world's deals into the store, through the HubSpot sandbox and connector."""
    world = demo_world.generate(deals, seed=202)
    import_document(store, demo_world.entities_document(world))
    sandbox = HubSpotSandbox.start(world)
    try:
        os.environ.update({**sandbox.env(), "BILLBRIDGE_HUBSPOT__REQUESTS_PER_10S": "100000"})
        summary = sync_pages(store, spec_for("hubspot"), connect("hubspot", Settings()), today=world.now.date())
    finally:
        sandbox.stop()
    return int(summary.counts["contracts.created"])


def bill_send_and_collect(store: Store, day: date, start: date) -> None:
    """Bill to ``day``, send every document, record the payments received from ``start`` to before ``day``."""
    run_billing(store, day)
    settings = Settings()
    with store.read() as session:
        documents = list_invoices(session)
    with store.write() as session:
        for d in documents:
            if d["status"] in ("draft", "under_review", "approved"):
                for status in ("approved", "sent") if d["status"] != "approved" else ("sent",):
                    mark(session, settings, d["number"], status)
    with store.write() as session:
        for d in documents:
            when = paid_on(d)
            if d["doc_type"] != "invoice" or d["invoice_total"] <= 0 or when is None or not start <= when < day:
                continue
            record_payment(
                session,
                payment_ref=f"backtest:{d['number']}",
                currency=d["currency"],
                amount=d["invoice_total"],
                received_on=when,
                allocations=[(d["number"], d["invoice_total"])],
                customer_ref=d["customer_ref"],
            )


def collected(store: Store, start: date, end: date) -> dict[tuple[str, str], Decimal]:
    """Cash applied from payments received in [start, end), per (entity, currency): the metrics'
    own collections summary, refreshed first."""
    metrics.refresh(store, parts=("documents",))
    where = metrics.scope(store)
    with store.read() as session:
        days = sql.collected(session, where.entity_ids, start, end - timedelta(days=1))
    out: dict[tuple[str, str], Decimal] = {}
    for c in days:
        out[(c.entity_ref, c.currency)] = out.get((c.entity_ref, c.currency), Decimal(0)) + c.amount
    return out


def backtest(deals: int, day: date, weeks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'backtest.db'}")
        contracts = sync_world(store, deals)
        bill_send_and_collect(store, day, date.min)
        forecast = metrics.forecast_report(store, metrics.scope(store), day, "week").rows
        end = day + timedelta(weeks=weeks)
        bill_send_and_collect(store, end, day)
        actual = collected(store, day, end)
        store.dispose()
    rows = []
    for entity, currency in sorted({(r["entity_ref"], r["currency"]) for r in forecast} | set(actual)):
        own = [
            r
            for r in forecast
            if (r["entity_ref"], r["currency"]) == (entity, currency) and r["from"] < end.isoformat()
        ]
        invoiced = sum((Decimal(r["invoiced"]) for r in own), Decimal(0))
        projected = sum((Decimal(r["projected"]) for r in own), Decimal(0))
        got = actual.get((entity, currency), Decimal(0))
        error = ((invoiced + projected - got) / got * 100).quantize(Decimal("0.1")) if got else None
        rows.append(
            {
                "entity_ref": entity,
                "currency": currency,
                "forecast_invoiced": str(invoiced),
                "forecast_projected": str(projected),
                "forecast": str(invoiced + projected),
                "collected": str(got),
                "error_percent": None if error is None else str(error),
            }
        )
    errors = [abs(Decimal(r["error_percent"])) for r in rows if r["error_percent"] is not None]
    mean = (sum(errors, Decimal(0)) / len(errors)).quantize(Decimal("0.1")) if errors else None
    return {
        "deals": deals,
        "contracts": contracts,
        "from": day.isoformat(),
        "to": (end - timedelta(days=1)).isoformat(),
        "rows": rows,
        "mean_absolute_error_percent": None if mean is None else str(mean),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=300)
    parser.add_argument("--from", dest="day", type=date.fromisoformat, default=date(2026, 9, 1))
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = backtest(args.deals, args.day, args.weeks)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        return 0
    print(
        f"{result['contracts']} contracts from {result['deals']} deals; forecast from {result['from']} to {result['to']}"
    )
    print(
        f"{'entity':<14}{'currency':<9}{'invoiced':>14}{'projected':>14}{'forecast':>14}{'collected':>14}{'error %':>9}"
    )
    for r in result["rows"]:
        print(
            f"{r['entity_ref']:<14}{r['currency']:<9}{r['forecast_invoiced']:>14}{r['forecast_projected']:>14}"
            f"{r['forecast']:>14}{r['collected']:>14}{r['error_percent'] or '-':>9}"
        )
    print(f"mean absolute error: {result['mean_absolute_error_percent']}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
