"""Credentials from a Prefect Secret block: a deployment's runs read them from the Prefect server,
the environment still overrides them, and they never show in the run's logs or results."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator

import pytest

from billbridge.sandbox.stripe import RunningStripe, start_seeded
from billbridge.settings import Settings


@pytest.fixture
def stripe_sandbox() -> Iterator[RunningStripe]:
    with start_seeded(api_key=f"sk_test_{secrets.token_hex(12)}") as running:
        yield running


def test_a_flow_takes_its_credentials_from_a_secret_block_and_never_logs_them(
    flow_env: str, stripe_sandbox: RunningStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    from billbridge.flows.reconcile import reconcile_payments

    key = stripe_sandbox.api_key
    Secret(value={"stripe": {"api_key": key, "base_url": stripe_sandbox.url}, "push_targets": ["quickbooks"]}).save(
        "billbridge-test-credentials", overwrite=True
    )
    monkeypatch.setenv("BILLBRIDGE_SECRET_BLOCK", "billbridge-test-credentials")
    monkeypatch.setenv("BILLBRIDGE_PUSH_TARGETS", '["stripe"]')
    settings = Settings()
    assert settings.stripe is not None and settings.stripe.api_key.get_secret_value() == key
    assert settings.push_targets == ["stripe"]  # the environment wins over the block
    assert key not in repr(settings) and key not in str(settings.model_dump())

    logging.getLogger("prefect").setLevel(logging.DEBUG)
    try:
        state = reconcile_payments(source="stripe", return_state=True)
    finally:
        logging.getLogger("prefect").setLevel(logging.WARNING)
    assert state.is_completed()  # it reached the sandbox, which only takes this key
    result = state.result()
    assert key not in str(result)
    flow_run_id = state.state_details.flow_run_id
    APILogHandler().flush()  # logs reach the server in batches
    logs = []
    with get_client(sync_client=True) as client:
        for _ in range(50):
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            if logs:
                break
            time.sleep(0.2)
    assert logs  # the run did log (so the check below looks at something)
    assert not [log.message for log in logs if key in log.message]


def test_a_block_that_is_not_an_object_of_settings_is_a_clear_error(
    flow_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    Secret(value="sk_live_just_a_key").save("billbridge-test-wrong", overwrite=True)
    monkeypatch.setenv("BILLBRIDGE_SECRET_BLOCK", "billbridge-test-wrong")
    with pytest.raises(ValueError, match="must hold a JSON object of settings"):
        Settings()
