"""SQLAlchemy 2 models of the canonical store. Names users see follow the seeds' vocabulary.

Dates are calendar dates; ``end_date`` columns are the last day included. Money is ExactDecimal.
An invoice and a credit note share the ``invoices`` table (``doc_type``): same lines, numbering per
entity and document type, same lifecycle; a credit note's amounts are negative.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from billbridge.store.types import ExactDecimal, JSONDoc

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def table_of(model: type[Base]) -> Table:
    """A model's Table, for Core statements on hot paths (typed, unlike ``Model.__table__``)."""
    return cast(Table, model.__table__)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {Decimal: ExactDecimal(), dict[str, Any]: JSONDoc, datetime: DateTime(timezone=True)}


Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite only autoincrements INTEGER PRIMARY KEY


class LegalEntity(Base):
    __tablename__ = "legal_entities"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    entity_ref: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    currency: Mapped[str] = mapped_column(String(3))
    invoice_prefix: Mapped[str] = mapped_column(String(40))
    credit_note_prefix: Mapped[str] = mapped_column(String(40))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")  # IANA: its calendar day
    messaging: Mapped[dict[str, Any] | None]  # channel, document details, reminder days (EntityMessaging)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NumberSequence(Base):
    """Next document number per entity and document type; its row lock serialises numbering."""

    __tablename__ = "number_sequences"
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"), primary_key=True)
    doc_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    next_value: Mapped[int] = mapped_column(BigInteger, default=1)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    customer_ref: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"))
    email: Mapped[str | None] = mapped_column(String(300))
    message_channel: Mapped[str | None] = mapped_column(String(20))  # overrides the entity's channel
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    product_ref: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Price(Base):
    """A price book entry: a product's pricing in one currency."""

    __tablename__ = "prices"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    price_ref: Mapped[str] = mapped_column(String(200), unique=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    pricing: Mapped[dict[str, Any]]


class Contract(Base):
    __tablename__ = "contracts"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    contract_ref: Mapped[str] = mapped_column(String(200), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"))
    current_version_no: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ContractVersion(Base):
    """One version of a contract's terms; ``effective_date`` says from when it applies."""

    __tablename__ = "contract_versions"
    __table_args__ = (UniqueConstraint("contract_id", "version_no"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"))
    version_no: Mapped[int] = mapped_column(Integer)
    effective_date: Mapped[date] = mapped_column(Date)
    content_hash: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    contract_start_date: Mapped[date] = mapped_column(Date)
    contract_end_date: Mapped[date | None] = mapped_column(Date)
    cycle_length: Mapped[int] = mapped_column(Integer)
    cycle_unit: Mapped[str] = mapped_column(String(10))
    cycle_start_date: Mapped[date] = mapped_column(Date)
    billing_timing: Mapped[str] = mapped_column(String(12))
    payment_terms_days: Mapped[int] = mapped_column(Integer)
    auto_charge: Mapped[bool] = mapped_column(Boolean)
    discount: Mapped[dict[str, Any] | None]
    minimum_commitment: Mapped[Decimal | None]
    terms: Mapped[str] = mapped_column(Text)  # the canonical contract as imported, prices resolved (JSON)
    billed_by: Mapped[str] = mapped_column(String(20), server_default="billbridge")  # who invoices it
    # Who its documents go to when sold through a reseller (its distributor, else its reseller; null: the
    # customer), so a billing run groups a reseller's contracts without reading every version's terms.
    bill_to_ref: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContractLine(Base):
    """A version's lines as columns, for queries and monitors; billing reads ``ContractVersion.terms``."""

    __tablename__ = "contract_lines"
    __table_args__ = (UniqueConstraint("version_id", "line_ref"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("contract_versions.id"))
    position: Mapped[int] = mapped_column(Integer)
    line_ref: Mapped[str] = mapped_column(String(200))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    charge: Mapped[str] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    quantity: Mapped[Decimal]
    price_ref: Mapped[str | None] = mapped_column(String(200))
    pricing: Mapped[dict[str, Any]]
    billing_timing: Mapped[str | None] = mapped_column(String(12))
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    ramps: Mapped[dict[str, Any] | None]
    discount: Mapped[dict[str, Any] | None]
    usage_aggregation: Mapped[str] = mapped_column(String(10))
    billing_date: Mapped[date | None] = mapped_column(Date)
    installments: Mapped[int | None] = mapped_column(Integer)


class UsageEvent(Base):
    __tablename__ = "usage_events"
    __table_args__ = (Index("ix_usage_events_lookup", "customer_id", "product_id", "timestamp"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    event_ref: Mapped[str] = mapped_column(String(64), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    timestamp: Mapped[datetime]
    quantity: Mapped[Decimal]
    quantity_micros: Mapped[int] = mapped_column(BigInteger)  # quantity x 10^6: summed exactly in SQL
    properties: Mapped[dict[str, Any] | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key of the usage and read API, scoped to one legal entity.

    Only the SHA-256 of the token is kept (tokens are 256-bit random, so a fast hash is enough);
    ``key_prefix`` is the token's public start, shown in listings and accepted by ``apikey revoke``.
    """

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key_prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class ApiAnswer(Base):
    """The answer of a write API request sent with an ``Idempotency-Key``, kept so that sending it
    again replays it (and the same key with another request is refused). ``key`` is the key scoped
    to the API key's legal entity, ``fingerprint`` the request's method, path and body."""

    __tablename__ = "api_answers"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]]
    etag: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageDaily(Base):
    """Per customer, usage product and UTC day: sum, peak and count of the events' quantities in
    integer micro-units, kept up to date in the transaction that stores the events. The sum is
    ``total_millions`` x 10^12 + ``total_micros`` (below 10^12), so it never overflows 64 bits
    (``store.usage.SPLIT``)."""

    __tablename__ = "usage_daily"
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    total_millions: Mapped[int] = mapped_column(BigInteger, server_default="0")  # whole millions of units
    total_micros: Mapped[int] = mapped_column(BigInteger)  # the rest, in micro-units
    peak_micros: Mapped[int] = mapped_column(BigInteger)
    events: Mapped[int] = mapped_column(BigInteger)


class Invoice(Base):
    """An invoice or credit note, one per (contract, billing date) among those that bill: a draft
    voided before it was issued gives its period back (``period_released``), and the document
    replacing it may take its date."""

    __tablename__ = "invoices"
    __table_args__ = (
        Index(
            "uq_invoices_billed_contract_date",
            "contract_id",
            "billing_date",
            unique=True,
            sqlite_where=text("NOT period_released"),
            postgresql_where=text("NOT period_released"),
        ),
        UniqueConstraint("entity_id", "doc_type", "sequence_no"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    doc_type: Mapped[str] = mapped_column(String(20))
    number: Mapped[str] = mapped_column(String(60), index=True)
    sequence_no: Mapped[int] = mapped_column(BigInteger)
    entity_id: Mapped[int] = mapped_column(ForeignKey("legal_entities.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"))
    version_no: Mapped[int] = mapped_column(Integer)
    billing_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    subtotal: Mapped[Decimal]
    discount_total: Mapped[Decimal]
    invoice_total: Mapped[Decimal]
    amount_paid: Mapped[Decimal]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)  # metrics' freshness
    # Voided before it was issued: its lines no longer bill their periods (the next run bills them again).
    period_released: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # A credit note: the invoice it credits, where the planner knows it (its credit lines all take back
    # what that invoice billed); what it credits is no longer open on that invoice (reminders).
    applies_to_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)


class InvoiceLine(Base):
    """A line: ``amount`` is the full-period price, ``billed_amount`` the rounded amount of the billed days."""

    __tablename__ = "invoice_lines"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    line_ref: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    product_ref: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    period_days: Mapped[int] = mapped_column(Integer)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    billed_days: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[Decimal]
    amount: Mapped[Decimal]
    discount_amount: Mapped[Decimal]
    billed_amount: Mapped[Decimal]
    terms_hash: Mapped[str] = mapped_column(String(64))
    sign: Mapped[int] = mapped_column(Integer)
    version_no: Mapped[int] = mapped_column(Integer)


class Payment(Base):
    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    payment_ref: Mapped[str] = mapped_column(String(200), unique=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal]
    unapplied_amount: Mapped[Decimal]
    received_on: Mapped[date] = mapped_column(Date)
    method: Mapped[str | None] = mapped_column(String(40))
    reference: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Why matching could not (fully) apply it: on the review list until ``reviewed`` says how a person dealt with it.
    review_reason: Mapped[str | None] = mapped_column(Text)
    reviewed: Mapped[str | None] = mapped_column(Text)
    source_version: Mapped[str | None] = mapped_column(String(40))  # QuickBooks' SyncToken: a later edit shows


class PaymentAllocation(Base):
    __tablename__ = "payment_allocations"
    __table_args__ = (UniqueConstraint("payment_id", "invoice_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"))
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount: Mapped[Decimal]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExternalRef(Base):
    """Internal id <-> id in an outside system; one per (system, object type, internal id)."""

    __tablename__ = "external_refs"
    __table_args__ = (
        UniqueConstraint("system", "object_type", "internal_id"),
        UniqueConstraint("system", "object_type", "external_id"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    system: Mapped[str] = mapped_column(String(40))
    object_type: Mapped[str] = mapped_column(String(40))
    internal_id: Mapped[int] = mapped_column(BigInteger)
    external_id: Mapped[str] = mapped_column(String(200))
    version: Mapped[str | None] = mapped_column(String(64))
    # the record's name there where it is not its own (a QuickBooks customer under a suffixed DisplayName)
    external_name: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SyncCursor(Base):
    __tablename__ = "sync_cursors"
    source: Mapped[str] = mapped_column(String(40), primary_key=True)
    stream: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[str] = mapped_column(Text)  # opaque to the store; a connector's cursor may be JSON
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class QuarantinedRecord(Base):
    """A record that could not be taken in: kept with its raw payload until its source fixes it."""

    __tablename__ = "quarantined_records"
    __table_args__ = (UniqueConstraint("source", "record_type", "record_key"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source: Mapped[str] = mapped_column(String(200))
    record_type: Mapped[str] = mapped_column(String(40))
    record_key: Mapped[str] = mapped_column(String(300))
    field: Mapped[str | None] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None]
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    seen_count: Mapped[int] = mapped_column(Integer, default=1)
    resolved_at: Mapped[datetime | None]
    # What the store lacked when the record was refused (``entities:eu-bv``): retried once it has it.
    missing_ref: Mapped[str | None] = mapped_column(String(300))


class OutboxMessage(Base):
    """A message announcing a state change, committed with it and delivered at least once by a relay."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "delivered_at", "available_at"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    topic: Mapped[str] = mapped_column(String(80))
    aggregate_type: Mapped[str] = mapped_column(String(40))
    aggregate_id: Mapped[int] = mapped_column(BigInteger)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    leased_until: Mapped[datetime | None]  # a relay claimed it and holds it until then (None: not held)
    leased_by: Mapped[str | None] = mapped_column(String(200))  # which run: "host pid N"


class WebhookEvent(Base):
    """A verified webhook delivery, stored once per (source, event_id): the inbox processing acts from."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_webhook_events_pending", "processed_at", "claimed_until"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(300))
    event_type: Mapped[str] = mapped_column(String(120))
    object_id: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime | None]
    payload: Mapped[str] = mapped_column(Text)  # the event's JSON as the vendor signed it
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None]  # a processor's lease; also the next try after a failure
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(80))  # the action taken, or "ignored"
    note: Mapped[str | None] = mapped_column(Text)  # why ignored, or what the action did
    last_error: Mapped[str | None] = mapped_column(Text)


class OAuthToken(Base):
    """The rotating OAuth tokens of one outside connection, encrypted; ``version`` for compare-and-swap."""

    __tablename__ = "oauth_tokens"
    connection_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    sealed: Mapped[str] = mapped_column(Text)  # Fernet token of the JSON of the tokens
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # When the refresh token stops working, in the clear (no secret) so ``billbridge status`` can warn:
    # unused for the vendor's rolling period, and the authorisation's hard expiry (someone must reconnect)
    refresh_expires_at: Mapped[datetime | None]
    refresh_hard_expires_at: Mapped[datetime | None]


# The finance metrics' tables live in their own module; imported here so Base.metadata (what Alembic
# compares the migrations with) has every table.
from billbridge.store import message_models as _message_models  # noqa: E402, F401
from billbridge.store import metric_models as _metric_models  # noqa: E402, F401
from billbridge.store import monitor_models as _monitor_models  # noqa: E402, F401
from billbridge.store import partner_models as _partner_models  # noqa: E402, F401
from billbridge.store import revenue_models as _revenue_models  # noqa: E402, F401
