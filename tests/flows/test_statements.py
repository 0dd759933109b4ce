"""Statements of account end to end: a worked example (four monthly invoices, a partial payment, a
payment after the statement's day, a payment not applied yet) rendered and sent to a real SMTP server
(aiosmtpd, STARTTLS and AUTH) once per customer and day; a customer without a contact waits visibly,
one who opted out of statements gets none."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update

from billbridge.billing.messaging import message_id
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.messages import send_messages
from billbridge.flows.statements import preview_statement, request_statements, statement_of
from billbridge.sandbox.smtp import Received, SmtpSandbox
from billbridge.store import messages, outbox
from billbridge.store.db import Store, open_store
from billbridge.store.message_models import BillingContactRow
from billbridge.store.models import Customer, Invoice
from billbridge.store.payments import record_payment
from tests.flows.messaging_world import settings_for, world
from tests.flows.test_messages_credit_notes import DUE, credit, pay

pytestmark = pytest.mark.slow
AS_OF = date(2026, 4, 30)
D = Decimal


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox() as running:
        yield running


def statements(smtp: SmtpSandbox) -> list[Received]:
    """The statements the server received (not the receipts of the payments ``four_months`` applied)."""
    return [r for r in smtp.mailbox.items() if str(r.message["Subject"]).startswith("Statement")]


def four_months(store: Store, customers: int = 1) -> dict[str, str]:
    """``customers`` customers billed January to April 2026 ($1,200.00 a month, due 30 days after
    billing), all issued; c0 paid $500 of January on 10 April, $300 of February on 5 May (after the
    statement's day) and $200 on 20 April that nothing was applied to. Numbers of c0's invoices by month."""
    world(store, customers)
    for month in (2, 3, 4):
        run_billing(store, date(2026, month, 1))
    with store.write() as session:
        session.execute(update(Invoice).values(status="sent"))
        c0 = session.scalar(select(Customer.id).where(Customer.customer_ref == "c0"))
        rows = session.execute(
            select(Invoice.billing_date, Invoice.number).where(Invoice.customer_id == c0).order_by(Invoice.billing_date)
        ).all()
        numbers = {day.strftime("%b"): number for day, number in rows}
        for ref, amount, day, applied in (
            ("qb:1", "500.00", date(2026, 4, 10), [(numbers["Jan"], D("500.00"))]),
            ("qb:2", "300.00", date(2026, 5, 5), [(numbers["Feb"], D("300.00"))]),
            ("qb:3", "200.00", date(2026, 4, 20), []),
        ):
            record_payment(
                session,
                payment_ref=ref,
                currency="USD",
                amount=D(amount),
                received_on=day,
                allocations=applied,
                customer_ref="c0",
            )
    return numbers


def test_worked_example_is_sent_once_per_customer_and_day(
    store: Store, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    numbers = four_months(store)
    settings = settings_for(smtp, database_url, tmp_path)
    made = request_statements(store, ["c0"], AS_OF, payment_days=30)
    assert made.created == {"statement.queued": 1} and made.errors == []
    # with the receipts of c0's two applied payments, made when they were recorded
    assert send_messages(store, settings).outcomes == {"receipt": 2, "statement": 1}

    [received] = statements(smtp)
    assert received.recipients == ("ap0@c0.example",)
    with store.read() as session:
        c0 = messages.customer_id_of(session, "c0")
    assert received.message_id == message_id(f"statement:{c0}:2026-04-30", "acme.example")
    assert received.message["Subject"] == "Statement of account as of Apr 30, 2026 from Acme Inc."
    body = received.message.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    # Jan: 1,200 - 500 = 700 open, due Jan 31, 89 days late (61-90); Feb: the 300 came after the
    # statement's day, so all 1,200 was open, due Mar 3, 58 days (31-60); Mar due Mar 31, 30 days
    # (1-30); Apr due May 1 (current). The 200 not applied is taken off the oldest: 61-90 = 500.
    # Balance 700 + 1,200 + 1,200 + 1,200 - 200 = 4,100.
    for line in (
        f"- {numbers['Jan']} of Jan 1, 2026, due Jan 31, 2026: $700.00 open of $1,200.00 (89 days overdue)",
        f"- {numbers['Feb']} of Feb 1, 2026, due Mar 3, 2026: $1,200.00 open (58 days overdue)",
        f"- {numbers['Mar']} of Mar 1, 2026, due Mar 31, 2026: $1,200.00 open (30 days overdue)",
        f"- {numbers['Apr']} of Apr 1, 2026, due May 1, 2026: $1,200.00 open\n",
        "- payment qb:3 of Apr 20, 2026, not applied yet: -$200.00",
        f"- Apr 10, 2026: $500.00 for {numbers['Jan']}",
        "- Apr 20, 2026: $200.00\n",
        "  current  $1,200.00\n  1-30     $1,200.00\n  31-60    $1,200.00\n  61-90    $500.00\n  90+      $0.00\n",
        "Balance: $4,100.00",
        "Wire to IBAN US00 1234 5678",
    ):
        assert line in text, (line, text)
    assert "May 5" not in text  # a payment after the day is not on the statement

    again = request_statements(store, ["c0"], AS_OF, payment_days=30)  # the same customer and day
    assert again.created == {} and again.already == ["c0"]
    assert send_messages(store, settings).outcomes == {}
    assert len(statements(smtp)) == 1
    assert request_statements(store, ["nobody"], AS_OF, payment_days=30).errors == [
        "customer nobody: no such customer (billbridge contracts list shows them)"
    ]


def test_no_contact_waits_visibly_an_opt_out_is_respected_and_all_skips_settled_customers(
    store: Store, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    four_months(store, customers=4)
    with store.write() as session:
        ids = dict(session.execute(select(Customer.customer_ref, Customer.id)).all())
        session.execute(delete(BillingContactRow).where(BillingContactRow.customer_id == ids["c1"]))
        session.execute(update(Customer).where(Customer.id == ids["c1"]).values(email=None))
        session.execute(
            update(BillingContactRow).where(BillingContactRow.customer_id == ids["c2"]).values(opt_out="statement")
        )
        session.execute(update(Invoice).where(Invoice.customer_id == ids["c3"]).values(status="paid"))
        session.execute(
            update(Invoice).where(Invoice.customer_id == ids["c3"]).values(amount_paid=Invoice.invoice_total)
        )
    made = request_statements(store, None, AS_OF, payment_days=30)
    assert made.created == {"statement.queued": 1, "statement.waiting_contact": 1, "statement.opted_out": 1}
    assert made.errors == []  # c3 has nothing open: no statement (the listing below has none for it)
    send_messages(store, settings_for(smtp, database_url, tmp_path))
    assert [r.recipients for r in statements(smtp)] == [("ap0@c0.example",)]
    with store.read() as session:
        assert {r["customer_ref"]: r["state"] for r in messages.listing(session, kind="statement")} == {
            "c0": "sent",
            "c1": "waiting_contact",
            "c2": "opted_out",
        }
        assert messages.overview(session)["waiting_for_contact"] == [
            {"customer_ref": "c1", "name": "Customer 1", "messages": 1}
        ]
    context, rendered = preview_statement(store, "c1", AS_OF, payment_days=30)
    assert context["state"] == "waiting_contact" and context["recipients"]["to"] == []
    assert "Balance: $4,800.00" in rendered.text


def test_the_monthly_flow_sends_each_open_customers_statement_once(
    flow_env: str, monkeypatch: pytest.MonkeyPatch, smtp: SmtpSandbox
) -> None:
    from billbridge.flows.statements import send_statements

    store = open_store(flow_env)
    world(store, 2)
    for key, value in smtp.settings().items():
        monkeypatch.setenv(f"BILLBRIDGE_SMTP__{key.upper()}", str(value))
    first = send_statements(as_of=date(2026, 3, 15))
    assert first["requested"]["created"] == {"statement.queued": 2}
    assert first["sent"]["outcomes"] == {"statement": 2}
    again = send_statements(as_of=date(2026, 3, 15))
    assert again["requested"]["already"] == ["c0", "c1"] and again["sent"]["outcomes"] == {}
    assert sorted(r.recipients[0] for r in smtp.mailbox.items()) == ["ap0@c0.example", "ap1@c1.example"]


@pytest.mark.postgres
def test_two_requests_at_once_for_the_same_customer_and_day_make_one_statement_the_second_a_no_op(
    postgres_url: str,
) -> None:
    """On PostgreSQL two requests read "no statement yet" together; the second must not fail on the
    unique event key once the first commits. The first here is held open, its statement made, until
    the second is seen waiting on its row; then it commits and the second reports it as made before."""
    store = open_store(postgres_url)
    four_months(store)
    outcome: list[Any] = []
    with store.write() as first:
        c0 = messages.customer_id_of(first, "c0")
        assert c0 is not None
        details = {"statement": statement_of(first, c0, AS_OF, 30).as_details()}
        key = messages.statement_key(c0, AS_OF)
        assert messages.create(first, [messages.MessageDraft(key, "statement", c0, AS_OF, details=details)]) == {
            "statement.queued": 1
        }
        second = threading.Thread(
            target=lambda: outcome.append(request_statements(store, ["c0"], AS_OF, payment_days=30))
        )
        second.start()
        deadline = time.monotonic() + 30
        waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT%'")
        with store.engine.connect() as watcher:  # the second's INSERT waits for the first's row
            while not watcher.scalar(waiting):
                watcher.rollback()  # pg_stat_activity is read once per transaction
                assert second.is_alive() and time.monotonic() < deadline, outcome
                time.sleep(0.05)
    second.join(30)
    [made] = outcome
    assert made.created == {} and made.already == ["c0"] and made.errors == []
    with store.read() as session:
        [statement] = messages.listing(session, kind="statement")
        assert statement["event_key"] == key
        # one relay row for it (the invoices' deliveries, made when they were sent, have their own)
        assert [p["aggregate_id"] for p in outbox.pending(session)].count(statement["id"]) == 1
    store.dispose()


def test_an_invoice_credited_in_full_is_not_open_on_a_statement_and_the_monthly_run_skips_it(store: Store) -> None:
    # January's $1,200.00: $38.71 paid, the rest credited by a credit note linked to it (the
    # contract ended on Jan 1): nothing is owed, as the reminders already say.
    world(store, 1)
    pay(store, "p-1", "38.71", DUE - timedelta(days=10))
    credit(store, "2026-01-01", DUE)
    day = DUE + timedelta(days=60)
    with store.read() as session:
        c0 = messages.customer_id_of(session, "c0")
        assert c0 is not None
        made = statement_of(session, c0, day, 30)
        assert messages.customers_with_open_items(session, day) == []
    assert made.sections == () and not made.has_open  # nothing open, no payment in the last 30 days
    assert request_statements(store, None, day, payment_days=30).created == {}


def test_a_partial_credit_note_is_taken_off_its_invoice_on_the_statement(store: Store) -> None:
    world(store, 1)
    credit(store, "2026-01-20", DUE)  # credits the 11 days after Jan 20: $425.81 of $1,200.00
    day = DUE + timedelta(days=10)
    with store.read() as session:
        c0 = messages.customer_id_of(session, "c0")
        assert c0 is not None
        made = statement_of(session, c0, day, 30)
    [section] = made.sections
    [invoice] = section.invoices
    assert section.credits == () and invoice.open == Decimal("774.19")
    assert section.aging.buckets["1-30"] == Decimal("774.19") and section.aging.balance == Decimal("774.19")
