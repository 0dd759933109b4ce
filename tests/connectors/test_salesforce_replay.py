"""The Salesforce connector against recorded exchanges with the strict sandbox (fast tier, no server):
the token request and every SOQL page of a full pull must be asked as recorded, and the bundles must
carry the seeded world's opportunities. Re-record with ``python -m tests.connectors.record_cassettes``."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from billbridge.billing.model import Partner
from billbridge.mapping.crm import MappingError, is_won, map_deal, partner_ref
from billbridge.mapping.salesforce import DEFAULT_FIELDS, DEFAULT_MAPPING, SalesforceFields, bundle_to_crm
from billbridge.sandbox.demo_world import DemoDeal
from billbridge.sandbox.salesforce import account_id, opportunity_id
from tests.connectors.cassettes import REPLAY_URL, replaying
from tests.connectors.scenarios import (
    SALESFORCE_PARTNER_FIELDS,
    crm_later,
    salesforce_account_role_deals,
    salesforce_account_roles,
    salesforce_full_pull,
    salesforce_late,
    salesforce_late_commit,
    salesforce_roles_partner,
    salesforce_roles_partner_incremental,
    salesforce_source,
    salesforce_world,
)

CREDENTIALS = {"client_id": "replayed-id", "client_secret": "replayed-secret"}  # filtered out of the cassette


def test_a_full_pull_replays_from_the_cassette_with_every_live_opportunity_once() -> None:
    world = salesforce_world()
    with replaying("salesforce", "full_pull") as cassette:
        pages = salesforce_full_pull(salesforce_source(REPLAY_URL.replace("http:", "https:"), CREDENTIALS))
        assert cassette.all_played
    bundles = [b for page in pages for b in page.records]
    assert len({b.deal["Id"] for b in bundles}) == len(bundles) == len(world.live_deals)
    assert Counter(Decimal(str(b.deal["Amount"])) for b in bundles) == Counter(d.amount for d in world.live_deals)
    assert Counter(len(b.lines) for b in bundles) == Counter(len(d.lines) for d in world.live_deals)
    assert all(b.company is not None for b in bundles) and pages[-1].cursor is not None
    assert "PartnerAccountId" not in DEFAULT_FIELDS.columns()["Opportunity"]  # not every org has PRM
    assert all("PartnerAccountId" not in b.deal and bundle_to_crm(b)[0].partners == () for b in bundles)
    # connector and mapping together: the won deals a correct sync keeps map, the broken ones do not
    mapped, broken = set(), set()
    for bundle in bundles:
        deal, company, products = bundle_to_crm(bundle)
        if not is_won(deal, DEFAULT_MAPPING):
            continue
        try:
            map_deal(deal, company, products, DEFAULT_MAPPING)
            mapped.add(deal.deal_id)
        except MappingError:
            broken.add(deal.deal_id)
    assert mapped == {opportunity_id(k) for k in world.expected_contract_keys()}
    assert broken == {opportunity_id(k) for k in world.broken_keys()}
    # the opportunity page, the price book query, and the delete log that starts the next run's cursor
    assert sum(p.api_calls for p in pages) == 3


def test_roles_partner_and_an_incremental_pull_replay_from_the_cassette() -> None:
    world = salesforce_world()
    later = crm_later(world)
    opportunity, partner = salesforce_roles_partner(world)
    https = REPLAY_URL.replace("http:", "https:")
    with replaying("salesforce", "roles_partner_incremental") as cassette:
        full, changes, nothing = salesforce_roles_partner_incremental(salesforce_source(https, CREDENTIALS))
        assert cassette.all_played
    bundles = {b.deal["Id"]: b for p in full for b in p.records}
    assert len(bundles) == len(world.live_deals)
    assert bundles[opportunity].deal["PartnerAccountId"] == partner  # the partner column, read as reseller
    assert all(b.deal.get("PartnerAccountId") is None for i, b in bundles.items() if i != opportunity)
    as_reseller = bundle_to_crm(bundles[opportunity], fields=SALESFORCE_PARTNER_FIELDS)[0]
    assert [(p.role, p.field) for p in as_reseller.partners] == [("reseller", "PartnerAccountId")]
    crm_deal, company, products = bundle_to_crm(bundles[opportunity])  # partners not read: contacts alone
    mapped = map_deal(crm_deal, company, products, DEFAULT_MAPPING)
    assert mapped.customer.contacts is not None
    assert [(c.email, c.name) for c in mapped.customer.contacts] == [
        ("controller@example.com", "Ada Payer3"),  # the primary one first; the decision maker left out
        ("ap@example.com", "Ada Payer2"),
    ]
    finance = bundle_to_crm(bundles[opportunity], fields=SalesforceFields(billing_contact_role="Decision Maker"))[0]
    assert [c.email for c in finance.contacts or ()] == ["ceo@example.com"]  # the role is configuration
    other = next(b for i, b in bundles.items() if i != opportunity)
    assert bundle_to_crm(other)[0].contacts == ()  # none: the company's email stands in
    edited = {opportunity_id(k) for k, d in later.deals.items() if d != world.deals[k] and not d.deleted}
    deleted = {opportunity_id(k) for k, d in later.deals.items() if d.deleted and not world.deals[k].deleted}
    assert edited and deleted
    assert sorted(b.deal["Id"] for p in changes for b in p.records) == sorted(edited)
    assert sorted(i for p in changes for i in p.deleted_ids) == sorted(deleted)
    assert [b for p in nothing for b in p.records] == [] and [i for p in nothing for i in p.deleted_ids] == []


def _partner(ref: str, deal: DemoDeal, kind: str) -> Partner:
    """The partner as imported: a reseller gets a discount, a referral partner none."""
    discount = Decimal(25) if kind != "referral" else None
    return Partner.model_validate(
        {"partner_ref": ref, "name": "Channel", "kind": kind, "entity_ref": deal.entity_ref,
         "currency": deal.currency, "discount_percent": discount}
    )  # fmt: skip


def test_the_partner_account_names_the_reseller_or_the_referral_partner_replay() -> None:
    """The recorded PartnerAccountId mapped as the reseller (the end customer stays the billed one), as
    the referral partner when so configured, and refused naming the field when the partner is unknown
    or of the wrong kind."""
    world = salesforce_world()
    opportunity, partner = salesforce_roles_partner(world)
    deal = next(d for d in world.live_deals if opportunity_id(d.key) == opportunity)
    https = REPLAY_URL.replace("http:", "https:")
    with replaying("salesforce", "roles_partner_incremental") as cassette:
        full, _, _ = salesforce_roles_partner_incremental(salesforce_source(https, CREDENTIALS))
        assert cassette.all_played
    bundle = next(b for p in full for b in p.records if b.deal["Id"] == opportunity)
    ref = partner_ref(DEFAULT_MAPPING, partner)
    assert ref == f"sf-{partner}"
    deal_, company, products = bundle_to_crm(bundle, fields=SALESFORCE_PARTNER_FIELDS)
    mapped = map_deal(deal_, company, products, DEFAULT_MAPPING, partners={ref: _partner(ref, deal, "reseller")})
    assert mapped.contract.reseller_ref == ref and mapped.referral is None
    assert mapped.customer.customer_ref == f"sf-{account_id(deal.company_key)}"  # the end customer stays
    with pytest.raises(MappingError) as unknown:
        map_deal(deal_, company, products, DEFAULT_MAPPING, partners={})
    assert unknown.value.field == "PartnerAccountId" and ref in unknown.value.message
    with pytest.raises(MappingError, match="not a reseller one"):
        map_deal(deal_, company, products, DEFAULT_MAPPING, partners={ref: _partner(ref, deal, "referral")})
    as_referral = bundle_to_crm(bundle, fields=SalesforceFields(referral_partner="PartnerAccountId"))
    referred = map_deal(*as_referral, DEFAULT_MAPPING, partners={ref: _partner(ref, deal, "both")})
    assert referred.contract.reseller_ref is None
    assert referred.referral is not None and referred.referral.partner_ref == ref
    assert referred.referral.referral.customer_ref == referred.customer.customer_ref
    assert referred.referral.referral.contract_ref == referred.contract.contract_ref


def test_account_contact_roles_stand_in_and_a_malformed_address_is_left_out_replay() -> None:
    """With ``account_contact_roles`` on, the Account's billing contacts are the deal's where its
    Opportunity names none in that role (the Opportunity's own win, other roles left out), at one more
    query a page; off, they are not read. A malformed address is left out naming its field."""
    on_opportunity, on_account, typo = salesforce_account_role_deals(salesforce_world())
    https = REPLAY_URL.replace("http:", "https:")
    with replaying("salesforce", "account_roles") as cassette:
        got = salesforce_account_roles(salesforce_source(https, CREDENTIALS))
        assert cassette.all_played
    pages, plain = got["with_roles"], got["plain"]
    bundles = {b.deal["Id"]: b for p in pages for b in p.records}
    first = bundle_to_crm(bundles[opportunity_id(on_opportunity.key)])[0]
    assert [c.email for c in first.contacts or ()] == ["ap@one.example"]  # the Opportunity's own
    second = bundle_to_crm(bundles[opportunity_id(on_account.key)])[0]
    assert [(c.email, c.name, c.field) for c in second.contacts or ()] == [
        ("books@two.example", "Bo Books14", "Account.AccountContactRoles[1].Contact.Email")
    ]
    assert sum(p.api_calls for p in pages) == sum(p.api_calls for p in plain) + len(pages)
    without = {b.deal["Id"]: b for p in plain for b in p.records}
    assert bundle_to_crm(without[opportunity_id(on_account.key)])[0].contacts == ()  # not read: none
    crm_deal, company, products = bundle_to_crm(without[opportunity_id(typo.key)])
    mapped = map_deal(crm_deal, company, products, DEFAULT_MAPPING)  # the deal is kept, without that contact
    assert mapped.customer.contacts == []
    [dropped] = mapped.dropped_contacts
    assert dropped.field == "OpportunityContactRoles[0].Contact.Email"
    assert "malformed e-mail address 'ap at example'" in str(dropped)


def test_the_lag_window_repeats_nothing_and_a_late_commit_inside_it_is_delivered_replay() -> None:
    world = salesforce_world()
    with replaying("salesforce", "late_commit") as cassette:
        got = salesforce_late_commit(salesforce_source(REPLAY_URL.replace("http:", "https:"), CREDENTIALS))
        assert cassette.all_played
    assert len([b for p in got["first"] for b in p.records]) == len(world.live_deals)
    assert [b for p in got["again"] for b in p.records] == []  # the newest re-read by the window, then skipped
    late = {b.deal["Id"]: b.deal["Name"] for p in got["late"] for b in p.records}
    assert late[opportunity_id(salesforce_late(world).key)] == "Late commit"
