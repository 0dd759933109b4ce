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
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Integer, and_, case, cast, extract, func, literal, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from billbridge.billing.revenue import UsageBucket
from billbridge.billing.usage_periods import NO_VALUES, DailyUsage, from_micros
from billbridge.store.models import Contract, ContractLine, ContractVersion, Product, UsageDaily, UsageEvent
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


def usage_buckets(
    session: Session, wanted: Mapping[int, Collection[str]], splits: Mapping[int, Collection[int]], through: date
) -> dict[tuple[int, str], list[UsageBucket]]:
    """(customer id, usage product_ref) -> that usage through ``through`` per month, for revenue
    recognition: one query over the rollups for a chunk of contracts, grouped in SQL by customer,
    product, month and part of the month (``wanted``: customer id -> product_refs; ``splits``: customer
    id -> the days of the month their billing periods start or end on, where a month is cut into parts).
    The part holding ``through`` ends after it."""
    products = sorted({ref for refs in wanted.values() for ref in refs})
    if not wanted or not products:
        return {}
    if session.get_bind().dialect.name == "sqlite":
        month: ColumnElement[Any] = func.strftime("%Y-%m-01", UsageDaily.day)
        day_of_month: ColumnElement[Any] = cast(func.strftime("%d", UsageDaily.day), Integer)
    else:
        month = cast(func.date_trunc("month", UsageDaily.day), Date)
        day_of_month = cast(extract("day", UsageDaily.day), Integer)
    cuts: dict[int, list[int]] = {c: sorted({d for d in days if 1 < d <= 31}) for c, days in splits.items()}
    by_cut: dict[int, list[int]] = defaultdict(list)  # day of month -> the customers cutting months there
    for customer, days in cuts.items():
        for d in days:
            by_cut[d].append(customer)
    # the part of its month a day is in: how many of its customer's cuts it is on or after
    part = sum(
        (
            case((and_(UsageDaily.customer_id.in_(sorted(customers)), day_of_month >= d), 1), else_=0)
            for d, customers in sorted(by_cut.items())
        ),
        literal(0),
    ).label("part")
    month = month.label("month")
    rows = session.execute(
        select(
            UsageDaily.customer_id,
            Product.product_ref,
            month,
            part,
            func.sum(UsageDaily.total_millions),
            func.sum(UsageDaily.total_micros),
            func.sum(UsageDaily.events),
        )
        .join(Product, Product.id == UsageDaily.product_id)
        .where(
            UsageDaily.customer_id.in_(sorted(wanted)),
            Product.product_ref.in_(products),
            UsageDaily.day <= through,
        )
        .group_by(UsageDaily.customer_id, Product.product_ref, month, part)
    )
    out: dict[tuple[int, str], list[UsageBucket]] = defaultdict(list)
    last = through + timedelta(days=1)
    for customer_id, product_ref, first, index, millions, micros, events in rows:
        if product_ref not in wanted.get(customer_id, ()):
            continue
        start, end = _part(_as_date(first), cuts.get(customer_id, []), int(index))
        total = from_micros(joined_total(millions, micros))
        out[(customer_id, product_ref)].append(UsageBucket(start, min(end, last), total, int(events)))
    for found in out.values():
        found.sort()
    return dict(out)


def _part(month: date, cuts: Sequence[int], index: int) -> tuple[date, date]:
    """The days [start, end) of part ``index`` of ``month`` cut on the days of the month ``cuts``
    (ascending; a cut past the month's last day cuts nothing)."""
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    length = (following - month).days
    start = month.replace(day=cuts[index - 1]) if index else month
    end = following
    if index < len(cuts) and cuts[index] <= length:
        end = month.replace(day=cuts[index])
    return start, end


def usage_events_through(through: date) -> Any:
    """A subquery (contract_id, events): per contract with a usage line (in any version), the events its
    customer reported on those lines' products through ``through`` (0: none yet); a schedule valuing
    usage is stale when this changes (usage events are only ever added)."""
    lines = (
        select(ContractVersion.contract_id.label("contract_id"), ContractLine.product_id.label("product_id"))
        .join(ContractVersion, ContractVersion.id == ContractLine.version_id)
        .where(ContractLine.charge == "usage")
        .distinct()
        .subquery()
    )
    return (
        select(lines.c.contract_id, func.coalesce(func.sum(UsageDaily.events), 0).label("events"))
        .select_from(lines)
        .join(Contract, Contract.id == lines.c.contract_id)
        .outerjoin(
            UsageDaily,
            (UsageDaily.customer_id == Contract.customer_id)
            & (UsageDaily.product_id == lines.c.product_id)
            & (UsageDaily.day <= through),
        )
        .group_by(lines.c.contract_id)
        .subquery()
    )
