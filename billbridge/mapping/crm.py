"""CRM deals -> canonical customers, products and contracts: the rules every CRM shares.

A vendor mapping (``mapping/salesforce.py``, ``mapping/hubspot.py``) only reads its records' fields
into the neutral ``CrmDeal`` / ``CrmLine`` / ``CrmCompany`` / ``CrmProduct`` below, remembering which
vendor field each value came from; everything else is decided here, once:

- only deals in a won stage become contracts (others are skipped, not errors);
- the billing terms (dates, cycle, payment terms, timing, auto-charge, currency, legal entity) are
  parsed and checked, with errors naming the deal and the vendor field; every value is read
  through ``mapping/fields.py``, so a malformed one quarantines its deal and never stops a sync;
- dates are calendar days (epoch milliseconds are read in UTC) within a plausible window
  (``earliest_date`` / ``latest_date``: an epoch of 0 is not a billing start);
- line items must add up to the deal amount (to the currency's minor unit);
- pricing comes from the price book (the product's pricing in the deal currency); a deal line may
  override the unit price (flat and per-unit products only), the quantity and the discount;
- a deal changed after import becomes a new contract version from its change date;
- a partner the deal names (``CrmPartner``: a reseller or a referral partner) must be a known partner
  of that kind: a reseller becomes the contract's ``reseller_ref``, a referral partner a referral of
  the deal's customer and contract (``PartnerReferral``).

Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from billbridge.billing.currency import MINOR_UNITS
from billbridge.billing.messaging import DEFAULT_LANGUAGE, known_language
from billbridge.billing.model import (
    BillingContact,
    Contract,
    ContractLine,
    Customer,
    Discount,
    Partner,
    Product,
    ProductPrice,
    Recognition,
    Referral,
    check_email,
)
from billbridge.billing.pricing import FlatPrice, PerUnitPrice, Pricing
from billbridge.mapping import fields
from billbridge.mapping.fields import EPOCH, MappingError, build, field_parser

__all__ = ["MappingError"]  # where the CRM mappings have always found it

Charge = Literal["recurring", "usage", "one_time"]
_PRICING: TypeAdapter[Pricing] = TypeAdapter(Pricing)
_EPOCH_MS = re.compile(r"[0-9]+")  # HubSpot date properties may come as epoch milliseconds
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2099, 12, 31)


class CrmMapping(BaseModel):
    """Per-installation mapping of a CRM's deals (documented defaults; override in billbridge.toml)."""

    model_config = ConfigDict(extra="forbid")

    won_stages: list[str] = Field(description="Deal stages that make a deal a contract")
    entity_by_currency: dict[str, str] = Field(
        default_factory=lambda: {"USD": "us-inc", "EUR": "eu-bv", "GBP": "uk-ltd", "JPY": "jp-kk"},
        description="Legal entity of a deal that names none, by deal currency",
    )
    default_billing_cycle: str = "monthly"
    default_payment_terms_days: int = Field(default=30, ge=0)
    ref_prefix: str = Field(description="Prefix of contract and customer refs, e.g. sf- or hs-")
    earliest_date: date = Field(
        default=EARLIEST_DATE, description="Deal and line dates before this are refused as implausible"
    )
    latest_date: date = Field(default=LATEST_DATE, description="Deal and line dates after this are refused")

    @model_validator(mode="after")
    def _window(self) -> CrmMapping:
        if self.latest_date < self.earliest_date:
            raise ValueError(f"latest_date {self.latest_date} is before earliest_date {self.earliest_date}")
        return self

    @property
    def window(self) -> tuple[date, date]:
        return self.earliest_date, self.latest_date


@dataclass(frozen=True)
class CrmProduct:
    """A price-book product as the CRM holds it."""

    product_id: str
    sku: str | None
    name: str
    charge: str | None  # recurring | usage | one_time (a custom field; None: recurring)
    pricing: Mapping[str, Any]  # currency -> canonical pricing (JSON text or dict) from a custom field
    list_prices: Mapping[str, Any]  # currency -> the CRM's standard unit price
    usage_aggregation: str | None = None
    names: Mapping[str, str] = field(default_factory=dict)  # our attribute -> the vendor's field name
    recognition: str | None = (
        None  # ratable | point_in_time | usage | none (a custom field; None: the charge's default)
    )


