#!/usr/bin/env python
"""Benchmark of reconciliation: N received payments matched to N open invoices and recorded.

    python bench/bench_reconcile.py                     # 25,000 / 50,000 / 100,000 payments, SQLite
    python bench/bench_reconcile.py --sizes 10000 --backend postgresql

Setup (not timed): N one-line monthly contracts are imported and billed once each (N invoices),
the invoices are marked sent, and N payments are built as a vendor pull would deliver them (each
naming its invoice, for its full amount), in pages of 200.

Timed: ``record_pages`` (match every payment, record it with its allocation, update the invoice,
save the page cursor; one transaction per page). Floor, same run: a bare read of the same invoice
rows, page by page, with the same query the matcher reads them with. Target: within 2x of the
floor and linear in the number of payments (the microseconds per payment stay flat as N grows).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date
from decimal import Decimal

from common import Backend, PostgresBackend, SQLiteBackend, code_version, log
from sqlalchemy import update

from billbridge.billing.documents import IncomingPayment
from billbridge.flows.billing_run import run_billing
from billbridge.flows.importing import import_document
from billbridge.flows.reconcile import PaymentPage, record_pages
from billbridge.store.db import Store, open_store
from billbridge.store.invoices import list_invoices, open_invoices
from billbridge.store.models import Invoice

PAGE = 200
AS_OF = date(2026, 7, 1)


def setup(store: Store, n: int) -> list[IncomingPayment]:
    customers = max(1, n // 10)
    import_document(
        store,
        {
            "entities": [{"entity_ref": "us", "name": "US", "currency": "USD", "invoice_prefix": "US-INV-"}],
            "customers": [
                {"customer_ref": f"c{i}", "name": f"Customer {i}", "entity_ref": "us"} for i in range(customers)
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


def run(backend: Backend, n: int) -> dict[str, object]:
    store = open_store(backend.new_url(f"reconcile{n}"))
    payments = setup(store, n)
    log(f"[{backend.name}] {n:,}: {len(payments):,} invoices billed and sent, payments built")
    floor_s = floor(store, payments)
    started = time.perf_counter()
    summary = record_pages(store, "bench", pages(payments))
    seconds = time.perf_counter() - started
    assert summary.outcomes == {"matched": n}, summary.outcomes
    with store.read() as session:
        assert {d["status"] for d in list_invoices(session)} == {"paid"}
    store.dispose()
    return {"backend": backend.name, "payments": n, "seconds": seconds, "floor": floor_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("BILLBRIDGE_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="billbridge-reconcile-") as workdir:
        backend: Backend = (
            SQLiteBackend(workdir, keep=False)
            if args.backend == "sqlite"
            else PostgresBackend(args.postgres_url, keep=False)
        )
        try:
            results = [run(backend, n) for n in args.sizes]
        finally:
            backend.cleanup()
    print(f"\n{code_version()}\n")
    header = f"{'backend':<11}{'payments':>10}{'seconds':>9}{'us/payment':>12}{'floor s':>9}{'ratio':>7}"
    print(header + "\n" + "-" * len(header))
    for r in results:
        n, seconds, floor_s = int(r["payments"]), float(r["seconds"]), float(r["floor"])  # type: ignore[arg-type]
        print(
            f"{r['backend']!s:<11}{n:>10,}{seconds:>9.1f}{seconds / n * 1e6:>12.0f}{floor_s:>9.2f}{seconds / floor_s:>6.1f}x"
        )
    print("\ntarget: within 2x of the floor, and us/payment flat as the number of payments grows")


if __name__ == "__main__":
    main()
