"""The HubSpot connector against recorded exchanges with the strict sandbox (fast tier, no server):
a full pull's search pages, association and batch reads and archived list must be asked exactly as
recorded, and the bundles must carry the seeded world's deals. Re-record with
``python -m tests.connectors.record_cassettes``."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from billbridge.billing.model import Partner
from billbridge.mapping.crm import MappedDeal, MappingError, is_won, map_deal, partner_ref
from billbridge.mapping.hubspot import DEFAULT_MAPPING, HubSpotProperties, bundle_to_crm
from billbridge.records import DealBundle
from billbridge.sandbox.demo_world import DemoDeal
from billbridge.sandbox.hubspot.records import render
from tests.connectors.cassettes import REPLAY_URL, replaying
from tests.connectors.scenarios import (
    crm_later,
    hubspot_contact_deals,
    hubspot_contacts_and_partners,
    hubspot_full_pull,
    hubspot_full_then_incremental,
    hubspot_reseller,
    hubspot_source,
    hubspot_world,
)


def test_a_full_pull_replays_from_the_cassette_with_every_live_deal_once() -> None:
    world = hubspot_world()
    with replaying("hubspot", "full_pull") as cassette:
        pages = hubspot_full_pull(hubspot_source(REPLAY_URL))
        assert cassette.all_played
    bundles = [b for page in pages for b in page.records]
    assert len({str(b.deal["id"]) for b in bundles}) == len(bundles) == len(world.live_deals)
    assert Counter(b.deal["properties"]["amount"] for b in bundles) == Counter(str(d.amount) for d in world.live_deals)
    assert Counter(len(b.lines) for b in bundles) == Counter(len(d.lines) for d in world.live_deals)
    assert all(b.company is not None for b in bundles)
    assert pages[-1].cursor is not None and sum(p.api_calls for p in pages) == len(cassette.requests)
    # the recorded portal's billing contacts (scenarios.hubspot_contacts): only those under the label
    named = Counter(tuple(c["properties"]["email"] for c in b.contacts or []) for b in bundles)
    assert named[("ap@first.example",)] == 1  # the first deal's own; its unlabelled contact is left out
    assert named[("controller@second.example",)] >= 1  # every deal of the second deal's company
    assert set(named) == {(), ("ap@first.example",), ("controller@second.example",)}
    # connector and mapping together: the won deals a correct sync keeps map, the broken ones do not
    key_of = {v: k for k, v in render(world).ids.items()}
    mapped, failed = set(), {}
    for bundle in bundles:
        deal, company, products = bundle_to_crm(bundle)
        if not is_won(deal, DEFAULT_MAPPING):
            continue
        key = key_of[deal.deal_id]
        try:
            contract = map_deal(deal, company, products, DEFAULT_MAPPING).contract
        except MappingError as exc:
            failed[key] = exc.field
            continue
        mapped.add(key)
        expected = world.deals[key]
        assert (contract.contract_start_date, contract.contract_end_date, contract.entity_ref) == (
            expected.start_date,
            expected.end_date,
            expected.entity_ref,
        )
        assert (contract.auto_charge, contract.payment_terms_days) == (
            expected.auto_charge,
            expected.payment_terms_days,
        )
        assert len(contract.lines) == len(expected.lines)
    assert mapped == world.expected_contract_keys() and set(failed) == world.broken_keys()


def test_an_incremental_pull_replays_only_the_changes_and_archivals() -> None:
    world = hubspot_world()
    later = crm_later(world)
    with replaying("hubspot", "full_then_incremental") as cassette:
        full, changes, nothing = hubspot_full_then_incremental(hubspot_source(REPLAY_URL))
        assert cassette.all_played
    assert len([b for p in full for b in p.records]) == len(world.live_deals)
    edited = [d for d in later.live_deals if d.modified_at == later.now]
    deleted = [d for d in later.deals.values() if d.deleted and not world.deals[d.key].deleted]
    assert edited and deleted
    pulled = [b for p in changes for b in p.records]
    assert Counter(b.deal["properties"]["dealname"] for b in pulled) == Counter(d.name for d in edited)
    assert Counter(b.deal["properties"]["amount"] for b in pulled) == Counter(str(d.amount) for d in edited)
    assert len({i for p in changes for i in p.deleted_ids}) == len(deleted)
    assert [b for p in nothing for b in p.records] == [] and [i for p in nothing for i in p.deleted_ids] == []


def _partner(ref: str, deal: DemoDeal, kind: str) -> Partner:
    """The partner as imported: a reseller gets a discount, a referral partner none."""
    discount = Decimal(25) if kind != "referral" else None
    return Partner.model_validate(
        {"partner_ref": ref, "name": "Channel", "kind": kind, "entity_ref": deal.entity_ref,
         "currency": deal.currency, "discount_percent": discount}
    )  # fmt: skip


def _mapped(
    bundle: DealBundle, names: HubSpotProperties | None = None, partners: dict[str, Partner] | None = None
) -> MappedDeal:
    deal, company, products = bundle_to_crm(bundle, names=names or HubSpotProperties())
    return map_deal(deal, company, products, DEFAULT_MAPPING, partners=partners)


def _contacts(bundle: DealBundle) -> list[tuple[str, str | None, str]] | None:
    contacts = _mapped(bundle).customer.contacts
    return None if contacts is None else [(c.email, c.name, c.language) for c in contacts]


def test_billing_contacts_by_label_company_and_billing_email_and_partners_replay() -> None:
    """Contacts under the billing label on the deal, else its company's, else the company's billing
    email; a malformed address dropped naming its field (the deal kept), an unknown language refused;
    another label configured, or none (the contacts not asked for: 3 calls fewer, contacts read in
    batches); a labelled company association naming the reseller, read both ways."""
    world = hubspot_world()
    ids = render(world).ids
    first, second = world.live_deals[:2]
    by_email, typo, bad_language, bad_billing_email, _ = hubspot_contact_deals(world)
    resold, reseller_company = hubspot_reseller(world)
    with replaying("hubspot", "contacts_and_partners") as cassette:
        got = hubspot_contacts_and_partners(hubspot_source(REPLAY_URL))
        assert cassette.all_played
    (pages, calls), (relabelled, _), (unread, unread_calls) = (
        got["pulls"][label] for label in ("Billing contact", "Decision maker", "")
    )
    bundles = {str(b.deal["id"]): b for page in pages for b in page.records}
    assert len(bundles) == len(world.live_deals)
    assert _contacts(bundles[ids[first.key]]) == [("ap@first.example", "Ada", "de")]
    assert _contacts(bundles[ids[second.key]]) == [("controller@second.example", None, "en")]  # ceo: another label
    assert _contacts(bundles[ids[by_email.key]]) == [("invoices@three.example", None, "en")]
    no_fallback = _mapped(bundles[ids[by_email.key]], HubSpotProperties(company_billing_email=None))
    assert no_fallback.customer.contacts is None  # nothing named: the stored ones stay
    [broken] = bundles[ids[typo.key]].contacts or []
    dropped = _mapped(bundles[ids[typo.key]])
    assert dropped.customer.contacts == []  # the deal is kept, its only contact left out, nothing guessed
    assert [(p.field, "malformed e-mail address 'ap at example'" in p.message) for p in dropped.dropped_contacts] == [
        (f"contact {broken['id']} email", True)
    ]
    [odd] = bundles[ids[bad_language.key]].contacts or []
    odd_language = _mapped(bundles[ids[bad_language.key]])  # kept, written to in English, the field named
    assert odd_language.customer.contacts and {c.language for c in odd_language.customer.contacts} == {"en"}
    assert [p.field for p in odd_language.dropped_contacts] == [f"contact {odd['id']} hs_language"]
    dropped = _mapped(bundles[ids[bad_billing_email.key]])
    assert [p.field for p in dropped.dropped_contacts] == [
        f"company {ids[bad_billing_email.company_key]} billing_email"
    ]

    again = {str(b.deal["id"]): b for page in relabelled for b in page.records}
    assert _contacts(again[ids[second.key]]) == [("ceo@second.example", "Chef", "en")]
    assert all(b.contacts is None for page in unread for b in page.records)  # not asked for at all
    assert calls - unread_calls == 3  # deal contacts, company contacts, the contacts in one batch of 100

    deal_id, reseller = ids[resold.key], ids[reseller_company]
    bundle = bundles[deal_id]
    assert str(bundle.company and bundle.company["id"]) == ids[resold.company_key]  # billed, not the partner
    assert bundle.labelled == {"Reseller": [reseller]}
    assert all(not b.labelled for i, b in bundles.items() if i != deal_id)
    ref = partner_ref(DEFAULT_MAPPING, reseller)
    mapped = _mapped(bundle, partners={ref: _partner(ref, resold, "reseller")})
    assert mapped.contract.reseller_ref == ref and mapped.customer.customer_ref == f"hs-{ids[resold.company_key]}"
    with pytest.raises(MappingError) as unknown:
        _mapped(bundle, partners={"hs-1": _partner("hs-1", resold, "reseller")})
    assert unknown.value.field == "associations.companies[Reseller]" and ref in unknown.value.message
    as_referral = HubSpotProperties(referral_partner_label="Reseller", reseller_label=None)
    referred = _mapped(bundle, as_referral, {ref: _partner(ref, resold, "both")})
    assert referred.contract.reseller_ref is None and referred.referral is not None
    assert (referred.referral.partner_ref, referred.referral.field) == (ref, "associations.companies[Reseller]")
    links = dict(got["links"][deal_id])
    assert (links[reseller], links[ids[resold.company_key]]) == (("Reseller",), ())
    assert (deal_id, ("Reseller",)) in got["back"][reseller]
