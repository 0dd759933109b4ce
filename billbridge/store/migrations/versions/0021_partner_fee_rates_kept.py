"""partner_fee_accruals.source_currency, source_amount, rate: an accrual of an event in another currency
than its agreement's keeps the amount it converted and the rate used, so a later change of the
configured rate moves only new events (a change of an accrued event is converted at its first rate);
null in the agreement's own currency and on accruals made before

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billbridge.store.types import ExactDecimal

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("partner_fee_accruals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_currency", sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column("source_amount", ExactDecimal(), nullable=True))
        batch_op.add_column(sa.Column("rate", ExactDecimal(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("partner_fee_accruals", schema=None) as batch_op:
        batch_op.drop_column("rate")
        batch_op.drop_column("source_amount")
        batch_op.drop_column("source_currency")
