"""payments.review_reason and payments.reviewed: the review list of payments matching could not
(fully) apply, kept with the reason until a person deals with them; payments.source_version: the
version of the payment at its source when recorded (QuickBooks' SyncToken), to notice later edits

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 12:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reviewed", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("source_version", sa.String(length=40), nullable=True))


def downgrade() -> None:
    # Not in batch mode: SQLite (3.35 and later) drops a column in place, where copying the table
    # would break the allocations' foreign keys.
    op.drop_column("payments", "source_version")
    op.drop_column("payments", "reviewed")
    op.drop_column("payments", "review_reason")