@dataclass(frozen=True)
class CrmCompany:
    company_id: str
    name: str | None
    email: str | None = None
    entity_ref: str | None = None
    names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CrmContact:
    """A contact the CRM names as a deal's billing contact (Salesforce: an OpportunityContactRole;
    HubSpot: a contact associated under the billing label, or the company's billing email)."""

    email: Any
    name: str | None = None
    field: str = "contacts"  # the vendor field the address came from, for errors
    language: Any = None  # the contact's language, where the CRM has one (None: English)
    language_field: str = "language"


PartnerRole = Literal["referral", "reseller"]


@dataclass(frozen=True)
class CrmPartner:
    """A partner account the CRM names on a deal (Salesforce ``PartnerAccountId`` or a lookup field;
    HubSpot a labelled deal-to-company association), in the role the configuration gives that field."""

    company_id: Any
    role: PartnerRole
    field: str  # the vendor field (or association label) it came from, for errors


@dataclass(frozen=True)
class CrmLine:
    line_id: str
    product_id: str | None
    quantity: Any
    unit_price: Any
    discount_percent: Any
    total: Any  # the line amount the CRM shows (after discount)
    start_date: Any = None
    end_date: Any = None
    names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CrmDeal:
    deal_id: str
    name: str | None
    stage: str | None
    amount: Any
    currency: Any
    company_id: str | None
    start_date: Any
    end_date: Any
    billing_cycle: Any
    payment_terms_days: Any
    auto_charge: Any
    billing_timing: Any
    entity_ref: Any
    modified_at: datetime | None
    lines: tuple[CrmLine, ...]
    names: Mapping[str, str] = field(default_factory=dict)
    contacts: tuple[CrmContact, ...] | None = None  # None: this CRM does not say (the stored contacts stay)
    partners: tuple[CrmPartner, ...] = ()


@dataclass(frozen=True)
class PartnerReferral:
    """A deal's referral partner: the referral to add to that partner's referral agreements."""

    partner_ref: str
    referral: Referral
    field: str  # the vendor field that named the partner


@dataclass(frozen=True)
class MappedDeal:
    customer: Customer
    products: list[Product]
    contract: Contract
    referral: PartnerReferral | None = None
    # contacts left out for a malformed address, or kept in the default language for an unknown one (the
    # deal is kept: billing does not stop for either); each names its vendor field, for a quarantine
    # entry of the customer until it is corrected
    dropped_contacts: tuple[MappingError, ...] = ()


CYCLES: dict[str, tuple[int, str]] = {
    "monthly": (1, "month"),
    "quarterly": (3, "month"),
    "per_six_months": (6, "month"),
    "semiannually": (6, "month"),
    "annually": (1, "year"),
    "yearly": (1, "year"),
    "per_two_years": (2, "year"),
    "weekly": (1, "week"),
}
"""Billing cycle words both CRMs use (HubSpot's recurringbillingfrequency values) -> (length, unit)."""


def contract_ref(config: CrmMapping, deal_id: str) -> str:
    return f"{config.ref_prefix}{deal_id}"


def customer_ref(config: CrmMapping, company_id: str) -> str:
    return f"{config.ref_prefix}{company_id}"


def partner_ref(config: CrmMapping, company_id: str) -> str:
    """The partner_ref of a CRM partner account: like a customer's, the prefix and its id."""
    return f"{config.ref_prefix}{company_id}"


def is_won(deal: CrmDeal, config: CrmMapping) -> bool:
    return deal.stage in config.won_stages


