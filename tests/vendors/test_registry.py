"""The vendor registry: every vendor's roles in one place, built by name, SDKs loaded only when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from billbridge.flows.crm_pages import CrmSourceSpec, SubscriptionSourceSpec, spec_for
from billbridge.settings import HubSpotSettings, Settings
from billbridge.vendors.registry import VENDORS, contract_sources, payment_sources, vendor, webhooks


def test_the_registry_names_each_vendor_and_its_roles() -> None:
    assert list(VENDORS) == ["salesforce", "hubspot", "stripe", "quickbooks"]
    assert {name: c.kind for name, c in contract_sources().items()} == {
        "salesforce": "deals",
        "hubspot": "deals",
        "stripe": "subscriptions",
    }
    assert payment_sources() == ("stripe", "quickbooks")  # the order reconciliation reads them in
    assert sorted(name for name, v in VENDORS.items() if v.pushes) == ["quickbooks", "stripe"]
    assert {name: w.header for name, w in webhooks().items()} == {
        "stripe": "Stripe-Signature",
        "quickbooks": "intuit-signature",
    }


def test_an_unknown_vendor_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match="unknown vendor 'xero' \\(expected salesforce, hubspot, stripe, quickbooks\\)"
    ):
        vendor("xero")


def test_contract_specs_come_from_the_registry() -> None:
    assert isinstance(spec_for("salesforce"), CrmSourceSpec) and isinstance(spec_for("hubspot"), CrmSourceSpec)
    assert isinstance(spec_for("stripe"), SubscriptionSourceSpec)
    with pytest.raises(ValueError, match="unknown CRM source 'quickbooks'"):
        spec_for("quickbooks")


def test_a_source_is_built_from_the_settings_tree_alone() -> None:
    contracts = vendor("hubspot").contracts
    assert contracts is not None
    settings = Settings(hubspot=HubSpotSettings(access_token="pat-1", host="http://127.0.0.1:9"))
    source = contracts.connect(settings)  # a private-app token: nothing is called yet
    assert source.name == "hubspot"


@pytest.mark.slow  # a fresh interpreter
def test_looking_vendors_up_loads_no_vendor_sdk() -> None:
    code = (
        "import sys\n"
        "import billbridge.vendors.registry, billbridge.flows.sync_crm\n"
        "print(sorted(m for m in ('hubspot', 'stripe', 'quickbooks', 'simple_salesforce') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
