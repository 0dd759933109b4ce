"""RawStatement on both backends: IN lists of any length, Core's conversions both ways, values
shared by a batch converted once but stored like any other."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select

from billbridge.store.db import Store
from billbridge.store.models import Payment, table_of
from billbridge.store.raw import RawStatement

PAYMENTS = table_of(Payment)
INSERT = insert(PAYMENTS)
BY_REFS = select(PAYMENTS.c.payment_ref, PAYMENTS.c.amount, PAYMENTS.c.received_on).where(
    PAYMENTS.c.payment_ref.in_(bindparam("refs", expanding=True)), PAYMENTS.c.currency == bindparam("currency")
)


def row(i: int, created_at: datetime, amount: Decimal) -> dict[str, Any]:
    return {
        "payment_ref": f"p{i}",
        "customer_id": None,
        "currency": "KWD" if i % 2 else "USD",
        "amount": amount,
        "unapplied_amount": amount,
        "received_on": date(2026, 1, 1) + timedelta(days=i),
        "method": None,
        "reference": None,
        "created_at": created_at,
    }


def test_in_lists_of_each_length_and_money_back_exactly(store: Store) -> None:
    t0 = datetime(2026, 1, 1, 9, 0, 0, 123456)
    rows = [row(i, t0, Decimal(f"{i}.{i:03d}")) for i in range(12)]
    with store.write_connection() as connection:
        RawStatement.of(INSERT, connection, tuple(rows[0])).run_many(connection, rows)
    with store.write_connection() as connection:
        statement = RawStatement.of(BY_REFS, connection, ("refs", "currency"))
        for refs in (["p1"], ["p1", "p2", "p3", "nope"], [f"p{i}" for i in range(12)], ["p5", "p7"]):
            found = statement.run(connection, {"currency": "KWD", "refs": refs})
            expected = [(r["payment_ref"], r["amount"], r["received_on"]) for r in rows if r["currency"] == "KWD"]
            assert sorted(found) == sorted(e for e in expected if e[0] in refs)
            assert all(isinstance(amount, Decimal) for _, amount, _ in found)
        with pytest.raises(ValueError, match="empty"):
            statement.run(connection, {"currency": "KWD", "refs": []})


def test_a_value_shared_by_the_batch_is_stored_like_the_others(store: Store) -> None:
    """The first and last rows share one timestamp object (converted once); the rows between
    carry others, which must not take the shared one's converted value."""
    shared, other = datetime(2026, 3, 1, 12, 0, 0, 1), datetime(2026, 3, 2, 8, 30)
    zero = Decimal("0.000")
    rows = [row(0, shared, zero), row(1, other, Decimal("1.5")), row(2, shared, zero), row(3, other, zero)]
    rows.append(row(4, shared, zero))
    with store.write_connection() as connection:
        assert RawStatement.of(INSERT, connection, tuple(rows[0])).run_many(connection, rows) == len(rows)
    with store.read() as session:
        stored = session.execute(select(Payment.created_at, Payment.amount).order_by(Payment.payment_ref)).all()
    assert [(c.replace(tzinfo=None), a) for c, a in stored] == [(r["created_at"], r["amount"]) for r in rows]
