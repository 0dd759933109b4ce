"""quarantined_records.missing_ref: the entity, customer or product a record was refused for not
finding (``entities:eu-bv``), so the next sync retries it once the store has it; outbox.leased_until
and leased_by: which run holds a claimed message and until when, so a run that finds the work
leased by another (a killed one) can say so

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantined_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("missing_ref", sa.String(length=300), nullable=True))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("leased_by", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "leased_by")
    op.drop_column("outbox", "leased_until")
    op.drop_column("quarantined_records", "missing_ref")
