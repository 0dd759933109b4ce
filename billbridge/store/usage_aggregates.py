"""Per-day usage aggregates computed by the database, for billing and usage reports.

Quantities are summed and compared as integer micro-units (``usage_events.quantity_micros``):
exact on both backends, where SQLite would sum the exact decimal text as floating point.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import Date, and_, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from billbridge.billing.usage import DailyUsage, from_micros
from billbridge.store.models import Product, UsageEvent

UsageDays = dict[tuple[int, str], dict[date, DailyUsage]]
"""(customer id, usage product_ref) -> UTC day -> that day's figures."""


def _day(session: Session) -> ColumnElement[Any]:
    """The UTC day of an event's timestamp (stored as naive UTC)."""
    if session.get_bind().dialect.name == "sqlite":
        return func.substr(UsageEvent.timestamp, 1, 10)  # 'YYYY-MM-DD HH:MM:SS.ffffff'
    return cast(UsageEvent.timestamp, Date)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def daily_usage(
    session: Session,
    customer_ids: Sequence[int] | None,
    start: date,
    end: date,
    *,
    last_for: Collection[str] = (),
    distinct_for: Collection[tuple[str, str]] = (),
) -> UsageDays:
    """Per customer, usage product and UTC day in [start, end): sum, peak and count of quantities;
    the day's last event for the product_refs in ``last_for``; the distinct values of each
    (product_ref, property) in ``distinct_for``. ``customer_ids`` None means every customer."""
    if start >= end or customer_ids is not None and not customer_ids:
        return {}
    lower, upper = datetime.combine(start, time.min), datetime.combine(end, time.min)
    in_range = [UsageEvent.timestamp >= lower, UsageEvent.timestamp < upper]
    if customer_ids is not None:
        in_range.append(UsageEvent.customer_id.in_(list(customer_ids)))
    day = _day(session).label("day")
    products = dict(session.execute(select(Product.id, Product.product_ref)).all())
    sums = session.execute(
        select(
            UsageEvent.customer_id,
            UsageEvent.product_id,
            day,
            func.sum(UsageEvent.quantity_micros),
            func.max(UsageEvent.quantity_micros),
            func.count(),
        )
        .where(*in_range)
        .group_by(UsageEvent.customer_id, UsageEvent.product_id, day)
    )
    out: UsageDays = defaultdict(dict)
    for customer_id, product_id, on, total, peak, count in sums:
        out[(customer_id, products[product_id])][_as_date(on)] = DailyUsage(
            from_micros(total), from_micros(peak), int(count)
        )
    ids_of = {ref: pid for pid, ref in products.items()}
    if last_for:
        _add_last(session, out, in_range, day, [ids_of[r] for r in last_for if r in ids_of], products)
    for product_ref, key in distinct_for:
        if product_ref in ids_of:
            _add_distinct(session, out, in_range, day, ids_of[product_ref], product_ref, key)
    return dict(out)


def _add_last(
    session: Session,
    out: UsageDays,
    in_range: list[ColumnElement[bool]],
    day: ColumnElement[Any],
    product_ids: list[int],
    products: dict[int, str],
) -> None:
    """Each day's latest event (ties: the later id) for these products."""
    if not product_ids:
        return
    ranked = (
        select(
            UsageEvent.customer_id,
            UsageEvent.product_id,
            day,
            UsageEvent.timestamp,
            UsageEvent.id,
            UsageEvent.quantity,
            func.row_number()
            .over(
                partition_by=(UsageEvent.customer_id, UsageEvent.product_id, day),
                order_by=(UsageEvent.timestamp.desc(), UsageEvent.id.desc()),
            )
            .label("rank"),
        )
        .where(*in_range, UsageEvent.product_id.in_(product_ids))
        .subquery()
    )
    for customer_id, product_id, on, stamp, event_id, quantity in session.execute(
        select(
            ranked.c.customer_id, ranked.c.product_id, ranked.c.day, ranked.c.timestamp, ranked.c.id, ranked.c.quantity
        ).where(ranked.c.rank == 1)
    ):
        key, when = (customer_id, products[product_id]), _as_date(on)
        out[key][when] = replace(out[key][when], last=(stamp, event_id, quantity))


def _add_distinct(
    session: Session,
    out: UsageDays,
    in_range: list[ColumnElement[bool]],
    day: ColumnElement[Any],
    product_id: int,
    product_ref: str,
    key: str,
) -> None:
    """Each day's distinct values of one additional_report_data key (events without it do not count)."""
    value = UsageEvent.properties[key].as_string()
    seen: dict[tuple[int, date], set[str]] = defaultdict(set)
    for customer_id, on, found in session.execute(
        select(UsageEvent.customer_id, day, value)
        .where(and_(*in_range, UsageEvent.product_id == product_id, value.is_not(None)))
        .distinct()
    ):
        seen[(customer_id, _as_date(on))].add(found)
    for (customer_id, on), values in seen.items():
        daily = out[(customer_id, product_ref)][on]
        out[(customer_id, product_ref)][on] = replace(daily, distinct={**daily.distinct, key: frozenset(values)})
