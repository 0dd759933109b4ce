"""Sync cursors: where each source's stream was read up to. Saved in the transaction that stored the data."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from billbridge.store.models import SyncCursor


def get_cursor(session: Session, source: str, stream: str) -> str | None:
    return session.scalar(select(SyncCursor.value).where(SyncCursor.source == source, SyncCursor.stream == stream))


def set_cursor(session: Session, source: str, stream: str, value: str) -> None:
    row = session.get(SyncCursor, (source, stream))
    if row is None:
        session.add(SyncCursor(source=source, stream=stream, value=value))
    else:
        row.value = value
