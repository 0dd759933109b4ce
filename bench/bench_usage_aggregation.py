"""Benchmark of usage aggregation: one billing period's per-day aggregates over N stored events.

Setup (not timed): a fresh migrated database, ``--customers`` customers of one legal entity, one
usage product, and ``--events`` events spread evenly over January 2026 (quantities with up to two
decimals, a ``user`` property with ``--users`` distinct values). Events go in through the driver's
fastest path (SQLite executemany, PostgreSQL COPY; the ingest benchmark is a separate script), and
each batch is folded into the per-day rollups by ``add_to_daily``, as ingestion does.

Timed:
  * ``period``: ``period_usage`` for every customer: sum, peak and count per customer and product
    over the period, the aggregate a period close or a usage report reads (the issue's figure).
  * ``days``: ``daily_usage`` for every customer: the same per customer, product and day.
  * ``chunks``: ``daily_usage`` over chunks of 1,000 customers, as ``run_billing`` asks for them.
  * ``raw``: the same per-day figures recomputed from the events by one GROUP BY (no rollups):
    what the period would cost without them, and the check that the rollups are right.
  * ``distinct`` (``--distinct``): the distinct ``user`` values per customer and day as well.

Each result is checked against totals kept while generating (the sum of all quantities, the
number of events) and against the recomputation, day by day. Target (issue 5): the period aggregate of 10 million events in under 5 s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import tempfile
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any

from common import (
    Backend,
    PostgresBackend,
    Runs,
    SQLiteBackend,
    add_runs_argument,
    code_version,
    log,
    repeat,
    stamp,
    timer,
)
from sqlalchemy import insert, select, text

from billbridge.billing.usage_periods import to_micros
from billbridge.store.db import Store, open_store
from billbridge.store.models import Customer, LegalEntity, NumberSequence, Product
from billbridge.store.usage import add_to_daily
from billbridge.store.usage_aggregates import daily_usage, period_usage

PERIOD_START, PERIOD_END = date(2026, 1, 1), date(2026, 2, 1)
TARGET_SECONDS = 5.0
COLUMNS = (
    "event_ref",
    "entity_id",
    "customer_id",
    "product_id",
    "timestamp",
    "quantity",
    "quantity_micros",
    "properties",
)


@dataclass
class Result:
    backend: str
    events: int
    customers: int
    setup_seconds: float = 0.0
    period_seconds: float = 0.0
    days_seconds: float = 0.0
    day_rows: int = 0
    chunks_seconds: float = 0.0
    recompute_seconds: float = 0.0
    distinct_seconds: float | None = None
    total_ok: bool = False


def reference(store: Store, customers: int) -> tuple[int, int, list[int]]:
    """One entity, one usage product, the customers; returns their ids."""
    with store.write() as session:
        entity = session.execute(
            insert(LegalEntity)
            .values(
                entity_ref="bench", name="Bench Inc.", currency="USD", invoice_prefix="B-", credit_note_prefix="BC-"
            )
            .returning(LegalEntity.id)
        ).scalar_one()
        session.execute(
            insert(NumberSequence),
            [{"entity_id": entity, "doc_type": t, "next_value": 1} for t in ("invoice", "credit_note")],
        )
        product = session.execute(
            insert(Product).values(product_ref="api", name="API calls").returning(Product.id)
        ).scalar_one()
        session.execute(
            insert(Customer),
            [{"customer_ref": f"cust-{i:06d}", "name": f"Customer {i}", "entity_id": entity} for i in range(customers)],
        )
        ids = list(session.scalars(select(Customer.id).order_by(Customer.id)))
    return entity, product, ids


def generate(n: int, entity: int, product: int, customers: list[int], users: int, seed: int) -> Any:
    """Event rows in timestamp order, as tuples in COLUMNS order. Totals go to ``generate.totals``."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1)
    step = (datetime.combine(PERIOD_END, datetime.min.time()) - start).total_seconds() / n
    properties = [json.dumps({"user": f"u{k}"}) for k in range(users)]
    total_micros = 0
    for i in range(n):
        cents = int(rng.random() * 99_999) + 1  # 0.01 to 999.99
        total_micros += cents * 10_000
        yield (
            f"ev-{i:09d}",
            entity,
            customers[int(rng.random() * len(customers))],
            product,
            start + timedelta(seconds=int(i * step)),
            f"{cents // 100}.{cents % 100:02d}",
            cents * 10_000,
            properties[int(rng.random() * users)],
        )
    generate.totals = total_micros  # type: ignore[attr-defined]


