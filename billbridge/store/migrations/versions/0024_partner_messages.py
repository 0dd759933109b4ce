"""messages.partner_id: a partner's fee statement is e-mailed to the partner, which is not a customer;
a message now belongs to a customer or to a partner, exactly one of them (customer_id nullable, a check)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 17:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("partner_id", ID, nullable=True))
        batch_op.alter_column("customer_id", existing_type=ID, nullable=True)
        batch_op.create_foreign_key("fk_messages_partner_id_partners", "partners", ["partner_id"], ["id"])
        batch_op.create_index("ix_messages_partner_id", ["partner_id"], unique=False)
        batch_op.create_check_constraint("one_party", "(customer_id IS NULL) <> (partner_id IS NULL)")


def downgrade() -> None:
    # Partner statements have no customer: they (and their undelivered outbox rows) go with the column.
    op.execute(
        "UPDATE outbox SET delivered_at = CURRENT_TIMESTAMP WHERE aggregate_type = 'message' AND delivered_at IS NULL "
        "AND aggregate_id IN (SELECT id FROM messages WHERE partner_id IS NOT NULL)"
    )
    op.execute("DELETE FROM messages WHERE partner_id IS NOT NULL")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint("one_party", type_="check")
        batch_op.drop_index("ix_messages_partner_id")
        batch_op.drop_constraint("fk_messages_partner_id_partners", type_="foreignkey")
        batch_op.alter_column("customer_id", existing_type=ID, nullable=False)
        batch_op.drop_column("partner_id")
