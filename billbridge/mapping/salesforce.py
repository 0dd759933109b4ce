"""Salesforce deal bundles -> the neutral CRM records of ``mapping.crm`` (pure).

Standard fields: Opportunity ``StageName``, ``Amount``, ``CurrencyIsoCode`` (multi-currency orgs),
``AccountId``, ``SystemModstamp``; OpportunityLineItem ``Product2Id``, ``Quantity``, ``UnitPrice``,
``Discount`` (percent), ``TotalPrice``, ``ServiceDate`` (the line's start); Product2 ``Name``,
``ProductCode`` (the SKU); PricebookEntry ``UnitPrice`` per ``CurrencyIsoCode``. What those cannot
express lives in custom fields named by ``SalesforceFields`` (documented defaults below). Errors
name the Salesforce field, e.g. ``Billing_Start_Date__c: missing``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
from billbridge.mapping.fields import (
    field_parser,
    mapping,
    objects,
    parse,
    plain_text,
    read,
    required_text,
    string,
    text,
)
from billbridge.records import DealBundle

DEFAULT_MAPPING = CrmMapping(won_stages=["Closed Won"], ref_prefix="sf-")
LINES = "OpportunityLineItems"
ENTRIES = "PricebookEntries"
CONTACT_ROLES = "OpportunityContactRoles"
ACCOUNT_ROLES = "AccountContactRoles"  # on the Account, where the connector reads them


class SalesforceFields(BaseModel):
    """API names of the custom fields that carry billing terms; override per installation."""

    model_config = ConfigDict(extra="forbid")

    start_date: str = Field(default="Billing_Start_Date__c", description="Opportunity date: first day of service")
    end_date: str = Field(default="Billing_End_Date__c", description="Opportunity date: last day; empty: evergreen")
    billing_cycle: str = Field(default="Billing_Cycle__c", description="Opportunity picklist: monthly, quarterly, ...")
    billing_timing: str = Field(
        default="Billing_Timing__c", description="Opportunity picklist: in_advance | in_arrears"
    )
    payment_terms_days: str = Field(default="Payment_Terms_Days__c", description="Opportunity number")
    auto_charge: str = Field(default="Auto_Charge__c", description="Opportunity checkbox")
    deal_entity: str = Field(default="Billing_Entity__c", description="Opportunity text: legal entity ref")
    account_entity: str = Field(default="Billing_Entity__c", description="Account text: legal entity ref")
    account_email: str | None = Field(default=None, description="Account email field for invoices, if any")
    billing_contact_role: str = Field(
        default="Billing",
        description="Role (OpportunityContactRole, else AccountContactRole) of the contacts who receive billing "
        "messages",
    )
    referral_partner: str | None = Field(
        default=None,
        description="Opportunity lookup to the referral partner's Account, e.g. PartnerAccountId (Partner "
        "Relationship Management orgs only) or a custom lookup; none: no referral partners from Salesforce",
    )
    reseller_partner: str | None = Field(
        default=None,
        description="Opportunity lookup to the reseller's Account (PartnerAccountId or a custom lookup); none: no "
        "resellers from Salesforce",
    )
    product_charge: str = Field(
        default="Billing_Charge__c", description="Product2 picklist: recurring | usage | one_time"
    )
    usage_aggregation: str = Field(default="Usage_Aggregation__c", description="Product2 picklist: sum, max, ...")
    product_recognition: str = Field(
        default="Revenue_Recognition__c",
        description="Product2 picklist: ratable | point_in_time | usage | none (empty: the charge's default)",
    )
    entry_pricing: str = Field(default="Billing_Pricing__c", description="PricebookEntry long text: pricing JSON")

    def columns(self) -> dict[str, tuple[str, ...]]:
        """The custom fields each object's query must select (for the connector)."""
        account = [self.account_entity] + ([self.account_email] if self.account_email else [])
        return {
            "Opportunity": (
                self.start_date,
                self.end_date,
                self.billing_cycle,
                self.billing_timing,
                self.payment_terms_days,
                self.auto_charge,
                self.deal_entity,
                *self.partner_fields().values(),
            ),
            "Account": tuple(account),
            "Product2": (self.product_charge, self.usage_aggregation, self.product_recognition),
            "PricebookEntry": (self.entry_pricing,),
        }

    def partner_fields(self) -> dict[PartnerRole, str]:
        """The configured Opportunity partner lookups, by the role they give the partner."""
        roles: dict[PartnerRole, str | None] = {"referral": self.referral_partner, "reseller": self.reseller_partner}
        return {role: name for role, name in roles.items() if name}


