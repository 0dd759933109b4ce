"""usage_daily.total_millions: a day's usage total is kept as total_millions x 10^12 + total_micros
(below 10^12) micro-units, so it never overflows 64 bits (store.usage.SPLIT). Day rows whose sum
already overflowed on SQLite (stored as a float) are recomputed from their events

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SPLIT = 10**12


def upgrade() -> None:
    with op.batch_alter_table("usage_daily", schema=None) as batch_op:
        batch_op.add_column(sa.Column("total_millions", sa.BigInteger(), server_default="0", nullable=False))
    connection = op.get_bind()
    exact = "typeof(total_micros) = 'integer' AND " if connection.dialect.name == "sqlite" else ""
    # Both SET expressions read the row as it was.
    connection.execute(
        sa.text(
            f"UPDATE usage_daily SET total_millions = total_micros / {SPLIT}, total_micros = total_micros % {SPLIT} "
            f"WHERE {exact}total_micros >= {SPLIT}"
        )
    )
    if connection.dialect.name == "sqlite":
        _recompute_overflowed(connection)


def _recompute_overflowed(connection: sa.Connection) -> None:
    """SQLite turned a sum past 64 bits into a float: those days are summed again from their
    events, in Python (SQLite's own SUM would stop with an integer overflow)."""
    days = connection.execute(
        sa.text("SELECT customer_id, product_id, day FROM usage_daily WHERE typeof(total_micros) != 'integer'")
    ).all()
    for customer_id, product_id, day in days:
        events = connection.execute(
            sa.text(
                "SELECT quantity_micros FROM usage_events WHERE customer_id = :c AND product_id = :p "
                "AND substr(timestamp, 1, 10) = :day"
            ),
            {"c": customer_id, "p": product_id, "day": day},
        )
        millions, rest = divmod(sum(int(micros) for (micros,) in events), SPLIT)
        connection.execute(
            sa.text(
                "UPDATE usage_daily SET total_millions = :millions, total_micros = :rest "
                "WHERE customer_id = :c AND product_id = :p AND day = :day"
            ),
            {"millions": millions, "rest": rest, "c": customer_id, "p": product_id, "day": day},
        )


def downgrade() -> None:
    # Exact up to 9.2 x 10^12 units a day, as before this revision.
    op.execute(f"UPDATE usage_daily SET total_micros = total_millions * {SPLIT} + total_micros")
    with op.batch_alter_table("usage_daily", schema=None) as batch_op:
        batch_op.drop_column("total_millions")
