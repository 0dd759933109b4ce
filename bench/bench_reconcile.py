#!/usr/bin/env python
"""Benchmark of reconciliation: N received payments matched to N open invoices and recorded.

    python bench/bench_reconcile.py                     # 25,000 / 50,000 / 100,000 payments, SQLite
    python bench/bench_reconcile.py --sizes 10000 --backend postgresql

Setup (not timed): N one-line monthly contracts are imported and billed once each (N invoices),
the invoices are marked sent, and N payments are built as a vendor pull would deliver them (each
naming its invoice, for its full amount), in pages of 200. Each customer has a billing contact
(an e-mail address), as customers in production do: each payment's receipt is then the usual kind,
queued with its outbox row, not a ``waiting_contact`` row without one (the exception, which would
leave the outbox rows out of both the run and its floor).

Timed: ``record_pages`` (match every payment, record it with its allocation, update the invoice,
make its receipt with its outbox row, save the page cursor; one transaction per page).

The floor (issue 20), same run, after the payments and their receipts are taken out again (not
timed): the read matching needs (the same open-invoice query, page by page) plus the store's own
writes of the same payments, in one transaction a page: the very statements ``record_payments``
runs (known refs, payments, allocations, invoice updates, the receipts' event-key look-up, the
receipt messages, their outbox rows, the cursor) done the fastest way the dialect allows (on
PostgreSQL one statement per page and table reading the rows from arrays, executemany on SQLite:
``BulkStatement.write_calls`` of store/bulk.py), their parameters prepared before the clock
starts, so only the driver and the database are timed. The receipts and outbox rows are the very
rows the run wrote, read back and inserted again with their ids (so the floor needs neither the
ids read back nor RETURNING, which the store needs to build the outbox rows).
Target: within 1.5x of that floor, and linear in the number of payments (the microseconds per
payment stay flat as N grows). The bare read alone is shown too (the ERP issue's first floor).

Each size runs ``--runs`` times (default 3) on a fresh database; the table shows the median and
range of each figure, ratios taken per run against that run's floors, with the load average.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from datetime import date
from decimal import Decimal
from typing import Any

from common import Backend, PostgresBackend, SQLiteBackend, add_runs_argument, log, repeat, stamp
from sqlalchemy import delete, select, text, update

from billbridge.billing.documents import IncomingPayment
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.reconcile import record_pages
from billbridge.store.bulk import BulkStatement, dbapi_cursor, insert_rows
from billbridge.store.cursors import _MOVE
from billbridge.store.db import Store, open_store
from billbridge.store.invoices import list_invoices, open_invoices
from billbridge.store.messages import _EVENT_KEYS_IN, _MESSAGE_KEYS, _MESSAGES
from billbridge.store.models import Invoice, Payment, PaymentAllocation, utcnow
from billbridge.store.outbox import _ENQUEUE, _ENQUEUE_KEYS, _OUTBOX
from billbridge.store.payments import (
    _ALLOCATION_KEYS,
    _INSERT_ALLOCATIONS,
    _INSERT_PAYMENTS,
    _KNOWN_REFS,
    _PAID_KEYS,
    _PAYMENT_KEYS,
    _SET_PAID,
)
from billbridge.vendors.contract import PaymentPage

PAGE = 200
# The receipts as the store inserts them (store/messages.py), with the ids they were given.
_RECEIPTS_WITH_IDS = insert_rows(_MESSAGES, ("id", *_MESSAGE_KEYS))
TARGET = 1.5  # x floor+writes (issue 20)
AS_OF = date(2026, 7, 1)


class DriverClock:
    """``--driver-times`` (SQLite): the time spent inside sqlite3's own calls (execute, executemany,
    fetchall, commit), by a connection and cursor subclass every store connection is made with, so a
    run's database time can be set beside its floor's and the rest called Python."""

    seconds = 0.0
    floor_driver = 0.0  # of the last floor+writes' timed loop

    @classmethod
    def install(cls) -> None:
        clock = cls

        class Cursor(sqlite3.Cursor):
            def execute(self, sql: str, parameters: Any = (), /) -> Any:
                started = time.perf_counter()
                try:
                    return super().execute(sql, parameters)
                finally:
                    clock.seconds += time.perf_counter() - started

            def executemany(self, sql: str, parameters: Any, /) -> Any:
                started = time.perf_counter()
                try:
                    return super().executemany(sql, parameters)
                finally:
                    clock.seconds += time.perf_counter() - started

            def fetchall(self) -> list[Any]:
                started = time.perf_counter()
                try:
                    return super().fetchall()
                finally:
                    clock.seconds += time.perf_counter() - started

        class Connection(sqlite3.Connection):
            def cursor(self, factory: Any = Cursor) -> Any:
                return super().cursor(factory)

            def execute(self, sql: str, parameters: Any = (), /) -> Any:
                return self.cursor().execute(sql, parameters)

            def commit(self) -> None:
                started = time.perf_counter()
                try:
                    super().commit()
                finally:
                    clock.seconds += time.perf_counter() - started

        connect = sqlite3.connect

        def connect_timed(*args: Any, **kwargs: Any) -> Any:
            return connect(*args, factory=Connection, **kwargs)

        # SQLAlchemy's pysqlite dialect connects through sqlite3.dbapi2.connect.
        sqlite3.dbapi2.connect = sqlite3.connect = connect_timed

    @classmethod
    def lap(cls) -> float:
        """Seconds in the driver since the last lap."""
        seconds, cls.seconds = cls.seconds, 0.0
        return seconds


def setup(store: Store, n: int) -> list[IncomingPayment]:
    customers = max(1, n // 10)
    import_document(
        store,
        {
            "entities": [{"entity_ref": "us", "name": "US", "currency": "USD", "invoice_prefix": "US-INV-"}],
            "customers": [
                {
                    "customer_ref": f"c{i}",
                    "name": f"Customer {i}",
                    "entity_ref": "us",
                    "contacts": [{"email": f"ap@c{i}.example"}],
                }
                for i in range(customers)
            ],
            "products": [{"product_ref": "plan", "name": "Plan", "prices": []}],
        },
    )
    for start in range(0, n, 5000):
        import_document(
            store,
            {
                "contracts": [
                    {
                        "contract_ref": f"K{i}",
                        "customer_ref": f"c{i % customers}",
                        "entity_ref": "us",
                        "currency": "USD",
                        "contract_start_date": "2026-07-01",
                        "lines": [
                            {
                                "line_ref": "plan",
                                "product_ref": "plan",
                                "pricing": {"model": "flat", "amount": f"{100 + i % 900}.{i % 100:02d}"},
                            }
                        ],
                    }
                    for i in range(start, min(n, start + 5000))
                ]
            },
        )
    run_billing(store, AS_OF)
    with store.write() as session:
        session.execute(update(Invoice).values(status="sent"))
    if (
        store.dialect == "postgresql"
    ):  # as autovacuum would have by the time payments come: the floor reads with statistics
        with store.write() as session:
            session.execute(text("ANALYZE"))
    with store.read() as session:
        documents = list_invoices(session)
    return [
        IncomingPayment(
            "bench",
            f"pay-{d['number']}",
            "USD",
            Decimal(d["invoice_total"]),
            AS_OF,
            str(d["customer_ref"]),
            (str(d["number"]),),
        )
        for d in documents
    ]


def pages(payments: list[IncomingPayment]) -> list[PaymentPage]:
    return [PaymentPage(payments[i : i + PAGE], f"cursor-{i}") for i in range(0, len(payments), PAGE)]


def floor(store: Store, payments: list[IncomingPayment]) -> float:
    started = time.perf_counter()
    for page in pages(payments):
        with store.read() as session:
            open_invoices(session, numbers=[n for p in page.payments for n in p.invoice_numbers])
    return time.perf_counter() - started


def receipts_written(store: Store) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The receipt messages and their outbox rows the run wrote, by id, as the store wrote them."""
    with store.read() as session:
        connection = session.connection()
        made = [
            dict(r._mapping)
            for r in connection.execute(
                select(_MESSAGES.c.id, *(_MESSAGES.c[k] for k in _MESSAGE_KEYS)).order_by(_MESSAGES.c.id)
            )
        ]
        queued = [
            dict(r._mapping)
            for r in connection.execute(
                select(*(_OUTBOX.c[k] for k in _ENQUEUE_KEYS))
                .where(_OUTBOX.c.aggregate_type == "message")
                .order_by(_OUTBOX.c.id)
            )
        ]
    return made, queued


