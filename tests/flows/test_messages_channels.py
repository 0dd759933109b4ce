"""Channels reach every billing contact. QuickBooks mails each ``to`` address (comma separated in
``sendTo``, as ``BillEmail.Address`` holds them) with the cc contacts in ``BillEmailCc``. Stripe mails
only the Stripe customer's e-mail (its send takes no recipients): the other contacts get a copy of
the invoice by SMTP, made once with the send. A per-customer channel overrides the entity's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from billbridge.flows.approval import approve_drafts
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.messages import plan_messages, send_messages
from billbridge.flows.push import push
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.sandbox.stripe import RunningStripe, start_seeded
from billbridge.settings import Settings, SmtpSettings, StripeSettings
from billbridge.store import messages, outbox
from billbridge.store.db import Store
from tests.docs import REFERENCE, contract
from tests.flows.test_push_quickbooks import settings_for

pytestmark = pytest.mark.slow  # vendor sandboxes and an SMTP server


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox() as running:
        yield running


def _import(store: Store, channel: str, customers: list[dict[str, Any]], **contract_terms: Any) -> None:
    doc = {
        "entities": [{**REFERENCE["entities"][0], "messaging": {"channel": channel}}],
        "products": REFERENCE["products"],
        "customers": customers,
        "contracts": [
            contract(f"K-{c['customer_ref']}", customer=c["customer_ref"], **contract_terms) for c in customers
        ],
    }
    summary = import_document(store, doc)
    assert not summary.errors, summary.errors
    run_billing(store, date(2026, 1, 1))


def _listed(store: Store) -> dict[str, dict[str, Any]]:
    with store.read() as session:
        return {r["event_key"]: r for r in messages.listing(session)}


def test_quickbooks_mails_every_to_contact_with_the_cc_contacts_in_bill_email_cc(
    store: Store, qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    contacts = [
        {"email": "ap@q0.example"},
        {"email": "controller@q0.example"},
        {"email": "cfo@q0.example", "role": "cc"},
        {"email": "audit@q0.example", "role": "cc"},
    ]
    many_cc = [{"email": "ap@q1.example"}] + [
        {"email": f"someone-with-a-long-name-{n}@q1.example", "role": "cc"} for n in range(6)
    ]
    _import(
        store,
        "quickbooks",
        [
            {"customer_ref": "q0", "name": "Q 0", "entity_ref": "us", "contacts": contacts},
            {"customer_ref": "q1", "name": "Q 1", "entity_ref": "us", "contacts": many_cc},
            # this customer's own channel overrides the entity's: its invoice goes by e-mail
            {
                "customer_ref": "q2",
                "name": "Q 2",
                "entity_ref": "us",
                "channel": "email",
                "contacts": [{"email": "ap@q2.example"}],
            },
        ],
    )
    approve_drafts(store, ["quickbooks"])
    settings = settings_for(qbo, database_url, tmp_path).model_copy(update={"smtp": SmtpSettings(**smtp.settings())})
    push(store, settings, "quickbooks")
    plan_messages(store, settings, date(2026, 1, 2))
    summary = send_messages(store, settings)
    assert summary.outcomes == {"invoice sent by quickbooks": 1, "failed": 1, "invoice": 1}
    [mailed] = qbo.company.sent_emails
    assert mailed["To"] == "ap@q0.example, controller@q0.example"
    assert mailed["Cc"] == "cfo@q0.example, audit@q0.example"
    invoice = qbo.company.get("Invoice", mailed["Invoice"])
    assert invoice["BillEmail"] == {"Address": "ap@q0.example, controller@q0.example"}
    assert invoice["BillEmailCc"] == {"Address": "cfo@q0.example, audit@q0.example"}
    assert invoice["EmailStatus"] == "EmailSent"
    rows = {r["customer_ref"]: r for r in _listed(store).values()}
    assert (rows["q0"]["channel"], rows["q0"]["state"]) == ("quickbooks", "sent")
    assert (rows["q2"]["channel"], rows["q2"]["state"]) == ("email", "sent")  # the customer's override
    [by_smtp] = smtp.mailbox.items()
    assert by_smtp.recipients == ("ap@q2.example",)
    assert rows["q1"]["state"] == "failed"  # too many cc addresses for QuickBooks' 200 characters
    assert "BillEmailCc would be " in rows["q1"]["last_error"] and "at most 200" in rows["q1"]["last_error"]
    assert "customer q1, invoice US-INV-" in rows["q1"]["last_error"]
    with store.write() as session:  # handed back, nothing goes twice
        outbox.retry_now(session, [p["id"] for p in outbox.pending(session) if not p["parked"]])
    assert send_messages(store, settings).outcomes == {}
    assert len(qbo.company.sent_emails) == 1 and len(smtp.mailbox.items()) == 1


@pytest.fixture
def stripe_sandbox() -> Iterator[RunningStripe]:
    with start_seeded() as running:
        yield running


def test_stripe_mails_its_customer_and_the_other_contacts_get_a_copy_by_email_once(
    store: Store, stripe_sandbox: RunningStripe, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    contacts = [
        {"email": "ap@s0.example"},
        {"email": "owner@s0.example"},
        {"email": "cfo@s0.example", "role": "cc"},
    ]
    _import(
        store,
        "stripe",
        [
            {"customer_ref": "s0", "name": "S 0", "entity_ref": "us", "email": "ap@s0.example", "contacts": contacts},
            {
                "customer_ref": "s1",
                "name": "S 1",
                "entity_ref": "us",
                "email": "ap@s1.example",
                "contacts": [{"email": "ap@s1.example"}],
            },
        ],
        payment_terms_days=15,
    )
    approve_drafts(store, ["stripe"])
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        push_targets=["stripe"],
        stripe=StripeSettings(api_key=SecretStr(stripe_sandbox.api_key), base_url=stripe_sandbox.url),
        smtp=SmtpSettings(**smtp.settings()),
    )
    assert push(store, settings, "stripe").outcomes == {"created": 2}
    plan_messages(store, settings, date(2026, 1, 2))
    summary = send_messages(store, settings)
    assert summary.outcomes == {"invoice sent by stripe": 2, "invoice": 1}
    state = stripe_sandbox.sandbox.state
    assert sorted(e["to"] for e in state.sent_emails) == ["ap@s0.example", "ap@s1.example"]
    [copy] = smtp.mailbox.items()  # s1's only contact is its Stripe e-mail: no copy
    assert copy.recipients == ("owner@s0.example", "cfo@s0.example")
    assert copy.message["To"] == "owner@s0.example" and copy.message["Cc"] == "cfo@s0.example"
    [hosted] = [e["hosted_invoice_url"] for e in state.sent_emails if e["to"] == "ap@s0.example"]
    assert hosted in copy.message.get_body(("plain",)).get_content()  # the same page to pay on
    [attachment] = list(copy.message.iter_attachments())
    assert attachment.get_filename().endswith(".pdf")
    listed = _listed(store)
    stripe_row = next(r for r in listed.values() if r["customer_ref"] == "s0" and r["channel"] == "stripe")
    assert stripe_row["state"] == "sent"
    assert "Stripe mailed ap@s0.example" in stripe_row["last_error"]
    assert "a copy goes by e-mail to owner@s0.example, cfo@s0.example" in stripe_row["last_error"]
    assert listed[f"invoice-copy:{stripe_row['id']}"]["state"] == "sent"
    with store.write() as session:  # handed back, nothing goes twice
        outbox.retry_now(session, [p["id"] for p in outbox.pending(session)])
    assert send_messages(store, settings).outcomes == {}
    assert len(state.sent_emails) == 2 and len(smtp.mailbox.items()) == 1
