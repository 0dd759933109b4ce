"""contract_versions.billed_by: who invoices the version (billbridge, or stripe for a subscription),
so the usage API can tell which contracts billbridge bills without reading every version's terms

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contract_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("billed_by", sa.String(length=20), nullable=False, server_default="billbridge"))
    # The terms are pydantic's compact JSON of the contract: a Stripe-billed version says so in them.
    op.execute("UPDATE contract_versions SET billed_by = 'stripe' WHERE terms LIKE '%\"billed_by\":\"stripe\"%'")


def downgrade() -> None:
    # Not in batch mode: SQLite (3.35 and later) drops a column in place, where copying the table
    # would break the contract lines' foreign keys.
    op.drop_column("contract_versions", "billed_by")
