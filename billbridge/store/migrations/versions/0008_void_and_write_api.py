"""invoices.period_released: a draft voided before it was issued gives its period back to billing,
so one invoice per (contract, billing date) holds among the documents that bill (a partial unique
index) and the replacement may take the voided draft's date; api_answers: the write API's answers to
requests sent with an Idempotency-Key, replayed when the same request comes again

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

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
    op.create_table(
        "api_answers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column(
            "body", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("etag", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_answers")),
        sa.UniqueConstraint("key", name=op.f("uq_api_answers_key")),
    )


def downgrade() -> None:
    op.drop_table("api_answers")
    # Fails while a voided draft and its replacement share a billing date: the old constraint cannot hold them.
    op.drop_index("uq_invoices_billed_contract_date", table_name="invoices")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_invoices_contract_id_billing_date", ["contract_id", "billing_date"])
        batch_op.drop_column("period_released")
