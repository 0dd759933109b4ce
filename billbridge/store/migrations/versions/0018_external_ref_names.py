"""external_refs.external_name: the name a record has in the outside system where it is not its own
(a QuickBooks customer made under '<name> (<customer ref>)' because a vendor or an employee holds its
name), recorded with its id so later runs use that customer directly instead of finding the clash
again; null for every other link

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("external_refs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_name", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("external_refs", schema=None) as batch_op:
        batch_op.drop_column("external_name")
