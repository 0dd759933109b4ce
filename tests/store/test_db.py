"""Opening the store: PostgreSQL connections that died while idle in the pool are replaced."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from billbridge.store import db
from billbridge.store.db import Store, normalise_url, open_store
from tests.store.migrating import down_and_up


@pytest.mark.slow
@pytest.mark.postgres
def test_a_connection_ended_while_idle_is_replaced_before_use(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server ends the session of a pooled connection (as a restart would): once it has been
    idle PING_AFTER_IDLE_SECONDS, the next checkout pings it, finds it dead and reconnects, so the
    statement succeeds on a new session. Used again at once, the new one is not pinged."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.2)
    store = open_store(postgres_url)
    admin = create_engine(normalise_url(postgres_url), isolation_level="AUTOCOMMIT")
    try:
        with store.engine.connect() as connection:
            first = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with admin.connect() as connection:
            assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
        time.sleep(0.3)
        with store.engine.connect() as connection:
            second = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert second != first

        pings: list[object] = []
        original = store.engine.dialect.do_ping
        monkeypatch.setattr(store.engine.dialect, "do_ping", lambda c: pings.append(c) or original(c))
        with store.engine.connect() as connection:  # returned a moment ago: no ping
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() == second
        assert pings == []
        time.sleep(0.3)
        with store.engine.connect() as connection:  # idle long enough: pinged
            connection.execute(text("SELECT 1"))
        assert len(pings) == 1
    finally:
        admin.dispose()
        store.dispose()


def test_a_connection_closed_while_idle_is_replaced_before_use_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle ping on SQLite's driver (the store pings only PostgreSQL's; the question is the
    same): a pooled connection closed under the pool is found dead on its next checkout once idle,
    and replaced, so the statement succeeds; without the ping it would fail on the closed one."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.05)
    engine = create_engine(f"sqlite:///{tmp_path / 'ping.db'}")
    db._ping_when_idle(engine)
    try:
        with engine.connect() as connection:
            first = connection.connection.driver_connection
            connection.exec_driver_sql("SELECT 1")
        assert first is not None
        first.close()  # as a server ending the session would leave it
        time.sleep(0.1)
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
            assert connection.connection.driver_connection is not first
    finally:
        engine.dispose()


class _RefusingDriverConnection:
    """A driver connection whose every statement fails with an error that is no disconnect."""

    def cursor(self) -> Any:
        return self

    def execute(self, _sql: str) -> None:
        raise sqlite3.OperationalError("database is locked")

    def close(self) -> None:
        pass


def test_the_ping_answers_per_driver_error_whether_the_connection_is_dead(tmp_path: Path) -> None:
    """answers_ping asks the dialect's public do_ping and is_disconnect: a live connection answers,
    a closed one is a disconnect (False: the pool reconnects), any other error is raised."""
    engine = create_engine(f"sqlite:///{tmp_path / 'ping.db'}")
    try:
        raw = engine.raw_connection()
        driver = raw.driver_connection
        assert db.answers_ping(engine.dialect, driver) is True
        assert driver is not None
        driver.close()
        assert db.answers_ping(engine.dialect, driver) is False
        raw.invalidate()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            db.answers_ping(engine.dialect, _RefusingDriverConnection())
    finally:
        engine.dispose()


def test_migration_0006_reads_who_bills_each_stored_version_from_its_terms(store: Store) -> None:
    """Versions stored before contract_versions.billed_by existed get it from their terms."""
    from sqlalchemy import select

    from billbridge.flows.importing import import_document
    from billbridge.store.models import Contract, ContractVersion
    from tests.docs import contract, document

    summary = import_document(store, document(contract("K-OURS"), contract("K-STRIPE", billed_by="stripe")))
    assert summary.counts["contracts.created"] == 2
    down_and_up(store, "0005")
    with store.read() as session:
        billed_by = dict(
            session.execute(
                select(Contract.contract_ref, ContractVersion.billed_by).join(
                    ContractVersion, ContractVersion.contract_id == Contract.id
                )
            ).all()
        )
    assert billed_by == {"K-OURS": "billbridge", "K-STRIPE": "stripe"}


def test_migration_0025_reads_whom_each_resold_version_bills_from_its_terms(store: Store) -> None:
    """Versions stored before contract_versions.bill_to_ref existed get it from their terms: the
    distributor when the reseller sells through one, else the reseller, none for a contract sold
    directly; the column is what a billing run groups its chunks by (``bill_to_refs``)."""
    from sqlalchemy import select

    from billbridge.flows.importing import import_document
    from billbridge.store.models import Contract, ContractVersion
    from billbridge.store.resellers import bill_to_refs
    from tests.docs import REFERENCE, contract

    def partner(ref: str, **terms: str) -> dict[str, str]:
        return {"partner_ref": ref, "name": ref, "kind": "reseller", "entity_ref": "us", "currency": "USD", **terms}

    doc = {
        **REFERENCE,
        "partners": [partner("distri"), partner("resel-a", distributor_ref="distri"), partner("resel-b")],
        "contracts": [
            contract("K-DIRECT"),
            contract("K-VIA-A", reseller_ref="resel-a"),
            contract("K-VIA-B", reseller_ref="resel-b"),
        ],
    }
    assert not import_document(store, doc).errors

    def stored() -> dict[str, str | None]:
        with store.read() as session:
            return dict(
                session.execute(  # type: ignore[arg-type]
                    select(Contract.contract_ref, ContractVersion.bill_to_ref).join(
                        ContractVersion, ContractVersion.contract_id == Contract.id
                    )
                ).all()
            )

    expected = {"K-DIRECT": None, "K-VIA-A": "distri", "K-VIA-B": "resel-b"}
    assert stored() == expected  # as imported
    down_and_up(store, "0024")
    assert stored() == expected  # read back from the terms
    with store.read() as session:
        ids = dict(session.execute(select(Contract.contract_ref, Contract.id)).all())
        assert bill_to_refs(session) == {ids["K-VIA-A"]: "distri", ids["K-VIA-B"]: "resel-b"}
        assert bill_to_refs(session, [ids["K-DIRECT"], ids["K-VIA-B"]]) == {ids["K-VIA-B"]: "resel-b"}


def test_a_store_is_shared_with_other_processes_unless_it_is_in_memory(tmp_path: Path) -> None:
    """Worker processes (billing planners, a CRM sync's writer) open the store by its URL."""
    in_memory = open_store("sqlite://")
    on_disk = open_store(f"sqlite:///{tmp_path / 'shared.db'}")
    assert not in_memory.shared and on_disk.shared
    assert open_store(on_disk.url, run_migrations=False).engine.url == on_disk.engine.url
    in_memory.dispose()
    on_disk.dispose()


def test_migration_0008_keeps_every_invoice_and_what_refers_to_it(store: Store) -> None:
    """SQLite rebuilds the invoices table to drop its unique (contract, billing date) constraint:
    invoices, their lines and the payments applied to them come through, foreign keys still hold,
    and the one-invoice-per-date index now leaves voided drafts out."""
    from datetime import date
    from decimal import Decimal

    from sqlalchemy import func, select, update
    from sqlalchemy.exc import IntegrityError

    from billbridge.flows.importing import import_document
    from billbridge.flows.invoice_generation import run_billing
    from billbridge.store.models import Invoice, InvoiceLine, PaymentAllocation
    from billbridge.store.payments import PaymentIn, record_payments
    from tests.docs import contract, document

    import_document(store, document(contract("C-1"), contract("C-2", customer="initech")))
    run_billing(store, date(2026, 2, 1))
    with store.write() as session:
        session.execute(update(Invoice).values(status="sent"))
        record_payments(
            session, [PaymentIn("p", "USD", Decimal("100.00"), date(2026, 2, 2), (("US-INV-1", Decimal("100.00")),))]
        )

    def counts() -> list[int | None]:
        with store.read() as session:
            return [
                session.scalar(select(func.count()).select_from(t)) for t in (Invoice, InvoiceLine, PaymentAllocation)
            ]

    before = counts()
    down_and_up(store, "0007")
    assert counts() == before == [4, 4, 1]

    with store.write() as session, pytest.raises(IntegrityError):  # a line of no invoice is still refused
        session.add(InvoiceLine(**{**_line_of(session), "invoice_id": 999}))
        session.flush()
    with store.write() as session, pytest.raises(IntegrityError):  # a second billing document for a date too
        first = session.get(Invoice, 1)
        assert first is not None
        session.add(_copy(first, sequence_no=99, number="US-INV-99"))
        session.flush()
    with store.write() as session:  # beside a released void it is the one document billing that date
        first = session.get(Invoice, 1)
        assert first is not None
        first.period_released = True
        session.add(_copy(first, sequence_no=99, number="US-INV-99"))


def _line_of(session: Any) -> dict[str, Any]:
    from sqlalchemy import select

    from billbridge.store.models import InvoiceLine

    line = session.scalars(select(InvoiceLine).limit(1)).one()
    return {c.key: getattr(line, c.key) for c in InvoiceLine.__table__.columns if c.key != "id"}


def _copy(invoice: Any, **changes: Any) -> Any:
    from billbridge.store.models import Invoice

    values = {
        c.key: getattr(invoice, c.key) for c in Invoice.__table__.columns if c.key not in ("id", "period_released")
    }
    return Invoice(**{**values, **changes})


_HOLD_THE_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _queued_table(tmp_path: Path, name: str = "q.db") -> tuple[Store, Any]:
    from sqlalchemy import Column, Integer, MetaData, Table

    store = open_store(f"sqlite:///{tmp_path / name}")
    table = Table("queued", MetaData(), Column("n", Integer, primary_key=True))
    table.create(store.engine)
    return store, table


def _lock_is_free(lock: Path) -> bool:
    """Whether another process can take the lock file at once."""
    import subprocess
    import sys

    probe = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"
    )
    return subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, timeout=30).returncode == 0