def take_back(store: Store) -> None:
    """Undo the run's payments and their receipts (not timed): the invoices open again, as before it."""
    with store.write() as session:
        session.execute(delete(_OUTBOX).where(_OUTBOX.c.aggregate_type == "message"))
        session.execute(delete(_MESSAGES))
        session.execute(delete(PaymentAllocation))
        session.execute(delete(Payment))
        session.execute(update(Invoice).values(amount_paid=Decimal(0), status="sent"))


def floor_with_writes(
    store: Store, payments: list[IncomingPayment], made: list[dict[str, Any]], queued: list[dict[str, Any]]
) -> float:
    """The floor's read plus the same payments recorded by record_payments' own statements, straight
    on the driver with parameters converted beforehand: with them the run's receipts (``made``,
    ids kept) and their outbox rows (``queued``), a page's in its transaction."""
    with store.read() as session:
        invoices = {d["number"]: (d["id"], d["invoice_total"]) for d in list_invoices(session)}
    now = utcnow()
    with store.write() as session:
        connection = session.connection()
        known = BulkStatement.of(_KNOWN_REFS, connection, ("refs",))
        event_keys = BulkStatement.of(_EVENT_KEYS_IN, connection, ("wanted",))
        statements = [
            BulkStatement.of(_INSERT_PAYMENTS, connection, _PAYMENT_KEYS),
            BulkStatement.of(_INSERT_ALLOCATIONS, connection, _ALLOCATION_KEYS),
            BulkStatement.of(_SET_PAID, connection, _PAID_KEYS),
            BulkStatement.of(_RECEIPTS_WITH_IDS, connection, ("id", *_MESSAGE_KEYS)),
            BulkStatement.of(_ENQUEUE[connection.dialect.name], connection, _ENQUEUE_KEYS),
            BulkStatement.of(_MOVE, connection, ("s", "st", "v", "at")),
        ]
    prepared = []
    done = 0
    for page in pages(payments):
        receipts = made[done : done + len(page.payments)]
        outbox_rows = queued[done : done + len(page.payments)]
        done += len(page.payments)
        refs = [f"bench:{p.payment_ref}" for p in page.payments]
        named = [invoices[p.invoice_numbers[0]] for p in page.payments]
        rows = [
            [
                {
                    "payment_ref": ref,
                    "customer_ref": p.customer_ref,
                    "currency": p.currency,
                    "amount": p.amount,
                    "unapplied_amount": Decimal(0),
                    "received_on": p.received_on,
                    "method": None,
                    "reference": None,
                    "created_at": now,
                    "review_reason": None,
                    "source_version": None,
                }
                for ref, p in zip(refs, page.payments, strict=True)
            ],
            [
                {"payment_ref": ref, "invoice_id": iid, "amount": p.amount, "created_at": now}
                for ref, p, (iid, _) in zip(refs, page.payments, named, strict=True)
            ],
            [{"iid": iid, "paid": total, "new_status": "paid", "now": now} for iid, total in named],
            receipts,
            outbox_rows,
            [{"s": "bench", "st": "payments", "v": page.cursor, "at": now}],
        ]
        numbers = [n for p in page.payments for n in p.invoice_numbers]
        # Payments, allocations, invoices, receipts, their outbox rows: one statement each reading arrays
        # on PostgreSQL, executemany on SQLite, as the store writes them; the cursor's one row by
        # executemany, as set_cursor does.
        *batches, (cursor_statement, cursor_rows) = zip(statements, rows, strict=True)
        calls = [call for statement, statement_rows in batches for call in statement.write_calls(statement_rows)]
        calls.append((True, cursor_statement.sql, cursor_statement.driver_rows(cursor_rows)))
        prepared.append((numbers, refs, [r["event_key"] for r in receipts], calls))
    assert done == len(made) == len(queued), (done, len(made), len(queued))
    DriverClock.lap()  # (--driver-times) the timed loop's driver time only, not its preparation's reads
    started = time.perf_counter()
    for numbers, refs, keys, calls in prepared:
        with store.write() as session:
            open_invoices(session, numbers=numbers, lock=True)  # as reconciliation reads them: locked
            connection = session.connection()
            known.run(connection, {"refs": refs})
            event_keys.run(connection, {"wanted": keys})  # the receipts' look-up: each made once
            cursor = dbapi_cursor(connection)
            for many, sql, arguments in calls:
                (cursor.executemany if many else cursor.execute)(sql, arguments)
            cursor.close()
    seconds = time.perf_counter() - started
    DriverClock.floor_driver = DriverClock.lap()
    return seconds


