"""oauth_tokens.refresh_expires_at and refresh_hard_expires_at: when a connection's refresh token
stops working (the rolling expiry, and the hard expiry Intuit reports since 2025), kept in the clear
beside the sealed tokens so `billbridge status` can warn before someone must reconnect; unknown
(null) for tokens stored before

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refresh_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("refresh_hard_expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oauth_tokens", schema=None) as batch_op:
        batch_op.drop_column("refresh_hard_expires_at")
        batch_op.drop_column("refresh_expires_at")
