"""usage quantities in integer micro-units, summed exactly by the database

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quantity_micros", sa.BigInteger(), nullable=True))
    events = sa.table("usage_events", sa.column("id", sa.BigInteger()), sa.column("quantity", sa.String()))
    connection = op.get_bind()
    rows = connection.execute(sa.select(events.c.id, sa.cast(events.c.quantity, sa.String()))).all()
    for event_id, quantity in rows:  # nothing released has usage yet; kept exact for any test data
        connection.execute(
            sa.text("UPDATE usage_events SET quantity_micros = :m WHERE id = :id"),
            {"m": int(Decimal(quantity).scaleb(6)), "id": event_id},
        )
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.alter_column("quantity_micros", existing_type=sa.BigInteger(), nullable=False)
        batch_op.drop_index("ix_usage_events_lookup")
        batch_op.create_index(
            "ix_usage_events_lookup", ["customer_id", "product_id", "timestamp", "quantity_micros"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_events_lookup")
        batch_op.create_index("ix_usage_events_lookup", ["customer_id", "product_id", "timestamp"], unique=False)
        batch_op.drop_column("quantity_micros")
