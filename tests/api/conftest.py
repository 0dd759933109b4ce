"""The API over a real store (SQLite, and PostgreSQL when configured), with reference data, a usage
contract and one API key per legal entity."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from billbridge.api.app import create_app
from billbridge.api.routes_usage import UsageFastLane
from billbridge.flows.importing import import_document
from billbridge.settings import QuickBooksSettings, Settings, StripeSettings
from billbridge.store import api_keys
from billbridge.store.db import Store
from tests.docs import contract, document

USAGE_CONTRACT = contract(
    "C-USAGE",
    lines=[
        {"line_ref": "platform", "product_ref": "platform"},
        {"line_ref": "api", "product_ref": "api", "charge": "usage"},
    ],
)


@dataclass
class Api:
    client: TestClient
    store: Store
    token: str  # legal entity "us" (USD)
    kw_token: str  # legal entity "kw" (KWD)

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}", **extra}

    def post(self, path: str, body: Any, token: str | None = None, **headers: str) -> Any:
        return self.client.post(path, json=body, headers=self.headers(token, **headers))

    def get(self, path: str, token: str | None = None, **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.headers(token))

    def put(self, path: str, body: Any, token: str | None = None, **headers: str) -> Any:
        return self.client.put(path, json=body, headers=self.headers(token, **headers))

    def patch(self, path: str, body: Any, token: str | None = None, **headers: str) -> Any:
        return self.client.patch(path, json=body, headers=self.headers(token, **headers))


def event(**overrides: Any) -> dict[str, Any]:
    """The seed's example event, for customer globex and usage product api of entity us."""
    body: dict[str, Any] = {
        "timestamp": "2026-01-15T08:55:32.160Z",
        "customer_ref": "globex",
        "customer_name": "Globex",
        "usage_product_ref": "api",
        "usage_product_name": "API calls",
        "quantity": 10,
        "additional_report_data": {"note": "User-specific note"},
        "validations": {"currency": "USD", "entity_ref": "us"},
    }
    body.update(overrides)
    return body


@pytest.fixture
def api(store: Store) -> Iterator[Api]:
    summary = import_document(store, document(USAGE_CONTRACT))
    assert not summary.errors, summary.errors
    with store.write() as session:
        _, token = api_keys.create_key(session, "us", "tests")
        _, kw_token = api_keys.create_key(session, "kw", "tests")
    # Webhook secrets set, so generated requests reach signature checking (not the 503 of an unset secret).
    settings = Settings(
        webhooks_inline=False,
        push_targets=["quickbooks", "stripe"],  # where the write API's approvals queue pushes
        stripe=StripeSettings(api_key=SecretStr("sk_test_unused"), webhook_secret=SecretStr("whsec_test")),
        quickbooks=QuickBooksSettings(
            client_id="unused", client_secret=SecretStr("unused"), realm_id="1", webhook_verifier_token=SecretStr("v")
        ),
    )
    # As `billbridge serve` runs it: the usage endpoints' fast lane in front of the application.
    with TestClient(UsageFastLane(create_app(store, settings))) as client:
        yield Api(client, store, token, kw_token)
