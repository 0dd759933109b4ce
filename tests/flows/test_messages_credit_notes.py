"""The issue's first worked example, end to end through an SMTP server: one invoice's reminder
schedule (-3, 0, +7, +14, +30 days from its due date) across a partial payment, a dispute and a
credit note, each step sent once with what is open then; and the schedule ending once payments and
credit notes cover the invoice (credited in full)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.messages import plan_messages, send_messages
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.settings import Settings
from billbridge.store import messages
from billbridge.store.db import Store
from billbridge.store.models import Invoice
from billbridge.store.outbound_documents import mark_sent, outbound_documents
from billbridge.store.payments import record_payment
from tests.docs import contract
from tests.flows.messaging_world import settings_for, world

DUE = date(2026, 1, 31)  # the world's January invoice: billed Jan 1, net 30, $1,200.00


def pay(store: Store, ref: str, amount: str, on: date, method: str | None = None) -> None:
    with store.write() as session:
        record_payment(
            session,
            payment_ref=ref,
            currency="USD",
            amount=Decimal(amount),
            received_on=on,
            allocations=[("US-INV-1", Decimal(amount))],
            customer_ref="c0",
            method=method,
        )


def credit(store: Store, last_day: str, on: date) -> int:
    """The contract ends on ``last_day`` after January was billed: the billing run of ``on`` credits the
    days after it, the credit note is approved and issued (pushed). Returns its id."""
    amended = contract("K0", customer="c0", payment_terms_days=30, contract_end_date=last_day)
    amended["effective_date"] = (date.fromisoformat(last_day) + timedelta(days=1)).isoformat()
    assert not import_document(store, {"contracts": [amended]}).errors
    assert run_billing(store, on).documents == {"credit_note": 1}
    with store.write() as session:
        note = session.scalar(select(Invoice).where(Invoice.doc_type == "credit_note"))
        assert note is not None
        note.status = "approved"
        session.flush()
        mark_sent(session, [note.id], as_of=on)
        return note.id


def reminders(smtp: SmtpSandbox) -> list[tuple[str, str]]:
    """(subject, amount open) of each reminder the server received, in order."""
    out = []
    for received in smtp.mailbox.items():
        body = received.message.get_body(("plain",))
        assert body is not None
        found = re.search(r"Amount open: (\S+)", body.get_content())
        if found:
            out.append((str(received.message["Subject"]), found.group(1)))
    return out


def run_days(store: Store, settings: Settings, first: date, last: date) -> None:
    """The daily run (plan the reminders due, send what is queued) on each day from ``first`` to ``last``."""
    day = first
    while day <= last:
        plan_messages(store, settings, day)
        send_messages(store, settings, today=day)
        day += timedelta(days=1)


def test_the_reminder_schedule_across_a_partial_payment_a_dispute_and_a_credit_note(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    world(store, 1)
    with SmtpSandbox() as smtp:
        settings = settings_for(smtp, database_url, tmp_path)
        run_days(store, settings, DUE - timedelta(days=5), DUE + timedelta(days=3))  # -3 and 0: all open
        pay(store, "p-part", "200.00", DUE + timedelta(days=4))  # 1,000.00 open
        run_days(store, settings, DUE + timedelta(days=4), DUE + timedelta(days=8))  # +7
        pay(store, "dp_1:withdrawn", "-200.00", DUE + timedelta(days=9), method="dispute")  # disputed: no reminders
        run_days(store, settings, DUE + timedelta(days=9), DUE + timedelta(days=19))  # +14 falls in the dispute
        pay(store, "dp_1:reinstated", "200.00", DUE + timedelta(days=20), method="dispute")  # won: 1,000.00 open
        # The contract ended on 20 January: January's last 11 of 31 days are credited, $425.81.
        note = credit(store, "2026-01-20", DUE + timedelta(days=21))
        run_days(store, settings, DUE + timedelta(days=21), DUE + timedelta(days=45))  # +30
        assert reminders(smtp) == [
            ("Upcoming payment: invoice US-INV-1", "$1,200.00"),  # -3
            ("Payment due today: invoice US-INV-1", "$1,200.00"),  # 0
            ("Overdue: invoice US-INV-1", "$1,000.00"),  # +7, after the partial payment
            # +14 waited while the dispute was open; the day after it was won it goes, late, once,
            # asking for 1,200.00 - 200.00 paid - 425.81 credited
            ("Overdue: invoice US-INV-1", "$574.19"),
            ("Overdue: invoice US-INV-1", "$574.19"),  # +30
        ]
        with store.read() as session:
            steps = {r["event_key"].rpartition(":")[2]: r["state"] for r in messages.listing(session, kind="reminder")}
            [document] = outbound_documents(session, [note]).values()
        assert steps == {"-3": "sent", "+0": "sent", "+7": "sent", "+14": "sent", "+30": "sent"}  # each once
        assert document.applies_to == "US-INV-1"  # the credit note names the invoice it credits (QuickBooks memo)


def test_reminders_stop_once_payments_and_a_credit_note_cover_the_invoice(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    world(store, 1)
    with SmtpSandbox() as smtp:
        settings = settings_for(smtp, database_url, tmp_path)
        pay(store, "p-1", "38.71", DUE - timedelta(days=10))
        plan_messages(store, settings, DUE)  # the 0 step is queued (and -3, superseded) ...
        # ... then the contract, ended on its first day, credits the other 30 of January's 31 days.
        credit(store, "2026-01-01", DUE)
        sent = send_messages(store, settings).outcomes  # the 0 step skipped; the credit note's delivery, p-1's receipt
        assert sent == {"skipped": 1, "invoice": 1, "receipt": 1}
        run_days(store, settings, DUE + timedelta(days=1), DUE + timedelta(days=45))
        assert reminders(smtp) == []
        with store.read() as session:
            [skipped] = [
                r for r in messages.listing(session, kind="reminder") if r["state"] == "skipped" and r["last_error"]
            ]
            assert set(messages.credited(session, [1]).values()) == {Decimal("1161.29")}
        assert "US-INV-1 has nothing open now" in str(skipped["last_error"])
