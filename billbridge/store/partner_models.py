"""Tables of partner billing (migration 0016): partners, referral agreements, the fees they accrued
(one row per agreement, earning event and kind, so accruing twice adds nothing) and each partner's
monthly statement, whose total becomes a QuickBooks Bill. Written by ``store/partners.py`` only."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from billbridge.store.models import Base, Id, utcnow


class Partner(Base):
    """A referral partner or reseller; ``terms`` is the canonical record as imported (JSON)."""

    __tablename__ = "partners"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    partner_ref: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(10))
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"))
    currency: Mapped[str] = mapped_column(String(3))
    email: Mapped[str | None] = mapped_column(String(300))
    payment_terms_days: Mapped[int] = mapped_column(Integer)
    terms: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReferralAgreement(Base):
    """A partner's referral agreement: its fee rule and referred customers live in ``terms`` (JSON)."""

    __tablename__ = "referral_agreements"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    agreement_ref: Mapped[str] = mapped_column(String(200), unique=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    terms: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PartnerFeeAccrual(Base):
    """A fee (or its reversal) an event earned, booked on a partner's statement ``period`` (YYYY-MM)."""

    __tablename__ = "partner_fee_accruals"
    __table_args__ = (UniqueConstraint("agreement_id", "event_ref", "kind"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("referral_agreements.id"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    event_ref: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # fee, flat_fee, reversal, flat_reversal
    customer_ref: Mapped[str] = mapped_column(String(200))
    occurred_on: Mapped[date] = mapped_column(Date)
    period: Mapped[str] = mapped_column(String(7))
    currency: Mapped[str] = mapped_column(String(3))
    base: Mapped[Decimal]
    fee: Mapped[Decimal]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # An event in another currency: its currency, the change of its amount this accrual converted and the
    # rate used, kept so a later rate change moves only new events (null in the agreement's currency).
    source_currency: Mapped[str | None] = mapped_column(String(3), default=None)
    source_amount: Mapped[Decimal | None] = mapped_column(default=None)
    rate: Mapped[Decimal | None] = mapped_column(default=None)


class PartnerStatement(Base):
    """A partner's statement of one period: open while fees may still land on it, closed once its total
    was queued for QuickBooks as a Bill (later fees then go to the next period)."""

    __tablename__ = "partner_statements"
    __table_args__ = (UniqueConstraint("partner_id", "period"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    period: Mapped[str] = mapped_column(String(7))
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal]
    status: Mapped[str] = mapped_column(String(10))  # closed, billed, credited, no_bill
    closed_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid: Mapped[Decimal | None]  # paid on its Bill, as QuickBooks' BillPayments last said (None: not read)
