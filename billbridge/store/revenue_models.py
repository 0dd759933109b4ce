"""Tables of revenue recognition (migration 0013): each contract's performance obligations and schedule
(billed and recognised per line, booked month and month), what each schedule was built from, and the
period close of each legal entity with its history. Written by ``store/revenue.py`` only."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from billbridge.store.models import Base, Id, utcnow


class RevenueObligation(Base):
    """A performance obligation as its contract's latest schedule allocated it (replaced when rebuilt)."""

    __tablename__ = "revenue_obligations"
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"))
    line_ref: Mapped[str] = mapped_column(String(200))
    product_ref: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(300))
    method: Mapped[str] = mapped_column(String(20))
    treatment: Mapped[str] = mapped_column(String(20))
    version_no: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    booked_month: Mapped[date] = mapped_column(Date)
    ssp: Mapped[Decimal]
    price: Mapped[Decimal]
    allocated: Mapped[Decimal]


class RevenueScheduleRow(Base):
    """What a contract line billed and recognised in ``month``, of what was booked in ``booked_month``.
    A row of a closed month is never rewritten; ``catch_up`` is the part of ``recognised`` that corrects
    earlier, closed months."""

    __tablename__ = "revenue_schedule"
    __table_args__ = (Index("ix_revenue_schedule_entity_month", "entity_id", "month"),)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    line_ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    booked_month: Mapped[date] = mapped_column(Date, primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"))
    currency: Mapped[str] = mapped_column(String(3))
    billed: Mapped[Decimal]
    recognised: Mapped[Decimal]
    catch_up: Mapped[Decimal]


class RevenueContractState(Base):
    """What a contract's schedule was built from (its versions and documents) and through which day."""

    __tablename__ = "revenue_contract_state"
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    stamp: Mapped[str] = mapped_column(String(200))
    through: Mapped[date] = mapped_column(Date)
    built_at: Mapped[datetime] = mapped_column(default=utcnow)
    error: Mapped[str | None] = mapped_column(Text)


class RevenuePeriod(Base):
    """A closed month of a legal entity: its recognised amounts no longer change."""

    __tablename__ = "revenue_periods"
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    closed_at: Mapped[datetime] = mapped_column(default=utcnow)


class RevenuePeriodEvent(Base):
    """A close or reopening of a month, who did it, with the reason given for a reopening or a forced close."""

    __tablename__ = "revenue_period_events"
    __table_args__ = (Index("ix_revenue_period_events_entity", "entity_id", "month"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"))
    month: Mapped[date] = mapped_column(Date)
    action: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(200))  # who closed or reopened it
    forced: Mapped[bool] = mapped_column(Boolean, server_default=false())  # closed past failed checks
