"""The Stripe connector against recorded exchanges with the strict sandbox (fast tier, no server):
what it sends must match the cassette request by request (method, path, query, body), and what it
makes of the answers is checked here. Re-record with ``python -m tests.connectors.record_cassettes``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter

from billbridge.billing.pricing import Pricing
from billbridge.connectors.stripe.client import CALLS_PER_INVOICE_MIN
from billbridge.mapping.stripe import StripeSubscriptionMapping, map_subscription
from tests.connectors.cassettes import REPLAY_URL, replaying
from tests.connectors.scenarios import (
    RECORDING_CLOCK,
    STRIPE_PAGED_INVOICES,
    stripe_connector,
    stripe_customers_send_void,
    stripe_decline_and_conflict,
    stripe_payments_incremental,
    stripe_payments_paging,
    stripe_push_charge_pull,
    stripe_refunds_disputes,
    stripe_search_lag,
    stripe_subscriptions,
    stripe_touched,
    stripe_world,
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


def test_a_declined_card_leaves_the_invoice_open_and_a_new_version_is_a_conflict_replay() -> None:
    with replaying("stripe", "decline_and_conflict") as cassette:
        got = stripe_decline_and_conflict(stripe_connector(REPLAY_URL))
        assert cassette.all_played
    assert got["push_calls"] == CALLS_PER_INVOICE_MIN  # create, add_lines, finalize
    declined = got["declined"]
    assert (declined.status, declined.decline_code) == ("declined", "insufficient_funds")
    assert declined.message == "Your card has insufficient funds." and declined.charge_id
    assert got["still"] == "open"
    assert (got["paid"].status, got["paid"].amount_paid) == ("paid", Decimal("100.00"))
    assert got["conflict"].startswith("US-INV-000041: Stripe invoice in_")
    assert got["conflict"].endswith("holds version 1, not 2")


def test_payments_are_pulled_with_fees_and_then_from_the_cursor_replay() -> None:
    with replaying("stripe", "payments_incremental") as cassette:
        got = stripe_payments_incremental(stripe_connector(REPLAY_URL))
        assert cassette.all_played
    assert got["first_calls"] == 2  # the charges, and the payment events that name their invoices
    first = [p for page in got["first"] for p in page.payments]
    assert sorted(p.invoice_numbers for p in first) == [("US-INV-000051",), ("US-INV-000052",)]
    assert {(p.amount, p.fee, p.customer_ref) for p in first} == {(Decimal("135.00"), Decimal("4.22"), "sf-ACC1")}
    assert got["first"][-1].cursor == str(int(RECORDING_CLOCK) + 86400)
    # the newest payment of the previous pull is read again (inclusive bound); consumers dedupe by id
    assert sorted((p.invoice_numbers, p.amount, p.fee) for page in got["later"] for p in page.payments) == [
        (("US-INV-000053",), Decimal("50.00"), Decimal("1.75")),
        (("US-INV-000054",), Decimal("50.00"), Decimal("1.75")),
    ]
    assert got["cursor"] == str(int(RECORDING_CLOCK) + 86400 + 7200)


def test_search_lag_neither_duplicates_a_customer_nor_hides_an_invoice_replay() -> None:
    with replaying("stripe", "search_lag") as cassette:
        got = stripe_search_lag(stripe_connector(REPLAY_URL))
        assert cassette.all_played
    first, again = got["customers"]
    assert first == again and first.startswith("cus_")  # the same content, the same key: replayed
    pushed, found = got["pushes"]
    assert (pushed.status, found.status) == ("created", "existing")  # found by listing, not search
    assert pushed.external_id == found.external_id and found.amount_due == Decimal("100.00")


def _canonical_amount(pricing: dict[str, Any], quantity: Decimal) -> Decimal:
    """What the price book's price of ``quantity`` comes to."""
    amount: Decimal = TypeAdapter(Pricing).validate_python(pricing).amount_for(quantity)
    return amount


def test_subscriptions_map_the_world_and_are_then_pulled_from_the_events_replay() -> None:
    """Every seeded subscription pulled and mapped back to its deal (currency, dates, entity, the
    price-book price of every item recovered from Stripe's shapes); then two quantity changes, each
    pulled from the previous cursor (the newest change read again: an inclusive bound)."""
    world = stripe_world()
    with replaying("stripe", "subscriptions") as cassette:
        got = stripe_subscriptions(stripe_connector(REPLAY_URL))
        assert cassette.all_played
    records = [r for page in got["full"] for r in page.records]
    by_deal = {r.subscription["metadata"]["billbridge_deal"]: r for r in records}
    assert len(by_deal) == len(records) > 5
    for deal_key, record in by_deal.items():
        deal = world.deals[deal_key]
        mapped = map_subscription(
            record.subscription, record.customer, record.prices, record.products, StripeSubscriptionMapping()
        )
        assert mapped is not None
        contract = mapped.contract
        assert (contract.currency, contract.contract_start_date, contract.entity_ref) == (
            deal.currency,
            deal.start_date,
            deal.entity_ref,
        )
        assert contract.contract_end_date == deal.end_date and contract.auto_charge == deal.auto_charge
        for line in contract.lines:
            quantity = next(dl.quantity for dl in deal.lines if dl.sku == line.product_ref)
            expected = world.products[line.product_ref].pricing[deal.currency]
            assert line.pricing is not None and line.quantity == quantity
            assert line.pricing.amount_for(quantity) == _canonical_amount(expected, quantity)
    changed = [r for page in got["changed"] for r in page.records]
    touched = stripe_touched(world, by_deal)
    assert sorted(r.subscription["metadata"]["billbridge_deal"] for r in changed) == sorted(touched)
    assert {r.subscription["items"]["data"][0]["quantity"] for r in changed} == {7}
    # each tiered price (its tiers need expanding), product and customer fetched once per pull: the full
    # pull has an events marker and one page of subscriptions with their customers expanded, a later
    # pull one page of events
    for pages, lists, expanded in ((got["full"], 2, True), (got["changed"], 1, False)):
        pulled = [r for page in pages for r in page.records]
        tiered = {i for r in pulled for i, price in r.prices.items() if price.get("billing_scheme") == "tiered"}
        products = {i for r in pulled for i in r.products}
        customers = set() if expanded else {r.customer["id"] for r in pulled if r.customer}
        assert sum(page.api_calls for page in pages) == lists + len(tiered) + len(products) + len(customers)
