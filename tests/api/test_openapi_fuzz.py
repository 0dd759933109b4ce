"""schemathesis against the app's own OpenAPI document: no generated request gets a 5xx.

Valid and invalid inputs (negative mode) for every operation, authenticated, on each backend.
Bounded: a dozen examples per operation and mode keep it to seconds.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.api.conftest import Api

EXAMPLES = 12


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_generated_request_gets_a_server_error(api: Api, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def call(case: schemathesis.Case) -> None:
            response = case.call(headers=api.headers())
            if response.status_code >= 500:
                failures.append(f"{case.operation.label}: {response.status_code} for {case.as_curl_command()}")

        call()
    assert failures == []
