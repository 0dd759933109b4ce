#!/usr/bin/env python
"""Benchmark of monitor snapshots against a bare insert of the same value rows, in the same run.

    python bench/bench_monitors.py                                   # the issue's sizes (long)
    python bench/bench_monitors.py --customers 2000 --monitors 20 --backend sqlite

Setup (not timed): a fresh migrated store with one legal entity and ``--customers`` customers, each
with one monthly contract (a flat fee and per-unit seats; one in four amended mid-period). Timed:

  * ``day``: ``--monitors`` portfolio monitors (eight contract items in turn, so monitors repeat an
    item: the snapshot evaluates an item once per contract and day and shares it) evaluated for
    every customer on one day: ``flows.monitors.snapshot`` (reading contracts, evaluating, writing).
  * ``backfill``: one portfolio monitor over every contract for ``--days`` days (alerts off).
  * ``rerun``: the one-day snapshot again: nothing changes, nothing is written.

Floor: the same value rows (monitor, customer, day, value) inserted bare into ``monitor_values`` of
another fresh store, in chunks of 1,000 customers, one transaction each (no reading, no evaluation).
Target (issue 16): each snapshot within 3x its floor.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from common import Backend, PostgresBackend, SQLiteBackend, code_version, log, timer
from sqlalchemy import insert

from billbridge.billing.monitors import MonitorDefinition
from billbridge.flows import monitors as flow
from billbridge.flows.importing import import_document
from billbridge.store import monitors as sql
from billbridge.store.db import Store, open_store
from billbridge.store.models import table_of
from billbridge.store.monitor_models import MonitorValue

DAY = date(2026, 3, 15)
ITEMS = [
    ("billed_amount", "platform"),
    ("amount", "seats"),
    ("billed_days", "platform"),
    ("quantity", "seats"),
    ("end_date", None),
    ("start_date", None),
    ("cycle_length", None),
    ("contract_start_date", None),
]
TARGET = 3.0


@dataclass
class Result:
    backend: str
    customers: int
    monitors: int
    days: int
    setup_seconds: float = 0.0
    day_seconds: float = 0.0
    day_values: int = 0
    day_floor_seconds: float = 0.0
    rerun_seconds: float = 0.0
    rerun_written: int = -1
    backfill_seconds: float = 0.0
    backfill_values: int = 0
    backfill_floor_seconds: float = 0.0

    @property
    def day_ratio(self) -> float:
        return self.day_seconds / self.day_floor_seconds if self.day_floor_seconds else 0.0

    @property
    def backfill_ratio(self) -> float:
        return self.backfill_seconds / self.backfill_floor_seconds if self.backfill_floor_seconds else 0.0


def world(customers: int) -> dict[str, Any]:
    contracts = []
    for n in range(customers):
        base = {
            "contract_ref": f"C{n:06d}",
            "customer_ref": f"cust{n:06d}",
            "entity_ref": "us",
            "currency": "USD",
            "contract_start_date": str(date(2025, 1, 1) + timedelta(days=n % 300)),
            "lines": [
                {"line_ref": "platform", "product_ref": "platform", "pricing": {"model": "flat", "amount": "300.00"}},
                {
                    "line_ref": "seats",
                    "product_ref": "seats",
                    "quantity": str(5 + n % 20),
                    "pricing": {"model": "per_unit", "unit_price": "45.00"},
                },
            ],
        }
        contracts.append(base)
    return {
        "entities": [{"entity_ref": "us", "name": "US", "currency": "USD", "invoice_prefix": "US-INV-"}],
        "customers": [
            {"customer_ref": f"cust{n:06d}", "name": f"Customer {n}", "entity_ref": "us"} for n in range(customers)
        ],
        "products": [{"product_ref": "platform", "name": "Platform"}, {"product_ref": "seats", "name": "Seats"}],
        "contracts": contracts,
    }


def amendments(customers: int) -> dict[str, Any]:
    """One contract in four gets 10 more seats from the 10th of March."""
    document = world(customers)
    chosen = []
    for contract in document["contracts"][::4]:
        contract["effective_date"] = "2026-03-10"
        contract["lines"][1]["quantity"] = str(int(contract["lines"][1]["quantity"]) + 10)
        chosen.append(contract)
    return {"contracts": chosen}


def define(store: Store, count: int, prefix: str) -> None:
    with store.write() as session:
        for i in range(count):
            item, product = ITEMS[i % len(ITEMS)]
            watch: dict[str, Any] = {"item": item}
            if product:
                watch["product_ref"] = product
            definition = {"name": f"{prefix}{i:04d}", "source": "contract", "entity_ref": "us", "contract": watch}
            flow.add_monitor(session, MonitorDefinition.model_validate(definition))


def floor(
    backend: Backend, label: str, customers: int, rows_of: Mapping[int, Mapping[tuple[int, date], str | None]]
) -> float:
    """The same rows inserted bare, a chunk of 1,000 customers per transaction (into a store with the
    same customers, so the rows' keys are the same)."""
    store = open_store(backend.new_url(label))
    try:
        reference = world(customers)
        import_document(store, {"entities": reference["entities"], "customers": reference["customers"]})
        define(store, len(rows_of), "floor")
        with store.read() as session:
            ids = [m.id for m in sql.list_monitors(session)]
        table = table_of(MonitorValue)
        batches: list[tuple[int, list[dict[str, Any]]]] = []
        for monitor_id, (_, values) in zip(ids, sorted(rows_of.items()), strict=True):
            by_chunk: dict[int, list[dict[str, Any]]] = {}
            for (customer_id, day), value in values.items():
                if value is not None:
                    row = {"monitor_id": monitor_id, "customer_id": customer_id, "day": day, "value": value}
                    by_chunk.setdefault(customer_id // 1000, []).append(row)
            batches += [(monitor_id, rows) for rows in by_chunk.values()]
        from billbridge.store.models import utcnow

        with timer(freeze=True) as took:
            now = utcnow()
            for _, rows in batches:
                with store.write() as session:
                    session.execute(insert(table), [{**r, "computed_at": now} for r in rows])
        return took[0]
    finally:
        store.dispose()


def kept(store: Store, first: date, last: date) -> dict[int, dict[tuple[int, date], str | None]]:
    out: dict[int, dict[tuple[int, date], str | None]] = {}
    with store.read() as session:
        for monitor in sql.list_monitors(session):
            values = sql.values_on(session, monitor.id, first, last)
            out[monitor.id] = {(c, d): v for c, days in values.items() for d, v in days.items()}
    return out


def bench(backend: Backend, args: argparse.Namespace) -> Result:
    result = Result(backend.name, args.customers, args.monitors, args.days)
    store = open_store(backend.new_url("monitors"))
    try:
        log(f"[{backend.name}] importing {args.customers:,} contracts ...")
        with timer() as t_setup:
            import_document(store, world(args.customers))
            import_document(store, amendments(args.customers))
        result.setup_seconds = t_setup[0]
        define(store, args.monitors, "m")
        log(f"[{backend.name}] {args.monitors} monitors over every customer for {DAY} ...")
        with timer(freeze=True) as t_day:
            day = flow.snapshot(store, DAY, alerts=False)
        result.day_seconds, result.day_values = t_day[0], day.values
        with timer(freeze=True) as t_rerun:
            rerun = flow.snapshot(store, DAY, alerts=False)
        result.rerun_seconds, result.rerun_written = t_rerun[0], rerun.written
        day_rows = kept(store, DAY, DAY)
        result.day_floor_seconds = floor(backend, "floor-day", args.customers, day_rows)

        first = DAY - timedelta(days=args.days - 1)
        define(store, 1, "backfill")
        log(f"[{backend.name}] backfilling one portfolio monitor over {args.days} days ...")
        with timer(freeze=True) as t_backfill:
            backfill = flow.snapshot(store, first, DAY, names=["backfill0000"], alerts=False)
        result.backfill_seconds, result.backfill_values = t_backfill[0], backfill.values
        with store.read() as session:
            [monitor] = sql.list_monitors(session, name="backfill0000")
            values = sql.values_on(session, monitor.id, first, DAY)
        rows = {monitor.id: {(c, d): v for c, days in values.items() for d, v in days.items()}}
        result.backfill_floor_seconds = floor(backend, "floor-backfill", args.customers, rows)
    finally:
        store.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--monitors", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=None, help="admin URL (default $BILLBRIDGE_TEST_POSTGRES_URL)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pg_url = args.postgres_url or os.environ.get("BILLBRIDGE_TEST_POSTGRES_URL")
    names = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if "postgresql" in names and not pg_url:
        log("no PostgreSQL URL: skipping postgresql")
        names.remove("postgresql")
    results = []
    for name in names:
        backend: Backend = (
            SQLiteBackend(args.workdir or tempfile.gettempdir(), args.keep)
            if name == "sqlite"
            else PostgresBackend(pg_url or "", args.keep)
        )
        try:
            results.append(bench(backend, args))
        finally:
            backend.cleanup()
    if args.json:
        out = [{**asdict(r), "day_ratio": r.day_ratio, "backfill_ratio": r.backfill_ratio} for r in results]
        print(json.dumps({"code": code_version(), "results": out}, indent=2))
        return
    text = io.StringIO()
    print(f"billbridge {code_version()}", file=text)
    for r in results:
        print(
            f"{r.backend}: {r.customers:,} customers, {r.monitors} monitors, one day: {r.day_values:,} values in "
            f"{r.day_seconds:.2f} s, floor {r.day_floor_seconds:.2f} s, {r.day_ratio:.1f}x (target <= {TARGET:g}x); "
            f"rerun {r.rerun_seconds:.2f} s, {r.rerun_written} written",
            file=text,
        )
        print(
            f"{r.backend}: backfill of one portfolio monitor over {r.days} days: {r.backfill_values:,} values in "
            f"{r.backfill_seconds:.2f} s, floor {r.backfill_floor_seconds:.2f} s, {r.backfill_ratio:.1f}x",
            file=text,
        )
    print(text.getvalue(), end="")


if __name__ == "__main__":
    main()