def test_queued_writes_keep_one_connection_and_wait_for_the_lock_file(tmp_path: Path) -> None:
    """The usage API's writes on SQLite: one kept connection for the transactions of the process (its
    threads take turns), each transaction holding SQLite's write lock from its start (BEGIN
    IMMEDIATE); a failed transaction rolls back, lets the lock file go and leaves the next one a fresh
    connection; a process holding the lock file beside the database makes the writer wait until it
    lets go (the API's workers take turns there instead of in SQLite's sleeping retries)."""
    import sqlite3
    import subprocess
    import sys
    import threading

    from sqlalchemy import insert, select

    store, table = _queued_table(tmp_path)
    lock = tmp_path / "q.db-writers.lock"
    try:
        held = []
        for n in (1, 2):
            with store.queued_write_connection() as connection:
                connection.execute(insert(table), {"n": n})
                held.append(connection)
                if n == 1:  # the write lock is taken at BEGIN: another connection cannot begin to write
                    other = sqlite3.connect(tmp_path / "q.db", timeout=0, isolation_level=None)
                    with pytest.raises(sqlite3.OperationalError, match="locked"):
                        other.execute("BEGIN IMMEDIATE")
                    other.close()
                    assert not _lock_is_free(lock)
        assert held[0] is held[1] and not held[0].closed  # kept, not a new one from the pool each time
        assert _lock_is_free(lock)

        with pytest.raises(Exception, match="UNIQUE"), store.queued_write_connection() as connection:
            connection.execute(insert(table), {"n": 3})
            connection.execute(insert(table), {"n": 1})  # fails: 3 is rolled back with it
        assert _lock_is_free(lock)
        with store.queued_write_connection() as connection:
            connection.execute(insert(table), {"n": 4})
            after_failure = connection
        assert after_failure is not held[0]

        from_thread: list[Any] = []

        def write_from_another_thread() -> None:
            with store.queued_write_connection() as connection:
                connection.execute(insert(table), {"n": 5})
                from_thread.append(connection)

        thread = threading.Thread(target=write_from_another_thread)
        thread.start()
        thread.join()
        assert from_thread == [after_failure]  # the same kept connection, in turn

        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_THE_LOCK, str(lock), "1.5"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            started = time.monotonic()
            with store.queued_write_connection() as connection:
                waited = time.monotonic() - started
                connection.execute(insert(table), {"n": 6})
            assert waited > 0.5  # it waited for the other process, which held the lock 1.5 s
        finally:
            holder.wait(timeout=30)
        with store.engine.connect() as connection:
            assert connection.execute(select(table.c.n).order_by(table.c.n)).scalars().all() == [1, 2, 4, 5, 6]
    finally:
        store.dispose()


