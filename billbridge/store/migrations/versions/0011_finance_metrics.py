"""finance metrics: summaries of MRR, documents, collections, payment history, products and the
forecast's expected cash (metric_*), with what each was built from; dashboard users; an index
on invoices.updated_at, to tell cheaply whether the summaries are behind the invoices

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billbridge.store.types import ExactDecimal, JSONDoc

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _entity() -> sa.Column:
    return sa.Column("entity_id", ID, sa.ForeignKey("legal_entities.id"), nullable=False)


def _customer() -> sa.Column:
    return sa.Column("customer_id", ID, sa.ForeignKey("customers.id"), nullable=False)


def _money(name: str) -> sa.Column:
    return sa.Column(name, ExactDecimal(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "metric_state",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("stamp", sa.Text(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=True),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "metric_mrr_steps",
        _customer(),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        _entity(),
        _money("mrr"),
        _money("delta"),
        sa.Column("active_delta", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "currency", "day"),
    )
    op.create_index("ix_metric_mrr_steps_segment", "metric_mrr_steps", ["entity_id", "currency", "day"])
    op.create_table(
        "metric_mrr_movements",
        _customer(),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        _entity(),
        sa.Column("kind", sa.String(20), nullable=False),
        _money("before"),
        _money("after"),
        _money("amount"),
        sa.PrimaryKeyConstraint("customer_id", "currency", "month"),
    )
    op.create_index("ix_metric_mrr_movements_segment", "metric_mrr_movements", ["entity_id", "currency", "month"])
    op.create_table(
        "metric_documents",
        _entity(),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("doc_type", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("billing_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("documents", sa.BigInteger(), nullable=False),
        _money("total"),
        _money("paid"),
        sa.PrimaryKeyConstraint("entity_id", "currency", "doc_type", "status", "billing_date", "due_date"),
    )
    op.create_table(
        "metric_collected",
        _entity(),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        _money("amount"),
        sa.PrimaryKeyConstraint("entity_id", "currency", "day"),
    )
    op.create_table(
        "metric_payment_history",
        _customer(),
        _entity(),
        sa.Column("invoices", sa.BigInteger(), nullable=False),
        sa.Column("days_late", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_table(
        "metric_product_months",
        _entity(),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("product_ref", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        _money("billed"),
        _money("collected"),
        sa.PrimaryKeyConstraint("entity_id", "currency", "month", "product_ref", "kind", "customer_id"),
    )
    op.create_table(
        "metric_expected_cash",
        _entity(),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("expected_date", sa.Date(), nullable=False),
        _money("amount"),
        sa.Column("invoices", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("entity_id", "currency", "source", "expected_date"),
    )
    op.create_table(
        "metric_contract_cash",
        sa.Column("contract_id", ID, sa.ForeignKey("contracts.id"), nullable=False),
        sa.Column("expected_date", sa.Date(), nullable=False),
        _entity(),
        sa.Column("currency", sa.String(3), nullable=False),
        _money("amount"),
        sa.Column("invoices", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("contract_id", "expected_date"),
    )
    op.create_table(
        "metric_contract_plans",
        sa.Column("contract_id", ID, sa.ForeignKey("contracts.id"), nullable=False),
        sa.Column("planned_to", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("contract_id"),
    )
    op.create_index("ix_metric_contract_plans_planned_to", "metric_contract_plans", ["planned_to"])
    op.create_table(
        "dashboard_users",
        sa.Column("id", ID, primary_key=True),
        sa.Column("username", sa.String(100), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(300), nullable=False),
        sa.Column("entity_refs", JSONDoc, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_invoices_updated_at", "invoices", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_invoices_updated_at", "invoices")
    for table in (
        "dashboard_users",
        "metric_contract_plans",
        "metric_contract_cash",
        "metric_expected_cash",
        "metric_product_months",
        "metric_payment_history",
        "metric_collected",
        "metric_documents",
        "metric_mrr_movements",
        "metric_mrr_steps",
        "metric_state",
    ):
        op.drop_table(table)
