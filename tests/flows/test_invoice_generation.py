"""Billing runs against a real store: idempotent, corrections instead of rewrites, and safe when
two generators run at once or one is killed halfway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from billbridge.flows.ahead import done_ahead
from billbridge.flows.importing import import_document, import_file
from billbridge.flows.invoice_generation import PreparedChunk, _plan, prepare_ahead, preview, run_billing, save_chunk
from billbridge.store.contracts import contract_ids
from billbridge.store.db import Store
from billbridge.store.invoices import get_invoice, list_invoices
from billbridge.store.models import ContractVersion, Customer, Invoice, InvoiceLine, Product
from billbridge.store.quarantine import list_open
from billbridge.store.usage import insert_events
from tests.docs import contract, document

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "contracts"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_TOTALS = {  # the examples billed as of 2026-11-22
    "EUR": Decimal("7800.00"),
    "JPY": Decimal("1650000"),
    "KWD": Decimal("3356.163"),
    "USD": Decimal("46047.58"),
}


def invoice_rows(store: Store) -> list[tuple[int, date, str, str, int]]:
    with store.read() as session:
        return [
            tuple(r)
            for r in session.execute(
                select(Invoice.contract_id, Invoice.billing_date, Invoice.number, Invoice.doc_type, Invoice.entity_id)
            )
        ]


def assert_numbers_gapless(store: Store) -> None:
    with store.read() as session:
        rows = session.execute(select(Invoice.entity_id, Invoice.doc_type, Invoice.sequence_no)).all()
    by_series: dict[tuple[int, str], list[int]] = {}
    for entity_id, doc_type, seq in rows:
        by_series.setdefault((entity_id, doc_type), []).append(seq)
    for series, numbers in by_series.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), series


def test_examples_bill_once_and_a_rerun_creates_nothing(store: Store) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        import_file(store, path)
    first = run_billing(store, date(2026, 11, 22), chunk_size=4)
    # EUR: the partial first quarter (45 of 90 days) gets half of the 100 EUR contract discount
    assert first.failed == [] and first.documents["invoice"] == 37
    assert first.totals == EXAMPLE_TOTALS
    again = run_billing(store, date(2026, 11, 22))
    assert sum(again.documents.values()) == 0 and again.totals == {}
    assert len(invoice_rows(store)) == 37
    assert_numbers_gapless(store)
    with store.read() as session:
        numbers = [r["number"] for r in list_invoices(session, contract_ref="C-400-gulf")]
        assert numbers == [f"KW-INV-{n}" for n in range(1, 7)]
        last = get_invoice(session, "KW-INV-6")
    assert last is not None
    # 2-week cycle ending 11 Nov: 1 of 14 days of 168.525 KWD = 12.0375 -> 12.038
    assert [(line["billed_days"], line["billed_amount"]) for line in last["lines"]] == [(1, Decimal("12.038"))]


def test_amendment_after_invoicing_becomes_credit_and_charge_on_the_next_invoice(store: Store) -> None:
    seats = lambda n: [{"line_ref": "seats", "product_ref": "seats", "quantity": n}]  # noqa: E731
    import_document(store, document(contract("C-1", contract_start_date="2026-06-01", lines=seats("20"))))
    run_billing(store, date(2026, 8, 1))
    import_document(
        store,
        document(contract("C-1", contract_start_date="2026-06-01", lines=seats("35"), effective_date="2026-08-16")),
    )
    with store.read() as session:
        august = get_invoice(session, "US-INV-3")
    assert august is not None and august["invoice_total"] == Decimal("900.00")  # never rewritten

    plan = preview(store, "C-1", date(2026, 9, 1))
    assert [d.invoice_total for d in plan.invoices] == [Decimal("1923.38")]
    assert len(invoice_rows(store)) == 3  # preview saved nothing
    run_billing(store, date(2026, 9, 1))
    with store.read() as session:
        september = get_invoice(session, "US-INV-4")
    assert september is not None
    assert sorted(line["billed_amount"] for line in september["lines"]) == [
        Decimal("-464.52"),
        Decimal("812.90"),
        Decimal("1575.00"),
    ]
    assert september["invoice_total"] == Decimal("1923.38")


def test_a_contract_that_cannot_be_planned_is_quarantined_and_the_run_goes_on(store: Store) -> None:
    import_document(store, document(contract("C-broken"), contract("C-ok")))
    with store.write() as session:  # a hand edit in the database breaks one contract's stored terms
        terms = session.scalar(select(ContractVersion.terms).where(ContractVersion.id == 1))
        assert terms is not None and '"amount":"1200.00"' in terms
        session.execute(
            update(ContractVersion)
            .where(ContractVersion.id == 1)
            .values(terms=terms.replace('"amount":"1200.00"', '"amount":null'))
        )
    summary = run_billing(store, date(2026, 1, 1))
    assert [ref for ref, _ in summary.failed] == ["C-broken"]
    assert "amount" in summary.failed[0][1]
    assert summary.documents["invoice"] == 1
    with store.read() as session:
        assert [(r["source"], r["record_key"]) for r in list_open(session)] == [("billing", "C-broken")]
    with store.write() as session:  # fixed: the next run bills it and clears the entry
        session.execute(update(ContractVersion).where(ContractVersion.id == 1).values(terms=terms))
    assert run_billing(store, date(2026, 1, 1)).documents["invoice"] == 1
    with store.read() as session:
        assert list_open(session) == []


def _spawn_billing(url: str, as_of: str, chunk: int, workers: int = 0) -> subprocess.Popen[bytes]:
    """A billing run in its own process; with ``workers``, its planning processes are its children."""
    code = (
        "import sys, datetime\n"
        "from billbridge.store.db import open_store\n"
        "from billbridge.flows.invoice_generation import run_billing\n"
        "if __name__ == '__main__':\n"
        "    store = open_store(sys.argv[1])\n"
        "    day = datetime.date.fromisoformat(sys.argv[2])\n"
        "    s = run_billing(store, day, chunk_size=int(sys.argv[3]), workers=int(sys.argv[4]))\n"
        "    print(sum(s.documents.values()))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, url, as_of, str(chunk), str(workers)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _many_contracts(store: Store, n: int) -> None:
    import_document(
        store,
        document(
            *[
                contract(f"C-{i:04d}", customer="gulf", entity="kw", currency="KWD")
                if i % 3 == 0
                else contract(f"C-{i:04d}")
                for i in range(n)
            ]
        ),
    )


def test_two_generators_at_once_never_duplicate_and_never_leave_a_gap(store: Store, database_url: str) -> None:
    _many_contracts(store, 60)
    # One plans in its own process, the other plans ahead in a planning process and must notice
    # the contracts the first one billed in between.
    runs = [_spawn_billing(database_url, "2026-06-15", 3), _spawn_billing(database_url, "2026-06-15", 5, workers=1)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err.decode()[-2000:] for _, err in outputs]
    made = [int(out.decode().split()[-1]) for out, _ in outputs]
    rows = invoice_rows(store)
    assert sum(made) == len(rows) == 60 * 6  # each contract: Jan..Jun, made once between the two
    assert len({(cid, day) for cid, day, *_ in rows}) == len(rows)
    assert_numbers_gapless(store)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_generator_killed_halfway_leaves_no_trace_of_its_open_chunk(
    store: Store, database_url: str, workers: int
) -> None:
    _many_contracts(store, 300)
    run = _spawn_billing(database_url, "2026-12-15", 10, workers)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(invoice_rows(store)) == 0:
        time.sleep(0.02)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    partial = len(invoice_rows(store))
    assert 0 < partial < 300 * 12, "the kill should land mid-run"
    assert_numbers_gapless(store)
    with store.read() as session:  # no invoice without its lines
        empty = session.scalar(
            select(func.count())
            .select_from(Invoice)
            .where(~select(InvoiceLine.id).where(InvoiceLine.invoice_id == Invoice.id).exists())
        )
    assert empty == 0
    rerun = _spawn_billing(database_url, "2026-12-15", 50)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()[-2000:]
    assert int(out.decode().split()[-1]) == 300 * 12 - partial
    assert len(invoice_rows(store)) == 300 * 12
    assert_numbers_gapless(store)


def children(pid: int) -> set[int]:
    """The live processes ``pid`` started, and theirs (from /proc; zombies are not alive)."""
    found: set[int] = set()
    parents = {pid}
    while parents:
        born = {p for p, parent in _processes().items() if parent in parents} - found
        found |= born
        parents = born
    return found


def _processes() -> dict[int, int]:
    """Live process id -> parent id."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                out[int(entry.name)] = int(fields[1])
    return out


