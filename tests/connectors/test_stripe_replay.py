"""The Stripe connector against recorded exchanges with the strict sandbox (fast tier, no server):
what it sends must match the cassette request by request (method, path, query, body), and what it
makes of the answers is checked here. Re-record with ``python -m tests.connectors.record_cassettes``."""

from __future__ import annotations

from decimal import Decimal

from tests.connectors.cassettes import REPLAY_URL, replaying
from tests.connectors.scenarios import (
    RECORDING_CLOCK,
    STRIPE_PAGED_INVOICES,
    stripe_connector,
    stripe_customers_send_void,
    stripe_payments_paging,
    stripe_push_charge_pull,
    stripe_refunds_disputes,
)


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


def test_customers_are_looked_up_updated_and_invoices_sent_voided_replay() -> None:
    with replaying("stripe", "customers_send_void") as cassette:
        got = stripe_customers_send_void(stripe_connector(REPLAY_URL))
        assert cassette.all_played
    created, found, updated = got["customers"]
    assert created == found == updated and created.startswith("cus_")  # one customer: looked up, then updated
    assert (got["pushed"].status, got["pushed"].vendor_status) == ("created", "open")
    sent, resent = got["sent"]
    assert (sent.status, resent.status) == ("created", "existing")  # Stripe's invoice.sent event found
    assert sent.external_id == resent.external_id == got["pushed"].external_id and sent.url
    assert got["statuses"] == ("void", "uncollectible")
    assert got["refused"].startswith("invoice in_") and got["refused"].endswith(" is void: nothing to collect")


def test_refunds_and_disputes_are_pulled_as_negative_payments_replay() -> None:
    with replaying("stripe", "refunds_disputes") as cassette:
        got = stripe_refunds_disputes(stripe_connector(REPLAY_URL))
        assert cassette.all_played
    [refund] = got["refunds"]
    assert (refund.amount, refund.invoice_numbers, refund.customer_ref) == (
        Decimal("-35.00"),
        ("US-INV-000031",),
        "sf-ACC1",
    )
    [withdrawal] = got["disputes"]
    assert (withdrawal.amount, withdrawal.invoice_numbers) == (Decimal("-80.00"), ("US-INV-000032",))
    refunded = {p.invoice_numbers: p.extra.get("amount_refunded") for p in got["payments"]}
    assert refunded[("US-INV-000031",)] == "35.00"
    assert refund.refund_of in {p.payment_ref for p in got["payments"]}


def test_payments_page_at_one_hundred_with_the_fewest_calls_replay() -> None:
    with replaying("stripe", "payments_paging") as cassette:
        pages = stripe_payments_paging(stripe_connector(REPLAY_URL))
        assert cassette.all_played
    assert [len(p.payments) for p in pages] == [100, 5]
    # 2 pages of charges, 3 of payment events (210) for the first page's window, 1 for the few seconds
    # the second page's window reaches further back: overlapping windows are not read twice
    assert sum(p.api_calls for p in pages) == 6
    assert [p.cursor for p in pages] == [None, str(int(RECORDING_CLOCK) + STRIPE_PAGED_INVOICES)]
    numbers = {p.invoice_numbers[0] for page in pages for p in page.payments}
    assert numbers == {f"N{n}" for n in range(STRIPE_PAGED_INVOICES)}
