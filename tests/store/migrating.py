"""Migrating a test's store down to a revision and up again: a migration's downgrade and its
backfill, run on rows written by the current code."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from billbridge.store.db import MIGRATIONS, Store, migrate


def down_and_up(store: Store, revision: str) -> None:
    """Migrate ``store`` down to ``revision``, then up to the head as the store does on start
    (``db.migrate``). On SQLite foreign keys are off during the downgrade, as ``migrate`` has them
    for its upgrades: a batch migration rebuilds a table its children point at."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.connect() as connection:
        sqlite = store.dialect == "sqlite"
        if sqlite:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        with connection.begin():
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
        if sqlite:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
    migrate(store.engine)