def map_deal(
    deal: CrmDeal,
    company: CrmCompany | None,
    products: Mapping[str, CrmProduct],
    config: CrmMapping,
    mapped_products: dict[str, Product] | None = None,
    partners: Mapping[str, Partner] | None = None,
) -> MappedDeal:
    """Map one won deal; raises MappingError naming the vendor field of the first problem.

    ``mapped_products`` (vendor product id -> canonical product) lets a caller mapping many deals
    over the same price book map each product once. ``partners`` (the known partners by ref) checks
    the partners the deal names; None: a deal naming a partner is refused (nothing to check it against).
    """
    cache = {} if mapped_products is None else mapped_products
    name = _namer(deal.names)
    currency = _currency(deal.currency, name("currency"))
    entity_ref = _text(deal.entity_ref, name("entity_ref"))
    if entity_ref is None and company is not None:
        entity_ref = _text(company.entity_ref, _namer(company.names)("entity_ref"))
    entity_ref = entity_ref or config.entity_by_currency.get(currency)
    if entity_ref is None:
        raise MappingError(name("entity_ref"), f"no legal entity given and none configured for {currency}")
    if company is None or not deal.company_id:
        raise MappingError(name("company_id"), "the deal has no company (account) to bill")
    start = _date(deal.start_date, name("start_date"), config.window, required=True)
    assert start is not None
    end = _date(deal.end_date, name("end_date"), config.window)
    if end is not None and end < start:
        raise MappingError(name("end_date"), f"{end} is before the start date {start}")
    cycle_word = (_text(deal.billing_cycle, name("billing_cycle")) or config.default_billing_cycle).lower()
    if cycle_word not in CYCLES:
        raise MappingError(
            name("billing_cycle"), f"unknown billing cycle {cycle_word!r} (expected {', '.join(CYCLES)})"
        )
    cycle_length, cycle_unit = CYCLES[cycle_word]
    terms = _int(deal.payment_terms_days, name("payment_terms_days"), config.default_payment_terms_days)
    timing = (_text(deal.billing_timing, name("billing_timing")) or "in_advance").lower().replace(" ", "_")
    if timing not in ("in_advance", "in_arrears"):
        raise MappingError(name("billing_timing"), f"unknown billing timing {timing!r} (in_advance or in_arrears)")
    if not deal.lines:
        raise MappingError(name("lines"), "the deal has no line items")
    used: dict[str, Product] = {}
    lines = [_line(line, products, currency, (start, end), config.window, used, cache) for line in deal.lines]
    _check_total(deal, currency, name("amount"))
    company_name = _namer(company.names)
    dropped: list[MappingError] = []
    customer = build(
        Customer,
        names={"name": company_name("name"), "email": company_name("email"), "customer_ref": name("company_id")},
        customer_ref=customer_ref(config, deal.company_id),
        name=_text(company.name, company_name("name")) or deal.company_id,
        entity_ref=entity_ref,
        email=_text(company.email, company_name("email")),
        contacts=_contacts(deal.contacts, dropped),
    )
    changed = deal.modified_at.date() if deal.modified_at else None
    contract = build(
        Contract,
        contract_ref=contract_ref(config, deal.deal_id),
        customer_ref=customer.customer_ref,
        entity_ref=entity_ref,
        currency=currency,
        contract_start_date=start,
        contract_end_date=end,
        cycle_length=cycle_length,
        cycle_unit=cycle_unit,
        billing_timing=timing,
        payment_terms_days=terms,
        auto_charge=_bool(deal.auto_charge, name("auto_charge")),
        effective_date=max(start, changed) if changed else None,
        lines=lines,
    )
    reseller, referral = _partners(deal, config, partners, customer.customer_ref, start)
    if reseller is not None:
        contract = contract.model_copy(update={"reseller_ref": reseller})
    if referral is not None:
        referral = PartnerReferral(
            referral.partner_ref,
            referral.referral.model_copy(update={"contract_ref": contract.contract_ref}),
            referral.field,
        )
    return MappedDeal(customer, list(used.values()), contract, referral, tuple(dropped))


_ROLE_KINDS: dict[str, tuple[str, ...]] = {"referral": ("referral", "both"), "reseller": ("reseller", "both")}


def _partners(
    deal: CrmDeal, config: CrmMapping, known: Mapping[str, Partner] | None, customer: str, start: date
) -> tuple[str | None, PartnerReferral | None]:
    """The deal's reseller ref and referral: each named partner must be a known partner of the role's
    kind, and a deal has at most one partner per role (errors name the vendor field)."""
    found: dict[str, tuple[str, str]] = {}
    for link in deal.partners:
        company_id = _text(link.company_id, link.field)
        if not company_id:
            continue
        ref = partner_ref(config, company_id)
        partner = (known or {}).get(ref)
        if partner is None:
            message = f"unknown partner {ref!r} (no partner with that partner_ref)"
            raise MappingError(link.field, message, missing=("partners", ref))
        if partner.kind not in _ROLE_KINDS[link.role]:
            raise MappingError(link.field, f"partner {ref} is a {partner.kind} partner, not a {link.role} one")
        if link.role in found and found[link.role][0] != ref:
            raise MappingError(link.field, f"the deal names two {link.role} partners: {found[link.role][0]} and {ref}")
        found[link.role] = (ref, link.field)
    reseller = found["reseller"][0] if "reseller" in found else None
    referral = None
    if "referral" in found:
        ref, field_name = found["referral"]
        referral = PartnerReferral(ref, Referral(customer_ref=customer, referred_on=start), field_name)
    return reseller, referral


