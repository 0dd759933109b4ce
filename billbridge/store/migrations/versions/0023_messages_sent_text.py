"""messages.sent_text, sent_html: what a message sent by e-mail said, recorded in the commit that
records it sent, so ``messages show`` prints what the customer received rather than rendering it
again from the invoice as it is now (a reminder's open amount changes once it is paid); null for
messages not sent by e-mail and those sent before

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 15:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("sent_html", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("sent_html")
        batch_op.drop_column("sent_text")
