"""Documents as they leave billbridge and payments as they come back: the neutral shapes between the
store and the ERP / payment mappings (``mapping/quickbooks.py``, ``mapping/stripe.py``).

The push flow builds an ``OutboundDocument`` from a stored invoice or credit note; a vendor mapping
turns it into the vendor's payload. Pulled payments are mapped into ``IncomingPayment`` for
reconciliation. Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

DocType = Literal["invoice", "credit_note"]


@dataclass(frozen=True)
class DocumentLine:
    line_ref: str
    product_ref: str  # the price-book SKU; the ERP item / Stripe product is looked up by it
    description: str
    quantity: Decimal
    amount: Decimal  # the rounded line amount billed (negative on a credit line)
    start_date: date
    end_date: date
    # ``recognition: none``: revenue someone else recognises, so the ERP posts it apart from deferred revenue
    pass_through: bool = False


@dataclass(frozen=True)
class OutboundDocument:
    """One invoice or credit note to push. ``version`` changes whenever its content changes."""

    number: str  # US-INV-000042: the DocNumber / Stripe metadata that finds it again after a crash
    doc_type: DocType
    version: int
    entity_ref: str
    customer_ref: str
    customer_name: str
    customer_email: str | None
    contract_ref: str
    currency: str
    billing_date: date
    due_date: date
    total: Decimal
    auto_charge: bool
    lines: tuple[DocumentLine, ...]
    applies_to: str | None = None  # a credit note: the invoice number it corrects
    channel: str = "email"  # how the customer gets its invoices (stripe: Stripe sends them, so they go there)

    def idempotency_key(self, operation: str) -> str:
        """Deterministic key of one write of this document version (Stripe Idempotency-Key, QBO requestid)."""
        return f"billbridge-{self.number}-v{self.version}-{operation}"


def push_targets(takes: Mapping[str, Callable[[OutboundDocument], bool]]) -> Callable[[OutboundDocument], list[str]]:
    """Where an approved document goes: each target (by name, in order) that takes it. Which documents
    a target takes is the vendor registry's declaration (``PushTarget.takes``: the ERP every document,
    Stripe the auto-charge invoices and the invoices on its channel), here for the targets configured."""
    chosen = dict(takes)

    def targets(document: OutboundDocument) -> list[str]:
        return [name for name, wanted in chosen.items() if wanted(document)]

    return targets


@dataclass(frozen=True)
class IncomingPayment:
    """A payment pulled from a vendor, not yet matched."""

    source: str  # stripe | quickbooks
    payment_ref: str  # the vendor's id (Stripe charge / payment intent, QBO Payment Id)
    currency: str
    amount: Decimal  # gross received
    received_on: date
    customer_ref: str | None  # ours, when the vendor carried it back (metadata, external refs)
    invoice_numbers: tuple[str, ...] = ()  # our document numbers the vendor links it to
    invoice_amounts: tuple[Decimal, ...] = ()  # per linked invoice, when the vendor splits it
    fee: Decimal = Decimal(0)
    method: str | None = None
    reference: str | None = None  # what a person would search for (card last 4, check number)
    extra: dict[str, str] = field(default_factory=dict)  # vendor details matching does not decide on
    memo: str | None = None  # free text from the payer or a bookkeeper (Stripe description, QuickBooks PrivateNote)
    # What reconciliation decides on, typed (mapping sets these; ``extra`` holds only what no decision reads).
    source_version: str | None = None  # its version at the source (QuickBooks' SyncToken): a new one is an edit
    deleted_at: str | None = None  # when it was deleted at its source (QuickBooks change data capture)
    mirrored_from: str | None = None  # our ref of the payment this is our own entry of (QuickBooks PrivateNote)
    refund_of: str | None = None  # the vendor's ref of the payment this refund or dispute takes money back from
    subscription: str | None = None  # the vendor's subscription whose invoice it paid (Stripe billed it itself)

    @property
    def deleted(self) -> bool:
        """Deleted at its source: nothing was received."""
        return bool(self.deleted_at)