def _contacts(contacts: tuple[CrmContact, ...] | None, dropped: list[MappingError]) -> list[BillingContact] | None:
    """The deal's billing contacts. A malformed address leaves its contact out (nothing is sent to a
    guessed address) with an error naming its vendor field in ``dropped``; the deal is kept, and a
    customer left without a contact waits visibly (``waiting_contact``). None when the CRM names
    none: contacts given otherwise (a contract file) stay, and without any the company's email
    stands in."""
    if not contacts:
        return None
    out = []
    for contact in contacts:
        address = _text(contact.email, contact.field)
        if address is None:
            continue
        try:
            email = check_email(address)
        except ValueError as exc:
            dropped.append(MappingError(contact.field, f"{exc} (the contact is left out; the deal is imported)"))
            continue
        extra = {}
        language = _language(contact, email, dropped)
        if language:
            extra = {"language": language}
        out.append(
            build(BillingContact, names={"language": contact.language_field}, email=email, name=contact.name, **extra)
        )
    return out


def _language(contact: CrmContact, email: str, problems: list[MappingError]) -> str | None:
    """The contact's language tag, or None (the default language) when the CRM gives none or one we
    do not know: a language preference is not worth losing the deal over, so an unknown one is kept
    in ``problems`` naming its field (shown as a quarantine entry) and the contact is written to in
    the default language until it is corrected."""
    try:
        language = _text(contact.language, contact.language_field)
    except MappingError:  # not text at all: as unknown as a word that is no language
        language = None
    else:
        if language is None:
            return None
        if known_language(language.replace("_", "-")):
            return language.replace("_", "-")
    message = (
        f"unknown language {fields.shown(language or contact.language)} (messages to {email} are written in "
        f"{DEFAULT_LANGUAGE} until it is corrected; the deal is imported)"
    )
    problems.append(MappingError(contact.language_field, message))
    return None


def map_product(product: CrmProduct) -> Product:
    """A CRM product as a canonical price-book product (its SKU is the product_ref)."""
    name = _namer(product.names)
    sku = _text(product.sku, name("sku"))
    if not sku:
        raise MappingError(name("sku"), f"product {product.product_id} has no SKU (product code)")
    charge = _charge(product, name)
    prices = []
    for currency, raw in sorted(product.pricing.items()):
        if raw in (None, ""):
            continue
        pricing = _pricing(raw, name("pricing"), currency)
        prices.append(
            build(ProductPrice, name("pricing"), price_ref=f"{sku}-{currency}", currency=currency, pricing=pricing)
        )
    known = {p.currency for p in prices}
    for currency, raw in sorted(product.list_prices.items()):
        if currency in known or raw in (None, "") or charge == "usage":
            continue
        unit = _decimal(raw, name("list_prices"))
        model: dict[str, Any] = {"model": "per_unit", "unit_price": str(unit)}
        prices.append(
            build(
                ProductPrice,
                name("list_prices"),
                price_ref=f"{sku}-{currency}",
                currency=currency,
                pricing=_pricing(model, name("list_prices"), currency),
            )
        )
    recognition = _recognition(product, charge, name)
    return build(
        Product, name("name"), product_ref=sku, name=product.name or sku, prices=prices, recognition=recognition
    )