def test_a_broken_kept_connection_is_replaced_after_its_failure(tmp_path: Path) -> None:
    """The driver's connection under the kept one closed (as a crashed driver would leave it): that
    transaction fails, and the next one works on a new connection, instead of every later one failing."""
    from sqlalchemy import insert, select

    store, table = _queued_table(tmp_path)
    try:
        with store.queued_write_connection() as connection:
            connection.execute(insert(table), {"n": 1})
        connection.connection.driver_connection.close()
        with pytest.raises(Exception, match="closed"), store.queued_write_connection() as broken:
            broken.execute(insert(table), {"n": 2})
        with store.queued_write_connection() as fresh:
            fresh.execute(insert(table), {"n": 3})
        with store.engine.connect() as reader:
            assert reader.execute(select(table.c.n).order_by(table.c.n)).scalars().all() == [1, 3]
    finally:
        store.dispose()


def test_queued_writers_share_one_deadline_with_sqlites_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer (a billing run, which takes no turn) holds SQLite's write lock past the busy
    timeout: each queued writer fails after about the timeout, the second one too, though it first
    waited for the first one's turn (not after twice the timeout)."""
    import sqlite3
    import threading

    from sqlalchemy import insert

    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 1000)
    store, table = _queued_table(tmp_path)
    blocker = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        failed_after: list[float] = []

        def write(n: int) -> None:
            try:
                with store.queued_write_connection() as connection:
                    connection.execute(insert(table), {"n": n})
            except Exception as exc:
                assert "locked" in str(exc)
                failed_after.append(time.monotonic() - started)

        threads = [threading.Thread(target=write, args=(n,)) for n in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(failed_after) == 2 and max(failed_after) < 1.7, failed_after
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        store.dispose()


def test_queued_writes_on_postgresql_and_in_memory_are_plain_write_connections(database_url: str) -> None:
    """Where there is no database file to queue on (PostgreSQL locks rows; an in-memory SQLite has
    one process), a queued write is an ordinary write transaction from the pool."""
    store = open_store(database_url) if database_url.startswith("postgresql") else open_store("sqlite://")
    try:
        with store.queued_write_connection() as first:
            first.execute(text("SELECT 1"))
            first_driver = first.connection.driver_connection
        assert first.closed  # back in the pool, not kept
        with store.queued_write_connection() as second:
            second.execute(text("SELECT 1"))
        assert second.closed and second is not first and first_driver is not None
    finally:
        store.dispose()


def test_queued_writes_go_on_without_the_lock_file_when_it_cannot_be_made(tmp_path: Path) -> None:
    """A lock file the process cannot open (here a folder in its place; elsewhere a folder it may not
    create files in): the writes go on as plain write transactions, met by SQLite's own wait."""
    from sqlalchemy import Column, Integer, MetaData, Table, insert, select

    (tmp_path / "q.db-writers.lock").mkdir()
    store = open_store(f"sqlite:///{tmp_path / 'q.db'}")
    table = Table("queued", MetaData(), Column("n", Integer, primary_key=True))
    table.create(store.engine)
    try:
        for n in (1, 2):
            with store.queued_write_connection() as connection:
                connection.execute(insert(table), {"n": n})
        assert connection.closed  # from the pool and back, not kept
        with store.engine.connect() as connection:
            assert connection.execute(select(table.c.n)).scalars().all() == [1, 2]
    finally:
        store.dispose()
