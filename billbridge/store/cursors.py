"""Sync cursors: where each source's stream was read up to. Saved in the transaction that stored the data."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from billbridge.store.bulk import BulkStatement
from billbridge.store.models import SyncCursor, table_of, utcnow

_CURSORS = table_of(SyncCursor)
_MOVE = (
    update(_CURSORS)
    .where(_CURSORS.c.source == bindparam("s"), _CURSORS.c.stream == bindparam("st"))
    .values(value=bindparam("v"), updated_at=bindparam("at"))
)
_START = insert(_CURSORS)


def get_cursor(session: Session, source: str, stream: str) -> str | None:
    return session.scalar(select(SyncCursor.value).where(SyncCursor.source == source, SyncCursor.stream == stream))


def set_cursor(session: Session, source: str, stream: str, value: str) -> None:
    """Save the cursor: one UPDATE (once per page of every sync), an INSERT the first time."""
    connection = session.connection()
    now = utcnow()
    moved = BulkStatement.of(_MOVE, connection, ("s", "st", "v", "at"))
    if moved.run_many(connection, [{"s": source, "st": stream, "v": value, "at": now}]) == 0:
        row = {"source": source, "stream": stream, "value": value, "updated_at": now}
        BulkStatement.of(_START, connection, tuple(row)).run_many(connection, [row])
