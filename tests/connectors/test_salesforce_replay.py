"""The Salesforce connector against recorded exchanges with the strict sandbox (fast tier, no server):
the token request and every SOQL page of a full pull must be asked as recorded, and the bundles must
carry the seeded world's opportunities. Re-record with ``python -m tests.connectors.record_cassettes``."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from billbridge.mapping.crm import map_deal
from billbridge.mapping.salesforce import DEFAULT_MAPPING, bundle_to_crm
from billbridge.sandbox.salesforce import opportunity_id
from tests.connectors.cassettes import REPLAY_URL, replaying
from tests.connectors.scenarios import (
    SALESFORCE_PARTNER_FIELDS,
    crm_later,
    salesforce_full_pull,
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
    edited = {opportunity_id(k) for k, d in later.deals.items() if d != world.deals[k] and not d.deleted}
    deleted = {opportunity_id(k) for k, d in later.deals.items() if d.deleted and not world.deals[k].deleted}
    assert edited and deleted
    assert sorted(b.deal["Id"] for p in changes for b in p.records) == sorted(edited)
    assert sorted(i for p in changes for i in p.deleted_ids) == sorted(deleted)
    assert [b for p in nothing for b in p.records] == [] and [i for p in nothing for i in p.deleted_ids] == []
