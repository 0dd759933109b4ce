"""The vendor registry: every vendor's roles in one place, built by name, SDKs loaded only when used."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import SecretStr

from billbridge.flows.crm_pages import CrmSourceSpec, SubscriptionSourceSpec, spec_for
from billbridge.mapping.stripe import map_subscription
from billbridge.records import DealBundle
from billbridge.settings import HubSpotSettings, SalesforceSettings, Settings
from billbridge.vendors.registry import (
    VENDORS,
    Contracts,
    Vendor,
    contract_sources,
    display_name,
    payment_sources,
    salesforce_fields,
    vendor,
    webhooks,
)


def test_the_registry_names_each_vendor_and_its_roles() -> None:
    assert list(VENDORS) == ["salesforce", "hubspot", "stripe", "quickbooks"]
    assert {name: c.kind for name, c in contract_sources().items()} == {
        "salesforce": "deals",
        "hubspot": "deals",
        "stripe": "subscriptions",
    }
    assert payment_sources() == ("stripe", "quickbooks")  # the order reconciliation reads them in
    assert sorted(name for name, v in VENDORS.items() if v.push is not None) == ["quickbooks", "stripe"]
    assert {name: w.header for name, w in webhooks().items()} == {
        "stripe": "Stripe-Signature",
        "quickbooks": "intuit-signature",
    }


def test_an_unknown_vendor_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match="unknown vendor 'xero' \\(expected salesforce, hubspot, stripe, quickbooks\\)"
    ):
        vendor("xero")


def test_contract_specs_come_from_the_registry() -> None:
    assert isinstance(spec_for("salesforce"), CrmSourceSpec) and isinstance(spec_for("hubspot"), CrmSourceSpec)
    assert isinstance(spec_for("stripe"), SubscriptionSourceSpec)
    with pytest.raises(ValueError, match="unknown CRM source 'quickbooks'"):
        spec_for("quickbooks")


def test_a_source_is_built_from_the_settings_tree_alone() -> None:
    contracts = vendor("hubspot").contracts
    assert contracts is not None
    settings = Settings(hubspot=HubSpotSettings(access_token="pat-1", host="http://127.0.0.1:9"))
    source = contracts.connect(settings)  # a private-app token: nothing is called yet
    assert source.name == "hubspot"


@pytest.mark.slow  # a fresh interpreter
def test_looking_vendors_up_loads_no_vendor_sdk() -> None:
    code = (
        "import sys\n"
        "import billbridge.vendors.registry, billbridge.flows.sync_crm\n"
        "print(sorted(m for m in ('hubspot', 'stripe', 'quickbooks', 'simple_salesforce') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_salesforce_partner_lookups_and_contact_role_come_from_the_settings() -> None:
    """An org with Partner Relationship Management names the referral partner in PartnerAccountId and
    the reseller in a custom lookup: set in ``[salesforce]``, its sync selects and maps both."""
    org = SalesforceSettings(
        instance_url="https://acme.my.salesforce.com",
        client_id="id",
        client_secret=SecretStr("secret"),
        referral_partner_field="PartnerAccountId",
        reseller_partner_field="Reseller_Account__c",
        billing_contact_role="Accounts Payable",
    )
    fields = salesforce_fields(Settings(salesforce=org))
    assert fields.partner_fields() == {"referral": "PartnerAccountId", "reseller": "Reseller_Account__c"}
    assert {"PartnerAccountId", "Reseller_Account__c"} <= set(fields.columns()["Opportunity"])
    opportunity = {"Id": "006A", "AccountId": "001A", "PartnerAccountId": "001P", "Reseller_Account__c": None}
    ap = {"Role": "Accounts Payable", "Contact": {"Email": "ap@a.example"}}
    bundle = DealBundle(deal=opportunity | {"OpportunityContactRoles": [ap]}, lines=[], company=None, products={})
    spec = spec_for("salesforce", settings=Settings(salesforce=org))
    assert isinstance(spec, CrmSourceSpec)
    deal = spec.extract(bundle, {})[0]
    assert [(p.company_id, p.role, p.field) for p in deal.partners] == [("001P", "referral", "PartnerAccountId")]
    assert [c.email for c in deal.contacts or ()] == ["ap@a.example"]
    plain = spec_for("salesforce")
    assert isinstance(plain, CrmSourceSpec)
    default = plain.extract(bundle, {})[0]  # by default: no partner lookups, role "Billing"
    assert default.partners == () and default.contacts == ()


def test_hubspot_partner_association_labels_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A portal whose partner companies are associated as "Introducer" and "Channel partner": set in
    ``[hubspot]`` (here through the environment), its sync reads the partners under those labels and no
    longer under the defaults; an empty label is not read."""
    deal = {"id": "901", "properties": {"dealname": "Big deal"}}
    labelled = {"Introducer": ["301"], "Channel partner": ["302"], "Referral partner": ["303"], "Reseller": ["304"]}
    bundle = DealBundle(deal=deal, lines=[], company=None, products={}, labelled=labelled)

    def partners(settings: Settings | None) -> list[tuple[str, str, str]]:
        spec = spec_for("hubspot", settings=settings)
        assert isinstance(spec, CrmSourceSpec)
        return sorted((p.company_id, p.role, p.field) for p in spec.extract(bundle, {})[0].partners)

    assert partners(None) == [
        ("303", "referral", "associations.companies[Referral partner]"),
        ("304", "reseller", "associations.companies[Reseller]"),
    ]
    monkeypatch.setenv("BILLBRIDGE_CONFIG", "/nonexistent/billbridge.toml")
    monkeypatch.setenv("BILLBRIDGE_HUBSPOT__ACCESS_TOKEN", "pat-test")
    monkeypatch.setenv("BILLBRIDGE_HUBSPOT__REFERRAL_PARTNER_LABEL", "Introducer")
    monkeypatch.setenv("BILLBRIDGE_HUBSPOT__RESELLER_LABEL", "Channel partner")
    assert partners(Settings()) == [
        ("301", "referral", "associations.companies[Introducer]"),
        ("302", "reseller", "associations.companies[Channel partner]"),
    ]
    portal = HubSpotSettings(access_token=SecretStr("pat-test"), reseller_label="")
    assert partners(Settings(hubspot=portal)) == [("303", "referral", "associations.companies[Referral partner]")]


def test_each_vendor_has_its_name_as_people_write_it() -> None:
    """The command's tables name vendors from the registry: a fifth vendor needs no list of its own."""
    assert [display_name(name) for name in VENDORS] == ["Salesforce", "HubSpot", "Stripe", "QuickBooks"]
    assert display_name("csv") == "csv"  # not a vendor: as given


def test_a_subscriptions_source_is_mapped_as_the_registry_says_not_as_stripe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stripe's subscriptions get Stripe's mapping from the registry; another vendor registered as a
    subscriptions source without a mapping is refused by name instead of being read as Stripe's."""
    stripe = spec_for("stripe")
    assert isinstance(stripe, SubscriptionSourceSpec) and stripe.map_subscription is map_subscription
    stripe_contracts = vendor("stripe").contracts
    assert stripe_contracts is not None
    chargebee = Vendor("chargebee", Contracts("subscriptions", stripe_contracts.connect))
    monkeypatch.setitem(VENDORS, "chargebee", chargebee)
    with pytest.raises(ValueError, match="contract source 'chargebee' has no subscription mapping"):
        spec_for("chargebee")
