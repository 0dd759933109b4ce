"""Per-day usage aggregates computed by the database: exact on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from billbridge.flows.importing import import_document
from billbridge.store.db import Store
from billbridge.store.models import Customer, Product
from billbridge.store.usage import insert_events
from billbridge.store.usage_aggregates import daily_usage, period_usage
from tests.docs import document

D = Decimal
JAN, FEB = date(2026, 1, 1), date(2026, 2, 1)


def _ids(store: Store) -> tuple[dict[str, int], dict[str, int], int]:
    import_document(store, document())
    with store.read() as session:
        customers = dict(session.execute(select(Customer.customer_ref, Customer.id)).all())
        products = dict(session.execute(select(Product.product_ref, Product.id)).all())
        entity = session.scalar(select(Customer.entity_id).where(Customer.customer_ref == "globex"))
    assert entity is not None
    return customers, products, entity


def _store_events(store: Store, events: list[tuple[str, str, str, str, dict[str, Any] | None]]) -> dict[str, int]:
    customers, products, entity = _ids(store)
    with store.write() as session:
        insert_events(
            session,
            [
                {
                    "event_ref": f"e{i}",
                    "entity_id": entity,
                    "customer_id": customers[customer],
                    "product_id": products["api"],
                    "timestamp": datetime.fromisoformat(stamp),
                    "quantity": D(quantity),
                    "properties": properties,
                }
                for i, (customer, stamp, quantity, _, properties) in enumerate(events)
            ],
        )
    return customers


def test_sums_and_peaks_are_exact_decimals_not_floats_or_strings(store: Store) -> None:
    customers = _store_events(
        store,
        [
            ("globex", "2026-01-05T10:00:00+00:00", "0.1", "", None),
            ("globex", "2026-01-05T11:00:00+00:00", "0.2", "", None),
            ("globex", "2026-01-05T12:00:00+00:00", "9", "", None),  # as text "9" > "10"; as numbers not
            ("globex", "2026-01-05T13:00:00+00:00", "10", "", None),
            ("globex", "2026-01-05T14:00:00+00:00", "123456789012.000001", "", None),
        ],
    )
    with store.read() as session:
        days = daily_usage(session, [customers["globex"]], JAN, FEB)
    [day] = days[(customers["globex"], "api")].values()
    assert (day.total, day.peak, day.events) == (D("123456789031.300001"), D("123456789012.000001"), 5)


def test_days_are_utc_days_and_the_range_is_half_open(store: Store) -> None:
    customers = _store_events(
        store,
        [
            ("globex", "2025-12-31T23:59:59+00:00", "1", "", None),  # before the range
            ("globex", "2026-01-01T00:30:00+01:00", "2", "", None),  # 2025-12-31 23:30 UTC: before too
            ("globex", "2026-01-01T00:00:00+00:00", "4", "", None),
            ("globex", "2026-01-31T23:30:00-01:00", "8", "", None),  # 2026-02-01 00:30 UTC: after
            ("globex", "2026-01-31T23:59:59.999999+00:00", "16", "", None),
            ("initech", "2026-01-15T12:00:00+00:00", "32", "", None),
        ],
    )
    with store.read() as session:
        mine = daily_usage(session, [customers["globex"]], JAN, FEB)
        everyone = daily_usage(session, None, JAN, FEB)
    assert {day: u.total for day, u in mine[(customers["globex"], "api")].items()} == {
        JAN: D(4),
        date(2026, 1, 31): D(16),
    }
    assert sorted(everyone) == sorted([(customers["globex"], "api"), (customers["initech"], "api")])


def test_last_value_and_distinct_property_values_per_day(store: Store) -> None:
    customers = _store_events(
        store,
        [
            ("globex", "2026-01-05T10:00:00+00:00", "5", "", {"user": "ann"}),
            ("globex", "2026-01-05T18:00:00+00:00", "7", "", {"user": "bob"}),  # the day's last...
            ("globex", "2026-01-05T18:00:00+00:00", "6", "", {"user": "ann"}),  # ...same time, later id: last
            ("globex", "2026-01-05T09:00:00+00:00", "9", "", {}),  # no user: not counted as a value
            ("globex", "2026-01-06T01:00:00+00:00", "3", "", {"user": 42}),  # numbers count as their text
        ],
    )
    with store.read() as session:
        days = daily_usage(session, [customers["globex"]], JAN, FEB, last_for={"api"}, distinct_for={("api", "user")})
    per_day = days[(customers["globex"], "api")]
    fifth, sixth = per_day[date(2026, 1, 5)], per_day[date(2026, 1, 6)]
    assert fifth.last is not None and fifth.last[2] == D("6")
    assert fifth.distinct == {"user": frozenset({"ann", "bob"})}
    assert sixth.distinct == {"user": frozenset({"42"})} and sixth.last is not None and sixth.last[2] == D(3)


def test_days_of_a_time_zone_are_its_calendar_days_with_the_same_figures(store: Store) -> None:
    customers = _store_events(
        store,
        [
            ("globex", "2026-01-01T07:59:59+00:00", "1", "", {"user": "cy"}),  # 2025-12-31 in Los Angeles
            ("globex", "2026-01-05T10:00:00+00:00", "5", "", {"user": "ann"}),
            ("globex", "2026-01-05T18:00:00+00:00", "7", "", {"user": "bob"}),
            ("globex", "2026-01-05T18:00:00+00:00", "6", "", {"user": "ann"}),
            ("globex", "2026-01-05T09:00:00+00:00", "9", "", {}),
            ("globex", "2026-01-06T01:00:00+00:00", "3", "", {"user": 42}),  # 5 January, 17:00 in Los Angeles
            ("globex", "2026-02-01T07:59:59+00:00", "2", "", None),  # 31 January in Los Angeles
        ],
    )
    options: dict[str, Any] = {"last_for": {"api"}, "distinct_for": {("api", "user")}}
    with store.read() as session:
        rollups = daily_usage(session, [customers["globex"]], JAN, FEB, **options)
        from_events = daily_usage(session, [customers["globex"]], JAN, FEB, zone="Etc/UTC", **options)
        pacific = daily_usage(session, [customers["globex"]], JAN, FEB, zone="America/Los_Angeles", **options)
    assert from_events == rollups  # the events read per zone day agree with the UTC rollups
    per_day = pacific[(customers["globex"], "api")]
    assert {day: u.total for day, u in per_day.items()} == {date(2026, 1, 5): D(30), date(2026, 1, 31): D(2)}
    fifth = per_day[date(2026, 1, 5)]
    assert (fifth.peak, fifth.events) == (D(9), 5)
    assert fifth.last is not None and fifth.last[2] == D(3)
    assert fifth.distinct == {"user": frozenset({"ann", "bob", "42"})}


@pytest.mark.parametrize("quantity", ["0.0000001", "1e-7"])
def test_a_quantity_finer_than_a_micro_unit_is_refused_before_anything_is_stored(store: Store, quantity: str) -> None:
    customers, products, entity = _ids(store)
    row = {
        "event_ref": "x",
        "entity_id": entity,
        "customer_id": customers["globex"],
        "product_id": products["api"],
        "timestamp": datetime(2026, 1, 5, tzinfo=timezone.utc),
        "quantity": D(quantity),
    }
    with pytest.raises(ValueError, match="more than 6 decimal places"), store.write() as session:
        insert_events(session, [row])
    with store.read() as session:
        assert daily_usage(session, None, JAN, JAN + timedelta(days=31)) == {}


@pytest.mark.parametrize("seed", [1, 2])
def test_rollups_equal_the_events_however_they_arrive_in_batches(store: Store, seed: int) -> None:
    import random

    rng = random.Random(seed)
    customers, products, entity = _ids(store)
    who = [customers["globex"], customers["initech"]]
    events = [
        {
            "event_ref": f"e{i}",
            "entity_id": entity,
            "customer_id": rng.choice(who),
            "product_id": products[rng.choice(["api", "seats"])],
            "timestamp": datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=rng.randrange(60 * 24 * 40)),
            "quantity": D(rng.randrange(0, 10**9)).scaleb(-rng.randrange(0, 7)),
        }
        for i in range(400)
    ]
    position = 0
    while position < len(events):  # batches of 1 to 60 events, each in its own transaction
        size = rng.randrange(1, 61)
        with store.write() as session:
            insert_events(session, events[position : position + size])
        position += size
    expected: dict[tuple[int, str, date], list[Decimal]] = {}
    refs = {v: k for k, v in products.items()}
    for e in events:
        day = e["timestamp"].astimezone(timezone.utc).date()
        if JAN <= day < FEB:
            expected.setdefault((e["customer_id"], refs[e["product_id"]], day), []).append(e["quantity"])
    with store.read() as session:
        days = daily_usage(session, None, JAN, FEB)
        period = period_usage(session, [customers["globex"]], JAN, FEB)
    got = {
        (c, ref, day): (u.total, u.peak, u.events) for (c, ref), per_day in days.items() for day, u in per_day.items()
    }
    assert got == {key: (sum(q, D(0)), max(q), len(q)) for key, q in expected.items()}
    for ref in ("api", "seats"):
        mine = [q for (c, r, _), qs in expected.items() if c == customers["globex"] and r == ref for q in qs]
        assert period[(customers["globex"], ref)] == (sum(mine, D(0)), max(mine), len(mine), None, {})


@pytest.mark.postgres
def test_postgresql_sessions_use_utc_whatever_the_database_default(postgres_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from billbridge.store.db import normalise_url, open_store

    name = make_url(postgres_url).database
    admin = create_engine(normalise_url(postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Tokyo'"))
    admin.dispose()
    store = open_store(postgres_url)
    try:
        customers = _store_events(store, [("globex", "2026-01-31T20:00:00+00:00", "5", "", None)])
        with store.read() as session:
            assert session.execute(text("SHOW timezone")).scalar() == "UTC"
            days = daily_usage(session, None, JAN, FEB + timedelta(days=1))
        # 05:00 on 1 February in Tokyo, but the 31st of January in UTC
        assert list(days[(customers["globex"], "api")]) == [date(2026, 1, 31)]
    finally:
        store.dispose()


def test_migration_0009_splits_day_totals_and_repairs_sums_sqlite_made_floats(store: Store) -> None:
    """Day rows written before usage_daily.total_millions are split; on SQLite a sum past 64 bits
    was stored as a float (what the downgrade writes again here) and is summed again from its events."""
    from alembic import command
    from alembic.config import Config

    from billbridge.store.db import MIGRATIONS

    most = "999999999.999999"
    many = 10_000 if store.dialect == "sqlite" else 0  # 10^19 micro-units: a float on SQLite's old column
    customers = _store_events(
        store,
        [("globex", "2026-01-05T10:00:00+00:00", most, "", None)] * 3
        + [("globex", "2026-01-06T10:00:00+00:00", most, "", None)] * many,
    )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0009-1")
    if many:
        with store.engine.connect() as connection:
            kinds = connection.exec_driver_sql("SELECT day, typeof(total_micros) FROM usage_daily ORDER BY day").all()
        assert kinds == [("2026-01-05", "integer"), ("2026-01-06", "real")]
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with store.read() as session:
        days = daily_usage(session, [customers["globex"]], JAN, FEB)[(customers["globex"], "api")]
        period = period_usage(session, None, JAN, FEB)[(customers["globex"], "api")]
    assert days[date(2026, 1, 5)].total == D(most) * 3
    if many:
        assert days[date(2026, 1, 6)].total == D(most) * many
    assert period.total == D(most) * (3 + many)


def test_usage_for_revenue_is_grouped_per_month_and_cut_where_periods_split_months(store: Store) -> None:
    """Revenue recognition's read: one row per customer, product and month, a month cut into parts on the
    days its customer's billing periods start (here the 15th and, for a period anchored on the 31st, the
    28th, 30th and 31st), the part holding ``through`` ending after it; other customers' months whole."""
    from billbridge.billing.revenue import UsageBucket
    from billbridge.store.usage_aggregates import usage_buckets

    customers = _store_events(
        store,
        [
            ("globex", "2026-01-03T10:00:00+00:00", "1", "", None),
            ("globex", "2026-01-20T10:00:00+00:00", "2.5", "", None),
            ("globex", "2026-01-21T10:00:00+00:00", "3", "", None),
            ("globex", "2026-02-28T10:00:00+00:00", "4", "", None),
            ("initech", "2026-01-03T10:00:00+00:00", "5", "", None),
            ("initech", "2026-01-30T10:00:00+00:00", "6", "", None),
            ("initech", "2026-02-10T10:00:00+00:00", "7", "", None),
        ],
    )
    globex, initech = customers["globex"], customers["initech"]
    with store.read() as session:
        found = usage_buckets(
            session, {globex: {"api"}, initech: {"api"}}, {globex: {15, 28, 30, 31}}, date(2026, 2, 28)
        )
    assert found == {
        (globex, "api"): [
            UsageBucket(JAN, date(2026, 1, 15), D(1), 1),
            UsageBucket(date(2026, 1, 15), date(2026, 1, 28), D("5.5"), 2),
            UsageBucket(date(2026, 2, 28), date(2026, 3, 1), D(4), 1),
        ],
        (initech, "api"): [UsageBucket(JAN, FEB, D(11), 2), UsageBucket(FEB, date(2026, 3, 1), D(7), 1)],
    }
    with store.read() as session:  # the month holding ``through`` ends after it
        found = usage_buckets(session, {initech: {"api"}}, {}, date(2026, 2, 9))
    assert found == {(initech, "api"): [UsageBucket(JAN, FEB, D(11), 2)]}
    with store.read() as session:
        found = usage_buckets(session, {initech: {"api"}}, {}, date(2026, 2, 10))
    assert found[(initech, "api")][1] == UsageBucket(FEB, date(2026, 2, 11), D(7), 1)
