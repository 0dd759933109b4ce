#!/usr/bin/env python
"""Benchmark of revenue recognition: every contract's schedule over 36 months, from scratch and after
1% of the contracts change, against a floor.

    python bench/bench_revenue.py                       # 100,000 contracts, SQLite
    python bench/bench_revenue.py --contracts 10000
    python bench/bench_revenue.py --contracts 10000 --profile /tmp/rev.prof   # cProfile of the full run
    python bench/bench_revenue.py --contracts 10000 --profile-incremental /tmp/inc.prof   # of the incremental run

Setup (not timed): the billing benchmark's contracts of mixed pricing (``bench_billing.Generator``)
are imported and billed once on ``--as-of``. Timed: ``flows.revenue.rebuild(store, through, full=True)``
with ``through`` 36 months after ``--as-of`` (so evergreen contracts have 36 months of schedule too);
then 1% of the contracts are amended (a new quantity from ``--as-of``) and an incremental ``rebuild``
is timed. Floor (timed in the same run): the schedule rows the full run wrote, read back as plain
dicts and bulk-inserted with SQLAlchemy core into a freshly migrated empty database (one transaction).
Targets: full run <= 3x the floor; incremental run < 5% of the full run.

``--workers N`` planning processes build the next chunks while the run writes (default 0: in the run's
own process, as the recognize command and flow build). Besides wall time each figure
has its CPU time (this process and its planning processes): the machine is shared, and CPU is the
steadier measure of the work done; the load average is printed with the result.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

from bench_billing import PARENTS, Generator
from common import SQLiteBackend, code_version, load_average, log, timer
from sqlalchemy import Table, func, insert, select

from billbridge.flows import revenue
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.store.db import open_store
from billbridge.store.revenue_models import RevenueContractState, RevenueObligation, RevenueScheduleRow

SCHEDULE: Table = RevenueScheduleRow.__table__  # type: ignore[assignment]
OBLIGATIONS: Table = RevenueObligation.__table__  # type: ignore[assignment]
STATES: Table = RevenueContractState.__table__  # type: ignore[assignment]
MONTHS = 36
PAGE = 100_000


@contextmanager
def cpu() -> Iterator[list[float]]:
    """CPU seconds of the block: this process's and those of the child processes that ended in it."""
    box = [0.0]

    def used() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    started = used()
    try:
        yield box
    finally:
        box[0] = used() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contracts", type=int, default=100_000)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 7, 1))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--changed", type=float, default=0.01, help="share of contracts amended for the incremental run"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="planning processes building the next chunks while the rebuild writes (default 0: in the run's process)",
    )
    parser.add_argument(
        "--profile", metavar="PATH", help="cProfile the full run (its times inflated), stats written to PATH"
    )
    parser.add_argument(
        "--profile-incremental",
        metavar="PATH",
        help="cProfile the incremental run (its times inflated), stats written to PATH",
    )
    parser.add_argument("--workdir", default="bench/out")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    backend = SQLiteBackend(args.workdir, args.keep)
    through = args.as_of + timedelta(days=round(MONTHS * 30.4375)) - timedelta(days=1)
    result: dict[str, Any] = {
        "code": code_version(),
        "contracts": args.contracts,
        "through": through.isoformat(),
        "workers": args.workers,
    }
    try:
        store = open_store(backend.new_url("revenue"))
        gen = Generator(args.contracts, args.as_of, args.seed)
        import_document(store, gen.reference_document())
        contracts: list[dict[str, Any]] = []
        batch: list[dict[str, Any]] = []
        for contract in gen.contracts():
            contracts.append(contract)
            batch.append(contract)
            if len(batch) >= 2000:
                import_document(store, {"contracts": batch})
                batch.clear()
        if batch:
            import_document(store, {"contracts": batch})
        billing = run_billing(store, args.as_of)
        log(f"setup: {len(contracts):,} contracts imported and billed ({sum(billing.documents.values()):,} documents)")

        result["load_before"] = load_average()
        profiler = cProfile.Profile() if args.profile else None
        with timer(freeze=True) as t_full, cpu() as c_full:
            if profiler:
                profiler.enable()
            full = revenue.rebuild(store, through, full=True, workers=args.workers)
            if profiler:
                profiler.disable()
        if profiler:
            profiler.dump_stats(args.profile)
            buffer = io.StringIO()
            pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(30)
            log(f"cProfile of the full run (times inflated), written to {args.profile}:\n{buffer.getvalue()}")
            result["profiled"] = True
        with store.engine.connect() as conn:
            row_count = conn.execute(select(func.count()).select_from(SCHEDULE)).scalar_one()
        result.update(
            full_seconds=round(t_full[0], 2),
            full_cpu_seconds=round(c_full[0], 2),
            rebuilt=full.rebuilt,
            failed=len(full.failed),
            failed_samples=full.failed[:3],
            schedule_rows=row_count,
        )
        log(
            f"full: {full.rebuilt:,} schedules, {row_count:,} rows in {t_full[0]:.1f}s, {c_full[0]:.1f}s CPU "
            f"({len(full.failed)} failed; {args.workers} workers; load {result['load_before']})"
        )

        # floor: the same rows bulk-inserted into a fresh database in one transaction, read in pages
        # outside the clock (all at once they would not fit the memory of a small machine)
        floor = open_store(backend.new_url("floor"))
        with store.engine.connect() as conn:
            parents = {t.name: [dict(r) for r in conn.execute(select(t)).mappings()] for t in PARENTS}
        with floor.engine.begin() as conn:
            for table in PARENTS:
                if parents[table.name]:
                    conn.execute(insert(table), parents[table.name])
        floor_seconds = floor_cpu = 0.0
        with store.engine.connect() as source, floor.engine.begin() as target:
            cursor = source.execution_options(yield_per=PAGE).execute(select(SCHEDULE))
            for page in cursor.mappings().partitions(PAGE):
                rows = [dict(r) for r in page]
                with timer(freeze=True) as t_page, cpu() as c_page:
                    target.execute(insert(SCHEDULE), rows)
                floor_seconds += t_page[0]
                floor_cpu += c_page[0]
        with floor.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(SCHEDULE)).scalar_one() == row_count
        floor.dispose()
        result.update(
            floor_seconds=round(floor_seconds, 2),
            floor_cpu_seconds=round(floor_cpu, 2),
            ratio=round(t_full[0] / floor_seconds, 2) if floor_seconds else None,
            cpu_ratio=round(c_full[0] / floor_cpu, 2) if floor_cpu else None,
        )
        log(
            f"floor: bulk insert of the same {row_count:,} rows in {floor_seconds:.2f}s, {floor_cpu:.2f}s CPU; "
            f"ratio {result['ratio']}x wall, {result['cpu_ratio']}x CPU"
        )

        changed = contracts[:: max(1, round(1 / args.changed))]
        amended = []
        for c in changed:
            lines = [dict(line, quantity=str(int(float(line.get("quantity", "1"))) + 1)) for line in c["lines"]]
            amended.append(dict(c, lines=lines, effective_date=args.as_of.isoformat()))
        import_document(store, {"contracts": amended})
        inc_profiler = cProfile.Profile() if args.profile_incremental else None
        with timer(freeze=True) as t_inc, cpu() as c_inc:
            if inc_profiler:
                inc_profiler.enable()
            incremental = revenue.rebuild(store, through, workers=args.workers)
            if inc_profiler:
                inc_profiler.disable()
        if inc_profiler:
            inc_profiler.dump_stats(args.profile_incremental)
            buffer = io.StringIO()
            pstats.Stats(inc_profiler, stream=buffer).sort_stats("cumulative").print_stats(40)
            log(
                f"cProfile of the incremental run (times inflated), written to {args.profile_incremental}:\n{buffer.getvalue()}"
            )
            result["profiled_incremental"] = True
        result.update(
            incremental_seconds=round(t_inc[0], 3),
            incremental_cpu_seconds=round(c_inc[0], 3),
            incremental_rebuilt=incremental.rebuilt,
            incremental_share=round(t_inc[0] / t_full[0], 4) if t_full[0] else None,
            incremental_cpu_share=round(c_inc[0] / c_full[0], 4) if c_full[0] else None,
            load_after=load_average(),
        )
        log(
            f"incremental: {incremental.rebuilt:,} of {len(changed):,} amended rebuilt in {t_inc[0]:.2f}s, "
            f"{c_inc[0]:.2f}s CPU"
        )
        store.dispose()
        result["full_target_met"] = bool(result["ratio"] is not None and result["ratio"] <= 3)
        result["incremental_target_met"] = bool(
            result["incremental_share"] is not None and result["incremental_share"] < 0.05
        )
    finally:
        backend.cleanup()
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
