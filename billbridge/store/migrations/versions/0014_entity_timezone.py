"""legal_entities.timezone: the IANA time zone of an entity's calendar day, which decides the day a
monitor's value and a usage event belong to; existing entities keep UTC days

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 09:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("legal_entities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=False, server_default="UTC"))


def downgrade() -> None:
    # Not in batch mode: SQLite (3.35 and later) drops a column in place, where copying the table
    # would break the foreign keys that point at it.
    op.drop_column("legal_entities", "timezone")
