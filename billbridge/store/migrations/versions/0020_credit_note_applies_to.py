"""invoices.applies_to_id: the invoice a credit note credits, where the billing run knows it (its
credit lines all take back what that one invoice billed); null for invoices and for credit notes
made before (or crediting several invoices)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("applies_to_id", ID, nullable=True))
        batch_op.create_foreign_key("fk_invoices_applies_to_id_invoices", "invoices", ["applies_to_id"], ["id"])
        batch_op.create_index("ix_invoices_applies_to_id", ["applies_to_id"])


def downgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("ix_invoices_applies_to_id")
        batch_op.drop_constraint("fk_invoices_applies_to_id_invoices", type_="foreignkey")
        batch_op.drop_column("applies_to_id")
