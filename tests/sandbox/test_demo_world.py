"""The demo world's partners and billing contacts: added without touching the deals ``generate``
made (beyond naming the partners), the same every time, valid for billbridge as a contract file."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from billbridge.flows.importing import import_document
from billbridge.sandbox.demo_world import (
    DemoWorld,
    entities_document,
    generate,
    partners_document,
    with_contacts,
    with_partners,
)
from billbridge.store.db import Store
from billbridge.store.partners import load_agreements, load_partners


def _world() -> DemoWorld:
    return with_contacts(with_partners(generate(60, seed=101)))


def test_partners_are_named_on_valid_won_deals_of_their_entity_and_nothing_else_changes() -> None:
    plain, world = generate(60, seed=101), _world()
    assert world == _world()  # seeded: the same world every time
    for key, deal in plain.deals.items():
        named = world.deals[key]
        assert replace(named, referral_partner=None, reseller=None, auto_charge=deal.auto_charge) == deal
    assert Counter(p.kind for p in world.partners.values()) == {"referral": 2, "reseller": 1}
    partnered = [d for d in world.deals.values() if d.referral_partner or d.reseller]
    for deal in partnered:
        partner = world.partners[deal.referral_partner or deal.reseller or ""]
        assert deal.won and deal.broken is None and not deal.deleted
        assert (deal.entity_ref, deal.currency) == (partner.entity_ref, partner.currency)
        assert not (deal.referral_partner and deal.reseller)
    resold = Counter(d.reseller for d in partnered if d.reseller)
    assert list(resold.values()) == [3]  # the one reseller, on three deals, none of them auto-charged
    assert not any(d.auto_charge for d in partnered if d.reseller)
    assert sum(1 for d in partnered if d.referral_partner) >= 2


def test_contacts_by_company_one_in_five_without_any() -> None:
    world = _world()
    companies = sorted({d.company_key for d in world.live_deals})
    with_contact = {c.company_key for c in world.contacts.values()}
    with_email = {k for k, c in world.companies.items() if c.billing_email}
    none = [k for k in companies if k not in with_contact | with_email]
    # 18 companies with deals, in slots of five: 0 and 2 a company contact, 1 a deal contact, 3 an e-mail, 4 none
    assert len(companies) == 18 and (len(with_contact), len(with_email), len(none)) == (12, 3, 3)
    on_deal = [c for c in world.contacts.values() if c.deal_key]
    assert len(on_deal) == 4 and all(world.deals[c.deal_key or ""].company_key == c.company_key for c in on_deal)
    assert all(c.email.endswith("@" + world.companies[c.company_key].domain) for c in world.contacts.values())


def test_the_partners_document_imports_every_partner_and_agreement(store: Store) -> None:
    world = _world()
    import_document(store, entities_document(world))
    summary = import_document(store, partners_document(world, lambda key: f"demo-{key.lower()}"))
    assert not summary.errors
    with store.read() as session:
        partners = load_partners(session)
        agreements = load_agreements(session)
    assert sorted(partners) == ["demo-p0001", "demo-p0002", "demo-p0003"]
    assert partners["demo-p0003"].kind == "reseller" and partners["demo-p0003"].discount_percent == 20
    assert [(a.partner_ref, a.basis, a.percent, a.months) for a in agreements] == [
        ("demo-p0001", "billed", 20, 24),
        ("demo-p0002", "collected", 10, None),
    ]
