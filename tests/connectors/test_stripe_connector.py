"""The Stripe connector through the real stripe SDK against the sandbox: idempotent pushes, lookups
after lost responses, declines, 429 storms, payments and subscriptions pulled incrementally, webhooks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI, Request

from billbridge.billing.documents import DocumentLine, OutboundDocument
from billbridge.connectors.errors import ErrorKind, RetryPolicy, VendorError
from billbridge.connectors.stripe import StripeConflict, WebhookRefused, verify_webhook
from billbridge.connectors.stripe.client import CALLS_PER_INVOICE_MIN
from billbridge.mapping.stripe import StripeSubscriptionMapping, map_subscription
from billbridge.sandbox.demo_world import generate
from billbridge.sandbox.faults import Fault
from billbridge.sandbox.server import SandboxServer
from billbridge.sandbox.stripe import StripeSandbox, catalog, sign, start_seeded
from billbridge.sandbox.stripe import payments as handlers
from billbridge.vendors.stripe import Stripe

KEY = "sk_test_connector"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stripe_sb(clock: Clock) -> Iterator[tuple[StripeSandbox, str]]:
    sb = StripeSandbox((KEY,), clock=clock)
    with SandboxServer(sb.app, name="stripe") as server:
        yield sb, server.url


def _connector(url: str, sleeps: list[float] | None = None, attempts: int = 6, key: str = KEY) -> Stripe:
    recorder = sleeps if sleeps is not None else []
    return Stripe(key, base_url=url, policy=RetryPolicy(attempts=attempts), sleep=recorder.append)


def _doc(number: str = "US-INV-000001", *amounts: str, auto_charge: bool = True, version: int = 1) -> OutboundDocument:
    amounts = amounts or ("135.00", "-35.00")
    lines = tuple(
        DocumentLine(
            f"{number}-L{i}", "SEATS", f"Line {i}", Decimal(1), Decimal(a), date(2026, 1, 1), date(2026, 1, 31)
        )
        for i, a in enumerate(amounts, 1)
    )
    total = sum((Decimal(a) for a in amounts), Decimal(0))
    return OutboundDocument(
        number, "invoice", version, "us-inc", "sf-ACC1", "Globex", "ap@globex.test", "sf-OPP1", "USD",
        date(2026, 1, 1), date(2026, 1, 31), total, auto_charge, lines,
    )  # fmt: skip


def _customer(conn: Stripe, card: str | None = "pm_card_visa") -> str:
    customer_id = conn.ensure_customer("sf-ACC1", "Globex", "ap@globex.test")
    if card:
        conn.attach_default_payment_method(customer_id, card)
    return customer_id


def _invoices(sb: StripeSandbox) -> list[dict[str, Any]]:
    return sb.state.all("invoice")


def test_push_twice_makes_one_invoice(stripe_sb: tuple[StripeSandbox, str]) -> None:
    sb, url = stripe_sb
    conn = _connector(url)
    customer_id = _customer(conn)
    first = conn.push_invoice(_doc(), customer_id)
    second = conn.push_invoice(_doc(), customer_id)
    assert (first.status, second.status) == ("created", "existing")
    assert first.external_id == second.external_id and first.vendor_status == "open"
    assert first.amount_due == Decimal("100.00")
    assert len(_invoices(sb)) == 1 and len(sb.state.all("line_item")) == 2
    assert _invoices(sb)[0]["metadata"]["billbridge_number"] == "US-INV-000001"


def test_ensure_customer_reuses_and_updates(stripe_sb: tuple[StripeSandbox, str]) -> None:
    sb, url = stripe_sb
    conn = _connector(url)
    customer_id = conn.ensure_customer("sf-ACC1", "Globex", None)
    assert conn.ensure_customer("sf-ACC1", "Globex", None) == customer_id  # found by metadata
    assert conn.ensure_customer("sf-ACC1", "Globex Corp", "ap@globex.test", customer_id=customer_id) == customer_id
    stored = sb.state.get("customer", customer_id)
    assert (stored["name"], stored["email"], len(sb.state.all("customer"))) == ("Globex Corp", "ap@globex.test", 1)


def test_lost_response_on_create_is_found_by_metadata_on_rerun(stripe_sb: tuple[StripeSandbox, str]) -> None:
    sb, url = stripe_sb
    customer_id = _customer(_connector(url))
    sb.faults.add(Fault(kind="lost_response", path="^/v1/invoices$", method="POST"))
    with pytest.raises(VendorError) as caught:
        _connector(url, attempts=1).push_invoice(_doc(), customer_id)
    assert caught.value.classified.kind == ErrorKind.RETRIABLE
    assert len(_invoices(sb)) == 1 and _invoices(sb)[0]["status"] == "draft"
    sb.state.idempotency.clear()  # the keys have expired (24 h): only the lookup can prevent a duplicate
    result = _connector(url).push_invoice(_doc(), customer_id)
    assert result.status == "existing" and result.vendor_status == "open" and result.amount_due == Decimal("100.00")
    assert len(_invoices(sb)) == 1 and len(sb.state.all("line_item")) == 2


def test_lost_responses_within_one_push_are_replayed_by_key(stripe_sb: tuple[StripeSandbox, str]) -> None:
    sb, url = stripe_sb
    customer_id = _customer(_connector(url))
    for path in ("^/v1/invoices$", "/add_lines$", "/finalize$"):
        sb.faults.add(Fault(kind="lost_response", path=path, method="POST"))
    result = _connector(url).push_invoice(_doc(), customer_id, look_up=False)
    assert result.vendor_status == "open"
    assert len(_invoices(sb)) == 1 and len(sb.state.all("line_item")) == 2
    assert sb.faults.total_calls(r"POST /v1/invoices$") == 2


def test_a_timed_out_create_is_retried_under_the_same_key(clock: Clock) -> None:
    sb = StripeSandbox((KEY,), clock=clock)
    with SandboxServer(sb.app) as server:
        customer_id = _customer(_connector(server.url))
        sb.faults.add(Fault(kind="slow", path="^/v1/invoices$", method="POST", delay=1.0))
        conn = Stripe(KEY, base_url=server.url, timeout=0.3, sleep=lambda _: None)
        result = conn.push_invoice(_doc(), customer_id, look_up=False)
    # stopping the server let the slow first attempt finish: it found its key used and replayed
    assert result.vendor_status == "open" and sb.faults.total_calls("POST /v1/invoices$") == 2
    assert len(_invoices(sb)) == 1 and len(sb.state.all("line_item")) == 2


def test_declined_card_leaves_the_invoice_open_with_the_reason(stripe_sb: tuple[StripeSandbox, str]) -> None:
    sb, url = stripe_sb
    conn = _connector(url)
    customer_id = _customer(conn, "pm_card_chargeDeclinedInsufficientFunds")
    doc = _doc()
    pushed = conn.push_invoice(doc, customer_id)
    outcome = conn.charge_invoice(pushed.external_id, doc.idempotency_key("charge-1"))
    assert (outcome.status, outcome.decline_code) == ("declined", "insufficient_funds")
    assert outcome.message == "Your card has insufficient funds." and outcome.charge_id
    assert conn.retrieve_invoice(pushed.external_id)["status"] == "open"
    conn.attach_default_payment_method(customer_id, "pm_card_visa")
    retried = conn.charge_invoice(pushed.external_id, doc.idempotency_key("charge-2"))
    assert (retried.status, retried.amount_paid) == ("paid", Decimal("100.00"))
    assert [c["status"] for c in sb.state.all("charge")] == ["failed", "succeeded"]


def test_lost_response_on_pay_charges_once(stripe_sb: tuple[StripeSandbox, str]) -> None:
    sb, url = stripe_sb
    conn = _connector(url)
    customer_id = _customer(conn)
    doc = _doc()
    pushed = conn.push_invoice(doc, customer_id)
    sb.faults.add(Fault(kind="lost_response", path="/pay$"))
    outcome = conn.charge_invoice(pushed.external_id, doc.idempotency_key("charge-1"))
    assert outcome.status == "paid" and len(sb.state.all("charge")) == 1
    sb.state.idempotency.clear()  # a later run with the keys expired: Stripe refuses, we read the invoice
    again = conn.charge_invoice(pushed.external_id, doc.idempotency_key("charge-1"))
    assert again.status == "paid" and len(sb.state.all("charge")) == 1


def test_void_and_uncollectible(stripe_sb: tuple[StripeSandbox, str]) -> None:
    sb, url = stripe_sb
    conn = _connector(url)
    customer_id = _customer(conn)
    first = conn.push_invoice(_doc("US-INV-000010", "10.00"), customer_id)
    second = conn.push_invoice(_doc("US-INV-000011", "10.00"), customer_id)
    assert conn.void(first.external_id, "billbridge-US-INV-000010-v1-void") == "void"
    assert conn.mark_uncollectible(second.external_id, "billbridge-US-INV-000011-v1-uncollectible") == "uncollectible"
    with pytest.raises(StripeConflict, match="is void"):
        conn.charge_invoice(first.external_id, "billbridge-US-INV-000010-v1-charge-1")
    assert sb.state.all("charge") == []


def test_a_new_version_of_a_pushed_invoice_is_a_conflict(stripe_sb: tuple[StripeSandbox, str]) -> None:
    _, url = stripe_sb
    conn = _connector(url)
    customer_id = _customer(conn)
    conn.push_invoice(_doc(version=1), customer_id)
    with pytest.raises(StripeConflict, match="holds version 1, not 2"):
        conn.push_invoice(_doc(version=2), customer_id)


def test_429_storm_is_waited_out_honouring_retry_after(stripe_sb: tuple[StripeSandbox, str]) -> None:
    sb, url = stripe_sb
    sleeps: list[float] = []
    conn = _connector(url, sleeps)
    customer_id = _customer(conn)
    sb.faults.add(Fault(kind="rate_limit", path="^/v1/invoices", times=4, retry_after=3))
    result = conn.push_invoice(_doc(), customer_id)
    assert result.vendor_status == "open" and len(_invoices(sb)) == 1
    assert len(sleeps) == 4 and min(sleeps) >= 3  # the vendor's Retry-After is the floor


def test_bad_key_is_an_auth_failure(stripe_sb: tuple[StripeSandbox, str]) -> None:
    _, url = stripe_sb
    with pytest.raises(VendorError) as caught:
        _connector(url, key="sk_test_revoked").ensure_customer("sf-ACC1", "Globex", None)
    assert caught.value.classified.kind == ErrorKind.AUTH


def test_pull_payments_with_fees_invoice_numbers_and_cursor(stripe_sb: tuple[StripeSandbox, str], clock: Clock) -> None:
    sb, url = stripe_sb
    conn = _connector(url)
    customer_id = _customer(conn)
    pushed = [conn.push_invoice(_doc(f"US-INV-00000{n}", "135.00"), customer_id) for n in (1, 2)]
    clock.now += 86400  # collected a day after finalizing: the invoice payments are a day older than the charges
    for n, invoice in enumerate(pushed, 1):
        conn.charge_invoice(invoice.external_id, f"charge-{n}")
    calls = conn.api_calls
    pages = list(conn.pull_payments(None))
    assert conn.api_calls - calls == 2  # the charges, and the payment events that name their invoices
    payments = [p for page in pages for p in page.payments]
    assert sorted(p.invoice_numbers for p in payments) == [("US-INV-000001",), ("US-INV-000002",)]
    assert {(p.amount, p.fee, p.customer_ref) for p in payments} == {(Decimal("135.00"), Decimal("4.22"), "sf-ACC1")}
    cursor = pages[-1].cursor
    assert cursor == str(int(T0) + 86400)
    for n in (3, 4):
        clock.now += 3600
        doc = _doc(f"US-INV-00000{n}", "50.00")
        conn.charge_invoice(conn.push_invoice(doc, customer_id).external_id, doc.idempotency_key("charge-1"))
        pages = list(conn.pull_payments(cursor))
        cursor = pages[-1].cursor
    later = [p for page in pages for p in page.payments]
    # the newest payment of the previous pull is read again (inclusive bound); consumers dedupe by id
    assert sorted((p.invoice_numbers, p.amount, p.fee) for p in later) == [
        (("US-INV-000003",), Decimal("50.00"), Decimal("1.75")),
        (("US-INV-000004",), Decimal("50.00"), Decimal("1.75")),
    ]
    assert cursor == str(int(T0) + 86400 + 7200)


@pytest.mark.slow
def test_pull_payments_pages_and_saves_the_cursor_last(stripe_sb: tuple[StripeSandbox, str], clock: Clock) -> None:
    sb, url = stripe_sb
    customer = catalog.create_customer(sb.state, {"name": "Globex", "payment_method": "pm_card_visa"})
    for n in range(105):
        clock.now += 1
        invoice = handlers.create_invoice(
            sb.state, {"customer": customer["id"], "currency": "usd", "metadata": {"billbridge_number": f"N{n}"}}
        )
        handlers.add_lines(sb.state, {"lines": [{"amount": "1000"}]}, invoice["id"])
        handlers.finalize_invoice(sb.state, {}, invoice["id"])
        handlers.pay_invoice(sb.state, {}, invoice["id"])
    pages = list(_connector(url).pull_payments(None))
    assert [len(p.payments) for p in pages] == [100, 5]
    # 2 pages of charges, 3 of payment events (210) for the first page's window, 1 for the few seconds
    # the second page's window reaches further back: overlapping windows are not read twice
    assert sum(p.api_calls for p in pages) == 6
    assert [p.cursor for p in pages] == [None, str(int(clock.now))]
    assert {p.invoice_numbers[0] for page in pages for p in page.payments} == {f"N{n}" for n in range(105)}


def test_pull_subscriptions_maps_the_demo_world(clock: Clock) -> None:
    world = generate(30, seed=11)
    with start_seeded(world, clock=clock) as running:
        conn = Stripe(running.api_key, base_url=running.url)
        pages = list(conn.pull_subscriptions(None))
        records = [r for page in pages for r in page.records]
        assert len(records) == len(running.ids.subscriptions) > 0
        by_deal = {r.subscription["metadata"]["billbridge_deal"]: r for r in records}
        config = StripeSubscriptionMapping()
        for deal_key in running.ids.subscriptions:
            deal = world.deals[deal_key]
            record = by_deal[deal_key]
            mapped = map_subscription(record.subscription, record.customer, record.prices, record.products, config)
            assert mapped is not None
            contract = mapped.contract
            assert (contract.currency, contract.contract_start_date, contract.entity_ref) == (
                deal.currency,
                deal.start_date,
                deal.entity_ref,
            )
            assert contract.contract_end_date == deal.end_date and contract.auto_charge == deal.auto_charge
            for line in contract.lines:  # the price-book price of every item, recovered from Stripe's shapes
                product = world.products[line.product_ref]
                quantity = next(dl.quantity for dl in deal.lines if dl.sku == line.product_ref)
                expected = product.pricing[deal.currency]
                assert line.pricing is not None and line.quantity == quantity
                assert line.pricing.amount_for(quantity) == _canonical_amount(expected, quantity)

        cursor = pages[-1].cursor
        state = running.sandbox.state
        touched = list(running.ids.subscriptions.values())[:2]
        for sub_id in touched:  # one quantity change an hour
            clock.now += 3600
            item_id = state.get("subscription", sub_id)["_items"][0]
            catalog.update_subscription(state, {"items": [{"id": item_id, "quantity": "7"}]}, sub_id)
            changed_pages = list(conn.pull_subscriptions(cursor, now=clock.now))
            cursor = changed_pages[-1].cursor
        changed = [r for page in changed_pages for r in page.records]
        # the last pull re-reads the previous change (inclusive bound); nothing older than the lag window
        assert sorted(r.subscription["id"] for r in changed) == sorted(touched)
        assert {r.subscription["items"]["data"][0]["quantity"] for r in changed} == {7}
        assert conn.api_calls < 3 * len(records)  # prices, products and customers fetched once per pull


def _canonical_amount(pricing: dict[str, Any], quantity: Decimal) -> Decimal:
    from pydantic import TypeAdapter

    from billbridge.billing.pricing import Pricing

    return TypeAdapter(Pricing).validate_python(pricing).amount_for(quantity)  # type: ignore[no-any-return]


def test_webhooks_are_signed_and_verified(clock: Clock) -> None:
    received: list[tuple[bytes, str]] = []
    receiver = FastAPI()

    @receiver.post("/hooks/stripe")
    async def hook(request: Request) -> dict[str, bool]:
        received.append((await request.body(), request.headers["stripe-signature"]))
        return {"received": True}

    sb = StripeSandbox((KEY,), clock=clock)
    with SandboxServer(receiver) as hooks:
        sender = sb.send_webhooks_to(f"{hooks.url}/hooks/stripe", "whsec_test")
        catalog.create_customer(sb.state, {"name": "Globex"})
        sender.flush()
    assert len(received) == 1 and sender.delivered
    payload, header = received[0]
    event = verify_webhook(payload, header, "whsec_test", now=T0 + 10)
    assert (event["type"], event["data"]["object"]["name"]) == ("customer.created", "Globex")
    forged = payload.replace(b"Globex", b"Evil Corp")
    with pytest.raises(WebhookRefused, match="signature"):
        verify_webhook(forged, header, "whsec_test", now=T0 + 10)
    with pytest.raises(WebhookRefused, match="signature"):
        verify_webhook(payload, header, "whsec_other", now=T0 + 10)
    with pytest.raises(WebhookRefused, match="window"):
        verify_webhook(payload, header, "whsec_test", now=T0 + 301)
    replayed_late = sign(payload, "whsec_test", int(T0) - 1000)
    with pytest.raises(WebhookRefused, match="window"):
        verify_webhook(payload, replayed_late, "whsec_test", now=T0)
    not_an_event = json.dumps({"object": "customer"}).encode()
    with pytest.raises(WebhookRefused, match="not a Stripe event"):
        verify_webhook(not_an_event, sign(not_an_event, "whsec_test", int(T0)), "whsec_test", now=T0)


def test_push_costs_three_calls_and_completes_a_half_pushed_draft(stripe_sb: tuple[StripeSandbox, str]) -> None:
    sb, url = stripe_sb
    customer_id = _customer(_connector(url))
    conn = _connector(url)
    conn.push_invoice(_doc("US-INV-000007", "10.00"), customer_id, look_up=False)
    assert conn.api_calls == CALLS_PER_INVOICE_MIN  # create, add_lines, finalize
    many = _doc("US-INV-000008", *["1.00"] * 120)
    sb.faults.add(Fault(kind="lost_response", path="/add_lines$", after=1))  # the second chunk of 50
    with pytest.raises(VendorError):
        _connector(url, attempts=1).push_invoice(many, customer_id)
    draft = next(i for i in _invoices(sb) if i["metadata"]["billbridge_number"] == "US-INV-000008")
    assert (draft["status"], len(draft["_lines"])) == ("draft", 100)
    sb.state.idempotency.clear()
    result = _connector(url).push_invoice(many, customer_id)
    assert (result.status, result.vendor_status, result.amount_due) == ("existing", "open", Decimal("120.00"))
    assert len(sb.state.get("invoice", result.external_id)["_lines"]) == 120


def test_pull_refunds_as_negative_payments(stripe_sb: tuple[StripeSandbox, str], clock: Clock) -> None:
    sb, url = stripe_sb
    conn = _connector(url)
    customer_id = _customer(conn)
    doc = _doc("US-INV-000009", "135.00")
    conn.charge_invoice(conn.push_invoice(doc, customer_id).external_id, doc.idempotency_key("charge-1"))
    clock.now += 86400
    charge = sb.state.all("charge")[0]
    handlers.create_refund(sb.state, {"charge": charge["id"], "amount": "3500", "reason": "requested_by_customer"})
    refunds = [p for page in conn.pull_refunds(str(int(T0) + 3600)) for p in page.payments]
    assert [(p.amount, p.invoice_numbers, p.customer_ref, p.refund_of) for p in refunds] == [
        (Decimal("-35.00"), ("US-INV-000009",), "sf-ACC1", charge["id"])
    ]
    payments = [p for page in conn.pull_payments(None) for p in page.payments]
    assert payments[0].extra["amount_refunded"] == "35.00"


def test_search_lag_does_not_duplicate_customers_or_hide_invoices(stripe_sb: tuple[StripeSandbox, str]) -> None:
    sb, url = stripe_sb
    sb.state.search_lag = 60  # nothing written in the last minute is searchable yet
    conn = _connector(url)
    first = conn.ensure_customer("sf-ACC9", "Hooli", None)
    assert conn.ensure_customer("sf-ACC9", "Hooli", None) == first  # same content, same key: replayed
    assert len(sb.state.all("customer")) == 1
    conn.attach_default_payment_method(first, "pm_card_visa")
    pushed = conn.push_invoice(_doc(), first)
    again = conn.push_invoice(_doc(), first)
    assert (again.external_id, again.status) == (pushed.external_id, "existing")  # found by listing, not search
    assert len(_invoices(sb)) == 1


def test_the_connector_reads_the_dispute_events_the_mapping_knows() -> None:
    from billbridge.connectors.stripe.readers import DISPUTE_EVENTS
    from billbridge.mapping.stripe import DISPUTE_MOVES

    assert set(DISPUTE_EVENTS) == set(DISPUTE_MOVES)
