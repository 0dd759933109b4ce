"""Per-day usage aggregates, for billing and usage reports.

Sum, peak and count come from the per-day rollups that ingestion keeps (``usage_daily``, integer
micro-units, the sum in two columns (``store.usage.SPLIT``): exact on both backends, where SQLite
would add decimal text as floating point), so a
period over millions of events reads one row per customer, product and day. The day's last event
and distinct property values are read from the events, for the products that ask for them. Days of
another time zone than UTC (an entity's calendar, for monitors) are read from the events too.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, and_, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from billbridge.billing.usage_periods import NO_VALUES, DailyUsage, from_micros
from billbridge.store.models import Product, UsageDaily, UsageEvent
from billbridge.store.usage import joined_total

UsageDays = dict[tuple[int, str], dict[date, DailyUsage]]
"""(customer id, usage product_ref) -> day (UTC, or of the zone asked for) -> that day's figures."""


def event_day(session: Session) -> ColumnElement[Any]:
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
    zone: str = "UTC",
) -> UsageDays:
    """Per customer, usage product and UTC day in [start, end): sum, peak and count of quantities;
    the day's last event for the product_refs in ``last_for``; the distinct values of each
    (product_ref, property) in ``distinct_for``. ``customer_ids`` None means every customer. With
    another ``zone`` (an IANA name), the days are calendar days there."""
    if start >= end or customer_ids is not None and not customer_ids:
        return {}
    if zone != "UTC":
        return _local_days(session, customer_ids, start, end, ZoneInfo(zone), last_for, distinct_for)
    lower, upper = datetime.combine(start, time.min), datetime.combine(end, time.min)
    in_range = [UsageEvent.timestamp >= lower, UsageEvent.timestamp < upper]
    if customer_ids is not None:
        in_range.append(UsageEvent.customer_id.in_(list(customer_ids)))
    day = event_day(session).label("day")
    products = dict(session.execute(select(Product.id, Product.product_ref)).all())
    in_days = [UsageDaily.day >= start, UsageDaily.day < end]
    if customer_ids is not None:
        in_days.append(UsageDaily.customer_id.in_(list(customer_ids)))
    out: UsageDays = defaultdict(dict)
    for customer_id, product_id, on, millions, micros, peak, count in session.execute(
        select(
            UsageDaily.customer_id,
            UsageDaily.product_id,
            UsageDaily.day,
            UsageDaily.total_millions,
            UsageDaily.total_micros,
            UsageDaily.peak_micros,
            UsageDaily.events,
        ).where(*in_days)
    ):
        total = from_micros(joined_total(millions, micros))
        out[(customer_id, products[product_id])][on] = DailyUsage(total, from_micros(peak), count)
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
        out[key][when] = out[key][when]._replace(last=(stamp, event_id, quantity))


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
        out[(customer_id, product_ref)][on] = daily._replace(distinct={**daily.distinct, key: frozenset(values)})


def _local_days(
    session: Session,
    customer_ids: Sequence[int] | None,
    start: date,
    end: date,
    zone: ZoneInfo,
    last_for: Collection[str],
    distinct_for: Collection[tuple[str, str]],
) -> UsageDays:
    """:func:`daily_usage`'s figures per calendar day of ``zone``, from the events themselves (the
    rollups keep UTC days, which a zone's midnight splits)."""
    lower, upper = (datetime.combine(d, time.min, zone).astimezone(UTC).replace(tzinfo=None) for d in (start, end))
    where = [UsageEvent.timestamp >= lower, UsageEvent.timestamp < upper]
    if customer_ids is not None:
        where.append(UsageEvent.customer_id.in_(list(customer_ids)))
    products = dict(session.execute(select(Product.id, Product.product_ref)).all())
    keys: dict[str, list[str]] = defaultdict(list)
    for product_ref, key in distinct_for:
        keys[product_ref].append(key)
    micros: dict[tuple[tuple[int, str], date], list[int]] = defaultdict(list)
    latest: dict[tuple[tuple[int, str], date], tuple[datetime, int, Any]] = {}
    seen: dict[tuple[tuple[int, str], date], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    rows = session.execute(
        select(
            UsageEvent.customer_id,
            UsageEvent.product_id,
            UsageEvent.timestamp,
            UsageEvent.id,
            UsageEvent.quantity,
            UsageEvent.quantity_micros,
            UsageEvent.properties,
        ).where(*where)
    )
    for customer_id, product_id, stamp, event_id, quantity, amount, properties in rows:
        product_ref = products[product_id]
        at = ((customer_id, product_ref), stamp.replace(tzinfo=UTC).astimezone(zone).date())
        micros[at].append(amount)
        if product_ref in last_for and (at not in latest or (stamp, event_id) > latest[at][:2]):
            latest[at] = (stamp, event_id, quantity)
        for name in keys.get(product_ref, ()):
            found = (properties or {}).get(name)
            if found is not None:
                seen[at][name].add(found if isinstance(found, str) else json.dumps(found))
    out: UsageDays = defaultdict(dict)
    for at, amounts in micros.items():
        distinct = {name: frozenset(v) for name, v in seen[at].items()} if at in seen else NO_VALUES
        out[at[0]][at[1]] = DailyUsage(
            from_micros(sum(amounts)), from_micros(max(amounts)), len(amounts), latest.get(at), distinct
        )
    return dict(out)


def period_usage(
    session: Session, customer_ids: Sequence[int] | None, start: date, end: date
) -> dict[tuple[int, str], DailyUsage]:
    """Sum, peak and count per customer and usage product over the days in [start, end): one
    aggregate over the rollups, the figure a period close or a usage report reads."""
    if start >= end or customer_ids is not None and not customer_ids:
        return {}
    products = dict(session.execute(select(Product.id, Product.product_ref)).all())
    where = [UsageDaily.day >= start, UsageDaily.day < end]
    if customer_ids is not None:
        where.append(UsageDaily.customer_id.in_(list(customer_ids)))
    rows = session.execute(
        select(
            UsageDaily.customer_id,
            UsageDaily.product_id,
            func.sum(UsageDaily.total_millions),
            func.sum(UsageDaily.total_micros),
            func.max(UsageDaily.peak_micros),
            func.sum(UsageDaily.events),
        )
        .where(*where)
        .group_by(UsageDaily.customer_id, UsageDaily.product_id)
    )
    return {
        (customer_id, products[product_id]): DailyUsage(
            from_micros(joined_total(millions, micros)), from_micros(peak), int(count)
        )
        for customer_id, product_id, millions, micros, peak, count in rows
    }
