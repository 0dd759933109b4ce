"""Each vendor's retries come from its settings (``retry``: attempts, base_delay, max_delay), from
the environment as from the file; an explicit policy given to a client still wins. (QuickBooks',
whose connection asks its sandbox for Intuit's discovery document: tests/flows/test_push_quickbooks.py.)"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import SecretStr

from billbridge.connectors.errors import RetryPolicy, VendorError
from billbridge.connectors.hubspot.client import HubSpotClient
from billbridge.connectors.salesforce.client import SalesforceClient
from billbridge.settings import HubSpotSettings, RetrySettings, SalesforceSettings, Settings, StripeSettings
from billbridge.vendors import stripe


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path))
    return monkeypatch


def test_the_default_is_six_calls_half_a_second_first_thirty_at_most() -> None:
    assert RetryPolicy.of(RetrySettings()) == RetryPolicy(attempts=6, base_delay=0.5, max_delay=30.0)


def test_stripe_takes_its_retries_from_the_environment(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("BILLBRIDGE_STRIPE__API_KEY", "sk_test_x")
    environment.setenv("BILLBRIDGE_STRIPE__RETRY__ATTEMPTS", "2")
    environment.setenv("BILLBRIDGE_STRIPE__RETRY__BASE_DELAY", "0.25")
    assert stripe.connect(Settings()).policy == RetryPolicy(attempts=2, base_delay=0.25, max_delay=30.0)


def test_the_crm_clients_take_theirs_from_their_settings_and_an_explicit_policy_wins() -> None:
    hubspot = HubSpotSettings(access_token=SecretStr("pat"), retry=RetrySettings(attempts=3))
    assert HubSpotClient(hubspot).policy.attempts == 3
    assert HubSpotClient(hubspot, policy=RetryPolicy(attempts=9)).policy.attempts == 9
    salesforce = SalesforceSettings(
        instance_url="https://x.my.salesforce.com",
        client_id="c",
        client_secret=SecretStr("s"),
        retry=RetrySettings(attempts=4),
    )
    assert SalesforceClient(salesforce).policy.attempts == 4


@pytest.mark.parametrize("wrong", [{"attempts": 0}, {"base_delay": -1}, {"max_delay": 601}])
def test_a_wrong_retry_setting_is_refused_naming_it(wrong: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=f"retry.{next(iter(wrong))}"):
        Settings(stripe={"api_key": "sk_test_x", "retry": wrong})


def test_a_vendor_out_of_reach_is_called_as_many_times_as_the_setting_says(environment: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:  # a port nothing listens on: every call is a refused connection
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = Settings(
        stripe=StripeSettings(
            api_key=SecretStr("sk_test_x"),
            base_url=f"http://127.0.0.1:{port}",
            retry=RetrySettings(attempts=3, base_delay=0, max_delay=0),
        )
    )
    with pytest.raises(VendorError) as failed:
        stripe.connect(settings).find_customer("globex")
    assert failed.value.attempts == 3
