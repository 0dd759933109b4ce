"""The stripe channel: invoices of customers on it go to Stripe as ``send_invoice`` (due the payment
terms later) and Stripe e-mails them (POST /v1/invoices/{id}/send), each once: a message a crash left
``sending`` is looked up in Stripe's ``invoice.sent`` events, a paid invoice is not sent, and the
hosted invoice page is the pay link."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import update

from billbridge.flows.approval import approve_drafts
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.messages import plan_messages, send_messages
from billbridge.flows.push import push, stripe_connector
from billbridge.sandbox.stripe import RunningStripe, start_seeded
from billbridge.settings import Settings, StripeSettings
from billbridge.store import external_refs, messages, outbox
from billbridge.store.db import Store
from billbridge.store.message_models import CustomerMessage
from billbridge.store.models import OutboxMessage
from tests.docs import REFERENCE, contract


@pytest.fixture
def stripe_sandbox() -> Iterator[RunningStripe]:
    with start_seeded() as running:
        yield running


def _stripe_channel_world(store: Store, stripe_sandbox: RunningStripe, database_url: str, tmp_path: Path) -> Settings:
    """Four customers of an entity on the stripe channel (one auto-charged), billed, approved, pushed
    to Stripe and their invoice messages planned."""
    entity = {**REFERENCE["entities"][0], "messaging": {"channel": "stripe"}}
    customers = [
        {
            "customer_ref": f"s{i}",
            "name": f"S {i}",
            "entity_ref": "us",
            "email": f"ap@s{i}.example",
            "contacts": [{"email": f"ap@s{i}.example"}],
        }
        for i in range(4)
    ]
    doc = {
        "entities": [entity],
        "products": REFERENCE["products"],
        "customers": customers,
        "contracts": [
            contract(f"SK{i}", customer=f"s{i}", payment_terms_days=15, auto_charge=(i == 3)) for i in range(4)
        ],
    }
    assert not import_document(store, doc).errors
    run_billing(store, date(2026, 1, 1))
    approve_drafts(store, ["stripe"])
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        push_targets=["stripe"],
        stripe=StripeSettings(api_key=SecretStr(stripe_sandbox.api_key), base_url=stripe_sandbox.url),
    )
    assert push(store, settings, "stripe").outcomes == {"created": 4}
    plan_messages(store, settings, date(2026, 1, 2))
    return settings


def _invoice_of(store: Store, message_id: int) -> str:
    with store.read() as session:
        row = session.get(CustomerMessage, message_id)
        assert row is not None and row.invoice_id is not None
        found = external_refs.get_external_id(session, "stripe", "invoice", row.invoice_id)
    assert found is not None
    return found


def test_stripe_sends_each_invoice_once_and_a_crash_is_finished_by_its_events(
    store: Store, stripe_sandbox: RunningStripe, database_url: str, tmp_path: Path
) -> None:
    settings = _stripe_channel_world(store, stripe_sandbox, database_url, tmp_path)
    state = stripe_sandbox.sandbox.state
    invoices = [i for i in state.all("invoice") if i["metadata"].get("billbridge_number")]
    sent_invoice = [i for i in invoices if i["collection_method"] == "send_invoice"]
    assert len(sent_invoice) == 3 and len(invoices) == 4  # the auto-charge one is charged, not mailed
    for invoice in sent_invoice:  # due the payment terms after Stripe took it, as Stripe's e-mail says
        assert invoice["due_date"] - invoice["created"] == 15 * 86400
    with store.read() as session:
        rows = messages.listing(session)
        collecting = session.query(OutboxMessage).filter(OutboxMessage.topic == "collect.stripe").count()
    assert collecting == 1  # only the auto-charge invoice is collected
    assert sorted(r["channel"] for r in rows) == ["email", "stripe", "stripe", "stripe"]
    stripe_rows = [r for r in rows if r["channel"] == "stripe"]
    # One invoice Stripe mailed before a crash left our message `sending` (after an attempt began):
    crashed, paid = stripe_rows[0], stripe_rows[1]
    connector = stripe_connector(settings)
    connector.send_invoice(_invoice_of(store, crashed["id"]), ["ap@x.example"], [], "before-the-crash")
    with store.write() as session:
        session.execute(
            update(CustomerMessage).where(CustomerMessage.id == crashed["id"]).values(state="sending", attempts=1)
        )
    # Another paid at Stripe before its e-mail went: Stripe would mail it without the payment; not sent.
    paid_invoice = state.get("invoice", _invoice_of(store, paid["id"]))
    paid_invoice.update(status="paid", amount_remaining=0)
    settings = settings.model_copy(update={"smtp": None})
    summary = send_messages(store, settings)
    assert summary.outcomes == {"invoice sent by stripe": 1, "sent before": 1, "skipped": 1}
    assert len(state.sent_emails) == 2
    assert sorted(e["to"] for e in state.sent_emails) == sorted(
        {
            r["recipients"]["to"][0]
            for r in stripe_rows
            if r["id"] != paid["id"]  # the crashed one went to its customer's Stripe e-mail before
        }
    )
    events = [e for e in state.all("event") if e["type"] == "invoice.sent"]
    assert {e["data"]["object"]["id"] for e in events} == {e["invoice"] for e in state.sent_emails}
    with store.write() as session:  # even handed back, nothing goes twice
        outbox.retry_now(session, [p["id"] for p in outbox.pending(session) if p["topic"] == "message.stripe"])
    assert send_messages(store, settings).outcomes == {}
    assert len(state.sent_emails) == 2
    with store.read() as session:
        states = {r["id"]: r["state"] for r in messages.listing(session)}
    assert states[paid["id"]] == "skipped"
    assert {states[r["id"]] for r in stripe_rows if r["id"] != paid["id"]} == {"sent"}


def test_stripe_refuses_to_send_an_auto_charge_invoice(
    store: Store, stripe_sandbox: RunningStripe, database_url: str, tmp_path: Path
) -> None:
    """The sandbox answers as Stripe does; the connector says why without sending."""
    settings = _stripe_channel_world(store, stripe_sandbox, database_url, tmp_path)
    ours = [i for i in stripe_sandbox.sandbox.state.all("invoice") if i["metadata"].get("billbridge_number")]
    charged = next(i for i in ours if i["collection_method"] != "send_invoice")
    connector = stripe_connector(settings)
    with pytest.raises(Exception, match="collected by charge_automatically"):
        connector.send_invoice(charged["id"], ["ap@s3.example"], [], "k")
    with pytest.raises(Exception, match="only manually send an invoice"):
        connector.api.invoices.send_invoice(charged["id"])
    assert stripe_sandbox.sandbox.state.sent_emails == []
