"""The canonical model: legal entities, customers, the price book and contracts.

These pydantic models are the contract file format (JSON or YAML, its JSON Schema is generated from
them) and the input of the billing engine. Names follow the seeds' vocabulary (customer_ref,
entity_ref, contract_start_date, cycle_length, cycle_unit, cycle_start_date, ...), because monitors and
users address contract values by them. Dates are calendar dates; an ``end_date`` is the last day
of service (inclusive).
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from billbridge.billing.currency import MINOR_UNITS
from billbridge.billing.periods import CycleUnit
from billbridge.billing.pricing import GraduatedPrice, Money, Percent, Pricing, Quantity, VolumePrice

Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Name = Annotated[str, StringConstraints(max_length=300)]  # names and e-mail addresses: what the store keeps
Prefix = Annotated[str, StringConstraints(max_length=37)]  # the store keeps 40: room for a credit note's "CN-"
Timing = Literal["in_advance", "in_arrears"]
ChargeKind = Literal["recurring", "usage", "one_time", "installments"]
Aggregation = Literal["sum", "max", "count", "distinct", "last"]
BilledBy = Literal["billbridge", "stripe"]
Recognition = Literal["ratable", "point_in_time", "usage", "none"]
"""How a line's revenue is recognised (see ``billing/revenue.py``): ``ratable`` per day over its service
period (the default for recurring charges), ``point_in_time`` on delivery, its start (the default for
one-time and installment charges), ``usage`` in the period the usage happened (the default, and the only
choice besides ``none``, for usage charges), ``none`` for pass-through items someone else recognises."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_currency(code: str) -> str:
    if code not in MINOR_UNITS:
        raise ValueError(f"unknown currency {code!r} (expected an ISO 4217 code such as USD, EUR, JPY)")
    return code


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (expected an IANA name such as UTC, Europe/Berlin)") from None
    return name