def alive(pids: set[int]) -> set[int]:
    return pids & _processes().keys()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_a_killed_run_takes_its_planning_processes_with_it(store: Store, database_url: str) -> None:
    """A billing run killed with SIGKILL left its two planners (about 114 MB each) and the resource
    tracker running for good: nothing was left to shut the pool down."""
    _many_contracts(store, 300)
    run = _spawn_billing(database_url, "2026-12-15", 5, workers=2)
    deadline = time.monotonic() + 120
    started: set[int] = set()
    while len(started) < 3 or not invoice_rows(store):  # two planners and the resource tracker, at work
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        started = children(run.pid)
        time.sleep(0.05)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 5
    while alive(started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(started), f"still running after their parent was killed: {sorted(alive(started))}"


def test_usage_lines_are_rated_on_stored_events_per_utc_day(store: Store) -> None:
    lines = [
        {"line_ref": "calls", "product_ref": "api", "charge": "usage"},
        {
            "line_ref": "peak",
            "product_ref": "api",
            "charge": "usage",
            "usage_aggregation": "max",
            "pricing": {"model": "per_unit", "unit_price": "1.00"},
        },
        {
            "line_ref": "events",
            "product_ref": "api",
            "charge": "usage",
            "usage_aggregation": "count",
            "pricing": {"model": "flat", "amount": "0"},
        },
    ]
    import_document(store, document(contract("C-use", lines=lines)))
    stamps = [
        ("2025-12-31T23:59:59+00:00", "999"),  # before the contract: not counted
        ("2026-01-01T00:00:00+00:00", "1000"),
        ("2026-01-15T12:00:00+00:00", "4000"),
        ("2026-01-31T23:59:59+00:00", "500"),
        ("2026-02-01T00:00:00+00:00", "7777"),  # February: next period
    ]
    with store.write() as session:
        ids = session.execute(select(Customer.id, Customer.entity_id).where(Customer.customer_ref == "globex")).one()
        product = session.scalar(select(Product.id).where(Product.product_ref == "api"))
        insert_events(
            session,
            [
                {
                    "event_ref": f"e{i}",
                    "entity_id": ids.entity_id,
                    "customer_id": ids.id,
                    "product_id": product,
                    "timestamp": datetime.fromisoformat(stamp),
                    "quantity": Decimal(quantity),
                }
                for i, (stamp, quantity) in enumerate(stamps)
            ],
        )
    run_billing(store, date(2026, 2, 1))
    with store.read() as session:
        [doc] = [get_invoice(session, r["number"]) for r in list_invoices(session, contract_ref="C-use")]
    assert doc is not None
    by_line = {line["line_ref"]: (line["quantity"], line["billed_amount"]) for line in doc["lines"]}
    # sum 5,500 calls x 0.002 = 11.00; peak 4,000 x 1.00; 3 events counted at a flat 0
    assert by_line == {
        "calls": (Decimal("5500"), Decimal("11.00")),
        "peak": (Decimal("4000"), Decimal("4000.00")),
        "events": (Decimal("3"), Decimal("0.00")),
    }


def test_planning_processes_bill_exactly_what_a_single_process_bills(store: Store) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        import_file(store, path)
    first = run_billing(store, date(2026, 11, 22), chunk_size=2, workers=2)
    assert first.failed == [] and first.documents["invoice"] == 37
    assert first.totals == EXAMPLE_TOTALS
    assert_numbers_gapless(store)
    assert sum(run_billing(store, date(2026, 11, 22), chunk_size=2, workers=1).documents.values()) == 0


def _totals_by_contract_and_date(store: Store) -> dict[tuple[str, date], Decimal]:
    with store.read() as session:
        return {
            (r["contract_ref"], r["billing_date"]): r["invoice_total"]
            for r in list_invoices(session)
            if r["contract_ref"].startswith("C-")
        }


def test_the_caller_does_the_first_chunk_while_the_planning_processes_start(store: Store) -> None:
    """Else it waits, idle, for the fork server to import and each process to open the store."""
    _many_contracts(store, 6)
    with store.read() as session:
        ids = contract_ids(session)
    chunks = [ids[i : i + 2] for i in range(0, len(ids), 2)]
    done = list(done_ahead(store, chunks, _plan, (date(2026, 3, 15),), 2))
    assert done[0] is None  # the caller's: run_billing plans it in its write transaction
    assert [d.ids for d in done[1:] if d is not None] == chunks[1:]


def test_the_caller_takes_chunks_until_a_planning_process_is_up_and_at_most_half(store: Store) -> None:
    """While the fork server imports and the processes open the store (about a second), the caller takes
    the next chunk itself instead of waiting, idle; the processes take the rest in order, and at least
    the second half whatever the timing. A caller asking for its chunks at once (it does no work on
    them here) gets through the first half before any process can answer."""
    _many_contracts(store, 12)
    with store.read() as session:
        ids = contract_ids(session)
    chunks = [[cid] for cid in ids]
    done = list(done_ahead(store, chunks, _plan, (date(2026, 3, 15),), 2))
    mine = next(at for at, ahead in enumerate(done) if ahead is not None)
    assert mine == len(chunks) // 2
    assert [d.ids if d is not None else None for d in done[mine:]] == chunks[mine:]


def test_a_chunk_prepared_ahead_is_written_as_planned_when_nothing_changed(store: Store) -> None:
    _many_contracts(store, 4)  # C-0000 (KWD), C-0001..C-0003 (USD), monthly from 2026-01-01
    as_of = date(2026, 3, 15)
    with store.read() as session:
        ids = contract_ids(session)
        ahead = prepare_ahead(session, ids, as_of)
    assert ahead.outcome.documents == {"invoice": 12} and ahead.outcome.rows.line_counts == [1] * 12
    assert all(_numbers_left_empty(ahead))  # taken by the writer, under the numbering locks
    with store.write() as session:
        outcome = save_chunk(session, ids, as_of, ahead)
    assert outcome is ahead.outcome  # written as it was prepared, not planned again
    assert_numbers_gapless(store)
    assert len(_totals_by_contract_and_date(store)) == 12


def _numbers_left_empty(ahead: PreparedChunk) -> list[bool]:
    rows = ahead.outcome.rows
    at = rows.invoice_keys.index("number")
    return [(row["number"] if isinstance(row, dict) else row[at]) is None for row in rows.invoices]


def test_a_chunk_prepared_ahead_is_planned_again_when_a_contract_changed_before_it_is_saved(store: Store) -> None:
    _many_contracts(store, 4)
    as_of = date(2026, 3, 15)
    with store.read() as session:
        ids = contract_ids(session)
        ahead = prepare_ahead(session, ids, as_of)
    # Meanwhile another run bills C-0001, and C-0002 is amended from March: double the platform fee.
    run_billing(store, as_of, contract_refs=["C-0001"])
    amended = contract("C-0002", effective_date="2026-03-01")
    amended["lines"][0]["pricing"] = {"model": "flat", "amount": "2400.00"}
    import_document(store, document(amended))
    with store.write() as session:
        outcome = save_chunk(session, ids, as_of, ahead)
    assert outcome is not ahead.outcome and outcome.failures == []
    assert outcome.documents == {"invoice": 9}  # C-0001 was billed in between: nothing left for it
    totals = _totals_by_contract_and_date(store)
    assert len(totals) == 12  # each contract January to March, once
    assert totals[("C-0002", date(2026, 3, 1))] == Decimal("2400.00")
    assert totals[("C-0002", date(2026, 2, 1))] == totals[("C-0001", date(2026, 3, 1))] == Decimal("1200.00")
    assert_numbers_gapless(store)
