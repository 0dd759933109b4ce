"""Billing contacts from HubSpot, through hubspot-api-client against the sandbox: contacts associated
with the deal under the billing association label (default "Billing contact"), else with its company,
else the company's billing email property; the contact's language; a malformed address left out (the deal kept)
naming the record and field; every contact read in batches, never one call per deal."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from billbridge.connectors.errors import RetryPolicy
from billbridge.connectors.hubspot import HubSpotClient, HubSpotSource
from billbridge.mapping.crm import map_deal
from billbridge.mapping.hubspot import DEFAULT_MAPPING, HubSpotProperties, bundle_to_crm
from billbridge.records import DealBundle
from billbridge.sandbox.demo_world import DemoDeal, DemoWorld, generate
from billbridge.sandbox.hubspot import HubSpotSandbox
from billbridge.sandbox.hubspot.records import to_ms
from tests.connectors.test_hubspot_connector import settings_for

pytestmark = pytest.mark.slow  # starts the HubSpot sandbox

LABEL = "Billing contact"


@pytest.fixture(scope="module")
def world() -> DemoWorld:
    return generate(60, seed=5)


@pytest.fixture
def sandbox(world: DemoWorld) -> Iterator[HubSpotSandbox]:
    with HubSpotSandbox.start(world) as running:
        yield running


def _source(sandbox: HubSpotSandbox, **settings: object) -> HubSpotSource:
    config = settings_for(sandbox).model_copy(update=settings)
    client = HubSpotClient(config, policy=RetryPolicy(attempts=3, base_delay=0.001), sleep=lambda _: None)
    return HubSpotSource(config, client=client)


def _pull(source: HubSpotSource) -> dict[str, DealBundle]:
    return {str(b.deal["id"]): b for page in source.pull(None) for b in page.records}


def _deals(world: DemoWorld) -> list[DemoDeal]:
    """Valid won deals of distinct companies (one deal's company contacts are not another's)."""
    seen: set[str] = set()
    out = []
    for deal in world.live_deals:
        if deal.key in set(world.expected_contract_keys()) and deal.company_key not in seen:
            seen.add(deal.company_key)
            out.append(deal)
    return out


def _contact(sandbox: HubSpotSandbox, world: DemoWorld, email: str, **props: str) -> str:
    with sandbox.data.lock:
        return sandbox.data.add_contact({"email": email, **props}, to_ms(world.now))


def _link(sandbox: HubSpotSandbox, kind: str, record_id: str, contact_id: str, label: str | None = LABEL) -> None:
    with sandbox.data.lock:
        sandbox.data.link_contact(kind, record_id, contact_id, label)


def _company_property(sandbox: HubSpotSandbox, company_id: str, name: str, value: str) -> None:
    with sandbox.data.lock:
        sandbox.data.tables["companies"].live[company_id].properties[name] = value


def _mapped(bundle: DealBundle, names: HubSpotProperties | None = None) -> list[tuple[str, str | None, str]] | None:
    deal, company, products = bundle_to_crm(bundle, names=names or HubSpotProperties())
    customer = map_deal(deal, company, products, DEFAULT_MAPPING).customer
    if customer.contacts is None:
        return None
    return [(c.email, c.name, c.language) for c in customer.contacts]


def test_labelled_deal_contacts_then_company_contacts_then_the_billing_email(
    sandbox: HubSpotSandbox, world: DemoWorld
) -> None:
    on_deal, on_company, by_email, nobody = _deals(world)[:4]
    ids = sandbox.data.ids
    ap = _contact(sandbox, world, "ap@one.example", firstname="Ada", lastname="Payer", hs_language="de")
    ceo = _contact(sandbox, world, "ceo@one.example", firstname="Chef")
    cfo = _contact(sandbox, world, "cfo@one.example", hs_language="fr-ch")
    _link(sandbox, "deals", ids[on_deal.key], ap)
    _link(sandbox, "deals", ids[on_deal.key], ceo, label=None)  # associated, but not as billing contact
    _link(sandbox, "deals", ids[on_deal.key], cfo)
    _link(sandbox, "companies", ids[on_deal.company_key], ceo)  # the deal's own contacts win over these
    controller = _contact(sandbox, world, "controller@two.example", lastname="Ledger")
    _link(sandbox, "companies", ids[on_company.company_key], controller)
    _link(sandbox, "deals", ids[on_company.key], ceo, label="Decision maker")
    _company_property(sandbox, ids[by_email.company_key], "billing_email", " invoices@three.example ")

    bundles = _pull(_source(sandbox))
    assert _mapped(bundles[ids[on_deal.key]]) == [
        ("ap@one.example", "Ada Payer", "de"),
        ("cfo@one.example", None, "fr-ch"),
    ]
    assert _mapped(bundles[ids[on_company.key]]) == [("controller@two.example", "Ledger", "en")]
    assert _mapped(bundles[ids[by_email.key]]) == [("invoices@three.example", None, "en")]
    assert bundles[ids[nobody.key]].contacts == []
    assert _mapped(bundles[ids[nobody.key]]) is None  # nothing named: the stored ones stay, else none (waits)

    relabelled = _pull(_source(sandbox, billing_contact_label="Decision maker"))
    assert _mapped(relabelled[ids[on_company.key]]) == [("ceo@one.example", "Chef", "en")]
    unread = _pull(_source(sandbox, billing_contact_label=""))
    assert all(b.contacts is None for b in unread.values())  # the contacts are not asked for at all
    no_fallback = HubSpotProperties(company_billing_email=None)
    assert _mapped(bundles[ids[by_email.key]], no_fallback) is None


def test_a_malformed_address_drops_its_contact_naming_the_field_and_a_bad_language_falls_back_to_english(
    sandbox: HubSpotSandbox, world: DemoWorld
) -> None:
    typo, bad_language, bad_billing_email = _deals(world)[:3]
    ids = sandbox.data.ids
    broken = _contact(sandbox, world, "ap at example")
    _link(sandbox, "deals", ids[typo.key], broken)
    odd = _contact(sandbox, world, "ok@example.com", hs_language="Deutsch!")
    _link(sandbox, "deals", ids[bad_language.key], odd)
    _company_property(sandbox, ids[bad_billing_email.company_key], "billing_email", "ar@@example")
    bundles = _pull(_source(sandbox))

    def dropped(bundle: DealBundle, kept: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
        deal, company, products = bundle_to_crm(bundle, names=HubSpotProperties())
        mapped = map_deal(deal, company, products, DEFAULT_MAPPING)  # the deal is kept
        # its only contact left out, nothing guessed (or kept, written to in the default language)
        assert [(c.email, c.language) for c in mapped.customer.contacts or []] == (kept or [])
        return [(p.field, p.message) for p in mapped.dropped_contacts]

    [(field, message)] = dropped(bundles[ids[typo.key]])
    assert field == f"contact {broken} email" and "malformed e-mail address 'ap at example'" in message
    [(field, message)] = dropped(bundles[ids[bad_billing_email.key]])
    assert field == f"company {ids[bad_billing_email.company_key]} billing_email"
    [(field, message)] = dropped(bundles[ids[bad_language.key]], kept=[("ok@example.com", "en")])
    assert field == f"contact {odd} hs_language" and "unknown language 'Deutsch!'" in message


def test_contacts_are_read_in_batches_not_per_deal(sandbox: HubSpotSandbox, world: DemoWorld) -> None:
    deals = _deals(world)
    ids = sandbox.data.ids
    without = _source(sandbox, billing_contact_label=None)
    list(without.pull(None))
    for n, deal in enumerate(deals):
        contact = _contact(sandbox, world, f"ap{n}@example.com")
        _link(sandbox, "deals" if n % 2 else "companies", ids[deal.key if n % 2 else deal.company_key], contact)
    source = _source(sandbox)
    bundles = _pull(source)
    assert sum(1 for b in bundles.values() if b.contacts) >= len(deals) > 10
    # one group of deals: deal contacts, company contacts (one read of up to 1,000 each), contacts by 100
    assert source.client.calls - without.client.calls == 2 + math.ceil(len(deals) / 100)
