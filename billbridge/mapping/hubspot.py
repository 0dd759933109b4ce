"""HubSpot deal bundles -> the neutral CRM records of ``mapping.crm`` (pure).

Which HubSpot property carries which billing term is configuration (``HubSpotProperties``). The
defaults build on HubSpot's standard properties: deals' ``dealstage``, ``amount`` and
``deal_currency_code``; line items' ``hs_product_id``, ``quantity``, ``price``,
``hs_discount_percentage``, ``amount`` and the recurring-billing properties
``recurringbillingfrequency`` and ``hs_recurring_billing_start_date``; products' ``hs_sku`` and
``hs_price_<currency>``. What those cannot express is in named custom properties (deal billing
start/end dates, cycle, payment terms, timing, auto-charge and legal entity; product charge type,
usage aggregation and canonical pricing JSON per currency). A deal without its own start date or
billing cycle takes its first line item's recurring-billing start date and frequency.

Billing contacts are the contacts associated with the deal under the billing association label
(settings ``hubspot.billing_contact_label``), else those associated so with its company, else the
company's ``billing_email`` property; a contact's ``hs_language`` sets the language of its messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from billbridge.mapping import fields
from billbridge.mapping.crm import (
    CrmCompany,
    CrmContact,
    CrmDeal,
    CrmLine,
    CrmMapping,
    CrmPartner,
    CrmProduct,
    PartnerRole,
)
from billbridge.mapping.fields import EPOCH, field_parser, read
from billbridge.records import DealBundle

DEFAULT_MAPPING = CrmMapping(won_stages=["closedwon"], ref_prefix="hs-")


class HubSpotProperties(BaseModel):
    """HubSpot property names (internal names) that carry each billing term; documented defaults."""

    model_config = ConfigDict(extra="forbid")

    deal_name: str = "dealname"
    deal_stage: str = "dealstage"
    deal_amount: str = "amount"
    deal_currency: str = "deal_currency_code"
    deal_start_date: str = Field(default="billing_start_date", description="custom date property")
    deal_end_date: str = Field(default="billing_end_date", description="custom date property; empty: evergreen")
    deal_billing_cycle: str = Field(default="billing_cycle", description="custom; HubSpot frequency words")
    deal_payment_terms_days: str = Field(default="payment_terms_days", description="custom number property")
    deal_auto_charge: str = Field(default="auto_charge", description="custom checkbox (true/false)")
    deal_billing_timing: str = Field(default="billing_timing", description="custom: in_advance | in_arrears")
    deal_entity: str = Field(default="legal_entity", description="custom: billing legal entity ref")
    modified: str = "hs_lastmodifieddate"
    line_product_id: str = "hs_product_id"
    line_quantity: str = "quantity"
    line_unit_price: str = "price"
    line_discount_percent: str = "hs_discount_percentage"
    line_total: str = "amount"
    line_start_date: str = "hs_recurring_billing_start_date"
    line_billing_frequency: str = "recurringbillingfrequency"
    referral_partner_label: str | None = Field(
        default="Referral partner",
        description="Deal-to-company association label naming the deal's referral partner; none: not read",
    )
    reseller_label: str | None = Field(
        default="Reseller", description="Deal-to-company association label naming the deal's reseller; none: not read"
    )
    company_name: str = "name"
    company_email: str | None = None
    company_billing_email: str | None = Field(
        default="billing_email",
        description="custom company property: the address billing messages go to when no contact carries "
        "the billing association label (None: no fallback)",
    )
    contact_email: str = "email"
    contact_first_name: str = "firstname"
    contact_last_name: str = "lastname"
    contact_language: str | None = Field(
        default="hs_language", description="contact property: the language messages are written in (empty: English)"
    )
    company_entity: str = Field(default="legal_entity", description="custom: billing legal entity ref")
    product_name: str = "name"
    product_sku: str = "hs_sku"
    product_charge: str = Field(default="charge_type", description="custom: recurring | usage | one_time")
    product_usage_aggregation: str = Field(default="usage_aggregation", description="custom: sum, max, ...")
    product_recognition: str = Field(
        default="revenue_recognition", description="custom: ratable | point_in_time | usage | none"
    )
    product_price_prefix: str = Field(default="hs_price_", description="+ currency code, lower case")
    product_pricing_prefix: str = Field(
        default="pricing_json_", description="custom, + currency code: canonical pricing JSON"
    )


DEFAULT_PROPERTIES = HubSpotProperties()


def _partners(bundle: DealBundle, names: HubSpotProperties) -> tuple[CrmPartner, ...]:
    """The companies associated with the deal under the configured partner labels."""
    roles: dict[PartnerRole, str | None] = {"referral": names.referral_partner_label, "reseller": names.reseller_label}
    return tuple(
        CrmPartner(company_id, role, f"associations.companies[{label}]")
        for role, label in roles.items()
        if label
        for company_id in bundle.labelled.get(label, ())
    )


def _props(record: Any, what: str) -> Mapping[str, Any]:
    props = record.get("properties") if type(record) is dict else None
    if type(props) is dict:
        return props
    ident = record.get("id") if isinstance(record, Mapping) else None
    shown = ident if isinstance(ident, str) else fields.shown(ident)
    return read(record, "properties", fields.mapping, name=f"{what} {shown} properties")


def _id(record: Any, what: str) -> str:
    found = fields.plain_text(record.get("id")) if type(record) is dict else None
    return found or read(record, "id", fields.required_text, name=f"{what} id")


def _first(lines: list[Mapping[str, Any]], name: str) -> Any:
    return next((p[name] for p in lines if p.get(name) not in (None, "")), None)


@field_parser
def _modified(value: Any, field: str) -> datetime | None:
    """``hs_lastmodifieddate``: ISO 8601, or epoch milliseconds (read in UTC, not the machine's zone)."""
    text = None if value is None else fields.text(value)
    if text is None:
        return None
    if text.isascii() and text.isdigit():
        return EPOCH + timedelta(milliseconds=int(text))
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _by_currency(props: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """``<prefix><currency>`` properties as currency code -> value."""
    return {k[len(prefix) :].upper(): v for k, v in props.items() if k.startswith(prefix) and len(k) == len(prefix) + 3}


def product_to_crm(product: Mapping[str, Any], names: HubSpotProperties = DEFAULT_PROPERTIES) -> CrmProduct:
    props = _props(product, "product")
    prices = _by_currency(props, names.product_price_prefix)
    pricing = _by_currency(props, names.product_pricing_prefix)
    return CrmProduct(
        product_id=_id(product, "product"),
        sku=props.get(names.product_sku),
        name=read(props, names.product_name, fields.string, default=""),
        charge=props.get(names.product_charge),
        pricing=pricing,
        list_prices=prices,
        usage_aggregation=props.get(names.product_usage_aggregation),
        recognition=props.get(names.product_recognition),
        names={
            "recognition": names.product_recognition,
            "sku": names.product_sku,
            "name": names.product_name,
            "charge": names.product_charge,
            "usage_aggregation": names.product_usage_aggregation,
            "pricing": f"{names.product_pricing_prefix}<currency>",
            "list_prices": f"{names.product_price_prefix}<currency>",
        },
    )


def company_to_crm(company: Mapping[str, Any], names: HubSpotProperties = DEFAULT_PROPERTIES) -> CrmCompany:
    props = _props(company, "company")
    return CrmCompany(
        company_id=_id(company, "company"),
        name=props.get(names.company_name),
        email=props.get(names.company_email) if names.company_email else None,
        entity_ref=props.get(names.company_entity),
        names={"name": names.company_name, "entity_ref": names.company_entity, "email": names.company_email or "email"},
    )


def _line(line: Mapping[str, Any], names: HubSpotProperties) -> CrmLine:
    props = _props(line, "line item")
    return CrmLine(
        line_id=_id(line, "line item"),
        product_id=read(props, names.line_product_id, fields.text, default=None),
        quantity=props.get(names.line_quantity),
        unit_price=props.get(names.line_unit_price),
        discount_percent=props.get(names.line_discount_percent),
        total=props.get(names.line_total),
        start_date=props.get(names.line_start_date),
        names={
            "product_id": names.line_product_id,
            "quantity": names.line_quantity,
            "unit_price": names.line_unit_price,
            "discount_percent": names.line_discount_percent,
            "total": names.line_total,
            "start_date": names.line_start_date,
        },
    )


def _billing_contacts(bundle: DealBundle, names: HubSpotProperties) -> tuple[CrmContact, ...] | None:
    """The contacts the connector found under the billing association label (on the deal, else its
    company), else the company's billing email property; None when the bundle says nothing of
    contacts (a source that does not read them), () when HubSpot names none."""
    if bundle.contacts is None:
        return None
    out = []
    for contact in bundle.contacts:
        props = _props(contact, "contact")
        where = f"contact {_id(contact, 'contact')}"
        first, last = props.get(names.contact_first_name), props.get(names.contact_last_name)
        name = " ".join(str(p).strip() for p in (first, last) if isinstance(p, str) and p.strip()) or None
        language = props.get(names.contact_language) if names.contact_language else None
        out.append(
            CrmContact(
                email=props.get(names.contact_email),
                name=name,
                field=f"{where} {names.contact_email}",
                language=language,
                language_field=f"{where} {names.contact_language}",
            )
        )
    if not any(c.email not in (None, "") for c in out) and bundle.company and names.company_billing_email:
        fallback = _props(bundle.company, "company").get(names.company_billing_email)
        if fallback not in (None, ""):
            company = _id(bundle.company, "company")
            out = [CrmContact(email=fallback, field=f"company {company} {names.company_billing_email}")]
    return tuple(out)


def bundle_to_crm(
    bundle: DealBundle, cache: dict[Any, Any] | None = None, names: HubSpotProperties = DEFAULT_PROPERTIES
) -> tuple[CrmDeal, CrmCompany | None, dict[str, CrmProduct]]:
    """A deal with its line items, company and products as neutral CRM records.

    ``cache`` (kept by the caller across the deals of a sync) lets each product version be read once.
    """
    deal_id = _id(bundle.deal, "deal")
    props = _props(bundle.deal, "deal")
    line_props = [_props(x, "line item") for x in bundle.lines]
    start, start_name = props.get(names.deal_start_date), names.deal_start_date
    if start in (None, ""):
        start, start_name = _first(line_props, names.line_start_date), names.deal_start_date
    cycle, cycle_name = props.get(names.deal_billing_cycle), names.deal_billing_cycle
    if cycle in (None, ""):
        cycle, cycle_name = (
            _first(line_props, names.line_billing_frequency),
            f"line_items.{names.line_billing_frequency}",
        )
    company = company_to_crm(bundle.company, names) if bundle.company else None
    deal = CrmDeal(
        deal_id=deal_id,
        name=props.get(names.deal_name),
        stage=props.get(names.deal_stage),
        amount=props.get(names.deal_amount),
        currency=props.get(names.deal_currency),
        company_id=company.company_id if company else None,
        start_date=start,
        end_date=props.get(names.deal_end_date),
        billing_cycle=cycle,
        payment_terms_days=props.get(names.deal_payment_terms_days),
        auto_charge=props.get(names.deal_auto_charge),
        billing_timing=props.get(names.deal_billing_timing),
        entity_ref=props.get(names.deal_entity),
        modified_at=_modified(props.get(names.modified), names.modified),
        lines=tuple(_line(x, names) for x in bundle.lines),
        partners=_partners(bundle, names),
        contacts=_billing_contacts(bundle, names),
        names={
            "name": names.deal_name,
            "amount": names.deal_amount,
            "currency": names.deal_currency,
            "company_id": "associations.companies",
            "start_date": start_name,
            "end_date": names.deal_end_date,
            "billing_cycle": cycle_name,
            "payment_terms_days": names.deal_payment_terms_days,
            "auto_charge": names.deal_auto_charge,
            "billing_timing": names.deal_billing_timing,
            "entity_ref": names.deal_entity,
            "lines": "associations.line_items",
        },
    )
    products = {pid: _product(p, names, cache) for pid, p in bundle.products.items()}
    return deal, company, products


def _product(product: Mapping[str, Any], names: HubSpotProperties, cache: dict[Any, Any] | None) -> CrmProduct:
    if cache is None or not isinstance(product, Mapping):
        return product_to_crm(product, names)
    key = ("hubspot-product", str(product.get("id")), str(product.get("updatedAt")))
    found = cache.get(key)
    if found is None:
        found = cache[key] = product_to_crm(product, names)
    return found
