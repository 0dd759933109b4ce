"""partner_statements.paid: what QuickBooks says was paid on a statement's Bill (its BillPayments),
read back by each partner-fee run, so the fees paid to a partner are shown without a call to
QuickBooks; null until first read (and for statements without a Bill)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billbridge.store.types import ExactDecimal

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("partner_statements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paid", ExactDecimal(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("partner_statements", schema=None) as batch_op:
        batch_op.drop_column("paid")
