"""partner billing: partners, referral agreements, the fees they accrue (once per agreement, event and
kind) and each partner's monthly statement

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from billbridge.store.types import ExactDecimal

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _now(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "partners",
        sa.Column("id", ID, primary_key=True),
        sa.Column("partner_ref", sa.String(200), nullable=False, unique=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("entity_id", ID, sa.ForeignKey("legal_entities.id"), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("email", sa.String(300), nullable=True),
        sa.Column("payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("terms", JSON, nullable=False),
        _now("updated_at"),
    )
    op.create_table(
        "referral_agreements",
        sa.Column("id", ID, primary_key=True),
        sa.Column("agreement_ref", sa.String(200), nullable=False, unique=True),
        sa.Column("partner_id", ID, sa.ForeignKey("partners.id"), nullable=False, index=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("terms", JSON, nullable=False),
        _now("updated_at"),
    )
    op.create_table(
        "partner_fee_accruals",
        sa.Column("id", ID, primary_key=True),
        sa.Column("agreement_id", ID, sa.ForeignKey("referral_agreements.id"), nullable=False),
        sa.Column("partner_id", ID, sa.ForeignKey("partners.id"), nullable=False, index=True),
        sa.Column("event_ref", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("customer_ref", sa.String(200), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("base", ExactDecimal(), nullable=False),
        sa.Column("fee", ExactDecimal(), nullable=False),
        _now("created_at"),
        sa.UniqueConstraint("agreement_id", "event_ref", "kind"),
    )
    op.create_table(
        "partner_statements",
        sa.Column("id", ID, primary_key=True),
        sa.Column("partner_id", ID, sa.ForeignKey("partners.id"), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", ExactDecimal(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        _now("closed_at"),
        sa.UniqueConstraint("partner_id", "period"),
    )


def downgrade() -> None:
    for table in ("partner_statements", "partner_fee_accruals", "referral_agreements", "partners"):
        op.drop_table(table)