def load(store: Store, rows: Any, batch: int = 100_000) -> None:
    """Events through the driver's fastest path, then each batch folded into the per-day rollups by
    the store's own ``add_to_daily`` (what ingestion runs), so the rollups are the real ones."""
    sqlite_mode = store.dialect == "sqlite"
    columns = ", ".join(COLUMNS)
    while chunk := list(islice(rows, batch)):
        raw = store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            if sqlite_mode:
                cursor.execute("BEGIN")  # the store's connections leave transactions to SQLAlchemy
                cursor.executemany(
                    f"INSERT INTO usage_events ({columns}, received_at) VALUES ({', '.join('?' * len(COLUMNS))}, ?)",
                    [(*r[:4], r[4].isoformat(sep=" ", timespec="microseconds"), *r[5:], "2026-02-01") for r in chunk],
                )
            else:
                with cursor.copy(f"COPY usage_events ({columns}, received_at) FROM STDIN") as copy:
                    for r in chunk:
                        copy.write_row((*r, "2026-02-01"))
            raw.commit()
        finally:
            raw.close()
        with store.write() as session:
            add_to_daily(session, [dict(zip(COLUMNS, r, strict=True)) for r in chunk])
    with store.engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE" if sqlite_mode else "ANALYZE usage_events")


RECOMPUTE = """
SELECT customer_id, product_id, {day} AS day, SUM(quantity_micros), MAX(quantity_micros), COUNT(*)
FROM usage_events WHERE timestamp >= :lower AND timestamp < :upper
GROUP BY customer_id, product_id, {day}
"""


def recompute(store: Store) -> dict[tuple[int, str, str], tuple[int, int, int]]:
    """The per-day figures straight from the events (no rollups): the check, and its cost."""
    day = "substr(timestamp, 1, 10)" if store.dialect == "sqlite" else "CAST(timestamp AS DATE)"
    with store.engine.connect() as connection:
        rows = connection.execute(
            text(RECOMPUTE.format(day=day)),
            {"lower": datetime(2026, 1, 1), "upper": datetime.combine(PERIOD_END, datetime.min.time())},
        )
        return {(c, "api", str(d)): (int(t), int(m), int(n)) for c, _p, d, t, m, n in rows}


