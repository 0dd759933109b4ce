"""The Stripe connector against recorded exchanges with the strict sandbox (fast tier, no server):
what it sends must match the cassette request by request (method, path, query, body), and what it
makes of the answers is checked here. Re-record with ``python -m tests.connectors.record_cassettes``."""

from __future__ import annotations

from decimal import Decimal

from tests.connectors.cassettes import REPLAY_URL, replaying
from tests.connectors.scenarios import stripe_connector, stripe_push_charge_pull


def test_push_charge_and_pull_replay_from_the_cassette() -> None:
    with replaying("stripe", "push_charge_pull") as cassette:
        got = stripe_push_charge_pull(stripe_connector(REPLAY_URL))
        assert cassette.all_played  # every recorded exchange was asked for, none twice
    customer, again = got["customer"]
    assert customer == again and customer.startswith("cus_")  # found by metadata the second time
    first, second = got["pushes"]
    assert (first.status, second.status) == ("created", "existing")
    assert first.external_id == second.external_id and first.vendor_status == "open"
    assert (first.number, first.doc_type, first.amount_due) == ("US-INV-000001", "invoice", Decimal("100.00"))
    assert (got["charged"].status, got["charged"].amount_paid) == ("paid", Decimal("100.00"))
    [payment] = got["payments"]
    assert (payment.invoice_numbers, payment.amount, payment.customer_ref) == (
        ("US-INV-000001",),
        Decimal("100.00"),
        "sf-ACC1",
    )
    assert payment.fee > 0 and payment.source == "stripe" and got["cursor"] is not None
