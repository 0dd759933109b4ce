"""The demo world rendered as Salesforce records, and later world states applied as edits and deletions.

A multi-currency org: one standard price book with a PricebookEntry per product and currency, the
product's canonical pricing as JSON in ``PricebookEntry.Billing_Pricing__c``, its charge in
``Product2.Billing_Charge__c`` and usage aggregation in ``Product2.Usage_Aggregation__c``; billing
terms in custom Opportunity fields (``Billing_Start_Date__c`` ...). Partners are Accounts with
``IsPartner`` (Partner Relationship Management): a referral partner is the Opportunity's
``PartnerAccountId``, a reseller its custom lookup ``Reseller_Account__c``. Billing contacts are
Contacts in the "Billing" role on the Opportunity (OpportunityContactRole) or on the Account
(AccountContactRole). Ids are deterministic 18-character ids with each object's key prefix (001
Account, 003 Contact, 006 Opportunity, 00k line item, 00K OpportunityContactRole, 02Z
AccountContactRole, 01t Product2, 01s Pricebook2, 01u PricebookEntry).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from billbridge.sandbox.demo_world import DemoCompany, DemoContact, DemoDeal, DemoPartner, DemoWorld
from billbridge.sandbox.salesforce.org import Org

STAGE_NAMES = {"won": "Closed Won", "lost": "Closed Lost", "open": "Negotiation/Review"}
SETTLE = timedelta(minutes=2)
UNKNOWN_PRODUCT_ID = "01tDm9999999999ZZZ"  # a line's product that is not in the price book
PARTNER_NUMBERS = 900_000  # partner Accounts are numbered from here
BILLING_ROLE = "Billing"  # the contact role the connector reads by default


def sf_id(prefix: str, number: int) -> str:
    return f"{prefix}Dm{number:010d}AAA"


def account_id(company_key: str) -> str:
    return sf_id("001", int(company_key[1:]))


def partner_account_id(partner_key: str) -> str:
    """A partner's Account (numbered apart from the customers')."""
    return sf_id("001", PARTNER_NUMBERS + int(partner_key[1:]))


def opportunity_id(deal_key: str) -> str:
    return sf_id("006", int(deal_key[1:]))


def _line_id(line_key: str) -> str:
    deal, _, index = line_key.partition("-L")
    return sf_id("00k", int(deal[1:]) * 100 + int(index))


@dataclass
class WorldRenderer:
    """Keeps an org in step with a demo world: ``seed`` once, then ``apply`` each later state."""

    org: Org
    world: DemoWorld | None = None
    product_ids: dict[str, str] = field(default_factory=dict)  # SKU -> Product2 Id
    entry_ids: dict[tuple[str, str], str] = field(default_factory=dict)  # (SKU, currency) -> PricebookEntry Id

    def seed(self, world: DemoWorld) -> None:
        with self.org.loading():
            self._seed(world)
        self.world = world

    def _seed(self, world: DemoWorld) -> None:
        org, stamp = self.org, world.now - timedelta(days=365)
        org.set_clock(world.now)
        pricebook = sf_id("01s", 1)
        org.put(
            "Pricebook2",
            {"Id": pricebook, "Name": "Standard Price Book", "IsStandard": True, "IsActive": True}
            | {"IsDeleted": False, "SystemModstamp": stamp},
        )
        for n, product in enumerate(world.products.values(), start=1):
            self.product_ids[product.sku] = product_id = sf_id("01t", n)
            org.put(
                "Product2",
                {
                    "Id": product_id,
                    "Name": product.name,
                    "ProductCode": product.sku,
                    "IsActive": True,
                    "Billing_Charge__c": product.charge,
                    "Usage_Aggregation__c": product.usage_aggregation,
                    "Revenue_Recognition__c": product.recognition,
                    "IsDeleted": False,
                    "SystemModstamp": stamp,
                },
            )
            for m, (currency, pricing) in enumerate(sorted(product.pricing.items()), start=1):
                self.entry_ids[(product.sku, currency)] = entry_id = sf_id("01u", n * 100 + m)
                org.put(
                    "PricebookEntry",
                    {
                        "Id": entry_id,
                        "Pricebook2Id": pricebook,
                        "Product2Id": product_id,
                        "CurrencyIsoCode": currency,
                        "UnitPrice": product.list_price[currency],
                        "IsActive": True,
                        "Billing_Pricing__c": json.dumps(pricing, sort_keys=True),
                        "IsDeleted": False,
                        "SystemModstamp": stamp,
                    },
                )
        for company in world.companies.values():
            self._put_company(company)
        for partner in world.partners.values():
            self._put_partner(partner)
        for deal in world.deals.values():
            if not deal.deleted:
                self._put_deal(deal)
        for n, contact in enumerate(world.contacts.values(), start=1):
            self._put_contact(n, contact)

    def apply(self, world: DemoWorld) -> int:
        """Bring the org to a later state of the same world: changed records get new SystemModstamps.
        Returns how many deals changed."""
        assert self.world is not None, "seed first"
        before = self.world
        # By the time anyone syncs, the org's clock is past the changes (Get Deleted and Get Updated
        # cover whole minutes up to now only).
        self.org.advance_to(world.now + SETTLE)
        for key, company in world.companies.items():
            if before.companies.get(key) != company:
                self._put_company(company)
        count = 0
        for key, deal in world.deals.items():
            old = before.deals.get(key)
            if old == deal:
                continue
            count += 1
            if deal.deleted:
                if old is not None and not old.deleted:
                    self.org.delete("Opportunity", opportunity_id(key), deal.modified_at)
            else:
                self._put_deal(deal, old)
        self.world = world
        return count

    def _put_company(self, company: DemoCompany) -> None:
        self.org.put(
            "Account",
            {
                "Id": account_id(company.key),
                "Name": company.name,
                "Website": company.domain,
                "Billing_Entity__c": company.entity_ref,
                "IsPartner": False,  # a partner account (Partner Relationship Management) says True
                "IsDeleted": False,
                "SystemModstamp": company.modified_at,
            },
        )

    def _put_partner(self, partner: DemoPartner) -> None:
        self.org.put(
            "Account",
            {
                "Id": partner_account_id(partner.key),
                "Name": partner.name,
                "Website": None,
                "Billing_Entity__c": partner.entity_ref,
                "IsPartner": True,
                "IsDeleted": False,
                "SystemModstamp": partner.modified_at,
            },
        )

    def _put_contact(self, n: int, contact: DemoContact) -> None:
        """A Contact of the company's Account, in the billing role on its deal or on the Account."""
        contact_id, stamp = sf_id("003", n), contact.modified_at
        self.org.put(
            "Contact",
            {
                "Id": contact_id,
                "FirstName": contact.first_name,
                "LastName": contact.last_name,
                "Email": contact.email,
                "AccountId": account_id(contact.company_key),
                "IsDeleted": False,
                "SystemModstamp": stamp,
            },
        )
        role = {"ContactId": contact_id, "Role": BILLING_ROLE, "IsPrimary": True, "IsDeleted": False}
        if contact.deal_key is not None:
            self.org.put(
                "OpportunityContactRole",
                {"Id": sf_id("00K", n), "OpportunityId": opportunity_id(contact.deal_key), **role}
                | {"SystemModstamp": stamp},
            )
        else:
            self.org.put(
                "AccountContactRole",
                {"Id": sf_id("02Z", n), "AccountId": account_id(contact.company_key), **role}
                | {"SystemModstamp": stamp},
            )

    def _put_deal(self, deal: DemoDeal, old: DemoDeal | None = None) -> None:
        org, deal_id = self.org, opportunity_id(deal.key)
        stamp = deal.modified_at
        if old is not None:
            kept = {line.key for line in deal.lines}
            for line in old.lines:
                if line.key not in kept:
                    org.delete("OpportunityLineItem", _line_id(line.key), stamp)
        org.put("Opportunity", self.opportunity(deal))
        for line in deal.lines:
            product_id = self.product_ids.get(line.sku, UNKNOWN_PRODUCT_ID)
            total: Decimal = line.total
            org.put(
                "OpportunityLineItem",
                {
                    "Id": _line_id(line.key),
                    "OpportunityId": deal_id,
                    "Quantity": line.quantity,
                    "UnitPrice": line.unit_price,
                    "Discount": line.discount_percent if line.discount_percent else None,
                    "TotalPrice": total,
                    "ServiceDate": deal.start_date,
                    "PricebookEntryId": self.entry_ids.get((line.sku, deal.currency)),
                    "Product2Id": product_id,
                    "IsDeleted": False,
                    "SystemModstamp": stamp,
                },
            )

    def opportunity(self, deal: DemoDeal) -> dict[str, Any]:
        return {
            "Id": opportunity_id(deal.key),
            "Name": deal.name,
            "StageName": STAGE_NAMES[deal.stage],
            "Amount": deal.amount,
            "CloseDate": deal.close_date,
            "CurrencyIsoCode": deal.currency,
            "AccountId": account_id(deal.company_key),
            # the partner Account that referred the deal (Partner Relationship Management), and the reseller's
            "PartnerAccountId": partner_account_id(deal.referral_partner) if deal.referral_partner else None,
            "Reseller_Account__c": partner_account_id(deal.reseller) if deal.reseller else None,
            "IsDeleted": False,
            "IsWon": deal.won,
            "SystemModstamp": _stamp(deal.modified_at),
            "Billing_Start_Date__c": deal.start_date,
            "Billing_End_Date__c": deal.end_date,
            "Billing_Cycle__c": deal.billing_cycle,
            "Billing_Timing__c": deal.billing_timing,
            "Payment_Terms_Days__c": Decimal(deal.payment_terms_days),
            "Auto_Charge__c": deal.auto_charge,
            "Billing_Entity__c": deal.entity_ref,
        }


def _stamp(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)  # Salesforce keeps milliseconds