DEFAULT_FIELDS = SalesforceFields()


def _records(parent: Any, relationship: str) -> list[Mapping[str, Any]]:
    """A child relationship's records: a query result ``{"records": [...]}``, a plain list, or null."""
    value: Any = read(parent, relationship, default=None)
    if isinstance(value, Mapping):
        value = read(value, "records", default=None, name=f"{relationship}.records")
    return list(parse(relationship, objects, value)) if value is not None else []


@field_parser
def _modstamp(value: Any, field: str) -> datetime | None:
    stamp = None if value is None else text(value)
    if stamp is None:
        return None
    stamp = stamp.replace("Z", "+00:00")
    if len(stamp) > 5 and stamp[-5] in "+-" and stamp[-3] != ":":
        stamp = f"{stamp[:-2]}:{stamp[-2:]}"
    moment = datetime.fromisoformat(stamp)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _id(record: Any, name: str, field: str = "Id") -> str:
    found = plain_text(record.get(field)) if type(record) is dict else None
    return found or read(record, field, required_text, name=name)


def product_to_crm(product: Mapping[str, Any], fields: SalesforceFields = DEFAULT_FIELDS) -> CrmProduct:
    """A Product2 with its PricebookEntries (one per currency) as a neutral CRM product."""
    entries = [e for e in _records(product, ENTRIES) if e.get("IsActive", True) is not False]
    currencies = [_id(e, "PricebookEntry.CurrencyIsoCode", "CurrencyIsoCode") for e in entries]
    return CrmProduct(
        product_id=_id(product, "Product2.Id"),
        sku=product.get("ProductCode"),
        name=read(product, "Name", string, default="", name="Product2.Name"),
        charge=product.get(fields.product_charge),
        pricing={c: e.get(fields.entry_pricing) for c, e in zip(currencies, entries, strict=True)},
        list_prices={c: e.get("UnitPrice") for c, e in zip(currencies, entries, strict=True)},
        usage_aggregation=product.get(fields.usage_aggregation),
        recognition=product.get(fields.product_recognition),
        names={
            "sku": "Product2.ProductCode",
            "recognition": f"Product2.{fields.product_recognition}",
            "name": "Product2.Name",
            "usage_aggregation": f"Product2.{fields.usage_aggregation}",
            "charge": f"Product2.{fields.product_charge}",
            "pricing": f"PricebookEntry.{fields.entry_pricing}",
            "list_prices": "PricebookEntry.UnitPrice",
        },
    )


def company_to_crm(account: Any, account_id: str, fields: SalesforceFields = DEFAULT_FIELDS) -> CrmCompany:
    account = parse("Account", mapping, account)
    return CrmCompany(
        company_id=account_id,
        name=account.get("Name"),
        email=account.get(fields.account_email) if fields.account_email else None,
        entity_ref=account.get(fields.account_entity),
        names={"name": "Account.Name", "entity_ref": f"Account.{fields.account_entity}"},
    )


_LINE_NAMES = {
    "product_id": "OpportunityLineItem.Product2Id",
    "quantity": "OpportunityLineItem.Quantity",
    "unit_price": "OpportunityLineItem.UnitPrice",
    "discount_percent": "OpportunityLineItem.Discount",
    "total": "OpportunityLineItem.TotalPrice",
    "start_date": "OpportunityLineItem.ServiceDate",
}


def _line(line: Mapping[str, Any]) -> CrmLine:
    return CrmLine(
        line_id=_id(line, "OpportunityLineItem.Id"),
        product_id=read(line, "Product2Id", text, default=None, name=_LINE_NAMES["product_id"]),
        quantity=line.get("Quantity"),
        unit_price=line.get("UnitPrice"),
        discount_percent=line.get("Discount"),
        total=line.get("TotalPrice"),
        start_date=line.get("ServiceDate"),
        names=_LINE_NAMES,
    )


