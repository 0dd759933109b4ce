"""Billing contacts from Salesforce: the Opportunity's contact roles in the configured role (default
"Billing") become the customer's contacts, else (where configured) its Account's contact roles; a
malformed address is refused naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from billbridge.connectors.salesforce.source import ACCOUNTS_PER_ROLE_QUERY, account_roles_soql
from billbridge.mapping.crm import map_deal
from billbridge.mapping.salesforce import DEFAULT_FIELDS, DEFAULT_MAPPING, SalesforceFields, bundle_to_crm
from billbridge.sandbox.demo_world import DemoWorld, generate
from billbridge.sandbox.salesforce import SalesforceSandbox, account_id, opportunity_id
from billbridge.sandbox.salesforce.soql import parse
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


def test_a_malformed_contact_address_is_left_out_naming_its_field(sandbox: SalesforceSandbox, world: DemoWorld) -> None:
    deal = next(d for d in world.live_deals if d.key in set(world.expected_contract_keys()))
    opp = opportunity_id(deal.key)
    _role(sandbox, world, 4, opp, "Billing", "ap at example", True)
    bundles = {b.deal["Id"]: b for p in source_for(sandbox, world).pull(None) for b in p.records}
    crm_deal, company, products = bundle_to_crm(bundles[opp])
    mapped = map_deal(crm_deal, company, products, DEFAULT_MAPPING)  # the deal is kept, without that contact
    assert mapped.customer.contacts == []
    [dropped] = mapped.dropped_contacts
    assert dropped.field == "OpportunityContactRoles[0].Contact.Email"
    assert "malformed e-mail address 'ap at example'" in str(dropped)


def _account_role(sf: SalesforceSandbox, world: DemoWorld, n: int, company: str, role: str, email: str) -> None:
    """A Contact of the company's Account in ``role`` there (AccountContactRole)."""
    stamp = world.now - timedelta(days=1)
    contact = f"003{n:015d}"
    account = account_id(company)
    sf.org.put(
        "Contact",
        {"Id": contact, "FirstName": "Bo", "LastName": f"Books{n}", "Email": email, "AccountId": account}
        | {"IsDeleted": False, "SystemModstamp": stamp},
    )
    sf.org.put(
        "AccountContactRole",
        {"Id": f"02Z{n:015d}", "AccountId": account, "ContactId": contact, "Role": role, "IsPrimary": False}
        | {"IsDeleted": False, "SystemModstamp": stamp},
    )


def test_account_contact_roles_stand_in_where_the_opportunity_names_no_billing_contact(
    sandbox: SalesforceSandbox, world: DemoWorld
) -> None:
    """With ``account_contact_roles`` on, the Account's contacts in the billing role are the deal's
    contacts where its Opportunity names none in that role; the Opportunity's own win; other roles
    are left out; one more query per page (the Accounts' roles by their ids) and none without it."""
    deals, companies = [], set()
    for deal in sorted(world.live_deals, key=lambda d: d.key):
        if deal.key in world.expected_contract_keys() and deal.company_key not in companies:
            deals.append(deal)
            companies.add(deal.company_key)
    on_opportunity, on_account = deals[0], deals[1]
    _role(sandbox, world, 11, opportunity_id(on_opportunity.key), "Billing", "ap@one.example", True)
    _account_role(sandbox, world, 12, on_opportunity.company_key, "Billing", "books@one.example")
    _account_role(sandbox, world, 13, on_account.company_key, "Decision Maker", "ceo@two.example")
    _account_role(sandbox, world, 14, on_account.company_key, "Billing", "books@two.example")

    pages = list(source_for(sandbox, world, account_contact_roles=True).pull(None))
    bundles = {b.deal["Id"]: b for p in pages for b in p.records}
    first = bundle_to_crm(bundles[opportunity_id(on_opportunity.key)])[0]
    assert [c.email for c in first.contacts or ()] == ["ap@one.example"]  # the Opportunity's own
    second = bundle_to_crm(bundles[opportunity_id(on_account.key)])[0]
    assert [(c.email, c.name, c.field) for c in second.contacts or ()] == [
        ("books@two.example", "Bo Books14", "Account.AccountContactRoles[1].Contact.Email")
    ]
    plain = list(source_for(sandbox, world).pull(None))
    assert sum(p.api_calls for p in pages) == sum(p.api_calls for p in plain) + len(pages)
    without = {b.deal["Id"]: b for p in plain for b in p.records}[opportunity_id(on_account.key)]
    assert bundle_to_crm(without)[0].contacts == ()  # the Account's roles are not read: none


def test_account_roles_are_asked_for_by_account_ids_in_lists_of_200() -> None:
    """The query the connector sends for the Accounts' roles (the sandbox parses its IN list)."""
    ids = [account_id(f"C{n:06d}") for n in range(1, 4)]
    soql = account_roles_soql(ids)
    assert soql == (
        "SELECT Id, AccountId, Role, IsPrimary, ContactId, Contact.Email, Contact.FirstName, Contact.LastName "
        f"FROM AccountContactRole WHERE AccountId IN ('{ids[0]}', '{ids[1]}', '{ids[2]}') ORDER BY AccountId, Id"
    )
    parsed = parse(soql)
    assert parsed.where[0].op == "IN" and parsed.where[0].value == tuple(ids)
    assert ACCOUNTS_PER_ROLE_QUERY == 200
