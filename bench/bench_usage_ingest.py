#!/usr/bin/env python
"""Benchmark of usage ingestion over HTTP on loopback, against a bulk-insert floor.

    python bench/bench_usage_ingest.py                       # SQLite and PostgreSQL, defaults below
    python bench/bench_usage_ingest.py --backend sqlite --single 2000 --batches 10
    python bench/bench_usage_ingest.py --backend sqlite --profile    # cProfile of the ingest path

Setup (not timed): a fresh database with one legal entity, ``--customers`` customers, three usage
products and a contract billing usage for every other customer; an API key; ``billbridge serve``
started as a subprocess with ``--workers`` uvicorn workers; a warm-up of two single events per
customer, so that every worker's caches (keys, ids, contract usage terms) are filled, as in a
server that has been running for a while.

Timed: ``--single`` events posted one per request to /api/usage/event from ``--clients`` threads
(one keep-alive httpx client each), then ``--batches`` batches of ``--batch-size`` events posted to
/api/usage/events/batch from ``--batch-clients`` threads. Every event carries an idempotency key,
a random customer and product and a timestamp in the last 60 days, and every answer is checked
(201 / all accepted). Floor (timed, same run, same backend): the rows the batched phase stored, read
back as plain dicts, bulk-inserted with ``conn.execute(insert(usage_events), rows)`` in one
transaction into a freshly migrated database of the same backend. Ratio = API seconds / floor
seconds for the same number of rows.

PostgreSQL needs an admin URL in ``--postgres-url`` or BILLBRIDGE_TEST_POSTGRES_URL (e.g. from
``source scripts/throwaway-postgres.sh``); each run creates two databases and drops them afterwards.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import http.client
import io
import json
import os
import pstats
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from common import Runs, add_runs_argument, log, repeat, stamp
from sqlalchemy import Table, create_engine, insert, select, text
from sqlalchemy.engine import Engine, make_url

from billbridge.api.lookups import Lookups
from billbridge.api.usage_ingest import ingest
from billbridge.flows.importing import import_document
from billbridge.store import api_keys
from billbridge.store.db import normalise_url, open_store
from billbridge.store.models import UsageEvent

EVENTS: Table = UsageEvent.__table__  # type: ignore[assignment]
TARGET_BATCHED = 25_000  # events/s on SQLite (issue 20; was 10,000)
TARGET_SINGLE = 2_000  # events/s on SQLite (issue 20; was 1,500)
ENTITY = "us"
PRODUCTS = ("api-calls", "storage-gb", "messages")


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def reference_document(customers: int) -> dict[str, Any]:
    """One entity, its customers, usage products, and a usage contract for every other customer."""
    start = (datetime.now(timezone.utc) - timedelta(days=90)).date().isoformat()
    return {
        "entities": [{"entity_ref": ENTITY, "name": "Bench Inc.", "currency": "USD", "invoice_prefix": "B-INV-"}],
        "customers": [
            {"customer_ref": f"cust-{i}", "name": f"Customer {i}", "entity_ref": ENTITY} for i in range(customers)
        ],
        "products": [
            {
                "product_ref": ref,
                "name": ref,
                "prices": [
                    {
                        "price_ref": f"{ref}-usd",
                        "currency": "USD",
                        "pricing": {"model": "per_unit", "unit_price": "0.01"},
                    }
                ],
            }
            for ref in PRODUCTS
        ],
        "contracts": [
            {
                "contract_ref": f"C-{i}",
                "customer_ref": f"cust-{i}",
                "entity_ref": ENTITY,
                "currency": "USD",
                "contract_start_date": start,
                "lines": [
                    {"line_ref": ref, "product_ref": ref, "charge": "usage", "usage_aggregation": "sum"}
                    for ref in PRODUCTS
                ],
            }
            for i in range(0, customers, 2)
        ],
    }


def make_events(n: int, customers: int, rng: random.Random, run: str) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc)
    return [
        {
            "timestamp": (now - timedelta(seconds=rng.randrange(60 * 86_400))).isoformat(timespec="milliseconds"),
            "customer_ref": f"cust-{rng.randrange(customers)}",
            "usage_product_ref": rng.choice(PRODUCTS),
            "quantity": rng.choice([1, 5, 10, 12.5, 0.25, 100]),
            "additional_report_data": {"note": "bench"},
            "validations": {"currency": "USD", "entity_ref": ENTITY},
            "event_id": f"{run}-{i}",
        }
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------
# Databases and server
# ---------------------------------------------------------------------------------------------


class Databases:
    """Creates the benchmark's databases on one backend and removes them afterwards."""

    def __init__(self, backend: str, admin_url: str | None, workdir: str) -> None:
        self.backend = backend
        self.created: list[str] = []
        if backend == "sqlite":
            os.makedirs(workdir, exist_ok=True)
            self.dir = tempfile.mkdtemp(prefix="billbridge-ingest-", dir=workdir)
        else:
            assert admin_url
            self.admin_url = normalise_url(admin_url)
            self.admin: Engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
            self.run_id = uuid.uuid4().hex[:10]

    def new_url(self, label: str) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{os.path.join(self.dir, label + '.db')}"
        name = f"bb_ingest_{self.run_id}_{label}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def cleanup(self) -> None:
        if self.backend == "sqlite":
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of a process and its children (uvicorn's workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == root or ppid == root:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(url: str, workers: int) -> Iterator[tuple[str, int]]:
    """``billbridge serve`` on a free loopback port; yields its base URL, stops it afterwards."""
    port = free_port()
    command = Path(sys.executable).with_name("billbridge")
    env = {**os.environ, "BILLBRIDGE_DATABASE_URL": url, "BILLBRIDGE_CONFIG": os.devnull}
    # output to a file, not a pipe: a full pipe would stall the server
    with tempfile.TemporaryFile(mode="w+") as output:
        process = subprocess.Popen(
            [str(command), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}/openapi.json", timeout=2).raise_for_status()
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output.seek(0)
                        raise RuntimeError(f"server did not start: {output.read()[-2000:]}") from None
                    time.sleep(0.2)
            yield base, process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


# ---------------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------------


def post_all(base: str, path: str, bodies: list[Any], token: str, clients: int, check: Any) -> float:
    """Post every body from ``clients`` threads, one keep-alive connection each; wall seconds.

    The client is the standard library's http.client, not httpx: httpx spends about 1.8 ms of CPU
    per request here, which caps one client process near 550 requests/s on this machine and would
    measure the client instead of the server (see bench/README.md).
    """
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    host, port = base.removeprefix("http://").split(":")
    payloads = [json.dumps(body).encode() for body in bodies]
    shares = [payloads[i::clients] for i in range(clients)]

    def worker(share: list[bytes]) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            for payload in share:
                connection.request("POST", path, body=payload, headers=headers)
                response = connection.getresponse()
                check(response.status, response.read())
        finally:
            connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(worker, share) for share in shares]:
            future.result()
    return time.perf_counter() - started


def check_single(status: int, body: bytes) -> None:
    if status != 201:
        raise AssertionError(f"{status}: {body[:300]!r}")


def check_batch(status: int, body: bytes) -> None:
    answer = json.loads(body)
    if status != 200 or answer["refused"] or answer["duplicates"]:
        raise AssertionError(f"{status}: {body[:300]!r}")


def floor_seconds(databases: Databases, reference: dict[str, Any], rows: list[dict[str, Any]]) -> float:
    """Bare bulk insert of ``rows`` into usage_events of a fresh database (refs imported untimed)."""
    url = databases.new_url("floor")
    store = open_store(url)
    import_document(store, {k: v for k, v in reference.items() if k != "contracts"})
    try:
        started = time.perf_counter()
        with store.engine.begin() as conn:
            conn.execute(insert(EVENTS), rows)
        return time.perf_counter() - started
    finally:
        store.dispose()


@dataclass
class Result:
    backend: str
    workers: int
    single_events: int
    single_seconds: float
    single_per_s: float
    batched_events: int
    batched_seconds: float
    batched_per_s: float
    floor_seconds: float
    floor_per_s: float
    single_ratio: float  # floor rate / single rate: how many times slower than the bare insert
    batched_ratio: float
    single_server_cpu_us: float  # server CPU (all workers) per event, microseconds
    batched_server_cpu_us: float
    # the bench's own client threads' CPU per event: on this one machine they share the cores with the server
    single_client_cpu_us: float
    batched_client_cpu_us: float


def bench_backend(backend: str, args: argparse.Namespace) -> Result:
    databases = Databases(backend, args.postgres_url, args.workdir)
    try:
        url = databases.new_url("ingest")
        store = open_store(url)
        reference = reference_document(args.customers)
        import_document(store, reference)
        with store.write() as session:
            _, token = api_keys.create_key(session, ENTITY, "bench")
        rng = random.Random(args.seed)
        run = uuid.uuid4().hex[:8]
        singles = make_events(args.single, args.customers, rng, f"s{run}")
        batches = [
            {"events": make_events(args.batch_size, args.customers, rng, f"b{run}-{b}")} for b in range(args.batches)
        ]
        with server(url, args.workers) as (base, pid):
            warm = make_events(2 * args.customers, args.customers, rng, f"w{run}")
            log(f"[{backend}] warm-up (not timed): {len(warm)} single events ...")
            post_all(base, "/api/usage/event", warm, token, args.clients, check_single)
            log(f"[{backend}] {args.single} single events from {args.clients} clients ...")
            cpu, mine = cpu_seconds(pid), time.process_time()
            single = post_all(base, "/api/usage/event", singles, token, args.clients, check_single)
            single_cpu, single_client = cpu_seconds(pid) - cpu, time.process_time() - mine
            log(f"[{backend}] {args.batches} batches of {args.batch_size} from {args.batch_clients} clients ...")
            cpu, mine = cpu_seconds(pid), time.process_time()
            batched = post_all(base, "/api/usage/events/batch", batches, token, args.batch_clients, check_batch)
            batched_cpu, batched_client = cpu_seconds(pid) - cpu, time.process_time() - mine
        prefix = f"b{run}-"
        with store.engine.connect() as conn:
            rows = [
                dict(r)
                for r in conn.execute(
                    select(*[c for c in EVENTS.c if c.name != "id"]).where(
                        EVENTS.c.idempotency_key.like(f"%:{prefix}%")
                    )
                ).mappings()
            ]
        store.dispose()
        n_batched = args.batches * args.batch_size
        assert len(rows) == n_batched, (len(rows), n_batched)
        log(f"[{backend}] floor: bulk insert of {len(rows)} rows ...")
        floor = floor_seconds(databases, reference, rows)
    finally:
        databases.cleanup()
    single_rate = args.single / single
    batched_rate = n_batched / batched
    floor_rate = n_batched / floor
    return Result(
        backend=backend,
        workers=args.workers,
        single_events=args.single,
        single_seconds=round(single, 3),
        single_per_s=round(single_rate),
        batched_events=n_batched,
        batched_seconds=round(batched, 3),
        batched_per_s=round(batched_rate),
        floor_seconds=round(floor, 3),
        floor_per_s=round(floor_rate),
        single_ratio=round(floor_rate / single_rate, 1),
        batched_ratio=round(floor_rate / batched_rate, 1),
        single_server_cpu_us=round(single_cpu / args.single * 1e6),
        batched_server_cpu_us=round(batched_cpu / n_batched * 1e6),
        single_client_cpu_us=round(single_client / args.single * 1e6),
        batched_client_cpu_us=round(batched_client / n_batched * 1e6),
    )


def profile_ingest(args: argparse.Namespace) -> None:
    """cProfile of the in-process ingest path (no HTTP): batches, then single events, on SQLite,
    with warm per-process caches as in the server."""
    databases = Databases("sqlite", None, args.workdir)
    try:
        store = open_store(databases.new_url("profile"))
        import_document(store, reference_document(args.customers))
        with store.write() as session:
            _, token = api_keys.create_key(session, ENTITY, "bench")
        with store.read() as session:
            principal = api_keys.authenticate(session, token)
        assert principal is not None
        rng = random.Random(args.seed)

        def as_received(events: list[dict[str, Any]]) -> list[dict[str, Any]]:  # what the server parses
            parsed: list[dict[str, Any]] = json.loads(json.dumps(events), parse_float=Decimal)
            return parsed

        batches = [as_received(make_events(args.batch_size, args.customers, rng, f"p{b}")) for b in range(args.batches)]
        singles = as_received(make_events(args.single, args.customers, rng, "ps"))
        # As the server runs: caches kept by the process and warmed up, start-up objects frozen.
        lookups = Lookups(300)
        for one in as_received(make_events(2 * args.customers, args.customers, rng, "pw")):
            ingest(store, principal, [one], lookups=lookups)
        gc.collect()
        gc.freeze()
        profiler = cProfile.Profile()
        profiler.enable()
        for batch in batches:
            ingest(store, principal, batch, lookups=lookups)
        for one in singles:
            ingest(store, principal, [one], lookups=lookups)
        profiler.disable()
        gc.unfreeze()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(args.profile_sort).print_stats(30)
        print(out.getvalue())
        store.dispose()
    finally:
        databases.cleanup()


def print_table(results: list[Runs[Result]]) -> None:
    """Median (lowest-highest) of the runs; the ratio is taken per run, against its own floor."""
    print(stamp() + "\n")
    header = (
        f"{'backend':<11} {'mode':<8} {'events':>7}  {'events/s':<24}{'x floor':<22}{'server CPU us/event':<22}"
        f"{'client CPU us/event':<22}{'target':<20}{'load (1 min)':<20}"
    )
    print(header + "\n" + "-" * len(header))
    for runs in results:
        r = runs.first
        for mode, n, target in (
            ("single", r.single_events, TARGET_SINGLE),
            ("batched", r.batched_events, TARGET_BATCHED),
        ):
            rate = runs.spread(lambda x, m=mode: getattr(x, f"{m}_per_s"))  # type: ignore[misc]
            met = "met" if rate.median >= target else "NOT met"
            print(
                f"{r.backend:<11} {mode:<8} {n:>7}  {rate.show(',.0f'):<24}"
                f"{runs.spread(lambda x, m=mode: getattr(x, f'{m}_ratio')).show('.1f', 'x'):<22}"  # type: ignore[misc]
                f"{runs.spread(lambda x, m=mode: getattr(x, f'{m}_server_cpu_us')).show('.0f'):<22}"  # type: ignore[misc]
                f"{runs.spread(lambda x, m=mode: getattr(x, f'{m}_client_cpu_us')).show('.0f'):<22}"  # type: ignore[misc]
                f"{met + f' ({target:,})':<20}{runs.load.show('.2f'):<20}"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--single", type=int, default=10_000, help="single events (default 10000)")
    parser.add_argument("--batches", type=int, default=50, help="batches (default 50)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8, help="client threads for single events (default 8)")
    parser.add_argument("--batch-clients", type=int, default=2, help="client threads for batches (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2)")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--postgres-url", default=os.environ.get("BILLBRIDGE_TEST_POSTGRES_URL"))
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--profile", action="store_true", help="profile the in-process ingest path instead")
    parser.add_argument("--profile-sort", default="cumulative")
    parser.add_argument("--json", action="store_true", help="results as JSON on stdout")
    add_runs_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        profile_ingest(args)
        return 0
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if "postgresql" in backends and not args.postgres_url:
        if args.backend == "postgresql":
            log("PostgreSQL needs --postgres-url or BILLBRIDGE_TEST_POSTGRES_URL")
            return 2
        log("warning: no PostgreSQL URL, skipping PostgreSQL")
        backends.remove("postgresql")
    results = [repeat(lambda b=b: bench_backend(b, args), args.runs, b) for b in backends]  # type: ignore[misc]
    if args.json:
        print(
            json.dumps([{"runs": [asdict(r) for r in runs.results], "load": runs.loads} for runs in results], indent=2)
        )
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
