"""Rotating OAuth tokens of outside connections: read, and replace only if nobody else did first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


def compare_and_swap(
    session: Session,
    connection_key: str,
    expected_version: int,
    sealed: str,
    *,
    refresh_expires_at: datetime | None = None,
    refresh_hard_expires_at: datetime | None = None,
) -> bool:
    """Store ``sealed`` (and when its refresh token expires) as version ``expected_version + 1`` if the
    stored version is ``expected_version`` (no row counts as version 0). Two workers racing: exactly one wins."""
    table = table_of(OAuthToken)
    values: dict[str, Any] = {
        "sealed": sealed,
        "updated_at": utcnow(),
        "refresh_expires_at": refresh_expires_at,
        "refresh_hard_expires_at": refresh_hard_expires_at,
    }
    if expected_version == 0:
        try:
            with session.begin_nested():
                session.execute(insert(table).values(connection_key=connection_key, version=1, **values))
            return True
        except IntegrityError:
            return False
    result = session.execute(
        update(table)
        .where(table.c.connection_key == connection_key, table.c.version == expected_version)
        .values(version=expected_version + 1, **values)
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1


def expiries(session: Session) -> list[tuple[str, datetime | None, datetime | None]]:
    """(connection, refresh token's rolling expiry, its hard expiry) of every stored connection."""
    rows = session.execute(
        select(OAuthToken.connection_key, OAuthToken.refresh_expires_at, OAuthToken.refresh_hard_expires_at).order_by(
            OAuthToken.connection_key
        )
    )
    return [(key, rolling, hard) for key, rolling, hard in rows]
