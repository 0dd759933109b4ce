"""Webhooks end to end: the sandboxes' signed deliveries reach a real uvicorn serving create_app, and
each payment ends recorded exactly once, however often and in whatever order the events arrive."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr
from sqlalchemy import func, select

from billbridge.api.app import create_app
from billbridge.api.webhook_worker import WebhookWorker
from billbridge.flows.collect import collect
from billbridge.flows.push import push, stripe_connector
from billbridge.flows.webhooks import WebhookSummary, decide, process_pending, process_webhooks
from billbridge.sandbox.quickbooks import sign_webhook
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.sandbox.server import SandboxServer
from billbridge.sandbox.stripe import RunningStripe, WebhookSender, start_seeded
from billbridge.sandbox.stripe import payments as refunds
from billbridge.settings import Settings, StripeSettings
from billbridge.store import external_refs
from billbridge.store import webhooks as inbox
from billbridge.store.db import Store
from billbridge.store.invoices import list_invoices
from billbridge.store.models import Payment
from billbridge.store.payments import known_payment_refs
from tests.flows.test_collect_reconcile import bill_and_approve
from tests.flows.test_push_quickbooks import settings_for
from tests.settings_env import as_environment

PAYMENT_EVENTS = {"charge.succeeded", "payment_intent.succeeded", "invoice_payment.paid", "invoice.paid"}


@pytest.fixture
def stripe_sandbox() -> Iterator[RunningStripe]:
    with start_seeded() as running:
        yield running


def stripe_settings(stripe: RunningStripe, database_url: str, data_dir: Path, *, inline: bool) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        webhooks_inline=inline,
        stripe=StripeSettings(
            api_key=SecretStr(stripe.api_key), base_url=stripe.url, webhook_secret=SecretStr(stripe.webhook_secret)
        ),
    )


@pytest.fixture
def serve() -> Iterator[Any]:
    """Serve create_app(store, settings) on loopback with uvicorn; stops the server and its webhook worker."""
    started: list[tuple[SandboxServer, WebhookWorker | None]] = []

    def start(store: Store, settings: Settings) -> tuple[str, WebhookWorker | None]:
        app = create_app(store, settings)
        server = SandboxServer(app, name="api").start()
        started.append((server, app.state.webhook_worker))
        return server.url, app.state.webhook_worker

    yield start
    for server, worker in started:
        server.stop()
        if worker is not None:
            worker.stop()


def payment_count(store: Store) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(Payment)) or 0)


def charge_auto_invoices(store: Store, settings: Settings) -> list[dict[str, Any]]:
    """Bill, push the auto-charge contract's invoices to Stripe and charge them (a good card)."""
    bill_and_approve(store, ["stripe"])
    with store.read() as session:
        auto = list_invoices(session, contract_ref="C-100-globex")
    assert auto and push(store, settings, "stripe").outcomes == {"created": len(auto)}
    connector = stripe_connector(settings)
    customer = connector.find_customer("globex")
    assert customer is not None
    connector.attach_default_payment_method(customer, "pm_card_visa")
    assert collect(store, settings).outcomes == {"charged": len(auto)}
    return auto


