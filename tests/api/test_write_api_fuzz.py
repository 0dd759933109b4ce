"""schemathesis against the write API's own OpenAPI operations: no generated request gets a 5xx, and
every answer conforms to the document (status code, content type, body schema, headers).

The generated requests are steered to this store's records (the key's entity, its customers,
products, contracts and invoices, the current ETag in If-Match), so that valid ones reach the
write path rather than stopping at a 404 or a 412; invalid ones (negative mode) keep their bodies.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from billbridge.flows.invoice_generation import run_billing
from tests.api.conftest import Api

EXAMPLES = 25


def examples_for(api: Api) -> int:
    """SQLite gets every example; PostgreSQL the first half of the same (derandomized) ones, for the
    suite's time: what differs there is how values are stored, which the first half reaches too."""
    return EXAMPLES if api.store.dialect == "sqlite" else EXAMPLES // 2


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
KNOWN = {"customer_ref": "globex", "product_ref": "platform", "contract_ref": "C-USAGE", "number": "US-INV-1"}
READ_BACK = {
    "customer_ref": "/api/customers/{}",
    "product_ref": "/api/products/{}",
    "contract_ref": "/api/contracts/{}",
}


@pytest.fixture
def writable(api: Api) -> Api:
    """The API over reference data, a usage contract and its first invoices, with a key of entity us."""
    run_billing(api.store, date(2026, 2, 1))
    return api


def steer(api: Api, case: schemathesis.Case, valid: bool) -> None:
    """Point a generated request at this store's records: known refs in the path, the record's
    current ETag in If-Match, and (for a valid body) the key's entity, currency, customer and products."""
    for name in list(case.path_parameters or {}):
        case.path_parameters[name] = KNOWN[name]  # type: ignore[index]
        if name in READ_BACK and case.method.upper() in ("PUT", "PATCH"):
            current = api.get(READ_BACK[name].format(KNOWN[name]))
            case.headers = {**(case.headers or {}), "If-Match": current.headers.get("ETag", '"none"')}
    if valid and isinstance(case.body, dict):
        _ours(case.body, contract=case.path.startswith("/api/contracts"))


def _ours(body: dict[str, Any], *, contract: bool) -> None:
    fixed = {"entity_ref": "us", **({"currency": "USD", "customer_ref": "globex"} if contract else {})}
    body.update({field: value for field, value in fixed.items() if field in body})
    for line in body.get("lines") or []:
        if isinstance(line, dict) and "product_ref" in line:
            line["product_ref"] = "seats"
    for price in body.get("prices") or []:
        if isinstance(price, dict):
            price["currency"] = "USD"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_the_write_api_answers_every_generated_request_as_documented(writable: Api, mode: GenerationMode) -> None:
    api = writable
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if op.method.upper() in ("POST", "PUT", "PATCH") and op.path.startswith("/api/") and "/usage/" not in op.path
    ]
    assert len(operations) == 13  # create, replace and patch of three resources; three invoice moves; a monitor
    failures: list[str] = []
    reached: dict[str, set[int]] = {}
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples_for(api),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def call(case: schemathesis.Case) -> None:
            steer(api, case, valid=mode == GenerationMode.POSITIVE)
            response = case.call(headers=api.headers())
            reached.setdefault(case.operation.label, set()).add(response.status_code)
            if (
                case.operation.label in ("POST /api/products", "PUT /api/contracts/{contract_ref}")
                and response.status_code == 422
            ):
                print(case.operation.label, response.json()["detail"][:2])
            try:
                case.validate_response(response, checks=CHECKS)
            except AssertionError as exc:  # schemathesis' failures are AssertionErrors (grouped)
                failures.append(f"{case.operation.label}: {response.status_code}: {exc}\n{case.as_curl_command()}")

        call()
    assert failures == []
    print(reached)
    if mode == GenerationMode.POSITIVE:  # the steering works: valid requests get through to the write path
        succeeded = {label for label, codes in reached.items() if codes & {200, 201}}
        assert {
            "POST /api/customers",
            "PUT /api/customers/{customer_ref}",
            "POST /api/invoices/{number}/approve",
        } <= succeeded, reached
