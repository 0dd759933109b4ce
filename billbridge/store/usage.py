"""Usage events: storing them and reading the per-day aggregates that billing rates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from billbridge.billing.usage import DailyUsage
from billbridge.store.models import Product, UsageEvent


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert of already validated events (event_ref, entity_id, customer_id, product_id, timestamp, quantity)."""
    if rows:
        session.execute(insert(UsageEvent), list(rows))


def daily_usage(
    session: Session, customer_ids: Sequence[int], start: date, end: date
) -> dict[tuple[int, str], dict[date, DailyUsage]]:
    """(customer id, usage product_ref) -> day -> sum / max / count of quantities, days in [start, end).

    Days are UTC calendar days; billing periods are whole days, so any period's sum, max and
    count follow from these.
    """
    if not customer_ids or start >= end:
        return {}
    lower = datetime.combine(start, time.min, tzinfo=timezone.utc)
    upper = datetime.combine(end, time.min, tzinfo=timezone.utc)
    rows = session.execute(
        select(UsageEvent.customer_id, Product.product_ref, UsageEvent.timestamp, UsageEvent.quantity)
        .join(Product, Product.id == UsageEvent.product_id)
        .where(
            UsageEvent.customer_id.in_(list(customer_ids)), UsageEvent.timestamp >= lower, UsageEvent.timestamp < upper
        )
    )
    days: dict[tuple[int, str], dict[date, list[Decimal]]] = {}
    for customer_id, product_ref, timestamp, quantity in rows:
        stamp = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=timezone.utc)
        days.setdefault((customer_id, product_ref), {}).setdefault(stamp.astimezone(timezone.utc).date(), []).append(
            quantity
        )
    return {
        key: {day: DailyUsage(sum(q, Decimal(0)), max(q), len(q)) for day, q in per_day.items()}
        for key, per_day in days.items()
    }
