"""Billing contacts from Salesforce: the Opportunity's contact roles in the configured role (default
"Billing") become the customer's contacts; a malformed address is refused naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from billbridge.mapping.crm import MappingError, map_deal
from billbridge.mapping.salesforce import DEFAULT_FIELDS, DEFAULT_MAPPING, SalesforceFields, bundle_to_crm
from billbridge.sandbox.demo_world import DemoWorld, generate
from billbridge.sandbox.salesforce import SalesforceSandbox, opportunity_id
from tests.connectors.test_salesforce_connector import source_for


@pytest.fixture
def world() -> DemoWorld:
    return generate(20, seed=5)


@pytest.fixture
def sandbox(world: DemoWorld) -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(world) as sf:
        yield sf


def _role(sf: SalesforceSandbox, world: DemoWorld, n: int, opp: str, role: str, email: str, primary: bool) -> None:
    stamp = world.now - timedelta(days=1)
    contact = f"003{n:015d}"
    sf.org.put(
        "Contact",
        {
            "Id": contact,
            "FirstName": "Ada",
            "LastName": f"Payer{n}",
            "Email": email,
            "IsDeleted": False,
            "SystemModstamp": stamp,
        },
    )
    sf.org.put(
        "OpportunityContactRole",
        {
            "Id": f"00K{n:015d}",
            "OpportunityId": opp,
            "ContactId": contact,
            "Role": role,
            "IsPrimary": primary,
            "IsDeleted": False,
            "SystemModstamp": stamp,
        },
    )


def test_contacts_in_the_billing_role_become_the_customers_contacts(
    sandbox: SalesforceSandbox, world: DemoWorld
) -> None:
    deal = next(d for d in world.live_deals if d.key in set(world.expected_contract_keys()))
    opp = opportunity_id(deal.key)
    _role(sandbox, world, 1, opp, "Decision Maker", "ceo@example.com", True)
    _role(sandbox, world, 2, opp, "Billing", "ap@example.com", False)
    _role(sandbox, world, 3, opp, "Billing", "controller@example.com", True)
    bundles = {b.deal["Id"]: b for p in source_for(sandbox, world).pull(None) for b in p.records}
    crm_deal, company, products = bundle_to_crm(bundles[opp])
    mapped = map_deal(crm_deal, company, products, DEFAULT_MAPPING)
    assert mapped.customer.contacts is not None
    assert [(c.email, c.name) for c in mapped.customer.contacts] == [
        ("controller@example.com", "Ada Payer3"),  # the primary one first
        ("ap@example.com", "Ada Payer2"),
    ]
    finance = bundle_to_crm(bundles[opp], fields=SalesforceFields(billing_contact_role="Decision Maker"))[0]
    assert [c.email for c in finance.contacts or ()] == ["ceo@example.com"]
    other = next(b for i, b in bundles.items() if i != opp)
    assert bundle_to_crm(other, fields=DEFAULT_FIELDS)[0].contacts == ()  # none: the company's email stands in


def test_a_malformed_contact_address_names_its_field(sandbox: SalesforceSandbox, world: DemoWorld) -> None:
    deal = next(d for d in world.live_deals if d.key in set(world.expected_contract_keys()))
    opp = opportunity_id(deal.key)
    _role(sandbox, world, 4, opp, "Billing", "ap at example", True)
    bundles = {b.deal["Id"]: b for p in source_for(sandbox, world).pull(None) for b in p.records}
    crm_deal, company, products = bundle_to_crm(bundles[opp])
    with pytest.raises(MappingError) as refused:
        map_deal(crm_deal, company, products, DEFAULT_MAPPING)
    assert refused.value.field == "OpportunityContactRoles[0].Contact.Email"
    assert "malformed e-mail address 'ap at example'" in str(refused.value)