def _line(
    line: CrmLine,
    products: Mapping[str, CrmProduct],
    currency: str,
    span: tuple[date, date | None],
    window: tuple[date, date],
    used: dict[str, Product],
    cache: dict[str, Product],
) -> ContractLine:
    name = _namer(line.names)
    start, end = span
    if not line.product_id:  # a line item made without a product: "unknown product None" read as a bug
        raise MappingError(name("product_id"), f"line {line.line_id}: names no product")
    crm_product = products.get(line.product_id)
    if crm_product is None:
        raise MappingError(name("product_id"), f"line {line.line_id}: unknown product {fields.shown(line.product_id)}")
    product = cache.get(crm_product.product_id)
    if product is None:
        product = cache[crm_product.product_id] = map_product(crm_product)
    used[product.product_ref] = product
    charge = _charge(crm_product, _namer(crm_product.names))
    price = next((p for p in product.prices if p.currency == currency), None)
    if price is None:
        raise MappingError(
            name("product_id"), f"line {line.line_id}: product {product.product_ref} has no {currency} price"
        )
    quantity = _decimal(line.quantity, name("quantity"), default=Decimal(1))
    if quantity < 0:
        raise MappingError(name("quantity"), f"line {line.line_id}: quantity {quantity} is negative")
    discount_percent = _decimal(line.discount_percent, name("discount_percent"), default=Decimal(0))
    if not Decimal(0) <= discount_percent <= Decimal(100):
        raise MappingError(name("discount_percent"), f"line {line.line_id}: discount {discount_percent}% is not 0-100")
    pricing = None
    unit_price = _decimal(line.unit_price, name("unit_price"), default=None)
    listed = _list_price(price.pricing)
    if unit_price is not None and listed is not None and charge != "usage" and unit_price != listed:
        # the deal overrides the list price
        if price.pricing.model == "flat":
            pricing = _pricing({"model": "flat", "amount": str(unit_price * quantity)}, name("unit_price"), currency)
        else:
            pricing = _pricing({"model": "per_unit", "unit_price": str(unit_price)}, name("unit_price"), currency)
    line_start = _date(line.start_date, name("start_date"), window) or start
    line_end = _date(line.end_date, name("end_date"), window) or end
    kind = {"recurring": "recurring", "usage": "usage", "one_time": "one_time"}[charge]
    aggregation = (
        _text(crm_product.usage_aggregation, _namer(crm_product.names)("usage_aggregation"))
        if kind == "usage"
        else None
    )
    return build(
        ContractLine,
        f"line {line.line_id}",
        line_ref=line.line_id,
        product_ref=product.product_ref,
        charge=kind,
        description=crm_product.name,
        quantity=quantity if kind != "usage" else Decimal(1),
        price_ref=price.price_ref,
        pricing=pricing,
        start_date=line_start if line_start != start else None,
        end_date=line_end if line_end != end else None,
        discount=Discount(percent=discount_percent) if discount_percent else None,
        usage_aggregation=(aggregation or "sum") if kind == "usage" else "sum",
        billing_date=line_start if kind == "one_time" else None,
    )


def _list_price(pricing: Pricing) -> Decimal | None:
    """The price of one unit where the pricing has one (flat and per-unit prices); None otherwise."""
    if isinstance(pricing, PerUnitPrice):
        return pricing.unit_price
    if isinstance(pricing, FlatPrice):
        return pricing.amount
    return None


def _check_total(deal: CrmDeal, currency: str, field_name: str) -> None:
    """Line items must add up to the deal amount, to the currency's minor unit."""
    if deal.amount in (None, ""):
        return
    amount = _decimal(deal.amount, field_name)
    total = sum(
        (_decimal(line.total, _namer(line.names)("total"), default=Decimal(0)) for line in deal.lines), Decimal(0)
    )
    unit = Decimal(1).scaleb(-MINOR_UNITS[currency])
    if amount.quantize(unit, rounding=ROUND_HALF_UP) != total.quantize(unit, rounding=ROUND_HALF_UP):
        raise MappingError(field_name, f"line items add up to {total} {currency}, the deal says {amount}")


def _namer(names: Mapping[str, str]) -> Any:
    return lambda attr: names.get(attr, attr)


# Parsers of the CRMs' values: each takes (value, the vendor's field name, ...) and raises only
# MappingError naming that field, whatever the value (``fields.field_parser``).


def _text(value: Any, field_name: str) -> str | None:
    if value is None:
        return None
    return fields.plain_text(value) or fields.parse(field_name, fields.text, value)


