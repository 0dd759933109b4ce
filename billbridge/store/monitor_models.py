"""Tables of the monitors (migration 0012): definitions, their values per customer and day, and the
alerts they raised (one per monitor, customer, condition and day a condition started to hold)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from billbridge.store.models import Base, Id, utcnow


class Monitor(Base):
    """A monitor of one legal entity: ``definition`` is the validated file or API body (``billing.monitors``)."""

    __tablename__ = "monitors"
    __table_args__ = (UniqueConstraint("entity_id", "name"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"))
    name: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(20))
    definition: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorValue(Base):
    """A monitor's value for a customer on a day, as text (a decimal, an ISO date, a cycle unit);
    ``computed_at`` is when it last changed (a late usage event or a backdated amendment)."""

    __tablename__ = "monitor_values"
    __table_args__ = (Index("ix_monitor_values_day", "monitor_id", "day"),)
    monitor_id: Mapped[int] = mapped_column(ForeignKey("monitors.id"), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    value: Mapped[str] = mapped_column(String(100))
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorAlert(Base):
    """A condition that started to hold on ``day`` for a customer: raised once, announced through the
    outbox (a Prefect event, and a signed webhook when the monitor has one)."""

    __tablename__ = "monitor_alerts"
    __table_args__ = (UniqueConstraint("monitor_id", "customer_id", "condition_key", "day"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    monitor_id: Mapped[int] = mapped_column(ForeignKey("monitors.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    condition_key: Mapped[str] = mapped_column(String(200))
    day: Mapped[date] = mapped_column(Date)
    value: Mapped[str] = mapped_column(String(100))
    increment: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