def _billing_contacts(opp: Mapping[str, Any], account: Mapping[str, Any] | None, role: str) -> tuple[CrmContact, ...]:
    """The Opportunity's contacts in the billing role (primary first), else its Account's
    (AccountContactRole, where the connector reads them), as the deal's billing contacts."""
    found = _in_role(_records(opp, CONTACT_ROLES), role, CONTACT_ROLES)
    if not found and account is not None:
        found = _in_role(_records(account, ACCOUNT_ROLES), role, f"Account.{ACCOUNT_ROLES}")
    return found


def _in_role(rows: list[Mapping[str, Any]], role: str, relationship: str) -> tuple[CrmContact, ...]:
    roles = [(index, r) for index, r in enumerate(rows) if str(r.get("Role") or "") == role]
    roles.sort(key=lambda pair: not pair[1].get("IsPrimary"))
    out = []
    for index, contact_role in roles:
        contact = contact_role.get("Contact") or {}
        name = " ".join(str(p) for p in (contact.get("FirstName"), contact.get("LastName")) if p) or None
        out.append(CrmContact(email=contact.get("Email"), name=name, field=f"{relationship}[{index}].Contact.Email"))
    return tuple(out)


def bundle_to_crm(
    bundle: DealBundle, cache: dict[Any, Any] | None = None, fields: SalesforceFields = DEFAULT_FIELDS
) -> tuple[CrmDeal, CrmCompany | None, dict[str, CrmProduct]]:
    """An Opportunity with its line items, account and products as neutral CRM records.

    ``cache`` (kept by the caller across the deals of a sync) lets each product version be read once.
    """
    opp = bundle.deal
    account_id = read(opp, "AccountId", text, default=None) or read(
        bundle.company, "Id", text, default=None, name="Account.Id"
    )
    company = company_to_crm(bundle.company, account_id, fields) if bundle.company and account_id else None
    deal = CrmDeal(
        deal_id=_id(opp, "Id"),
        name=opp.get("Name"),
        stage=opp.get("StageName"),
        amount=opp.get("Amount"),
        currency=opp.get("CurrencyIsoCode"),
        company_id=account_id,
        start_date=opp.get(fields.start_date),
        end_date=opp.get(fields.end_date),
        billing_cycle=opp.get(fields.billing_cycle),
        payment_terms_days=opp.get(fields.payment_terms_days),
        auto_charge=opp.get(fields.auto_charge),
        billing_timing=opp.get(fields.billing_timing),
        entity_ref=opp.get(fields.deal_entity),
        modified_at=_modstamp(opp.get("SystemModstamp"), "SystemModstamp"),
        lines=tuple(_line(x) for x in bundle.lines),
        contacts=_billing_contacts(opp, bundle.company, fields.billing_contact_role),
        partners=tuple(
            CrmPartner(opp.get(name), role, name) for role, name in fields.partner_fields().items() if opp.get(name)
        ),
        names={
            "name": "Name",
            "amount": "Amount",
            "currency": "CurrencyIsoCode",
            "company_id": "AccountId",
            "start_date": fields.start_date,
            "end_date": fields.end_date,
            "billing_cycle": fields.billing_cycle,
            "payment_terms_days": fields.payment_terms_days,
            "auto_charge": fields.auto_charge,
            "billing_timing": fields.billing_timing,
            "entity_ref": fields.deal_entity,
            "lines": LINES,
        },
    )
    products = {pid: _product(p, fields, cache) for pid, p in bundle.products.items()}
    return deal, company, products


def _product(product: Mapping[str, Any], fields: SalesforceFields, cache: dict[Any, Any] | None) -> CrmProduct:
    if cache is None or not isinstance(product, Mapping):
        return product_to_crm(product, fields)
    stamps = [str(e.get("SystemModstamp")) for e in _records(product, ENTRIES)]
    key = ("salesforce-product", str(product.get("Id")), str(product.get("SystemModstamp")), max(stamps, default=""))
    found = cache.get(key)
    if found is None:
        found = cache[key] = product_to_crm(product, fields)
    return found
