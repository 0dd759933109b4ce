"""invoices.period_released: a draft voided before it was issued gives its period back to billing,
so one invoice per (contract, billing date) holds among the documents that bill (a partial unique
index) and the replacement may take the voided draft's date

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BILLING = sa.text("NOT period_released")


def upgrade() -> None:
    # SQLite cannot drop a table's UNIQUE constraint in place: batch mode rebuilds the table (store.db.migrate
    # turns foreign key enforcement off for that, and checks every key before it commits).
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("period_released", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.drop_constraint("uq_invoices_contract_id_billing_date", type_="unique")
    op.create_index(
        "uq_invoices_billed_contract_date",
        "invoices",
        ["contract_id", "billing_date"],
        unique=True,
        sqlite_where=BILLING,
        postgresql_where=BILLING,
    )


def downgrade() -> None:
    # Fails while a voided draft and its replacement share a billing date: the old constraint cannot hold them.
    op.drop_index("uq_invoices_billed_contract_date", table_name="invoices")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_invoices_contract_id_billing_date", ["contract_id", "billing_date"])
        batch_op.drop_column("period_released")