def bench(backend: Backend, args: argparse.Namespace) -> Result:
    url = backend.new_url("usage")
    store = open_store(url)
    result = Result(backend.name, args.events, args.customers)
    try:
        entity, product, customers = reference(store, args.customers)
        rows = generate(args.events, entity, product, customers, args.users, args.seed)
        log(f"[{backend.name}] loading {args.events:,} events ...")
        with timer() as t_setup:
            load(store, rows)
        result.setup_seconds = t_setup[0]
        expected_total = Decimal(generate.totals).scaleb(-6)  # type: ignore[attr-defined]

        log(f"[{backend.name}] aggregating one period over every customer ...")
        with timer(freeze=True) as t_period, store.read() as session:
            period = period_usage(session, None, PERIOD_START, PERIOD_END)
        result.period_seconds = t_period[0]
        total = sum((u.total for u in period.values()), Decimal(0))
        count = sum(u.events for u in period.values())

        log(f"[{backend.name}] per-day figures of the period over every customer ...")
        with timer(freeze=True) as t_days, store.read() as session:
            days = daily_usage(session, None, PERIOD_START, PERIOD_END)
        result.days_seconds = t_days[0]
        result.day_rows = sum(len(per_day) for per_day in days.values())
        log(f"[{backend.name}] recomputing the same figures from the events ...")
        with timer(freeze=True) as t_raw:
            raw = recompute(store)
        result.recompute_seconds = t_raw[0]
        from_rollups = {
            (c, ref, str(day)): (to_micros(u.total), to_micros(u.peak), u.events)
            for (c, ref), per_day in days.items()
            for day, u in per_day.items()
        }
        result.total_ok = total == expected_total and count == args.events and from_rollups == raw
        if not result.total_ok:
            log(f"[{backend.name}] MISMATCH: total {total} vs {expected_total}, count {count} vs {args.events}")

        log(f"[{backend.name}] aggregating in billing chunks of 1,000 customers ...")
        with timer(freeze=True) as t_chunks, store.read() as session:
            for i in range(0, len(customers), 1000):
                daily_usage(session, customers[i : i + 1000], PERIOD_START, PERIOD_END)
        result.chunks_seconds = t_chunks[0]

        if args.distinct:
            log(f"[{backend.name}] distinct users per customer and day ...")
            with timer(freeze=True) as t_distinct, store.read() as session:
                daily_usage(session, None, PERIOD_START, PERIOD_END, distinct_for={("api", "user")})
            result.distinct_seconds = t_distinct[0]
    finally:
        store.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=50, help="distinct user values per customer")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=None, help="admin URL (default $BILLBRIDGE_TEST_POSTGRES_URL)")
    parser.add_argument("--distinct", action="store_true", help="also time the distinct-values aggregate")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", action="store_true")
    add_runs_argument(parser)
    args = parser.parse_args()
    pg_url = args.postgres_url or os.environ.get("BILLBRIDGE_TEST_POSTGRES_URL")
    names = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if "postgresql" in names and not pg_url:
        log("no PostgreSQL URL: skipping postgresql")
        names.remove("postgresql")
    results: list[Runs[Result]] = []
    for name in names:
        backend: Backend = (
            SQLiteBackend(args.workdir or tempfile.gettempdir(), args.keep)
            if name == "sqlite"
            else PostgresBackend(pg_url or "", args.keep)
        )
        try:
            results.append(repeat(lambda backend=backend: bench(backend, args), args.runs, name))  # type: ignore[misc]
        finally:
            backend.cleanup()
    if args.json:
        payload = [{"runs": [asdict(r) for r in runs.results], "load": runs.loads} for runs in results]
        print(json.dumps({"code": code_version(), "results": payload}, indent=2))
        return
    out = io.StringIO()
    print(stamp(), file=out)
    print(f"median (lowest-highest) of {args.runs} runs, seconds\n", file=out)
    header = f"{'backend':<11}{'events':>12}  {'period':<22}{'days':<22}{'chunks':<22}{'raw':<22}{'exact':>6}"
    header += f"  {'target <' + format(TARGET_SECONDS, 'g') + 's':<12}{'load (1 min)':<20}"
    print(header + "\n" + "-" * len(header), file=out)
    for runs in results:
        r = runs.first
        period = runs.spread(lambda x: x.period_seconds)
        exact = all(x.total_ok for x in runs.results)
        print(
            f"{r.backend:<11}{r.events:>12,}  {period.show('.2f'):<22}{runs.spread(lambda x: x.days_seconds).show('.2f'):<22}"
            f"{runs.spread(lambda x: x.chunks_seconds).show('.2f'):<22}"
            f"{runs.spread(lambda x: x.recompute_seconds).show('.2f'):<22}{'yes' if exact else 'NO':>6}"
            f"  {'met' if period.median < TARGET_SECONDS else 'NOT met':<12}{runs.load.show('.2f'):<20}",
            file=out,
        )
        if r.distinct_seconds is not None:
            print(f"  distinct: {runs.spread(lambda x: x.distinct_seconds or 0.0).show('.2f')} s", file=out)
    print(out.getvalue(), end="")


if __name__ == "__main__":
    main()
