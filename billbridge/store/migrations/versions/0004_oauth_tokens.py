"""oauth tokens (rotating refresh tokens of outside connections, sealed, versioned for CAS);
sync cursors become text (connectors keep JSON state in them)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 08:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_tokens",
        sa.Column("connection_key", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection_key", name=op.f("pk_oauth_tokens")),
    )
    with op.batch_alter_table("sync_cursors", schema=None) as batch_op:
        batch_op.alter_column("value", existing_type=sa.String(length=200), type_=sa.Text(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("sync_cursors", schema=None) as batch_op:
        batch_op.alter_column("value", existing_type=sa.Text(), type_=sa.String(length=200), existing_nullable=False)
    op.drop_table("oauth_tokens")