MessageKind = Literal["invoice", "reminder", "receipt", "dunning", "statement"]
"""What billbridge tells a customer: an issued document, a payment reminder, a payment confirmation
(receipt), a dunning notice after a declined auto-charge, a statement of account."""
PartnerMessageKind = Literal["partner_statement"]
"""What billbridge tells a partner: its monthly statement of referral fees (no customer, its own e-mail)."""
MESSAGE_KINDS: tuple[str, ...] = get_args(MessageKind) + get_args(
    PartnerMessageKind
)  # every kind, from the definitions
Channel = Literal["email", "quickbooks", "stripe"]
"""How messages reach a customer: ``email`` (billbridge sends through SMTP), ``quickbooks``
(QuickBooks e-mails its own invoices) or ``stripe`` (every invoice is pushed to Stripe as
``send_invoice`` and Stripe e-mails it with its hosted invoice page); reminders, receipts, dunning
notices and credit notes still go by e-mail."""
DEFAULT_REMINDER_DAYS = (-3, 0, 7, 14, 30)
LOGO_SUFFIXES = (".png", ".jpg", ".jpeg")  # the images fpdf2 draws without a converter
EMAIL_PATTERN = re.compile(
    r"^[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
"""An address billbridge will send to: local part without spaces or specials, a dotted domain."""
LANGUAGE_PATTERN = r"^[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$"


def check_email(address: str) -> str:
    """A clean e-mail address, or ValueError naming it (nothing is sent to a guessed address)."""
    address = address.strip()
    if len(address) > 254 or not EMAIL_PATTERN.match(address):
        raise ValueError(f"malformed e-mail address {address!r}")
    return address


class BillingContact(_Model):
    """Who receives a customer's billing messages: an address (``to`` or ``cc``), the language messages
    are written and formatted in, and the kinds of message this contact does not want."""

    email: Annotated[str, StringConstraints(max_length=254)]
    role: Literal["to", "cc"] = "to"
    name: Name | None = None
    language: Annotated[str, StringConstraints(pattern=LANGUAGE_PATTERN, max_length=20)] = Field(
        default="en", description="Language of the messages and their number and date formats (en, de, fr-CH, ja, ...)"
    )
    opt_out: list[MessageKind] = Field(default_factory=list, description="Kinds of message this contact does not get")

    _email = field_validator("email")(check_email)


class EntityMessaging(_Model):
    """How a legal entity talks to its customers: the channel, what its invoices say about it and how
    to pay, and its reminder schedule (days relative to the due date)."""

    channel: Channel = "email"
    from_email: Annotated[str, StringConstraints(max_length=254)] | None = Field(
        default=None, description="Sender address; default: billing@ the entity's ref"
    )
    address: Annotated[str, StringConstraints(max_length=1000)] | None = Field(
        default=None, description="Postal address and tax id printed on documents"
    )
    payment_instructions: Annotated[str, StringConstraints(max_length=2000)] | None = None
    logo: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = Field(
        default=None,
        description=(
            "PNG or JPEG image drawn at the top of the entity's invoice and credit note PDFs; a relative "
            "path is read from the contract file's folder"
        ),
    )
    reminder_days: list[Annotated[int, Field(ge=-60, le=365)]] = Field(
        default_factory=lambda: list(DEFAULT_REMINDER_DAYS),
        description="Reminder steps in days relative to the due date, each sent at most once per invoice",
    )

    @field_validator("from_email")
    @classmethod
    def _from(cls, value: str | None) -> str | None:
        return None if value is None else check_email(value)

    @field_validator("logo")
    @classmethod
    def _logo(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().endswith(LOGO_SUFFIXES):
            raise ValueError("expected a PNG or JPEG file (.png, .jpg or .jpeg)")
        return value

    @field_validator("reminder_days")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        return sorted(set(value))


class LegalEntity(_Model):
    """A selling company: its own currency, invoice numbering, books and calendar (its time zone
    decides which day a monitor's value and a usage event belong to)."""

    entity_ref: Ref
    name: Name
    currency: str
    invoice_prefix: Prefix = Field(description="Prefix of invoice numbers, e.g. US-INV-")
    credit_note_prefix: Prefix | None = Field(
        default=None,
        description="Prefix of credit note numbers; defaults to the invoice prefix with INV replaced by CN",
    )
    timezone: Annotated[str, StringConstraints(max_length=64)] = Field(
        default="UTC",
        description="IANA time zone of the entity's calendar day (monitors' days), e.g. Pacific/Auckland",
    )

    messaging: EntityMessaging | None = Field(
        default=None, description="Channel, document details and reminder schedule of its customer messages"
    )

    _currency = field_validator("currency")(_check_currency)
    _timezone = field_validator("timezone")(_check_timezone)

    @property
    def credit_prefix(self) -> str:
        if self.credit_note_prefix:
            return self.credit_note_prefix
        if "INV" in self.invoice_prefix:
            return self.invoice_prefix.replace("INV", "CN")
        return f"CN-{self.invoice_prefix}"


class Customer(_Model):
    customer_ref: Ref
    name: Name
    entity_ref: Ref
    email: Name | None = None
    contacts: list[BillingContact] | None = Field(
        default=None,
        description="Billing contacts; unset: the customer's email (if any) receives everything in English",
    )
    channel: Channel | None = Field(default=None, description="Overrides the legal entity's message channel")

    def billing_contacts(self) -> list[BillingContact]:
        """The contacts messages go to: the listed ones, else the customer's own address when it is one."""
        if self.contacts is not None:
            return list(self.contacts)
        if self.email and EMAIL_PATTERN.match(self.email.strip()):
            return [BillingContact(email=self.email.strip())]
        return []


class Ssp(_Model):
    """A standalone selling price (ASC 606-10-32-31, IFRS 15.76): what the product sells for on its own,
    per unit and per full billing period (per unit for one-time and installment charges).

    ``list`` (the default): the line's own list price, before discounts. ``fixed``: ``amount``.
    ``range``: ``low`` to ``high``; a line sold inside the range keeps its own (discounted) price as
    its SSP, one sold outside it takes the nearest bound (as Stripe Revenue Recognition and the Big
    Four guides describe SSP ranges)."""

    kind: Literal["list", "fixed", "range"] = "list"
    amount: Money | None = None
    low: Money | None = None
    high: Money | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Ssp:
        wanted = {"list": set(), "fixed": {"amount"}, "range": {"low", "high"}}[self.kind]
        given = {name for name in ("amount", "low", "high") if getattr(self, name) is not None}
        if given != wanted:
            need = " and ".join(sorted(wanted)) or "no amount"
            raise ValueError(f"an SSP of kind {self.kind} takes {need}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError("low is above high")
        return self


class ProductPrice(_Model):
    """One price of the price book: a product's pricing in one currency, and its SSP (default: the list price)."""

    price_ref: Ref
    currency: str
    pricing: Pricing
    ssp: Ssp | None = Field(default=None, description="Standalone selling price; none = the list price")

    _currency = field_validator("currency")(_check_currency)


class Product(_Model):
    """A product. Usage events name usage products by ``product_ref`` (their usage_product_ref)."""

    product_ref: Ref
    name: Name
    description: str | None = None
    prices: list[ProductPrice] = Field(default_factory=list)
    recognition: Recognition | None = Field(
        default=None, description="How its revenue is recognised; none = the default of each line's charge"
    )


class Discount(_Model):
    """A discount: either a percent or an amount (per full billing period), never both."""

    percent: Percent | None = Field(default=None, description="0-100")
    amount: Money | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Discount:
        if (self.percent is None) == (self.amount is None):
            raise ValueError("give exactly one of percent or amount")
        if self.percent is not None and not Decimal(0) <= self.percent <= Decimal(100):
            raise ValueError("percent must be between 0 and 100")
        return self


class RampStep(_Model):
    """From ``start_date`` on, the line is billed with this pricing and/or quantity (a price ramp)."""

    start_date: date
    pricing: Pricing | None = None
    quantity: Quantity | None = None

    @model_validator(mode="after")
    def _something(self) -> RampStep:
        if self.pricing is None and self.quantity is None:
            raise ValueError("a ramp step needs pricing, quantity or both")
        return self


class ContractLine(_Model):
    """One billable line of a contract.

    ``charge`` says how it is billed: ``recurring`` every cycle (flat fee or pricing applied to
    ``quantity``, prorated by day), ``usage`` every cycle in arrears on the usage aggregate of
    ``product_ref``, ``one_time`` once on ``billing_date``, ``installments`` as the line's amount
    split over ``installments`` consecutive billing dates. Pricing comes from the price book
    (``price_ref``, or the product's price in the contract currency) unless ``pricing`` overrides it.
    """

    line_ref: Ref
    product_ref: Ref
    charge: ChargeKind = "recurring"
    description: str | None = None
    quantity: Quantity = Decimal(1)
    price_ref: Ref | None = None
    pricing: Pricing | None = None
    billing_timing: Timing | None = Field(default=None, description="Defaults to the contract's")
    start_date: date | None = None
    end_date: date | None = None
    ramps: list[RampStep] = Field(default_factory=list)
    discount: Discount | None = None
    usage_aggregation: Aggregation = Field(
        default="sum",
        description="usage: sum of quantities, max (peak) quantity, count of events, distinct values of "
        "usage_property, or the last quantity reported in the period",
    )
    usage_property: Ref | None = Field(
        default=None, description="usage with distinct: the additional_report_data key whose distinct values are billed"
    )
    prepaid_amount: Money | None = Field(
        default=None, description="usage: amount per period paid in advance; only the rated amount beyond it is billed"
    )
    billing_date: date | None = Field(default=None, description="one_time: the day it is billed")
    installments: int | None = Field(default=None, ge=1, le=1200)
    # Last, so that a line without them dumps as before plus a fixed tail (see store.contracts.content_hash).
    recognition: Recognition | None = Field(
        default=None,
        description="How the line's revenue is recognised: ratable, point_in_time, usage or none; defaults to the "
        "product's, then to ratable for recurring, point_in_time for one_time and installments, usage for usage",
    )
    ssp: Ssp | None = Field(default=None, description="Standalone selling price; defaults to the price book's")

    @property
    def recognition_method(self) -> Recognition:
        """The recognition in force: the line's (or its product's, filled in by the price book), else the charge's default."""
        if self.recognition is not None:
            return self.recognition
        if self.charge == "recurring":
            return "ratable"
        if self.charge == "usage":
            return "usage"
        return "point_in_time"

    @model_validator(mode="after")
    def _consistent(self) -> ContractLine:
        if self.quantity < 0:
            raise ValueError("quantity must not be negative")
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        if self.charge == "installments" and self.installments is None:
            raise ValueError("an installments line needs installments (the number of payments)")
        if self.charge != "installments" and self.installments is not None:
            raise ValueError("installments is only for charge: installments")
        if self.charge != "usage" and (self.usage_property is not None or self.prepaid_amount is not None):
            raise ValueError("usage_property and prepaid_amount are only for charge: usage")
        if (self.usage_aggregation == "distinct") != (self.usage_property is not None):
            raise ValueError("usage_property is needed with usage_aggregation distinct, and only there")
        if self.ramps:  # most lines have none (checked on every stored version a billing run reads)
            starts = [step.start_date for step in self.ramps]
            if starts != sorted(set(starts)):
                raise ValueError("ramp steps must have distinct start dates in ascending order")
        if (self.recognition == "usage") != (self.charge == "usage") and self.recognition not in (None, "none"):
            raise ValueError("recognition usage is for charge usage, whose revenue is usage or none")
        return self


class Contract(_Model):
    """A customer contract. Importing a changed contract adds a version effective from ``effective_date``."""

    contract_ref: Ref
    customer_ref: Ref
    entity_ref: Ref
    currency: str
    contract_start_date: date
    contract_end_date: date | None = Field(default=None, description="Last day of service; none = evergreen")
    cycle_length: int = Field(default=1, ge=1, le=1000)
    cycle_unit: CycleUnit = "month"
    cycle_start_date: date | None = Field(
        default=None, description="Anchor of the billing cycles; defaults to contract_start_date"
    )
    billing_timing: Timing = "in_advance"
    payment_terms_days: int = Field(default=30, ge=0, le=3650, description="Net N: due date = invoice date + N days")
    auto_charge: bool = False
    discount: Discount | None = None
    minimum_commitment: Money | None = Field(default=None, description="Minimum billed per full period (true-up)")
    effective_date: date | None = Field(default=None, description="For an amendment: the day the new terms apply from")
    billed_by: BilledBy = Field(
        default="billbridge",
        description="Who invoices the contract: billbridge, or stripe (a Stripe subscription: Stripe invoices and "
        "collects it; billbridge keeps it for reporting and matches Stripe's payments, but never bills it)",
    )
    lines: list[ContractLine] = Field(min_length=1)
    # Last, so that a contract without it dumps as before plus a fixed tail (see store.contracts.content_hash).
    reseller_ref: Ref | None = Field(
        default=None,
        description="Sold through this reseller (a partner of kind reseller or both): the reseller is invoiced, at "
        "its discount and on its payment terms; the customer stays the end customer",
    )
    distributor_ref: Ref | None = Field(
        default=None,
        description="Set on import from the reseller's distributor_ref (not written in files): the distributor is "
        "invoiced for the contract, at its own price, and the reseller stays on the lines for reporting",
    )

    _currency = field_validator("currency")(_check_currency)

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        if self.contract_end_date and self.contract_end_date < self.contract_start_date:
            raise ValueError("contract_end_date is before contract_start_date")
        refs = [line.line_ref for line in self.lines]
        if len(refs) != len(set(refs)):
            dupes = sorted({r for r in refs if refs.count(r) > 1})
            raise ValueError(f"duplicate line_ref {', '.join(dupes)}")
        if self.minimum_commitment is not None and self.minimum_commitment < 0:
            raise ValueError("minimum_commitment must not be negative")
        return self

    @property
    def anchor(self) -> date:
        return self.cycle_start_date or self.contract_start_date


PartnerKind = Literal["referral", "reseller", "both"]
FeeBasis = Literal["collected", "billed"]


class ProductDiscount(_Model):
    """A reseller's discount on one product, instead of its general one."""

    product_ref: Ref
    percent: Percent = Field(description="0-100")

    @field_validator("percent")
    @classmethod
    def _at_most_100(cls, value: Decimal) -> Decimal:
        if value > 100:
            raise ValueError("percent must be between 0 and 100")
        return value


class ResellerPrice(_Model):
    """A reseller's own price of one product: replaces the list price (no discount on top)."""

    product_ref: Ref
    pricing: Pricing


InvoicePer = Literal["reseller", "end_customer"]


def field_error(model: str, field: str, message: str) -> ValidationError:
    """A record-level check's error located at the field it is about (a plain ValueError from a model
    validator has no location, so an import would name ``(record)``): raise it from the validator."""
    details = InitErrorDetails(type=PydanticCustomError("record_check", message), loc=(field,), input=None)
    return ValidationError.from_exception_data(model, [details])


class Partner(_Model):
    """A partner: a referral partner earns fees on the customers it brings, a reseller buys on behalf of
    its end customers and is invoiced instead of them (``both`` does both). Fees are paid out to it as
    a vendor of ``entity_ref``'s books, in ``currency``, on ``payment_terms_days``."""

    partner_ref: Ref
    name: Name
    kind: PartnerKind
    entity_ref: Ref
    currency: str
    email: Name | None = None
    payment_terms_days: int = Field(default=30, ge=0, le=3650, description="Net N of the partner's bills")
    discount_percent: Percent | None = Field(
        default=None, description="Reseller: its discount off the list price, 0-100"
    )
    product_discounts: list[ProductDiscount] = Field(
        default_factory=list, description="Reseller: a discount per product, instead of discount_percent"
    )
    price_book: list[ResellerPrice] = Field(
        default_factory=list,
        description="Reseller: its own price per product, before product_discounts and discount_percent",
    )
    invoice_per: InvoicePer = Field(
        default="reseller",
        description="Reseller: one invoice per cycle with a section per end customer (reseller), or one per end "
        "customer (end_customer)",
    )
    distributor_ref: Ref | None = Field(
        default=None,
        description="Reseller: sells through this distributor (a partner of kind reseller or both), which is "
        "invoiced for the reseller's contracts at its own price",
    )

    _currency = field_validator("currency")(_check_currency)

    @model_validator(mode="after")
    def _consistent(self) -> Partner:
        if self.discount_percent is not None and self.discount_percent > 100:
            raise field_error("Partner", "discount_percent", "discount_percent must be between 0 and 100")
        if self.kind == "referral":
            given = {
                "discount_percent": self.discount_percent is not None,
                "product_discounts": bool(self.product_discounts),
                "price_book": bool(self.price_book),
                "distributor_ref": self.distributor_ref is not None,
            }
            for name in (name for name, present in given.items() if present):
                raise field_error(
                    "Partner", name, f"a referral partner has no reseller discount, price book or distributor ({name})"
                )
        refs = [d.product_ref for d in self.product_discounts]
        if len(refs) != len(set(refs)):
            raise field_error("Partner", "product_discounts", "product_discounts names a product twice")
        priced = [p.product_ref for p in self.price_book]
        if len(priced) != len(set(priced)):
            raise field_error("Partner", "price_book", "price_book names a product twice")
        if self.distributor_ref == self.partner_ref:
            raise field_error("Partner", "distributor_ref", "distributor_ref names the partner itself")
        return self

    def book_price(self, product_ref: str) -> Pricing | None:
        """The reseller's own price of a product, if its price book has one."""
        for item in self.price_book:
            if item.product_ref == product_ref:
                return item.pricing
        return None

    def discount_for(self, product_ref: str) -> Decimal:
        """The reseller's discount percent on a product: its product discount, else its general one, else 0."""
        for item in self.product_discounts:
            if item.product_ref == product_ref:
                return item.percent
        return self.discount_percent or Decimal(0)


class Referral(_Model):
    """A customer (or one of its contracts) the partner referred, and when."""

    customer_ref: Ref
    referred_on: date
    contract_ref: Ref | None = Field(default=None, description="Only this contract earns fees; none = all of them")


TierPricing = Annotated[GraduatedPrice | VolumePrice, Field(discriminator="model")]


class ReferralAgreement(_Model):
    """What a referral partner earns on the customers it referred, in ``currency``.

    ``percent`` of what a referred customer pays (``basis`` collected, the default) or is invoiced
    (billed), for ``months`` from the referral (none: the life of the contract), on every product or only
    on ``products``; ``flat_fee`` once per new customer on its first payment (basis ``billed``: its first
    invoice issued); ``tiers`` instead of
    ``percent``: the fee of a period is the pricing model applied to the partner's referred revenue in
    it (graduated or volume, amounts are the fee per unit of revenue and flat fees)."""

    agreement_ref: Ref
    partner_ref: Ref
    currency: str
    basis: FeeBasis = "collected"
    percent: Percent | None = Field(default=None, description="0-100, of the basis")
    tiers: TierPricing | None = Field(default=None, description="Fee by the period's referred revenue")
    flat_fee: Money | None = Field(
        default=None,
        description="Once per referred customer, on its first payment (basis billed: its first invoice issued)",
    )
    months: int | None = Field(default=None, ge=1, le=1200, description="Fees for N months from the referral")
    products: list[Ref] | None = Field(default=None, description="Only these products earn the percentage")
    referrals: list[Referral] = Field(default_factory=list)

    _currency = field_validator("currency")(_check_currency)

    @model_validator(mode="after")
    def _consistent(self) -> ReferralAgreement:
        name = "ReferralAgreement"
        if self.percent is not None and self.percent > 100:
            raise field_error(name, "percent", "percent must be between 0 and 100")
        if self.percent is not None and self.tiers is not None:
            raise field_error(name, "tiers", "give percent or tiers, not both")
        if self.percent is None and self.tiers is None and self.flat_fee is None:
            raise field_error(name, "percent", "an agreement needs percent, tiers or flat_fee")
        seen = [(r.customer_ref, r.contract_ref) for r in self.referrals]
        if len(seen) != len(set(seen)):
            raise field_error(name, "referrals", "referrals names a customer (and contract) twice")
        return self


class ContractFile(BaseModel):
    """A contract file: any of the record lists, each record imported on its own."""

    model_config = ConfigDict(extra="forbid", title="billbridge contract file")

    entities: list[LegalEntity] = Field(default_factory=list)
    customers: list[Customer] = Field(default_factory=list)
    products: list[Product] = Field(default_factory=list)
    contracts: list[Contract] = Field(default_factory=list)
    partners: list[Partner] = Field(default_factory=list)
    referral_agreements: list[ReferralAgreement] = Field(default_factory=list)


RECORD_KINDS: dict[str, tuple[type[_Model], str]] = {
    "entities": (LegalEntity, "entity_ref"),
    "customers": (Customer, "customer_ref"),
    "products": (Product, "product_ref"),
    "contracts": (Contract, "contract_ref"),
    "partners": (Partner, "partner_ref"),
    "referral_agreements": (ReferralAgreement, "agreement_ref"),
}
"""File section -> (model, the field naming a record in errors)."""
