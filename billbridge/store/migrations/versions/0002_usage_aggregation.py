"""usage quantities in integer micro-units and per-day usage rollups, both exact in SQL

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timezone
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quantity_micros", sa.BigInteger(), nullable=True))
    op.create_table(
        "usage_daily",
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("total_micros", sa.BigInteger(), nullable=False),
        sa.Column("peak_micros", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_usage_daily_customer_id_customers")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_usage_daily_product_id_products")),
        sa.PrimaryKeyConstraint("customer_id", "product_id", "day", name=op.f("pk_usage_daily")),
    )
    _backfill()
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.alter_column("quantity_micros", existing_type=sa.BigInteger(), nullable=False)


def _backfill() -> None:
    """Events stored before this revision (test data only: nothing released had usage)."""
    events = sa.table(
        "usage_events",
        sa.column("id", ID),
        sa.column("customer_id", ID),
        sa.column("product_id", ID),
        sa.column("timestamp", sa.DateTime()),
        sa.column("quantity", sa.String()),
    )
    connection = op.get_bind()
    daily: dict[tuple[int, int, date], list[int]] = defaultdict(list)
    for event_id, customer_id, product_id, stamp, quantity in connection.execute(
        sa.select(events.c.id, events.c.customer_id, events.c.product_id, events.c.timestamp, events.c.quantity)
    ):
        micros = int(Decimal(quantity).scaleb(6))
        if isinstance(stamp, str):
            stamp = datetime.fromisoformat(stamp)
        day = (stamp.astimezone(timezone.utc) if stamp.tzinfo else stamp).date()
        daily[(customer_id, product_id, day)].append(micros)
        connection.execute(
            sa.text("UPDATE usage_events SET quantity_micros = :m WHERE id = :id"), {"m": micros, "id": event_id}
        )
    if daily:
        op.bulk_insert(
            sa.table(
                "usage_daily",
                sa.column("customer_id", ID),
                sa.column("product_id", ID),
                sa.column("day", sa.Date()),
                sa.column("total_micros", sa.BigInteger()),
                sa.column("peak_micros", sa.BigInteger()),
                sa.column("events", sa.BigInteger()),
            ),
            [
                {
                    "customer_id": c,
                    "product_id": p,
                    "day": d,
                    "total_micros": sum(m),
                    "peak_micros": max(m),
                    "events": len(m),
                }
                for (c, p, d), m in daily.items()
            ],
        )


def downgrade() -> None:
    op.drop_table("usage_daily")
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_column("quantity_micros")
