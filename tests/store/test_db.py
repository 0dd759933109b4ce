"""Opening the store: PostgreSQL connections that died while idle in the pool are replaced."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from billbridge.store import db
from billbridge.store.db import Store, normalise_url, open_store


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