def charge_holding_events(
    store: Store, settings: Settings, stripe: RunningStripe
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``charge_auto_invoices`` with every Stripe event it causes held back, for the test to deliver
    in the order it wants: (the invoices charged, the events)."""
    held: list[dict[str, Any]] = []
    stripe.sandbox.state.listeners.append(held.append)
    return charge_auto_invoices(store, settings), held


def assert_paid_once(store: Store, stripe: RunningStripe, auto: list[dict[str, Any]]) -> None:
    charges = [c["id"] for c in stripe.sandbox.state.all("charge") if c["status"] == "succeeded"]
    assert len(charges) == len(auto)
    with store.read() as session:
        assert known_payment_refs(session, [f"stripe:{c}" for c in charges]) == {f"stripe:{c}" for c in charges}
        paid = list_invoices(session, contract_ref="C-100-globex")
    assert payment_count(store) == len(auto)
    assert {d["status"] for d in paid} == {"paid"}
    assert all(d["amount_paid"] == d["invoice_total"] for d in paid)


def test_stripe_deliveries_record_each_payment_once_and_replays_do_nothing(
    store: Store, stripe_sandbox: RunningStripe, database_url: str, tmp_path: Path, serve: Any
) -> None:
    settings = stripe_settings(stripe_sandbox, database_url, tmp_path, inline=True)
    url, worker = serve(store, settings)
    assert worker is not None
    seeded = len(stripe_sandbox.sandbox.state.all("event"))
    sender = stripe_sandbox.sandbox.send_webhooks_to(f"{url}/webhooks/stripe", stripe_sandbox.webhook_secret)

    auto = charge_auto_invoices(store, settings)  # every Stripe event from now on goes to the endpoint
    sender.flush()
    sent = stripe_sandbox.sandbox.state.all("event")[seeded:]
    assert sender.failed == [] and sender.delivered == [e["id"] for e in sent]
    assert worker.wait_idle(timeout=30)
    assert_paid_once(store, stripe_sandbox, auto)  # recorded by the webhook, not by a scheduled reconciliation
    with store.read() as session:
        events = inbox.list_events(session, limit=1000)
    assert len(events) == len(sender.delivered) and all(e["processed_at"] is not None for e in events)
    outcomes = {e["event_type"]: e["outcome"] for e in events}
    assert {outcomes[t] for t in PAYMENT_EVENTS} == {"reconcile:stripe"}
    assert outcomes["invoice.created"] == outcomes["customer.created"] == "ignored"
    passes = worker.passes

    # Stripe redelivers (a lost 200, a manual resend): each event again, freshly signed. 200, nothing new.
    replay = WebhookSender(f"{url}/webhooks/stripe", stripe_sandbox.webhook_secret)
    for event in sent:
        replay(event)
    replay.flush()
    assert replay.failed == [] and len(replay.delivered) == len(events)
    assert worker.wait_idle(timeout=30) and worker.passes == passes  # nothing stored, so nothing to act on
    with store.read() as session:
        assert len(inbox.list_events(session, limit=1000)) == len(events)
    assert_paid_once(store, stripe_sandbox, auto)


def test_stripe_events_in_reverse_order_cause_one_reconciliation(
    store: Store, stripe_sandbox: RunningStripe, database_url: str, tmp_path: Path, serve: Any
) -> None:
    settings = stripe_settings(stripe_sandbox, database_url, tmp_path, inline=False)
    url, _ = serve(store, settings)
    auto, held = charge_holding_events(store, settings, stripe_sandbox)

    late = WebhookSender(f"{url}/webhooks/stripe", stripe_sandbox.webhook_secret)
    for event in reversed(held):  # invoice.paid before the charge it reports, the charge before its invoice
        late(event)
    late(held[-1])  # and one twice
    late.flush()
    assert late.failed == [] and payment_count(store) == 0  # stored, not yet acted on

    summary = process_pending(store, settings)
    payment_events = sum(1 for e in held if e["type"] in PAYMENT_EVENTS)
    assert payment_events == 4 * len(auto) > 1
    assert summary.actions == {"reconcile:stripe": 1}  # one reconciliation for the whole burst
    assert summary.events == {"reconcile:stripe": payment_events, "ignored": len(held) - payment_events}
    assert summary.notes["reconcile:stripe"] == f"matched {len(auto)}"
    assert_paid_once(store, stripe_sandbox, auto)
    assert process_pending(store, settings).actions == {}  # all processed: a second pass does nothing


def test_quickbooks_payment_notification_is_reconciled_once_by_the_flow(
    flow_env: str, store: Store, qbo: RunningQuickBooks, tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(qbo, flow_env, tmp_path)
    assert settings.quickbooks is not None
    settings.quickbooks.webhook_verifier_token = SecretStr(qbo.webhook_verifier)
    settings.webhooks_inline = False  # the scheduled flow acts on them
    url, _ = serve(store, settings)
    qbo.company.webhook.url = f"{url}/webhooks/quickbooks"
    # The flow reads its settings from the environment, as a deployment does.
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path))  # where the key sealing the stored tokens lives
    for name, value in as_environment("BILLBRIDGE_QUICKBOOKS", settings.quickbooks).items():
        monkeypatch.setenv(name, value)

    bill_and_approve(store, ["quickbooks"])
    push(store, settings, "quickbooks")  # QuickBooks notifies the invoices' creation: nothing to do for us
    with store.read() as session:
        invoice = next(d for d in list_invoices(session) if d["doc_type"] == "invoice")
        qbo_invoice = external_refs.get_external_id(session, "quickbooks", "invoice", int(invoice["id"]))
    assert qbo_invoice is not None
    payment = qbo.company.receive_payment({qbo_invoice: Decimal(str(invoice["invoice_total"]))}, ref="CHK-2001")
    qbo.company.webhook.flush()
    status, notified = qbo.company.webhook.delivered[-1]
    assert status == 200 and json.loads(notified)[0]["intuitentityid"] == payment["Id"]  # a CloudEvent
    pushed = len(qbo.company.webhook.delivered) - 1

    result = process_webhooks()
    assert result["actions"] == {"reconcile:quickbooks": 1}
    assert result["events"] == {"reconcile:quickbooks": 1, "ignored": pushed}
    assert result["notes"] == {"reconcile:quickbooks": "matched 1"}
    with store.read() as session:
        assert known_payment_refs(session, [f"quickbooks:{payment['Id']}"]) == {f"quickbooks:{payment['Id']}"}
        invoice_now = next(d for d in list_invoices(session) if d["number"] == invoice["number"])
    assert invoice_now["status"] == "paid" and payment_count(store) == 1

    # Intuit retries the same notification: 200, a duplicate, and the next run has nothing to do.
    again = requests.post(
        f"{url}/webhooks/quickbooks",
        data=notified,
        headers={"intuit-signature": sign_webhook(notified, qbo.webhook_verifier), "Content-Type": "application/json"},
        timeout=10,
    )
    assert again.status_code == 200 and again.json() == {"received": 1, "new": 0, "duplicates": 1}
    assert process_webhooks() == {"events": {}, "actions": {}, "notes": {}, "failures": []}
    assert payment_count(store) == 1


def test_a_failed_action_keeps_its_events_with_the_error_and_retries_them(
    store: Store, stripe_sandbox: RunningStripe, database_url: str, tmp_path: Path, serve: Any
) -> None:
    good = stripe_settings(stripe_sandbox, database_url, tmp_path, inline=False)
    assert good.stripe is not None
    revoked = good.model_copy(
        update={"stripe": good.stripe.model_copy(update={"api_key": SecretStr("sk_test_revoked")})}
    )
    url, _ = serve(store, good)
    auto, held = charge_holding_events(store, good, stripe_sandbox)
    sender = WebhookSender(f"{url}/webhooks/stripe", stripe_sandbox.webhook_secret)
    for event in held:
        sender(event)
    sender.flush()

    failed = process_pending(store, revoked)  # Stripe refuses the key: reconciliation cannot run
    assert failed.actions == {"reconcile:stripe": 1} and failed.events["failed"] == 4 * len(auto)
    assert [action for action, _ in failed.failures] == ["reconcile:stripe"]
    with store.read() as session:
        waiting = inbox.list_events(session, pending_only=True, limit=1000)
    assert len(waiting) == 4 * len(auto) and payment_count(store) == 0
    assert {e["attempts"] for e in waiting} == {1}
    assert all(
        "AuthenticationError" in str(e["last_error"]) and "sk_test_revoked" not in str(e["last_error"]) for e in waiting
    )

    assert process_pending(store, good).actions == {}  # they wait for their retry time (a minute)
    later = datetime.now(UTC) + timedelta(minutes=2)
    retried = process_pending(store, good, now=later)
    assert retried.actions == {"reconcile:stripe": 1} and retried.failures == []
    assert retried.events == {"reconcile:stripe": 4 * len(auto)}
    assert_paid_once(store, stripe_sandbox, auto)


def test_a_second_processor_leaves_events_another_is_acting_on(
    store: Store, stripe_sandbox: RunningStripe, database_url: str, tmp_path: Path, serve: Any
) -> None:
    settings = stripe_settings(stripe_sandbox, database_url, tmp_path, inline=False)
    url, _ = serve(store, settings)
    auto, held = charge_holding_events(store, settings, stripe_sandbox)
    sender = WebhookSender(f"{url}/webhooks/stripe", stripe_sandbox.webhook_secret)
    for event in held:
        sender(event)
    sender.flush()

    acting, release = threading.Event(), threading.Event()

    @contextmanager
    def slow_slot(_vendor: str) -> Iterator[None]:
        acting.set()  # the first processor holds its claimed events and is about to reconcile
        assert release.wait(30)
        yield

    first: list[WebhookSummary] = []
    thread = threading.Thread(target=lambda: first.append(process_pending(store, settings, slot=slow_slot)))
    thread.start()
    assert acting.wait(30)
    second = process_pending(store, settings)  # runs while the first is mid-action
    release.set()
    thread.join(30)
    assert second.actions == {} and second.events == {}  # every event was leased to the first
    assert first[0].actions == {"reconcile:stripe": 1} and first[0].failures == []
    assert_paid_once(store, stripe_sandbox, auto)


def test_a_refund_delivered_by_webhook_takes_back_from_its_invoice_once(
    store: Store, stripe_sandbox: RunningStripe, database_url: str, tmp_path: Path, serve: Any
) -> None:
    settings = stripe_settings(stripe_sandbox, database_url, tmp_path, inline=True)
    url, worker = serve(store, settings)
    assert worker is not None
    sender = stripe_sandbox.sandbox.send_webhooks_to(f"{url}/webhooks/stripe", stripe_sandbox.webhook_secret)
    auto = charge_auto_invoices(store, settings)
    sender.flush()
    assert worker.wait_idle(timeout=30)
    assert_paid_once(store, stripe_sandbox, auto)

    charge = next(c for c in stripe_sandbox.sandbox.state.all("charge") if c["status"] == "succeeded")
    refunded = refunds.create_refund(stripe_sandbox.sandbox.state, {"charge": charge["id"], "amount": "500"})
    sender.flush()
    assert worker.wait_idle(timeout=30)
    with store.read() as session:
        assert known_payment_refs(session, [f"stripe:{refunded['id']}"]) == {f"stripe:{refunded['id']}"}
        outcomes = {e["event_type"]: e["outcome"] for e in inbox.list_events(session, limit=1000)}
        documents = list_invoices(session, contract_ref="C-100-globex")
    assert outcomes["charge.refunded"] == outcomes["refund.created"] == "reconcile:stripe"
    assert payment_count(store) == len(auto) + 1
    assert sorted(d["status"] for d in documents) == ["paid"] * (len(auto) - 1) + ["partially_paid"]
    assert sum(d["invoice_total"] - d["amount_paid"] for d in documents) == Decimal("5.00")


@pytest.mark.parametrize(
    ("event_type", "crm_sources", "action"),
    [
        ("charge.refunded", [], "reconcile:stripe"),
        ("customer.subscription.updated", ["stripe"], "sync:stripe"),
        ("customer.subscription.updated", ["salesforce"], None),
        ("charge.dispute.created", [], None),
        ("charge.dispute.funds_withdrawn", [], "reconcile:stripe"),
    ],
)
def test_what_each_stripe_event_asks_for(event_type: str, crm_sources: list[str], action: str | None) -> None:
    event = inbox.ClaimedEvent(1, "stripe", "evt_1", event_type, "obj_1", "{}", 1)
    decided, why = decide(event, Settings(crm_sources=crm_sources))
    assert decided == action and why
