"""Opening the store: PostgreSQL connections that died while idle in the pool are replaced."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from billbridge.store import db
from billbridge.store.db import Store, normalise_url, open_store


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


def test_migration_0006_reads_who_bills_each_stored_version_from_its_terms(store: Store) -> None:
    """Versions stored before contract_versions.billed_by existed get it from their terms."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import select

    from billbridge.flows.importing import import_document
    from billbridge.store.db import MIGRATIONS
    from billbridge.store.models import Contract, ContractVersion
    from tests.docs import contract, document

    summary = import_document(store, document(contract("K-OURS"), contract("K-STRIPE", billed_by="stripe")))
    assert summary.counts["contracts.created"] == 2
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with store.read() as session:
        billed_by = dict(
            session.execute(
                select(Contract.contract_ref, ContractVersion.billed_by).join(
                    ContractVersion, ContractVersion.contract_id == Contract.id
                )
            ).all()
        )
    assert billed_by == {"K-OURS": "billbridge", "K-STRIPE": "stripe"}


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

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import func, select, update
    from sqlalchemy.exc import IntegrityError

    from billbridge.flows.importing import import_document
    from billbridge.flows.invoice_generation import run_billing
    from billbridge.store.db import MIGRATIONS, migrate
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
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.connect() as connection:
        if store.dialect == "sqlite":
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        with connection.begin():
            config.attributes["connection"] = connection
            command.downgrade(config, "0007")
        if store.dialect == "sqlite":
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
    migrate(store.engine)
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
