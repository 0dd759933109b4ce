"""revenue_period_events.actor, forced: who closed or reopened a month, and whether a close was forced
past the checks (contracts not recognised, a rollforward that does not balance; the reason then says
what was accepted); null and false on events recorded before

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 15:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revenue_period_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actor", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("forced", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("revenue_period_events", schema=None) as batch_op:
        batch_op.drop_column("forced")
        batch_op.drop_column("actor")
