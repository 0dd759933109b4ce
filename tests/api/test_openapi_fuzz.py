"""schemathesis against the app's own OpenAPI document: the schema and the behaviour agree.

Valid and invalid requests (positive and negative modes) for the usage API, the read API and the
webhook endpoints, on each backend, with a valid key. Valid usage events get real customer and
product refs, the key's legal entity and a timestamp in range in about half the cases, so the
fuzzing reaches the write path and events are stored. Every response is checked by schemathesis:
no 5xx, documented status codes, content types, headers and bodies, and invalid requests refused.
A valid request may still be refused, but only for what a schema cannot state (listed below).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import func, select

from billbridge.store.models import UsageEvent
from tests.api.conftest import Api

EXAMPLES = 40


def examples_for(api: Api) -> int:
    """SQLite gets every example; PostgreSQL the first half of the same (derandomized) ones, for the
    suite's time: what differs there is how values are stored, which the first half reaches too."""
    return EXAMPLES if api.store.dialect == "sqlite" else EXAMPLES // 2


POSITIVE_STATUSES = {401, 403, 404, 409, 429}  # schemathesis' own list of refusals valid data may get
BEYOND_THE_SCHEMA = {
    "unknown_customer",  # refs name rows of the store
    "unknown_product",
    "timestamp_out_of_range",  # from 2000 to a day ahead of the server's clock
    "too_many_decimal_places",  # of a JSON number (multipleOf is not exact in floating point)
    "key_mismatch",  # event_id and the Idempotency-Key header name different keys
    "bad_text",  # NUL or unpaired surrogates deep in additional_report_data
    "number_out_of_range",
    "too_deep",
    "body_too_large",  # bytes, not items
    "bad_range",  # to before from
    "bad_signature",  # webhooks: only the vendor can sign
    "outside_window",
}
USAGE_POSTS = {"POST /api/usage/event", "POST /api/usage/events/batch"}


def ours(label: str) -> bool:
    """The usage API, the read API and the webhooks (the write API has its own fuzzing module)."""
    method, path = label.split(" ", 1)
    return method == "GET" or path.startswith(("/api/usage/", "/webhooks/"))


def refused_only_for_what_the_schema_cannot_state(ctx: Any, response: Any, case: schemathesis.Case) -> None:
    """schemathesis' positive_data_acceptance, except for the refusals listed in BEYOND_THE_SCHEMA."""
    assert case.meta is not None
    if not case.meta.generation.mode.is_positive or response.status_code < 400:
        return
    if response.status_code in POSITIVE_STATUSES:
        return
    codes = {problem.get("code") for problem in response.json()["detail"]}
    assert codes <= BEYOND_THE_SCHEMA, f"valid data refused ({response.status_code}): {response.text[:500]}"


def in_range_stamps() -> st.SearchStrategy[str]:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    offsets = st.integers(min_value=-18 * 60, max_value=18 * 60).map(lambda m: timezone(timedelta(minutes=m)))
    return st.builds(
        lambda day, zone: day.replace(tzinfo=timezone.utc).astimezone(zone).isoformat(),
        st.datetimes(min_value=datetime(2000, 1, 2), max_value=now),
        offsets,
    )


def grounded(event: Any, stamp: str) -> Any:
    """A generated event with refs the store holds, the key's entity and an in-range timestamp."""
    if not isinstance(event, dict):
        return event
    return event | {
        "customer_ref": "globex",
        "usage_product_ref": "api",
        "validations": {"currency": "USD", "entity_ref": "us"},
        "timestamp": stamp,
    }


def with_real_refs(operation: Any) -> st.SearchStrategy[schemathesis.Case]:
    """Positive cases of the usage POSTs, about half of them with grounded events."""

    @st.composite
    def build(draw: st.DrawFn) -> schemathesis.Case:
        case = draw(operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
        if draw(st.booleans()) and isinstance(case.body, dict):
            if operation.label == "POST /api/usage/event":
                case.body = grounded(case.body, draw(in_range_stamps()))
                case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "idempotency-key"}
            elif isinstance(case.body.get("events"), list):
                case.body["events"] = [grounded(e, draw(in_range_stamps())) for e in case.body["events"]]
        return case

    return build()


def stored_events(api: Api) -> int:
    with api.store.read() as session:
        return session.scalar(select(func.count()).select_from(UsageEvent)) or 0


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_the_api_keeps_to_its_schema(api: Api, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [operation for operation in operations if ours(operation.label)]
    assert len(operations) >= 11
    failures: dict[str, str] = {}  # what failed (operation, status, checks) -> one example
    statuses: dict[str, set[int]] = {}
    for operation in operations:
        positive_post = mode == GenerationMode.POSITIVE and operation.label in USAGE_POSTS
        strategy = with_real_refs(operation) if positive_post else operation.as_strategy(generation_mode=mode)

        @given(case=strategy)
        @settings(
            max_examples=examples_for(api),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def call(case: schemathesis.Case) -> None:
            # schemathesis may mutate a query parameter into an empty list (not sent) or an object (sent
            # as its own key=value pairs, which may be the very parameter): on the wire the request is
            # then valid, not negative.
            assume(all(value != [] and not isinstance(value, dict) for value in (case.query or {}).values()))
            response = case.call(headers=api.headers())
            statuses.setdefault(case.operation.label, set()).add(response.status_code)
            try:
                case.validate_response(
                    response,
                    headers=api.headers(),
                    excluded_checks=[positive_data_acceptance],
                    additional_checks=[refused_only_for_what_the_schema_cannot_state],
                )
            except FailureGroup as exc:
                checks = sorted({line.strip() for line in str(exc).splitlines() if line.startswith("- ")})
                failures.setdefault(f"{case.operation.label} -> {response.status_code}: {checks}", str(exc)[:1500])

        call()
    assert not failures, "\n\n".join(f"{what}\n{example}" for what, example in list(failures.items())[:8])
    if mode == GenerationMode.POSITIVE:
        assert 201 in statuses["POST /api/usage/event"], statuses
        assert stored_events(api) > 0