def run(backend: Backend, n: int) -> dict[str, float]:
    store = open_store(backend.new_url(f"reconcile{n}"))
    payments = setup(store, n)
    log(f"[{backend.name}] {n:,}: {len(payments):,} invoices billed and sent, payments built")
    floor_s = floor(store, payments)
    DriverClock.lap()
    started = time.perf_counter()
    summary = record_pages(store, "bench", pages(payments))
    seconds = time.perf_counter() - started
    run_driver = DriverClock.lap()
    assert summary.outcomes == {"matched": n}, summary.outcomes
    with store.read() as session:
        assert {d["status"] for d in list_invoices(session)} == {"paid"}
    made, queued = receipts_written(store)
    assert len(made) == len(queued) == n and {m["state"] for m in made} == {"queued"}, (len(made), len(queued))
    take_back(store)
    writes_s = floor_with_writes(store, payments, made, queued)
    floor_driver = DriverClock.floor_driver
    with store.read() as session:
        assert {d["status"] for d in list_invoices(session)} == {"paid"}
    assert receipts_written(store) == (made, queued)
    store.dispose()
    log(f"[{backend.name}] {n:,}: {seconds:.2f}s, floor {floor_s:.2f}s, floor+writes {writes_s:.2f}s")
    if run_driver or floor_driver:  # --driver-times
        us = 1e6 / n
        log(
            f"[{backend.name}] {n:,}: in the driver {run_driver * us:.1f} us a payment, the rest {(seconds - run_driver) * us:.1f};"
            f" floor+writes {floor_driver * us:.1f} in the driver, the rest {(writes_s - floor_driver) * us:.1f}"
        )
    return {"payments": n, "seconds": seconds, "floor": floor_s, "writes": writes_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("BILLBRIDGE_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--driver-times",
        action="store_true",
        help="SQLite: also log the time inside sqlite3's calls, for the run and for floor+writes",
    )
    add_runs_argument(parser)
    args = parser.parse_args()
    if args.driver_times:
        DriverClock.install()
    with tempfile.TemporaryDirectory(prefix="billbridge-reconcile-") as workdir:
        backend: Backend = (
            SQLiteBackend(workdir, keep=False)
            if args.backend == "sqlite"
            else PostgresBackend(args.postgres_url, keep=False)
        )
        try:
            results = [
                repeat(lambda n=n: run(backend, n), args.runs, f"{backend.name} {n:,}")  # type: ignore[misc]
                for n in args.sizes
            ]
        finally:
            backend.cleanup()
    print(f"\n{stamp()}\n")
    print(f"{args.backend}, median (lowest-highest) of {args.runs} runs; ratios per run, against its own floors\n")
    header = (
        f"{'payments':>9}  {'seconds':<20}{'us/payment':<20}{'x floor+writes':<24}{'x floor (read)':<24}"
        f"{'load (1 min)':<20}"
    )
    print(header + "\n" + "-" * len(header))
    for r in results:
        print(
            f"{r.first['payments']:>9,}  {r.spread(lambda x: x['seconds']).show('.2f'):<20}"
            f"{r.spread(lambda x: x['seconds'] / x['payments'] * 1e6).show('.0f'):<20}"
            f"{r.spread(lambda x: x['seconds'] / x['writes']).show('.2f', 'x'):<24}"
            f"{r.spread(lambda x: x['seconds'] / x['floor']).show('.1f', 'x'):<24}"
            f"{r.load.show('.2f'):<20}"
        )
    per_payment = [r.spread(lambda x: x["seconds"] / x["payments"]).median for r in results]
    if len(per_payment) > 1:
        print(
            f"\nlinear: median us/payment at the largest size is {per_payment[-1] / per_payment[0]:.2f}x the smallest's"
        )
    print(
        f"\ntarget: within {TARGET}x of floor+writes (the read plus the store's own writes of the same payments,"
        " done the fastest way the dialect allows), and us/payment flat as the number of payments grows"
    )


if __name__ == "__main__":
    main()
