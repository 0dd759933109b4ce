"""contract_versions.bill_to_ref: the partner a version sold through a reseller is invoiced to (its
distributor, else its reseller), so a billing run groups resold contracts into its chunks by a column
instead of reading and parsing every stored version's terms (a scan of the whole table's JSON)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contract_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bill_to_ref", sa.String(length=200), nullable=True))
    # The terms are pydantic's compact JSON of the contract: one sold through a reseller names it.
    if op.get_bind().dialect.name == "postgresql":
        field = "json_extract_path_text(CAST(terms AS JSON), '{name}')"
    else:
        field = "json_extract(terms, '$.{name}')"
    op.execute(
        "UPDATE contract_versions SET bill_to_ref = COALESCE("
        f"{field.format(name='distributor_ref')}, {field.format(name='reseller_ref')}"
        ') WHERE terms LIKE \'%"reseller_ref":"%\''
    )


def downgrade() -> None:
    # Not in batch mode: SQLite (3.35 and later) drops a column in place, where copying the table
    # would break the contract lines' foreign keys.
    op.drop_column("contract_versions", "bill_to_ref")
