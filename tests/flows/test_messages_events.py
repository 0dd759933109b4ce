"""Messages made with the events that cause them, whatever their dates: an invoice pushed a month
after its billing date is delivered, a QuickBooks payment entered with a date three weeks back gets
its receipt; a run that stops right after the event's commit leaves its message queued for the next
relay, which sends it once; reruns make nothing twice. ``push_invoices`` and ``reconcile_payments``
send what they made right after their commit (``push_and_send``, ``reconcile_and_send``); a failed
send leaves it queued without failing them, and the next run delivers it once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from billbridge.flows.approval import approve_drafts
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.messages import plan_messages, send_messages
from billbridge.flows.push import push, push_and_send
from billbridge.flows.reconcile import reconcile, reconcile_and_send
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.settings import Settings, SmtpSettings
from billbridge.store import external_refs, messages, outbox
from billbridge.store.db import Store
from billbridge.store.invoices import list_invoices
from tests.docs import REFERENCE, contract
from tests.flows.messaging_world import ENTITY
from tests.flows.test_push_quickbooks import settings_for
from tests.ports import free_port

pytestmark = pytest.mark.slow  # QuickBooks and SMTP sandboxes

TODAY = date.today()  # the day the push and the reconciliation run: the messages are made today
BILLED = TODAY - timedelta(days=30)  # the invoices' billing date: approved and pushed a month late


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox() as running:
        yield running


def billed_a_month_ago(store: Store) -> None:
    """Two customers with a billing contact each, billed 30 days ago (due in 30 days: no reminder due
    yet) and approved for QuickBooks today."""
    doc = {
        "entities": [ENTITY],
        "products": REFERENCE["products"],
        "customers": [
            {"customer_ref": f"e{i}", "name": f"E {i}", "entity_ref": "us", "contacts": [{"email": f"ap@e{i}.example"}]}
            for i in range(2)
        ],
        "contracts": [
            contract(f"EK{i}", customer=f"e{i}", contract_start_date=BILLED.isoformat(), payment_terms_days=60)
            for i in range(2)
        ],
    }
    assert not import_document(store, doc).errors
    run_billing(store, BILLED)
    approve_drafts(store, ["quickbooks"])


def with_smtp(qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path) -> Settings:
    return settings_for(qbo, database_url, tmp_path).model_copy(update={"smtp": SmtpSettings(**smtp.settings())})


def subjects(smtp: SmtpSandbox) -> list[str]:
    return sorted(str(r.message["Subject"]) for r in smtp.mailbox.items())


def test_an_invoice_pushed_a_month_after_its_billing_date_is_delivered_once(
    store: Store, qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    billed_a_month_ago(store)
    settings = with_smtp(qbo, smtp, database_url, tmp_path)
    # The push commits the documents sent with their deliveries; the run stops there (killed before
    # any relay): the next run's relay sends them.
    assert push(store, settings, "quickbooks").outcomes == {"created": 2}
    with store.read() as session:
        made = messages.listing(session, kind="invoice")
    assert {(m["state"], m["as_of"]) for m in made} == {("queued", TODAY)}  # made the day they were issued
    assert plan_messages(store, settings, TODAY).created == {}
    assert send_messages(store, settings).outcomes == {"invoice": 2}
    assert subjects(smtp) == ["Invoice US-INV-1 from Acme Inc.", "Invoice US-INV-2 from Acme Inc."]
    # Reruns of the push and the daily run make nothing twice.
    assert push(store, settings, "quickbooks").outcomes == {}
    assert plan_messages(store, settings, TODAY).created == {}
    assert send_messages(store, settings).outcomes == {}
    assert len(smtp.mailbox.items()) == 2


def test_a_quickbooks_payment_dated_three_weeks_back_gets_its_receipt_once(
    store: Store, qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    billed_a_month_ago(store)
    settings = with_smtp(qbo, smtp, database_url, tmp_path)
    push(store, settings, "quickbooks")
    with store.read() as session:
        first = list_invoices(session)[0]
        qbo_id = external_refs.get_external_id(session, "quickbooks", "invoice", int(str(first["id"])))
    assert qbo_id is not None
    # A cheque entered by hand today, dated 20 days ago, paying 500.00 of the invoice's 1,200.00.
    received = TODAY - timedelta(days=20)
    qbo.company.receive_payment({qbo_id: Decimal("500.00")}, ref="CHK-77", txn_date=received.isoformat())
    assert reconcile(store, settings, "quickbooks").outcomes == {"matched": 1}
    assert send_messages(store, settings).outcomes == {"invoice": 2, "receipt": 1}
    [receipt] = [r for r in smtp.mailbox.items() if str(r.message["Subject"]).startswith("Payment received")]
    assert receipt.recipients == ("ap@e0.example",)  # a QuickBooks payment names no customer: its invoice's
    with store.read() as session:
        [made] = messages.listing(session, kind="receipt")
        context = messages.sending_context(session, int(made["id"]))
    assert context is not None and made["as_of"] == received
    assert context["details"]["payment"]["applied"] == [
        {"number": first["number"], "amount": "500.00", "open": "700.00"}
    ]
    # The same payment read again (a rerun, a replayed webhook's reconciliation): no second receipt.
    assert reconcile(store, settings, "quickbooks").outcomes.get("matched", 0) == 0
    assert plan_messages(store, settings, TODAY).created == {}
    assert send_messages(store, settings).outcomes == {}
    with store.read() as session:
        assert len(messages.listing(session, kind="receipt")) == 1
    assert len(smtp.mailbox.items()) == 3  # two deliveries, one receipt


def test_the_push_and_the_reconciliation_send_what_they_made_and_say_so(
    store: Store, qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    billed_a_month_ago(store)
    settings = with_smtp(qbo, smtp, database_url, tmp_path)
    pushed, sent = push_and_send(store, settings, "quickbooks")
    assert pushed.outcomes == {"created": 2}
    assert sent.error is None and sent.summary is not None and sent.summary.outcomes == {"invoice": 2}
    assert "| invoice | 2 |" in sent.markdown()  # the push's summary artifact counts them
    assert len(smtp.mailbox.items()) == 2
    with store.read() as session:
        first = list_invoices(session)[0]
        qbo_id = external_refs.get_external_id(session, "quickbooks", "invoice", int(str(first["id"])))
    assert qbo_id is not None
    qbo.company.receive_payment({qbo_id: Decimal("1200.00")}, ref="CHK-78")
    summary, sent = reconcile_and_send(store, settings, "quickbooks")
    assert summary.outcomes == {"matched": 1}
    assert sent.summary is not None and sent.summary.outcomes == {"receipt": 1}
    assert sent.as_dict()["sent"]["outcomes"] == {"receipt": 1}  # the flow's result
    assert reconcile_and_send(store, settings, "quickbooks")[1].summary.outcomes == {}  # type: ignore[union-attr]
    assert len(smtp.mailbox.items()) == 3


def test_a_send_that_fails_after_the_push_leaves_the_deliveries_queued_and_the_next_run_sends_each_once(
    store: Store, qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    billed_a_month_ago(store)
    down = settings_for(qbo, database_url, tmp_path).model_copy(
        update={"smtp": SmtpSettings(**{**smtp.settings(), "port": free_port()})}  # nothing listens there
    )
    pushed, sent = push_and_send(store, down, "quickbooks")
    assert pushed.outcomes == {"created": 2}  # the push stands, its documents sent
    # an unreachable server stops the sending (not the push): nothing tried, the deliveries left queued
    assert sent.summary is not None and sent.summary.outcomes == {}
    assert sent.summary.stopped is not None and "Connection refused" in sent.summary.stopped
    assert "Connection refused" in sent.markdown()
    with store.write() as session:  # the relay's backoff over (as time passing would)
        assert {m["state"] for m in messages.listing(session, kind="invoice")} == {"queued"}
        outbox.retry_now(session, [p["id"] for p in outbox.pending(session, topic="message.email")])
    assert smtp.mailbox.items() == []
    settings = with_smtp(qbo, smtp, database_url, tmp_path)  # the server is back: the next run delivers them
    assert push_and_send(store, settings, "quickbooks")[1].summary.outcomes == {"invoice": 2}  # type: ignore[union-attr]
    assert push_and_send(store, settings, "quickbooks")[1].summary.outcomes == {}  # type: ignore[union-attr]
    assert len(smtp.mailbox.items()) == 2


def test_without_an_smtp_server_the_push_leaves_its_deliveries_for_later(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    billed_a_month_ago(store)
    pushed, sent = push_and_send(store, settings_for(qbo, database_url, tmp_path), "quickbooks")
    assert pushed.outcomes == {"created": 2} and sent.error is None
    with store.read() as session:
        assert {m["state"] for m in messages.listing(session, kind="invoice")} == {"queued"}


def test_a_send_that_raises_is_reported_and_the_push_stands(
    store: Store, qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    billed_a_month_ago(store)
    templates = tmp_path / "templates" / "default" / "en"
    templates.mkdir(parents=True)
    (templates / "invoice.subject").write_text("Invoice {{ invoice.number ")  # broken: refused before sending
    settings = with_smtp(qbo, smtp, database_url, tmp_path).model_copy(
        update={"message_templates_dir": tmp_path / "templates"}
    )
    pushed, sent = push_and_send(store, settings, "quickbooks")
    assert pushed.outcomes == {"created": 2}
    assert sent.summary is None and sent.error is not None and "invoice.subject" in sent.error
    assert "Not sent:" in sent.markdown() and smtp.mailbox.items() == []
    with store.read() as session:
        assert {m["state"] for m in messages.listing(session, kind="invoice")} == {"queued"}
