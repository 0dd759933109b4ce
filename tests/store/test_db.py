"""Opening the store: PostgreSQL connections that died while idle in the pool are replaced."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text

from billbridge.store import db
from billbridge.store.db import normalise_url, open_store


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
