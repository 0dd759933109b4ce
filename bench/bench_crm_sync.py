#!/usr/bin/env python
"""Benchmark of the CRM sync: N deals from a vendor sandbox into the contract store.

    python bench/bench_crm_sync.py                      # 50,000 deals from each CRM sandbox
    python bench/bench_crm_sync.py --deals 5000 --source hubspot

Setup (not timed): a demo world of N deals (about 3 line items each) is generated and served by the
vendor's sandbox in a separate process (so the sandbox does not share our interpreter), and an
empty SQLite store gets the world's legal entities.

Timed, in this order (after importing the connector and its SDK once, untimed):
- floor: the connector's pull consumed through the vendor SDK with nothing mapped or stored: the
  same pages and batch reads the sync makes (a bare paging loop of the same data through the SDK);
- full sync: ``sync_pages`` from no cursor with its defaults (a full pull on 2 CPUs: a writer
  process stores the pages): pull, map, store every page, save the cursor;
- incremental: 1% of the deals change in the sandbox (edits, closes, deletions), then a sync from
  the stored cursor.

Printed: API calls of the full sync against the minimum the vendor's page and batch sizes allow
(target at most 1.1x), full-sync wall time against the floor (target at most 1.5x), and the
incremental run's API calls against the full run's (target at most 3%). Pacing is the connectors'
own: the Salesforce sandbox does not throttle; the HubSpot sandbox enforces HubSpot's per-token
search limit, so its searches (and its floor's) go at the connector's 4 a second, and searches the
limit refused (429, retried) are counted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common import SandboxProcess, add_runs_argument, log, repeat, stamp

from billbridge.flows.crm_pages import spec_for, sync_pages
from billbridge.flows.importing import import_document
from billbridge.flows.sync_crm import connect
from billbridge.sandbox import demo_world
from billbridge.settings import Settings
from billbridge.store.db import open_store

TARGET_CALLS = 1.1
TARGET_WALL = 1.5
TARGET_INCREMENTAL = 0.03


class CrmSandbox:
    """A CRM sandbox serving a demo world of N deals (run in its own process by ``SandboxProcess``)."""

    def __init__(self, source: str, deals: int, seed: int) -> None:
        self.world = demo_world.generate(deals, seed=seed)
        self.sandbox: Any
        if source == "hubspot":
            from billbridge.sandbox.hubspot import HubSpotSandbox

            self.sandbox = HubSpotSandbox.start(self.world)
            self.env = {**self.sandbox.env(), "BILLBRIDGE_HUBSPOT__REQUESTS_PER_10S": "1000000"}
        elif source == "salesforce":
            from billbridge.sandbox.salesforce import SalesforceSandbox

            self.sandbox = SalesforceSandbox(self.world).start()
            self.env = self.sandbox.env()
        else:
            raise SystemExit(f"no sandbox for {source}")
        self.faults = self.sandbox.faults

    def info(self) -> dict[str, str]:
        return dict(self.env)

    def search_throttled(self) -> int:
        """Searches HubSpot's per-token search limit refused (429 SECONDLY); 0 for other CRMs."""
        app = getattr(self.sandbox, "app", None)
        return int(getattr(getattr(app, "state", None), "search_throttled", 0))

    def change(self) -> int:
        """1% of the deals change (edits, closes, deletions; broken deals stay broken)."""
        later = demo_world.changed(self.world, 0.01, fix_broken=False)
        return int(self.sandbox.apply(later))

    def stop(self) -> None:
        self.sandbox.stop()


def hubspot_minimum(world: demo_world.DemoWorld) -> int:
    """Fewest calls a full pull can make with HubSpot's sizes: 200 deals per search page, 1,000 ids
    per association read (deal -> line items, deal -> company, deal -> contacts, company ->
    contacts), 100 ids per batch read of line items, companies and products, 100 archived deals per
    list page (the demo world holds no billing contacts: none to batch-read)."""
    live = world.live_deals
    lines = sum(len(d.lines) for d in live)
    companies = len({d.company_key for d in live})
    archived = sum(1 for d in world.deals.values() if d.deleted)
    return (
        math.ceil(len(live) / 200)
        + 3 * math.ceil(len(live) / 1000)
        + math.ceil(companies / 1000)
        + math.ceil(lines / 100)
        + math.ceil(companies / 100)
        + math.ceil(len(world.products) / 100)
        + max(1, math.ceil(archived / 100))
    )


def salesforce_minimum(world: demo_world.DemoWorld) -> int:
    """Fewest calls a full pull can make with Salesforce's sizes: one OAuth token request, the price
    book in one query, opportunities with their line items (child subquery) 2,000 per query page."""
    return 1 + 1 + math.ceil(len(world.live_deals) / 2000)


MINIMUM: dict[str, Callable[[demo_world.DemoWorld], int]] = {
    "hubspot": hubspot_minimum,
    "salesforce": salesforce_minimum,
}


