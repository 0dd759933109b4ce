"""Worked examples of what customers receive, end to end through the vendor sandboxes, the daily
``send_reminders`` run and a real SMTP server: a declined card (a dunning notice with the reason in
plain words and the page to update the card), then a successful retry (a receipt, no further
dunning); a receipt after an auto-charge; a receipt after a payment entered by hand in QuickBooks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from billbridge.flows.collect import collect
from billbridge.flows.messages import send_reminders
from billbridge.flows.push import push
from billbridge.flows.reconcile import reconcile
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.sandbox.smtp import Received, SmtpSandbox
from billbridge.sandbox.stripe import RunningStripe, start_seeded
from billbridge.settings import Settings
from billbridge.store import external_refs, outbox
from billbridge.store.db import Store
from billbridge.store.invoices import list_invoices
from tests.flows.test_collect_reconcile import bill_and_approve, card_on_file, stripe_only
from tests.flows.test_push_quickbooks import settings_for
from tests.settings_env import as_environment

pytestmark = pytest.mark.slow  # sandboxes, an SMTP server, a Prefect server


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox() as running:
        yield running


@pytest.fixture
def stripe_sandbox() -> Iterator[RunningStripe]:
    with start_seeded() as running:
        yield running


def _environment(monkeypatch: pytest.MonkeyPatch, settings: Settings, smtp: SmtpSandbox) -> None:
    """The daily run's settings, as its deployment's environment gives them."""
    for prefix, model in (("BILLBRIDGE_STRIPE", settings.stripe), ("BILLBRIDGE_QUICKBOOKS", settings.quickbooks)):
        if model is not None:
            for key, value in as_environment(prefix, model).items():
                monkeypatch.setenv(key, value)
    for key, value in smtp.settings().items():
        monkeypatch.setenv(f"BILLBRIDGE_SMTP__{key.upper()}", str(value))
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(settings.data_dir))  # its key opens the sealed QuickBooks tokens


def _kind(received: Received) -> str:
    subject = str(received.message["Subject"])
    for start, kind in (("Payment received", "receipt"), ("Payment failed", "dunning"), ("Final notice", "dunning")):
        if subject.startswith(start):
            return kind
    return "other"


def _text(received: Received) -> str:
    body = received.message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def test_a_declined_card_gets_a_dunning_notice_then_the_retry_a_receipt_and_no_further_dunning(
    store: Store,
    stripe_sandbox: RunningStripe,
    smtp: SmtpSandbox,
    flow_env: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    settings = stripe_only(stripe_sandbox, flow_env, tmp_path)
    _environment(monkeypatch, settings, smtp)
    bill_and_approve(store, ["stripe"])  # globex's auto-charge invoices go to Stripe
    push(store, settings, "stripe")
    connector = card_on_file(settings, "pm_card_chargeDeclinedInsufficientFunds")
    with store.read() as session:
        auto = {str(d["number"]): d for d in list_invoices(session, contract_ref="C-100-globex")}
        hosted = {
            number: connector.retrieve_invoice(
                str(external_refs.get_external_id(session, "stripe", "invoice", int(d["id"])))
            )["hosted_invoice_url"]
            for number, d in auto.items()
        }
    assert collect(store, settings).outcomes == {"declined": len(auto)}

    send_reminders(as_of=date.today())
    dunning = [r for r in smtp.mailbox.items() if _kind(r) == "dunning"]
    assert sorted(str(r.message["Subject"]) for r in dunning) == sorted(f"Payment failed: invoice {n}" for n in auto)
    for received in dunning:
        number = str(received.message["Subject"]).rpartition(" ")[2]
        text = _text(received)
        assert received.recipients == ("ap@globex.example",)
        assert f"we could not charge your card for invoice {number}" in text
        assert "the card has insufficient funds" in text  # the decline in plain words
        assert f"Update your card or pay online: {hosted[number]}" in text  # Stripe's hosted page
        assert "We will try again in a few days." in text
    assert not [r for r in smtp.mailbox.items() if _kind(r) == "receipt"]

    connector.attach_default_payment_method(connector.find_customer("globex"), "pm_card_visa")  # a new card
    with store.write() as session:  # the next try is due
        outbox.retry_now(session, [p["id"] for p in outbox.pending(session) if p["topic"] == "collect.stripe"])
    assert collect(store, settings).outcomes == {"charged": len(auto)}
    assert reconcile(store, settings, "stripe").outcomes == {"matched": len(auto)}

    before = len(smtp.mailbox.items())
    send_reminders(as_of=date.today())
    after = smtp.mailbox.items()[before:]
    assert Counter(_kind(r) for r in after) == {"receipt": len(auto)}  # receipts, no further dunning
    for received in after:
        text = _text(received)
        [number] = [n for n in auto if f"- invoice {n}:" in text]
        total = auto[number]["invoice_total"]
        assert f"- invoice {number}: ${total:,.2f} applied, $0.00 still open" in text
        assert str(received.message["Subject"]) == f"Payment received, thank you (${total:,.2f})"

    send_reminders(as_of=date.today())  # the daily run again: nothing more to say
    assert len(smtp.mailbox.items()) == before + len(auto)
    assert max(Counter(r.message_id for r in smtp.mailbox.items()).values()) == 1


def test_a_payment_entered_by_hand_in_quickbooks_gets_a_receipt_naming_what_stays_open(
    store: Store,
    qbo: RunningQuickBooks,
    smtp: SmtpSandbox,
    flow_env: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    settings = settings_for(qbo, flow_env, tmp_path)
    _environment(monkeypatch, settings, smtp)
    bill_and_approve(store, ["quickbooks"])
    push(store, settings, "quickbooks")
    with store.read() as session:
        documents = [d for d in list_invoices(session, contract_ref="C-100-globex") if d["doc_type"] == "invoice"]
        invoice = documents[0]
        qbo_id = external_refs.get_external_id(session, "quickbooks", "invoice", int(invoice["id"]))
    assert qbo_id is not None
    send_reminders(as_of=date.today())  # the deliveries of the issued invoices
    before = len(smtp.mailbox.items())
    assert not [r for r in smtp.mailbox.items() if _kind(r) == "receipt"]

    total = Decimal(str(invoice["invoice_total"]))
    part = (total / 4).quantize(Decimal("0.01"))
    qbo.company.receive_payment({qbo_id: part}, ref="CHK-2001")  # a cheque entered by the bookkeeper
    assert reconcile(store, settings, "quickbooks").outcomes == {"matched": 1}
    send_reminders(as_of=date.today())
    [receipt] = smtp.mailbox.items()[before:]
    assert _kind(receipt) == "receipt" and receipt.recipients == ("ap@globex.example",)
    text = _text(receipt)
    assert f"we received your payment of ${part:,.2f}" in text
    assert f"- invoice {invoice['number']}: ${part:,.2f} applied, ${total - part:,.2f} still open" in text
    send_reminders(as_of=date.today())
    assert len(smtp.mailbox.items()) == before + 1  # once
