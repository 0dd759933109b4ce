"""customer messages: billing contacts, the messages table (invoice delivery, reminders, receipts,
dunning notices, each once per event), an entity's messaging settings and a customer's channel

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billbridge.store.types import JSONDoc

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("legal_entities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("messaging", JSONDoc, nullable=True))
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_channel", sa.String(20), nullable=True))
    op.create_table(
        "billing_contacts",
        sa.Column("id", ID, primary_key=True),
        sa.Column("customer_id", ID, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.String(2), nullable=False),
        sa.Column("name", sa.String(300), nullable=True),
        sa.Column("language", sa.String(20), nullable=False),
        sa.Column("opt_out", sa.String(100), nullable=False),
    )
    op.create_index("ix_billing_contacts_customer_id", "billing_contacts", ["customer_id"])
    op.create_table(
        "messages",
        sa.Column("id", ID, primary_key=True),
        sa.Column("event_key", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("customer_id", ID, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("invoice_id", ID, sa.ForeignKey("invoices.id"), nullable=True),
        sa.Column("payment_id", sa.BigInteger(), nullable=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("recipients", JSONDoc, nullable=False),
        sa.Column("language", sa.String(20), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("details", JSONDoc, nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False, unique=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_messages_customer_kind", "messages", ["customer_id", "kind"])
    op.create_index("ix_messages_invoice_id", "messages", ["invoice_id"])
    op.create_index("ix_messages_state", "messages", ["state"])


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("billing_contacts")
    op.drop_column("customers", "message_channel")
    op.drop_column("legal_entities", "messaging")