@dataclass
class Result:
    source: str
    deals: int
    floor_s: float
    full_s: float
    calls: int
    minimum: int
    contracts: int
    quarantined: int
    incremental_s: float
    incremental_calls: int
    changed: int
    search_429s: int = 0  # searches the sandbox's per-token search limit refused, over all three runs

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "wall_ratio": round(self.full_s / self.floor_s, 2),
            "call_ratio": round(self.calls / self.minimum, 3),
            "incremental_call_share": round(self.incremental_calls / self.calls, 4),
        }


def run(source: str, deals: int, seed: int, workdir: str) -> Result:
    world = demo_world.generate(deals, seed=seed)
    sandbox = SandboxProcess(CrmSandbox, source, deals, seed)
    os.environ.update(sandbox.info)
    log(f"[{source}] sandbox up with {deals:,} deals")
    try:
        connect(source, Settings())  # untimed: the connector's and SDK's imports, paid once by either run
        started = time.perf_counter()
        pulled = sum(len(page.records) for page in connect(source, Settings()).pull(None))
        floor = time.perf_counter() - started
        log(f"[{source}] floor: {pulled:,} deals paged in {floor:.1f}s")
        sandbox.reset_calls()

        store = open_store(f"sqlite:///{tempfile.mkstemp(prefix=source + '-', suffix='.db', dir=workdir)[1]}")
        import_document(store, demo_world.entities_document(world))
        spec = spec_for(source)
        started = time.perf_counter()
        full = sync_pages(store, spec, connect(source, Settings()))
        full_s = time.perf_counter() - started
        calls = sandbox.calls()
        c = full.counts
        log(f"[{source}] full sync: {full.deals_pulled:,} deals, {c['contracts.created']:,} contracts in {full_s:.1f}s")

        changed = sandbox.ask("change")
        sandbox.reset_calls()
        started = time.perf_counter()
        incremental = sync_pages(store, spec, connect(source, Settings()))
        incremental_s = time.perf_counter() - started
        incremental_calls = sandbox.calls()
        log(
            f"[{source}] incremental: {changed} deals changed, {incremental.deals_pulled} pulled, "
            f"{incremental_calls} calls in {incremental_s:.1f}s; "
            f"searches refused by the search limit (429) over the floor, full and incremental runs: "
            f"{sandbox.ask('search_throttled')}"
        )
        store.dispose()
        return Result(
            source,
            deals,
            floor,
            full_s,
            calls,
            MINIMUM[source](world),
            c["contracts.created"],
            c["contracts.quarantined"],
            incremental_s,
            incremental_calls,
            changed,
            int(sandbox.ask("search_throttled")),
        )
    finally:
        sandbox.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deals", type=int, default=50_000)
    parser.add_argument("--source", choices=[*MINIMUM, "all"], default="all")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    add_runs_argument(parser)
    args = parser.parse_args()
    sources = list(MINIMUM) if args.source == "all" else [args.source]
    with tempfile.TemporaryDirectory(prefix="billbridge-sync-bench-") as workdir:
        results = [
            repeat(lambda source=source: run(source, args.deals, args.seed, workdir), args.runs, source)  # type: ignore[misc]
            for source in sources
        ]
    if args.json:
        print(
            json.dumps(
                [{"runs": [r.as_dict() for r in runs.results], "load": runs.loads} for runs in results], indent=2
            )
        )
        return
    print(f"\n{stamp()}\n")
    print(f"median (lowest-highest) of {args.runs} runs; ratios per run, against its own floor\n")
    header = (
        f"{'source':<11}{'deals':>8}  {'calls / minimum':<24}{'sync s':<20}{'x floor (wall)':<24}"
        f"{'incr calls share':<26}{'load (1 min)':<20}"
    )
    print(header + "\n" + "-" * len(header))
    for runs in results:
        r = runs.first
        print(
            f"{r.source:<11}{r.deals:>8,}  {runs.spread(lambda x: x.calls / x.minimum).show('.2f', 'x'):<24}"
            f"{runs.spread(lambda x: x.full_s).show('.1f'):<20}"
            f"{runs.spread(lambda x: x.full_s / x.floor_s).show('.2f', 'x'):<24}"
            f"{runs.spread(lambda x: 100 * x.incremental_calls / x.calls).show('.1f', '%'):<26}"
            f"{runs.load.show('.2f'):<20}"
        )
    print(
        f"\ntargets: calls <= {TARGET_CALLS}x the minimum, wall <= {TARGET_WALL}x the floor, "
        f"incremental calls <= {TARGET_INCREMENTAL:.0%} of the full run"
    )
    for runs in results:
        for r in runs.results:
            print(f"[{r.source}] contracts {r.contracts:,}, quarantined {r.quarantined:,}, changed {r.changed:,}")


if __name__ == "__main__":
    main()
