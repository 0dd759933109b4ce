"""Tables of the finance metrics (migration 0011): figures the store keeps summed so that pages and
endpoints read a few thousand rows instead of every invoice, and the dashboard's users.

Each summary is rebuilt by ``store/metrics.py`` from the tables it sums, exactly (NUMERIC on
PostgreSQL, decimal text on SQLite), after billing, sync and reconciliation runs, and whenever a
read finds the tables it sums changed since (``metric_state`` keeps what each was built from).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from billbridge.store.models import Base, Id, utcnow
from billbridge.store.types import JSONDoc


class MetricState(Base):
    """What a summary was last built from (``stamp``), for which day (``as_of``) when it depends on one,
    and when those sources were read (``refreshed_at``: later changes are not in it)."""

    __tablename__ = "metric_state"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    stamp: Mapped[str] = mapped_column(Text)
    as_of: Mapped[date | None] = mapped_column(Date)
    refreshed_at: Mapped[datetime] = mapped_column(default=utcnow)


class MetricMrrStep(Base):
    """From ``day`` on, the customer's MRR in ``currency`` is ``mrr`` (``delta`` from its previous step;
    ``active_delta`` +1 when it starts paying, -1 when it stops): MRR on a day is a sum of deltas."""

    __tablename__ = "metric_mrr_steps"
    __table_args__ = (Index("ix_metric_mrr_steps_segment", "entity_id", "currency", "day"),)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"))
    mrr: Mapped[Decimal]
    delta: Mapped[Decimal]
    active_delta: Mapped[int] = mapped_column(Integer)


class MetricMrrMovement(Base):
    """A customer's MRR movement in a month (ChartMogul's kinds), from ``before`` to ``after``."""

    __tablename__ = "metric_mrr_movements"
    __table_args__ = (Index("ix_metric_mrr_movements_segment", "entity_id", "currency", "month"),)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"))
    kind: Mapped[str] = mapped_column(String(20))
    before: Mapped[Decimal]
    after: Mapped[Decimal]
    amount: Mapped[Decimal]


class MetricDocuments(Base):
    """Invoices and credit notes counted and summed per everything the billing metrics group by."""

    __tablename__ = "metric_documents"
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    doc_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    billing_date: Mapped[date] = mapped_column(Date, primary_key=True)
    due_date: Mapped[date] = mapped_column(Date, primary_key=True)
    documents: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[Decimal]
    paid: Mapped[Decimal]


class MetricCollected(Base):
    """Money applied to invoices, per entity, currency and day the payment was received."""

    __tablename__ = "metric_collected"
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    amount: Mapped[Decimal]


class MetricPaymentHistory(Base):
    """A customer's paid invoices: how many, and their days late (last payment day - due date) summed."""

    __tablename__ = "metric_payment_history"
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"))
    invoices: Mapped[int] = mapped_column(BigInteger)
    days_late: Mapped[int] = mapped_column(BigInteger)


class MetricProductMonth(Base):
    """Billed and collected per product, charge kind and billing month; usage lines per customer too
    (``customer_id`` 0 for the other kinds)."""

    __tablename__ = "metric_product_months"
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    product_ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    billed: Mapped[Decimal]
    collected: Mapped[Decimal]


class MetricExpectedCash(Base):
    """Cash expected per day: open invoice balances (``source`` invoiced) and invoices the billing
    engine plans within the forecast horizon and has not generated yet (projected), at their due
    date shifted by the customer's payment history."""

    __tablename__ = "metric_expected_cash"
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    expected_date: Mapped[date] = mapped_column(Date, primary_key=True)
    amount: Mapped[Decimal]
    invoices: Mapped[int] = mapped_column(BigInteger)


class MetricContractCash(Base):
    """One contract's part of the projected cash (``metric_expected_cash`` source projected, which is
    their sum): its planned invoices per expected payment day, planned up to ``planned_to``. Only the
    contracts that changed, were billed, or whose plan no longer reaches the horizon are planned again."""

    __tablename__ = "metric_contract_cash"
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    expected_date: Mapped[date] = mapped_column(Date, primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal]
    invoices: Mapped[int] = mapped_column(BigInteger)


class MetricContractPlan(Base):
    """How far each contract's projected cash is planned (the forecast needs its horizon covered)."""

    __tablename__ = "metric_contract_plans"
    __table_args__ = (Index("ix_metric_contract_plans_planned_to", "planned_to"),)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    planned_to: Mapped[date] = mapped_column(Date)


class DashboardUser(Base):
    """A person who signs in to the dashboard: a scrypt hash of the password, the entities they see."""

    __tablename__ = "dashboard_users"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    entity_refs: Mapped[list[Any]] = mapped_column(JSONDoc)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]
