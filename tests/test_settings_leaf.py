"""The settings tree: a leaf whose domain-echoing defaults stay equal to the domain's constants, and
whose vendors (all four) are configured the same way: the file, the environment, a Secret block."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from billbridge import settings as settings_module
from billbridge.billing.matching import MATCH_WINDOW_DAYS
from billbridge.mapping.crm import EARLIEST_DATE, LATEST_DATE
from billbridge.settings import HubSpotSettings, SalesforceSettings, Settings, settings_problem


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in [k for k in os.environ if k.startswith("BILLBRIDGE_") and not k.startswith("BILLBRIDGE_TEST_")]:
        monkeypatch.delenv(key)
    config = tmp_path / "billbridge.toml"
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(config))
    return config


def test_defaults_echo_the_domain_constants() -> None:
    assert settings_module.MATCH_WINDOW_DAYS == MATCH_WINDOW_DAYS
    assert (settings_module.EARLIEST_DATE, settings_module.LATEST_DATE) == (EARLIEST_DATE, LATEST_DATE)


def test_crm_vendors_come_from_the_file_and_the_environment_wins(
    no_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_settings.write_text(
        '[salesforce]\ninstance_url = "https://acme.my.salesforce.com"\nclient_id = "abc"\nclient_secret = "s3"\n'
        '[hubspot]\naccess_token = "pat-1"\nrequests_per_10s = 150\n'
    )
    monkeypatch.setenv("BILLBRIDGE_HUBSPOT__REQUESTS_PER_10S", "190")
    settings = Settings()
    salesforce = settings.vendor(SalesforceSettings)
    assert (salesforce.instance_url, salesforce.client_secret.get_secret_value()) == (
        "https://acme.my.salesforce.com",
        "s3",
    )
    hubspot = settings.vendor(HubSpotSettings)
    assert hubspot.requests_per_10s == 190 and hubspot.access_token is not None


def test_a_vendor_not_configured_is_named_as_the_file_and_environment_spell_it(no_settings: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings().vendor(SalesforceSettings)
    said = settings_problem(caught.value)
    assert said is not None
    assert "salesforce.client_secret (BILLBRIDGE_SALESFORCE__CLIENT_SECRET) is not set" in said
    with pytest.raises(ValidationError) as hubspot:
        Settings().vendor(HubSpotSettings)
    assert (settings_problem(hubspot.value) or "").startswith("HubSpot is not configured: set access_token")


def test_revenue_accounts_are_checked_at_load_naming_the_key(no_settings: Path) -> None:
    good = {"deferred_revenue": "85", "contract_asset": "86", "revenue": "79"}
    settings = Settings(
        revenue_accounts={
            **good,
            "revenue_by_recognition": {"usage": "80"},
            "entities": {"eu-bv": {"revenue": "82", "revenue_by_product": {"api": "83"}}},
        }
    )
    assert settings.revenue_accounts is not None
    assert settings.revenue_accounts.for_entity("eu-bv") == {
        "revenue": "82",
        "deferred_revenue": "85",
        "contract_asset": "86",
        "revenue_by_product": {"api": "83"},
        "revenue_by_recognition": {"usage": "80"},
    }
    assert settings.revenue_accounts.for_entity("us")["revenue"] == "79"
    for bad, named in (
        (
            {"deferred_revenue": "85", "revenue": "79"},
            "revenue_accounts.contract_asset (BILLBRIDGE_REVENUE_ACCOUNTS__CONTRACT_ASSET) is not set",
        ),
        ({**good, "revenue": "Sales"}, "revenue_accounts.revenue (BILLBRIDGE_REVENUE_ACCOUNTS__REVENUE) is wrong"),
        ({**good, "revenue_by_recognition": {"usgae": "80"}}, "revenue_accounts.revenue_by_recognition.usgae"),
        (
            {**good, "entities": {"eu-bv": {"deferred_revenue": "9"}}},
            "revenue_accounts.entities.eu-bv.deferred_revenue",
        ),
    ):
        with pytest.raises(ValidationError) as err:
            Settings(revenue_accounts=bad)
        problem = settings_problem(err.value)
        assert problem is not None and named in problem, problem


def test_revenue_accounts_come_from_the_environment(no_settings: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"DEFERRED_REVENUE": "85", "CONTRACT_ASSET": "86", "REVENUE": "79"}.items():
        monkeypatch.setenv(f"BILLBRIDGE_REVENUE_ACCOUNTS__{key}", value)
    monkeypatch.setenv("BILLBRIDGE_REVENUE_ACCOUNTS__REVENUE_BY_RECOGNITION", '{"usage": "80"}')
    accounts = Settings().revenue_accounts
    assert accounts is not None and accounts.revenue_by_recognition == {"usage": "80"}


def test_pass_through_lines_post_to_their_account_else_the_products_revenue_account(no_settings: Path) -> None:
    good = {"deferred_revenue": "85", "contract_asset": "86", "revenue": "79", "revenue_by_product": {"api": "83"}}
    unset = Settings(revenue_accounts=good).revenue_accounts
    assert unset is not None
    assert (unset.pass_through_account("api"), unset.pass_through_account("seats")) == ("83", "79")
    assert "pass_through" not in unset.for_entity("us")
    named = Settings(revenue_accounts={**good, "pass_through": "90"}).revenue_accounts
    assert named is not None and named.pass_through_account("api") == "90"
    assert named.for_entity("us")["pass_through"] == "90"
    with pytest.raises(ValidationError) as err:
        Settings(revenue_accounts={**good, "pass_through": "85"})
    problem = settings_problem(err.value) or ""
    assert "pass_through is the deferred_revenue account" in problem, problem
