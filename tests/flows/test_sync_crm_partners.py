"""Partners named in the CRMs, end to end (sandbox, real SDK, pipeline, store): a deal sold through a
known reseller becomes a contract billed to it, a deal with a referral partner adds its customer to
the partner's referral agreement (once, however often it syncs), and a deal naming an unknown partner
is quarantined with the vendor field named while the others go on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any

import pytest

from billbridge.connectors.base import DealSource
from billbridge.connectors.hubspot import connect as hubspot_connect
from billbridge.connectors.salesforce import connect as salesforce_connect
from billbridge.flows.crm_pages import CrmSourceSpec, sync_pages
from billbridge.flows.importing import import_document
from billbridge.mapping import hubspot, salesforce
from billbridge.sandbox import demo_world
from billbridge.sandbox.hubspot import HubSpotSandbox
from billbridge.sandbox.salesforce import SalesforceSandbox, account_id, opportunity_id
from billbridge.settings import Settings
from billbridge.store import quarantine
from billbridge.store.contracts import current_contracts
from billbridge.store.db import Store
from billbridge.store.partners import load_agreements

TODAY = date(2026, 11, 2)


@dataclass
class Crm:
    name: str
    spec: CrmSourceSpec
    connect: Callable[[], DealSource]
    deal_id: Callable[[str], str]  # world deal key -> the CRM's id
    company_id: Callable[[str], str]  # world company key -> the CRM's id
    link: Callable[[str, str, str], None]  # (deal key, partner company key, role): name the partner
    unknown_field: str


@pytest.fixture
def world() -> demo_world.DemoWorld:
    return demo_world.generate(40, seed=12)


@pytest.fixture(params=["hubspot", "salesforce"])
def crm(request: pytest.FixtureRequest, world: demo_world.DemoWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[Crm]:
    sandbox: Any
    if request.param == "hubspot":
        sandbox = HubSpotSandbox.start(world)
        monkeypatch.setenv("BILLBRIDGE_HUBSPOT__REQUESTS_PER_10S", "100000")
        labels = {"referral": "Referral partner", "reseller": "Reseller"}

        def hs_link(deal: str, company: str, role: str) -> None:
            ids = sandbox.data.ids
            sandbox.data.label("deals", "companies", ids[deal], ids[company], labels[role], 40 + len(role))

        found = Crm(
            "hubspot",
            CrmSourceSpec("hubspot", hubspot.bundle_to_crm, hubspot.DEFAULT_MAPPING),
            lambda: hubspot_connect(Settings()),
            lambda key: str(sandbox.data.ids[key]),
            lambda key: str(sandbox.data.ids[key]),
            hs_link,
            "associations.companies[Reseller]",
        )
    else:
        sandbox = SalesforceSandbox(world).start()
        # Partner Relationship Management: PartnerAccountId names the reseller; a custom lookup could be
        # the referral partner (the sandbox's org has only the standard one: this test reads resellers).
        fields = salesforce.SalesforceFields(reseller_partner="PartnerAccountId")

        def sf_link(deal: str, company: str, role: str) -> None:
            assert role == "reseller"
            org, opp, account = sandbox.org, opportunity_id(deal), account_id(company)
            org.put("Account", {**org.tables["Account"].records[account], "IsPartner": True})
            org.put("Opportunity", {**org.tables["Opportunity"].records[opp], "PartnerAccountId": account})

        found = Crm(
            "salesforce",
            CrmSourceSpec("salesforce", partial(salesforce.bundle_to_crm, fields=fields), salesforce.DEFAULT_MAPPING),
            lambda: salesforce_connect(Settings(), columns=fields.columns()),
            opportunity_id,
            account_id,
            sf_link,
            "PartnerAccountId",
        )
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    try:
        yield found
    finally:
        sandbox.stop()


def _partner(ref: str, deal: demo_world.DemoDeal, kind: str, name: str | None = None) -> dict[str, Any]:
    partner = {"partner_ref": ref, "name": name or f"Partner {ref}", "kind": kind, "entity_ref": deal.entity_ref}
    return partner | {"currency": deal.currency, **({"discount_percent": "25"} if kind == "reseller" else {})}


def test_deals_naming_partners_are_billed_to_the_reseller_referred_or_quarantined(
    store: Store, crm: Crm, world: demo_world.DemoWorld
) -> None:
    import_document(store, demo_world.entities_document(world))
    deals = sorted((d for d in world.live_deals if d.key in world.expected_contract_keys()), key=lambda d: d.key)
    resold, referred, unknown = deals[0], deals[1], deals[2]
    others = [k for k in sorted(world.companies) if k not in {d.company_key for d in (resold, referred, unknown)}]
    # A reseller is a CRM account invoiced as a customer under its ref: the same account as the customer of
    # its own deals, so it is declared with that account's name and in its entity (a customer record may
    # not rename or move a reseller's bill-to record).
    reseller_co = next(k for k in others if world.companies[k].entity_ref == resold.entity_ref)
    stranger_co = next(k for k in others if k != reseller_co and world.companies[k].entity_ref == unknown.entity_ref)
    referral_co = next(k for k in others if k not in {reseller_co, stranger_co})
    prefix = crm.spec.mapping.ref_prefix
    reseller, referral = prefix + crm.company_id(reseller_co), prefix + crm.company_id(referral_co)
    partners = [_partner(reseller, resold, "reseller", world.companies[reseller_co].name)]
    agreements = []
    if crm.name == "hubspot":
        partners.append(_partner(referral, referred, "referral"))
        agreements.append(
            {"agreement_ref": "ref-1", "partner_ref": referral, "currency": referred.currency, "percent": "20"}
        )
    summary = import_document(store, {"partners": partners, "referral_agreements": agreements})
    assert not summary.errors
    crm.link(resold.key, reseller_co, "reseller")
    crm.link(unknown.key, stranger_co, "reseller")
    if crm.name == "hubspot":
        crm.link(referred.key, referral_co, "referral")

    first = sync_pages(store, crm.spec, crm.connect(), today=TODAY)
    ref_of = {d.key: prefix + crm.deal_id(d.key) for d in (resold, referred, unknown)}
    with store.read() as session:
        stored = current_contracts(session, list(ref_of.values()))
        held = {q["record_key"]: q for q in quarantine.list_open(session, source=crm.name)}
        agreed = load_agreements(session)
    assert stored[ref_of[resold.key]].reseller_ref == reseller
    assert stored[ref_of[referred.key]].reseller_ref is None
    assert ref_of[unknown.key] not in stored  # refused, and kept with the field that named the partner
    entry = held[ref_of[unknown.key]]
    assert entry["field"] == crm.unknown_field and "unknown partner" in entry["reason"]
    assert first.counts["contracts.created"] == len(world.expected_contract_keys()) - 1  # the others went on
    if crm.name == "hubspot":
        (agreement,) = agreed
        (added,) = agreement.referrals
        assert (added.customer_ref, added.contract_ref) == (
            stored[ref_of[referred.key]].customer_ref,
            ref_of[referred.key],
        )
        assert added.referred_on == stored[ref_of[referred.key]].contract_start_date
        assert first.counts["referrals.updated"] == 1

    again = sync_pages(store, crm.spec, crm.connect(), today=TODAY, full=True)
    assert again.counts["contracts.created"] == again.counts["contracts.updated"] == 0
    assert again.counts["referrals.updated"] == 0
    with store.read() as session:
        assert load_agreements(session) == agreed  # the referral is not added twice

    # Once the partner is declared, the next (incremental) sync retries the refused deal from its kept
    # payload, unchanged in the CRM, takes it in and clears its entry.
    assert entry["waiting_for"] == f"partners:{prefix + crm.company_id(stranger_co)}"
    stranger = prefix + crm.company_id(stranger_co)
    stranger_partner = _partner(stranger, unknown, "reseller", world.companies[stranger_co].name)
    assert not import_document(store, {"partners": [stranger_partner]}).errors
    healed = sync_pages(store, crm.spec, crm.connect(), today=TODAY)
    assert healed.retried == 1 and healed.deals_pulled == 0
    with store.read() as session:
        assert current_contracts(session, [ref_of[unknown.key]])[ref_of[unknown.key]].reseller_ref == stranger
        assert ref_of[unknown.key] not in {q["record_key"] for q in quarantine.list_open(session, source=crm.name)}
