"""FreshStatistics: PostgreSQL's planner statistics kept up with a run that grows its tables."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from billbridge.store.db import Store, open_store
from billbridge.store.payments import PaymentIn, record_payments
from billbridge.store.statistics import FreshStatistics


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    opened = open_store(postgres_url)
    yield opened
    opened.dispose()


def planner_rows(store: Store, table: str) -> float:
    with store.read() as session:
        return float(
            session.execute(text("SELECT reltuples FROM pg_class WHERE relname = :t"), {"t": table}).scalar_one()
        )


def add_payments(store: Store, start: int, count: int) -> None:
    with store.write() as session:
        record_payments(
            session,
            [PaymentIn(f"p{i}", "USD", Decimal("1.00"), date(2026, 12, 1)) for i in range(start, start + count)],
        )


@pytest.mark.postgres
def test_tables_never_analysed_are_analysed_first_then_as_the_run_grows_them(pg_store: Store) -> None:
    assert planner_rows(pg_store, "payments") == planner_rows(pg_store, "invoices") == -1  # a new store
    keeper = FreshStatistics(pg_store, grown=("payments",), read=("invoices",), every=100, growth=0.5)
    assert planner_rows(pg_store, "payments") == planner_rows(pg_store, "invoices") == 0

    add_payments(pg_store, 0, 99)
    keeper.wrote(99)  # under `every`: not yet
    assert planner_rows(pg_store, "payments") == 0
    add_payments(pg_store, 99, 301)
    keeper.wrote(301)
    assert planner_rows(pg_store, "payments") == 400
    add_payments(pg_store, 400, 150)
    keeper.wrote(150)  # under half of the 400 known
    assert planner_rows(pg_store, "payments") == 400
    add_payments(pg_store, 550, 50)
    keeper.wrote(50)  # 200 written since: half of 400
    assert planner_rows(pg_store, "payments") == 600

    # A run over tables with statistics analyses nothing at its start.
    FreshStatistics(pg_store, grown=("payments",), read=("invoices",))
    add_payments(pg_store, 600, 10)
    FreshStatistics(pg_store, grown=("payments",), read=("invoices",))
    assert planner_rows(pg_store, "payments") == 600


def test_on_sqlite_it_does_nothing(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    keeper = FreshStatistics(store, grown=("payments",), every=1)
    keeper.wrote(10)
    assert not keeper.active
    with store.read() as session:  # no ANALYZE ran: SQLite's statistics table was never made
        assert session.execute(text("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'")).first() is None
    store.dispose()