@field_parser
def _currency(value: Any, field_name: str) -> str:
    code = (_text(value, field_name) or "").upper()
    if not code:
        raise MappingError(field_name, "no currency")
    if code not in MINOR_UNITS:
        raise MappingError(field_name, f"unknown currency {fields.shown(code)}")
    return code


@field_parser
def _date(value: Any, field_name: str, window: tuple[date, date], *, required: bool = False) -> date | None:
    """A calendar day: a date, ``YYYY-MM-DD`` (a time after it is ignored) or epoch milliseconds
    (HubSpot; read in UTC, whatever the machine's time zone), within ``window``."""
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        text = None if value is None else fields.text(value)
        if text is None:
            if required:
                raise MappingError(field_name, "missing (the billing start date is required)")
            return None
        if _DAY.match(text):  # YYYY-MM-DD, perhaps with a time after it
            day = date.fromisoformat(text[:10])
        elif _EPOCH_MS.fullmatch(text):
            day = (EPOCH + timedelta(milliseconds=int(text))).date()
        else:
            raise MappingError(field_name, f"not a date: {fields.shown(text)}")
    earliest, latest = window
    if not earliest <= day <= latest:
        raise MappingError(
            field_name,
            f"{day} is not a plausible date (outside {earliest} to {latest}; see earliest_date, latest_date)",
        )
    return day


def _decimal(value: Any, field_name: str, default: Any = ...) -> Any:
    if type(value) is str and fields.plain_number(value):  # the usual case, read at once
        return Decimal(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is ...:
            raise MappingError(field_name, "missing")
        return default
    return fields.parse(field_name, fields.number, value)


@field_parser
def _int(value: Any, field_name: str, default: int) -> int:
    number = _decimal(value, field_name, default=None)
    if number is None:
        return default
    if number != number.to_integral_value() or number < 0:
        raise MappingError(field_name, f"expected a whole number of days, got {fields.shown(value)}")
    return int(number)


@field_parser
def _bool(value: Any, field_name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = (_text(value, field_name) or "false").lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise MappingError(field_name, f"expected true or false, got {fields.shown(value)}")


def _charge(product: CrmProduct, name: Any) -> Charge:
    charge = (_text(product.charge, name("charge")) or "recurring").lower().replace("-", "_")
    if charge not in ("recurring", "usage", "one_time"):
        raise MappingError(name("charge"), f"product {product.product_id}: unknown charge {fields.shown(charge)}")
    return charge  # type: ignore[return-value]


def _recognition(product: CrmProduct, charge: Charge, name: Any) -> Recognition | None:
    """The product's revenue recognition, if the CRM sets one (usage only, or none, for a usage product)."""
    found = _text(product.recognition, name("recognition"))
    if not found:
        return None
    method = found.lower().replace("-", "_").replace(" ", "_")
    if method not in ("ratable", "point_in_time", "usage", "none"):
        raise MappingError(
            name("recognition"), f"product {product.product_id}: unknown recognition {fields.shown(found)}"
        )
    if method != "none" and (method == "usage") != (charge == "usage"):
        raise MappingError(
            name("recognition"), f"product {product.product_id}: recognition {method} does not suit a {charge} charge"
        )
    return method  # type: ignore[return-value]


@field_parser
def _pricing(raw: Any, field_name: str, currency: str) -> Pricing:
    data = json.loads(raw, parse_float=Decimal) if isinstance(raw, str) else raw
    try:
        return _PRICING.validate_python(data)
    except ValueError as exc:
        raise MappingError(field_name, f"{currency} pricing is not valid: {exc}") from exc


def ended_by_deletion(contract: Contract, deleted_on: date) -> Contract | None:
    """The contract of a deal deleted (or archived) in the CRM on ``deleted_on``: service ends the day
    before, as an amendment from that day, so what was billed beyond it is credited.

    None when nothing changes (it had already ended) or when it cannot end by amendment because it
    had not started: that one is for a person to decide (the caller quarantines it).
    """
    last_day = deleted_on - timedelta(days=1)
    if contract.contract_end_date is not None and contract.contract_end_date <= last_day:
        return None
    if last_day < contract.contract_start_date:
        return None
    return contract.model_copy(update={"contract_end_date": last_day, "effective_date": last_day})
