"""Usage events: storing them with their per-day rollups. Reading the aggregates: ``usage_aggregates``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import case, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from billbridge.billing.usage import to_micros
from billbridge.store.models import UsageDaily, UsageEvent, table_of

_DAILY = table_of(UsageDaily)


def _upsert_daily(dialect: str) -> Any:
    """Add a batch's figures to the day rows: integer arithmetic, exact on both backends."""
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_DAILY)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[_DAILY.c.customer_id, _DAILY.c.product_id, _DAILY.c.day],
        set_={
            "total_micros": _DAILY.c.total_micros + new.total_micros,
            "peak_micros": case((new.peak_micros > _DAILY.c.peak_micros, new.peak_micros), else_=_DAILY.c.peak_micros),
            "events": _DAILY.c.events + new.events,
        },
    )


_UPSERT_DAILY = {dialect: _upsert_daily(dialect) for dialect in ("postgresql", "sqlite")}


def as_stored_timestamp(stamp: datetime) -> datetime:
    """Timestamps are stored as naive UTC, so a day boundary is the same on every backend."""
    return stamp.astimezone(timezone.utc).replace(tzinfo=None) if stamp.tzinfo else stamp


def event_row(row: dict[str, Any]) -> dict[str, Any]:
    """A validated event as stored: UTC timestamp and the quantity's integer micro-units added."""
    return {**row, "timestamp": as_stored_timestamp(row["timestamp"]), "quantity_micros": to_micros(row["quantity"])}


def add_to_daily(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Fold newly stored events (as ``event_row`` made them) into the per-day rollups.

    Call it in the transaction that stored them, with exactly the rows that were inserted (not the
    replays a conflict skipped). Keys go in sorted order so concurrent writers never deadlock.
    """
    days: dict[tuple[int, int, date], list[int]] = defaultdict(list)
    for row in rows:
        days[(row["customer_id"], row["product_id"], row["timestamp"].date())].append(row["quantity_micros"])
    if not days:
        return
    connection = session.connection()
    connection.execute(
        _UPSERT_DAILY[connection.dialect.name],
        [
            {
                "customer_id": customer_id,
                "product_id": product_id,
                "day": day,
                "total_micros": sum(micros),
                "peak_micros": max(micros),
                "events": len(micros),
            }
            for (customer_id, product_id, day), micros in sorted(days.items())
        ],
    )


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert of already validated, new events (event_ref, entity_id, customer_id, product_id,
    timestamp, quantity, optional properties), with their rollups."""
    if rows:
        stored = [event_row(row) for row in rows]
        session.execute(insert(UsageEvent), stored)
        add_to_daily(session, stored)
