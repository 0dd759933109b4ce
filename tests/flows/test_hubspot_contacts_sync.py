"""HubSpot billing contacts end to end: the sandbox, the real SDK, the CRM sync, the store. Labelled
contacts are stored with their language; a deal whose contact has a malformed address is imported
without that contact, its customer quarantined naming the record and field (the payload kept); one
whose contact's language is unknown is imported with that contact written to in English, its customer
quarantined likewise; a customer with no contact and no billing email is listed as waiting."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from billbridge.flows.crm_pages import bundle_of, spec_for, sync_pages
from billbridge.flows.importing import import_document
from billbridge.flows.sync_crm import connect
from billbridge.sandbox import demo_world
from billbridge.sandbox.hubspot import HubSpotSandbox
from billbridge.sandbox.hubspot.records import to_ms
from billbridge.settings import Settings
from billbridge.store import messages, quarantine
from billbridge.store.contracts import contract_summaries
from billbridge.store.db import Store
from billbridge.store.models import Customer

pytestmark = pytest.mark.slow  # starts the HubSpot sandbox

TODAY = date(2026, 11, 2)


@pytest.fixture
def world() -> demo_world.DemoWorld:
    return demo_world.generate(40, seed=11)


@pytest.fixture
def sandbox(world: demo_world.DemoWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubSpotSandbox]:
    with HubSpotSandbox.start(world) as running:
        monkeypatch.setenv("BILLBRIDGE_HUBSPOT__REQUESTS_PER_10S", "100000")
        for key, value in running.env().items():
            monkeypatch.setenv(key, value)
        yield running


def _contact(sandbox: HubSpotSandbox, world: demo_world.DemoWorld, kind: str, record: str, **props: str) -> str:
    with sandbox.data.lock:
        contact = sandbox.data.add_contact(props, to_ms(world.now))
        sandbox.data.link_contact(kind, record, contact, "Billing contact")
    return contact


def test_hubspot_contacts_are_stored_a_bad_one_is_quarantined_and_others_go_on(
    store: Store, sandbox: HubSpotSandbox, world: demo_world.DemoWorld
) -> None:
    import_document(store, demo_world.entities_document(world))
    expected = set(world.expected_contract_keys())
    by_company: dict[str, demo_world.DemoDeal] = {}
    for deal in world.live_deals:
        if deal.key in expected:
            by_company.setdefault(deal.company_key, deal)
    good, bad, foreign = list(by_company.values())[:3]
    ids = sandbox.data.ids
    _contact(sandbox, world, "deals", ids[good.key], email="ap@good.example", firstname="Ada", hs_language="de")
    broken = _contact(sandbox, world, "deals", ids[bad.key], email="ap at bad")
    odd = _contact(sandbox, world, "deals", ids[foreign.key], email="ap@foreign.example", hs_language="Deutsch!")

    summary = sync_pages(store, spec_for("hubspot"), connect("hubspot", Settings()), today=TODAY)
    assert summary.counts["contracts.created"] == len(expected)  # the bad contact's deal too: billing goes on
    with store.read() as session:
        refs = dict(session.query(Customer.customer_ref, Customer.id).all())
        good_id = refs[f"hs-{ids[good.company_key]}"]
        stored = messages.contacts_of(session, [good_id])[good_id]
        assert [(c.email, c.name, c.language) for c in stored] == [("ap@good.example", "Ada", "de")]
        contracts = {c["contract_ref"] for c in contract_summaries(session)}
        assert {f"hs-{ids[bad.key]}", f"hs-{ids[good.key]}", f"hs-{ids[foreign.key]}"} <= contracts
        held = {q["record_key"]: q for q in quarantine.list_open(session, source="hubspot")}
        bad_ref = f"hs-{ids[bad.company_key]}"
        entry = held[bad_ref]  # the contact left out, shown on its customer until it is corrected
        assert entry["record_type"] == "customers" and entry["field"] == f"contact {broken} email"
        assert messages.contacts_of(session, [refs[bad_ref]])[refs[bad_ref]] == []  # nothing guessed: it waits
        assert "malformed e-mail address 'ap at bad'" in entry["reason"]
        kept = bundle_of(entry["payload"])
        assert kept is not None and [c["id"] for c in kept.contacts or []] == [broken]
        foreign_ref = f"hs-{ids[foreign.company_key]}"
        entry = held[foreign_ref]  # the contact kept, in the default language, until the language is corrected
        assert entry["record_type"] == "customers" and entry["field"] == f"contact {odd} hs_language"
        assert "unknown language 'Deutsch!'" in entry["reason"] and "written in en" in entry["reason"]
        kept_contacts = messages.contacts_of(session, [refs[foreign_ref]])[refs[foreign_ref]]
        assert [(c.email, c.language) for c in kept_contacts] == [("ap@foreign.example", "en")]
        waiting = messages.without_contact(session, limit=1000)
    assert f"hs-{ids[good.company_key]}" not in waiting
    others = {f"hs-{ids[d.company_key]}" for d in by_company.values() if d not in (good, bad, foreign)} - {
        f"hs-{ids[bad.company_key]}"
    }
    assert others & set(refs) and others & set(refs) <= set(waiting)  # no contact, no billing email: they wait
