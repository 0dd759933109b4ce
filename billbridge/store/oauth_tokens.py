"""Rotating OAuth tokens of outside connections: read, and replace only if nobody else did first."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billbridge.store.models import OAuthToken, table_of, utcnow


def load(session: Session, connection_key: str) -> tuple[int, str] | None:
    """(version, sealed tokens) of a connection, or None before its first save."""
    row = session.execute(
        select(OAuthToken.version, OAuthToken.sealed).where(OAuthToken.connection_key == connection_key)
    ).first()
    return (row.version, row.sealed) if row else None


def compare_and_swap(session: Session, connection_key: str, expected_version: int, sealed: str) -> bool:
    """Store ``sealed`` as version ``expected_version + 1`` if the stored version is ``expected_version``
    (no row counts as version 0). Two workers racing: exactly one wins."""
    table = table_of(OAuthToken)
    if expected_version == 0:
        try:
            with session.begin_nested():
                session.execute(
                    insert(table).values(connection_key=connection_key, version=1, sealed=sealed, updated_at=utcnow())
                )
            return True
        except IntegrityError:
            return False
    result = session.execute(
        update(table)
        .where(table.c.connection_key == connection_key, table.c.version == expected_version)
        .values(version=expected_version + 1, sealed=sealed, updated_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1
