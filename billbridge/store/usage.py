"""Usage events: storing them. Their per-day aggregates are in ``usage_aggregates``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from billbridge.billing.usage import to_micros
from billbridge.store.models import UsageEvent


def as_stored_timestamp(stamp: datetime) -> datetime:
    """Timestamps are stored as naive UTC, so a day boundary is the same on every backend."""
    return stamp.astimezone(timezone.utc).replace(tzinfo=None) if stamp.tzinfo else stamp


def event_row(row: dict[str, Any]) -> dict[str, Any]:
    """A validated event as stored: UTC timestamp and the quantity's integer micro-units added."""
    return {**row, "timestamp": as_stored_timestamp(row["timestamp"]), "quantity_micros": to_micros(row["quantity"])}


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert of already validated events (event_ref, entity_id, customer_id, product_id, timestamp, quantity)."""
    if rows:
        session.execute(insert(UsageEvent), [event_row(row) for row in rows])
