"""Alembic environment: migrations run on the connection billbridge hands over (see store.db.migrate)."""

from __future__ import annotations

from alembic import context

from billbridge.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` from the command line: use the configured URL
    from billbridge.store.db import make_engine

    connection = make_engine(context.config.get_main_option("sqlalchemy.url") or "").connect()

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
