"""The tables of customer messages: billing contacts per customer, and each message billbridge sends
(invoice delivery, reminder, receipt, dunning notice; a partner's fee statement) with its state.
A message is to a customer or, a partner statement, to a partner: exactly one of the two is set.

A message row exists once per triggering event (``event_key`` is unique: ``reminder:42:+7``), so
planning twice creates nothing. Its ``state`` says where it is: ``waiting_contact`` (the customer has
no one to send to), ``queued``, ``sending`` (committed just before the SMTP DATA command),
``sent``, ``unconfirmed`` (a crash or a lost connection after DATA began: the server may have it;
shown, never resent blindly), ``failed`` (the server refused it, with its answer), ``skipped`` (a
reminder step too stale, or superseded), ``opted_out``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from billbridge.store.models import Base, Id, utcnow

MESSAGE_STATES = ("waiting_contact", "queued", "sending", "sent", "unconfirmed", "failed", "skipped", "opted_out")


class BillingContactRow(Base):
    """One billing contact of a customer, in the order its source lists them."""

    __tablename__ = "billing_contacts"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(2))  # to | cc
    name: Mapped[str | None] = mapped_column(String(300))
    language: Mapped[str] = mapped_column(String(20))
    opt_out: Mapped[str] = mapped_column(String(100))  # comma-separated message kinds


class CustomerMessage(Base):
    """A message to a customer (or a partner: its fee statement), created once per triggering event
    and sent at most once."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_customer_kind", "customer_id", "kind"),
        CheckConstraint("(customer_id IS NULL) <> (partner_id IS NULL)", name="one_party"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    event_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)  # migration 0024
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), index=True)
    recipients: Mapped[dict[str, Any]]  # {"to": [...], "cc": [...]}
    language: Mapped[str] = mapped_column(String(20))
    as_of: Mapped[date] = mapped_column(Date)  # the day the event happened (a reminder: its step's day)
    details: Mapped[dict[str, Any]]  # what the message says beyond its invoice (step, amounts, decline reason)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)  # the RFC 5322 Message-ID, fixed at creation
    subject: Mapped[str | None] = mapped_column(Text)
    sent_text: Mapped[str | None] = mapped_column(Text)  # what an e-mail said as sent (messages show prints it)
    sent_html: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None]
