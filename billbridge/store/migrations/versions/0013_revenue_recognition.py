"""revenue recognition: performance obligations, the schedule of billed and recognised amounts per
contract, line, booked month and month, what each contract's schedule was built from, and the period
close of each legal entity with its history

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billbridge.store.types import ExactDecimal

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _money(name: str) -> sa.Column:
    return sa.Column(name, ExactDecimal(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "revenue_obligations",
        sa.Column("contract_id", ID, sa.ForeignKey("contracts.id"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("entity_id", ID, sa.ForeignKey("legal_entities.id"), nullable=False),
        sa.Column("line_ref", sa.String(200), nullable=False),
        sa.Column("product_ref", sa.String(200), nullable=False),
        sa.Column("description", sa.String(300), nullable=False),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("treatment", sa.String(20), nullable=False),
        sa.Column("version_no", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("booked_month", sa.Date(), nullable=False),
        _money("ssp"),
        _money("price"),
        _money("allocated"),
        sa.PrimaryKeyConstraint("contract_id", "seq"),
    )
    op.create_table(
        "revenue_schedule",
        sa.Column("contract_id", ID, sa.ForeignKey("contracts.id"), nullable=False),
        sa.Column("line_ref", sa.String(200), nullable=False),
        sa.Column("booked_month", sa.Date(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("entity_id", ID, sa.ForeignKey("legal_entities.id"), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        _money("billed"),
        _money("recognised"),
        _money("catch_up"),
        sa.PrimaryKeyConstraint("contract_id", "line_ref", "booked_month", "month"),
    )
    op.create_index("ix_revenue_schedule_entity_month", "revenue_schedule", ["entity_id", "month"])
    op.create_table(
        "revenue_contract_state",
        sa.Column("contract_id", ID, sa.ForeignKey("contracts.id"), nullable=False),
        sa.Column("stamp", sa.String(200), nullable=False),
        sa.Column("through", sa.Date(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("contract_id"),
    )
    op.create_table(
        "revenue_periods",
        sa.Column("entity_id", ID, sa.ForeignKey("legal_entities.id"), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("entity_id", "month"),
    )
    op.create_table(
        "revenue_period_events",
        sa.Column("id", ID, primary_key=True),
        sa.Column("entity_id", ID, sa.ForeignKey("legal_entities.id"), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_revenue_period_events_entity", "revenue_period_events", ["entity_id", "month"])


def downgrade() -> None:
    op.drop_index("ix_revenue_period_events_entity", "revenue_period_events")
    op.drop_index("ix_revenue_schedule_entity_month", "revenue_schedule")
    for table in (
        "revenue_period_events",
        "revenue_periods",
        "revenue_contract_state",
        "revenue_schedule",
        "revenue_obligations",
    ):
        op.drop_table(table)
