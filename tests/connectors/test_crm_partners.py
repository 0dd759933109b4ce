"""Partners from the CRMs, through the real SDKs against the sandboxes: Salesforce's Opportunity
``PartnerAccountId`` (or another lookup) and HubSpot's labelled deal-to-company associations name
a deal's referral partner or reseller; a deal naming an unknown partner is refused naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from billbridge.billing.model import Partner
from billbridge.connectors.salesforce.source import SalesforceSource
from billbridge.mapping import hubspot, salesforce
from billbridge.mapping.crm import CrmMapping, MappedDeal, MappingError, map_deal, partner_ref
from billbridge.records import DealBundle
from billbridge.sandbox.demo_world import DemoDeal, DemoWorld, generate
from billbridge.sandbox.hubspot import HubSpotSandbox
from billbridge.sandbox.salesforce import SalesforceSandbox, account_id, opportunity_id
from tests.connectors.test_hubspot_connector import source_for as hubspot_source
from tests.connectors.test_salesforce_connector import source_for as salesforce_source

RESELLER_LABEL_TYPE = 9  # a user-defined association type id, as a portal's label gets one


@pytest.fixture(scope="module")
def world() -> DemoWorld:
    return generate(30, seed=8)


def _deal(world: DemoWorld) -> DemoDeal:
    return next(d for d in sorted(world.live_deals, key=lambda d: d.key) if d.key in world.expected_contract_keys())


def _partner_company(world: DemoWorld, deal: DemoDeal) -> str:
    return next(k for k in sorted(world.companies) if k != deal.company_key)


def _partner(ref: str, deal: DemoDeal, kind: str) -> Partner:
    discount = Decimal(25) if kind != "referral" else None
    return Partner.model_validate(
        {
            "partner_ref": ref,
            "name": "Channel",
            "kind": kind,
            "entity_ref": deal.entity_ref,
            "currency": deal.currency,
            "discount_percent": discount,
        }
    )


def _map(bundle: tuple[object, ...], mapping: CrmMapping, partners: dict[str, Partner] | None) -> MappedDeal:
    deal, company, products = bundle
    return map_deal(deal, company, products, mapping, partners=partners)  # type: ignore[arg-type]


# --- Salesforce ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sf(world: DemoWorld) -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(world) as sandbox:
        yield sandbox


def _sf_pull(sf: SalesforceSandbox, world: DemoWorld, fields: salesforce.SalesforceFields) -> dict[str, DealBundle]:
    source = salesforce_source(sf, world)
    source = SalesforceSource(source.client, columns=fields.columns(), clock=source.clock)
    return {b.deal["Id"]: b for page in source.pull(None) for b in page.records}


def test_salesforce_partner_account_names_the_reseller_or_the_referral_partner(
    sf: SalesforceSandbox, world: DemoWorld
) -> None:
    deal = _deal(world)
    opp, partner_account = opportunity_id(deal.key), account_id(_partner_company(world, deal))
    sf.org.put("Account", {**sf.org.tables["Account"].records[partner_account], "IsPartner": True})
    sf.org.put("Opportunity", {**sf.org.tables["Opportunity"].records[opp], "PartnerAccountId": partner_account})
    ref = partner_ref(salesforce.DEFAULT_MAPPING, partner_account)
    assert ref == f"sf-{partner_account}"

    as_reseller = salesforce.SalesforceFields(reseller_partner="PartnerAccountId")
    bundles = _sf_pull(sf, world, as_reseller)
    assert bundles[opp].deal["PartnerAccountId"] == partner_account
    crm = salesforce.bundle_to_crm(bundles[opp], fields=as_reseller)
    mapped = _map(crm, salesforce.DEFAULT_MAPPING, {ref: _partner(ref, deal, "reseller")})
    assert mapped.contract.reseller_ref == ref and mapped.referral is None
    assert mapped.customer.customer_ref == f"sf-{account_id(deal.company_key)}"  # the end customer stays

    with pytest.raises(MappingError) as unknown:
        _map(crm, salesforce.DEFAULT_MAPPING, {})
    assert unknown.value.field == "PartnerAccountId" and ref in unknown.value.message
    with pytest.raises(MappingError, match="not a reseller one"):
        _map(crm, salesforce.DEFAULT_MAPPING, {ref: _partner(ref, deal, "referral")})

    as_referral = salesforce.SalesforceFields(referral_partner="PartnerAccountId")
    crm = salesforce.bundle_to_crm(_sf_pull(sf, world, as_referral)[opp], fields=as_referral)
    mapped = _map(crm, salesforce.DEFAULT_MAPPING, {ref: _partner(ref, deal, "both")})
    assert mapped.contract.reseller_ref is None
    assert mapped.referral is not None and mapped.referral.partner_ref == ref
    assert mapped.referral.referral.customer_ref == mapped.customer.customer_ref
    assert mapped.referral.referral.contract_ref == mapped.contract.contract_ref
    assert mapped.referral.referral.referred_on == mapped.contract.contract_start_date


def test_salesforce_without_partner_fields_reads_no_partners(sf: SalesforceSandbox, world: DemoWorld) -> None:
    assert "PartnerAccountId" not in salesforce.DEFAULT_FIELDS.columns()["Opportunity"]  # not every org has PRM
    bundles = _sf_pull(sf, world, salesforce.DEFAULT_FIELDS)
    assert all("PartnerAccountId" not in b.deal for b in bundles.values())
    assert all(salesforce.bundle_to_crm(b)[0].partners == () for b in bundles.values())


# --- HubSpot ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hs(world: DemoWorld) -> Iterator[HubSpotSandbox]:
    with HubSpotSandbox.start(world) as sandbox:
        yield sandbox


def test_hubspot_labelled_company_associations_name_the_partners(hs: HubSpotSandbox, world: DemoWorld) -> None:
    deal = _deal(world)
    deal_id, customer = hs.data.ids[deal.key], hs.data.ids[deal.company_key]
    partner_company = hs.data.ids[_partner_company(world, deal)]
    hs.data.label("deals", "companies", deal_id, partner_company, "Reseller", RESELLER_LABEL_TYPE)
    bundles = {str(b.deal["id"]): b for page in hubspot_source(hs).pull(None) for b in page.records}
    bundle = bundles[deal_id]
    assert str(bundle.company and bundle.company["id"]) == customer  # the billed company, not the partner
    assert bundle.labelled == {"Reseller": [partner_company]}
    assert all(not b.labelled for i, b in bundles.items() if i != deal_id)

    ref = partner_ref(hubspot.DEFAULT_MAPPING, partner_company)
    crm = hubspot.bundle_to_crm(bundle)
    mapped = _map(crm, hubspot.DEFAULT_MAPPING, {ref: _partner(ref, deal, "reseller")})
    assert mapped.contract.reseller_ref == ref and mapped.customer.customer_ref == f"hs-{customer}"
    with pytest.raises(MappingError) as unknown:
        _map(crm, hubspot.DEFAULT_MAPPING, {"hs-1": _partner("hs-1", deal, "reseller")})
    assert unknown.value.field == "associations.companies[Reseller]" and ref in unknown.value.message

    # The label is configuration: the same association read as a referral.
    names = hubspot.HubSpotProperties(referral_partner_label="Reseller", reseller_label=None)
    mapped = _map(
        hubspot.bundle_to_crm(bundle, names=names), hubspot.DEFAULT_MAPPING, {ref: _partner(ref, deal, "both")}
    )
    assert mapped.contract.reseller_ref is None
    assert mapped.referral is not None and mapped.referral.partner_ref == ref
    assert mapped.referral.field == "associations.companies[Reseller]"


def test_hubspot_association_read_reports_the_labels_as_hubspot_does(hs: HubSpotSandbox, world: DemoWorld) -> None:
    """The v4 batch read of a labelled link carries the unlabelled type and the user-defined one."""
    source = hubspot_source(hs)
    deal = _deal(world)
    deal_id, partner_company = hs.data.ids[deal.key], hs.data.ids[_partner_company(world, deal)]
    hs.data.label("deals", "companies", deal_id, partner_company, "Referral partner", RESELLER_LABEL_TYPE + 1)
    links = dict(source.client.labelled_associations("deals", "companies", [deal_id])[deal_id])
    assert set(links[partner_company]) >= {"Referral partner"}
    assert links[hs.data.ids[deal.company_key]] == ()  # the primary company: no user label
    back = source.client.labelled_associations("companies", "deals", [partner_company])[partner_company]
    assert (deal_id, ("Referral partner",)) in [(d, tuple(x for x in labels if x != "Reseller")) for d, labels in back]
    assert source.client.associations("deals", "companies", [deal_id])[deal_id][0] == hs.data.ids[deal.company_key]
