"""Worked examples of the messages planning makes, each once: the reminder schedule across a partial
payment, a dispute and full payment; a step missed during downtime; receipts after a payment; a
declined auto-charge then its last failure; a customer without a contact waiting visibly."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select, update

from billbridge.flows.messages import plan_messages, send_messages
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.settings import Settings
from billbridge.store import messages, outbox
from billbridge.store.db import Store
from billbridge.store.models import Invoice
from billbridge.store.payments import record_payment
from tests.flows.messaging_world import settings_for, world

DUE = date(2026, 1, 31)  # the January invoices of the world: billed Jan 1, net 30


def made(store: Store, kind: str) -> list[str]:
    with store.read() as session:
        return sorted((r["event_key"], r["state"])[0] + f" {r['state']}" for r in messages.listing(session, kind=kind))


def days(store: Store, settings: Settings, first: date, last: date) -> None:
    day = first
    while day <= last:
        plan_messages(store, settings, day)
        day += timedelta(days=1)


def pay(store: Store, ref: str, number: str, amount: str, on: date, method: str | None = None) -> None:
    with store.write() as session:
        record_payment(
            session,
            payment_ref=ref,
            currency="USD",
            amount=Decimal(amount),
            received_on=on,
            allocations=[(number, Decimal(amount))],
            customer_ref="c0",
            method=method,
        )


def test_reminders_follow_the_schedule_once_each_and_stop_when_paid(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    [invoice] = world(store, 1)
    settings = Settings(database_url=database_url, data_dir=tmp_path)
    with store.read() as session:
        number = session.scalar(select(Invoice.number).where(Invoice.id == invoice))
    assert number is not None
    days(store, settings, DUE - timedelta(days=5), DUE + timedelta(days=3))
    assert made(store, "reminder") == [f"reminder:{invoice}:+0 queued", f"reminder:{invoice}:-3 queued"]
    pay(store, "p-part", number, "200.00", DUE + timedelta(days=4))  # partial: 1,000 of 1,200 still open
    days(store, settings, DUE + timedelta(days=4), DUE + timedelta(days=8))
    assert f"reminder:{invoice}:+7 queued" in made(store, "reminder")
    with store.read() as session:
        context = messages.sending_context(session, _id(store, f"reminder:{invoice}:+7"))
    assert context is not None and context["invoice"]["open"] == Decimal("1000.00")
    assert made(store, "receipt") == [f"receipt:{_payment_id(store)} queued"]
    # A dispute takes money back: no reminders while it is open.
    pay(store, "dp_1:withdrawn", number, "-200.00", DUE + timedelta(days=9), method="dispute")
    days(store, settings, DUE + timedelta(days=14), DUE + timedelta(days=14))
    assert f"reminder:{invoice}:+14 queued" not in made(store, "reminder")
    pay(store, "dp_1:reinstated", number, "200.00", DUE + timedelta(days=20), method="dispute")
    pay(store, "p-rest", number, "1000.00", DUE + timedelta(days=21))  # paid in full: the schedule ends
    days(store, settings, DUE + timedelta(days=21), DUE + timedelta(days=40))
    assert made(store, "reminder") == [
        f"reminder:{invoice}:+0 queued",
        f"reminder:{invoice}:+7 queued",
        f"reminder:{invoice}:-3 queued",
    ]


def test_a_step_missed_during_downtime_goes_late_once_and_stale_ones_are_reported(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    [invoice] = world(store, 1)
    settings = Settings(database_url=database_url, data_dir=tmp_path, reminder_stale_days=5)
    summary = plan_messages(store, settings, DUE + timedelta(days=9))  # down from before -3 until +9
    assert made(store, "reminder") == [
        f"reminder:{invoice}:+0 skipped",
        f"reminder:{invoice}:+7 queued",
        f"reminder:{invoice}:-3 skipped",
    ]
    assert summary.skipped == [
        f"invoice US-INV-1: reminder step -3 of {DUE - timedelta(days=3)} is 12 days old (reminder_stale_days 5): skipped",
        f"invoice US-INV-1: reminder step +0 of {DUE} is 9 days old (reminder_stale_days 5): skipped",
    ]
    again = plan_messages(store, settings, DUE + timedelta(days=10))
    assert again.created == {} and again.skipped == []


def test_a_step_sent_late_is_worded_from_the_day_it_is_sent_not_from_its_step(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    world(store, 1)
    with SmtpSandbox() as smtp:
        settings = settings_for(smtp, database_url, tmp_path)
        plan_messages(store, settings, DUE + timedelta(days=3))  # down over the +0 step of Jan 31: sent Feb 3
        assert send_messages(store, settings, today=DUE + timedelta(days=3)).outcomes == {"reminder": 1}
        [received] = smtp.mailbox.items()
    text = received.message.get_body(("plain",)).get_content()
    assert received.message["Subject"] == "Overdue: invoice US-INV-1"
    assert "invoice US-INV-1 was due on Jan 31, 2026 and is 3 days overdue." in text
    assert "due today" not in text
    assert made(store, "reminder") == ["reminder:1:+0 sent", "reminder:1:-3 skipped"]  # still the +0 step


def test_a_declined_auto_charge_gets_a_dunning_notice_per_try_and_a_final_one(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    [invoice] = world(store, 1)
    settings = Settings(database_url=database_url, data_dir=tmp_path)
    with store.write() as session:
        outbox.enqueue(
            session,
            topic="collect.stripe",
            aggregate_type="invoice",
            aggregate_id=invoice,
            dedupe_key="collect:1",
            payload={"number": "US-INV-1", "stripe_invoice": "in_1"},
        )
        session.flush()
        [message] = outbox.claim(session, topic="collect.stripe", limit=1, lease=timedelta(minutes=5))
        outbox.mark_failed(
            session,
            message.id,
            "declined (insufficient_funds): Your card has insufficient funds.",
            retry_in=timedelta(days=1),
            count_attempt=False,
        )
    plan_messages(store, settings, DUE)
    plan_messages(store, settings, DUE)
    assert made(store, "dunning") == [f"dunning:{invoice}:1 queued"]
    assert made(store, "reminder") == []  # collection is under way: dunning speaks for the invoice
    with store.read() as session:
        context = messages.sending_context(session, _id(store, f"dunning:{invoice}:1"))
    assert context is not None and context["details"]["reason_text"] == "the card has insufficient funds"
    assert context["details"]["final"] is False
    with store.write() as session:  # the last try fails: parked for a person
        outbox.mark_failed(session, message.id, "declined (expired_card): Your card has expired.", retry_in=None)
        session.execute(update(outbox.OutboxMessage).values(attempts=5))
    plan_messages(store, settings, DUE + timedelta(days=8))
    assert made(store, "dunning") == [f"dunning:{invoice}:1 queued", f"dunning:{invoice}:5 queued"]
    with store.read() as session:
        final = messages.sending_context(session, _id(store, f"dunning:{invoice}:5"))
    assert final is not None and final["details"]["final"] is True
    assert f"reminder:{invoice}:+7 queued" in made(store, "reminder")  # ... and it joins the reminder schedule


def test_everything_planned_goes_out_rendered_with_the_reader_formats(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    world(store, 2, languages=("en", "de"), issued=DUE - timedelta(days=30))  # issued: their deliveries made
    with SmtpSandbox() as smtp:
        settings = settings_for(smtp, database_url, tmp_path)
        plan_messages(store, settings, DUE - timedelta(days=3))
        summary = send_messages(store, settings, today=DUE - timedelta(days=3))
        assert summary.outcomes == {"invoice": 2, "reminder": 2}
        bodies = {
            r.recipients[0] + " " + str(r.message["Subject"]): r.message.get_body(("plain",)).get_content()
            for r in smtp.mailbox.items()
        }
    german = next(text for key, text in bodies.items() if key.startswith("ap1@c1.example Upcoming"))
    assert "1.200,00 $" in german and "31.01.2026" in german
    english = next(text for key, text in bodies.items() if key.startswith("ap0@c0.example Upcoming"))
    assert "$1,200.00" in english and "Jan 31, 2026" in english


def _id(store: Store, event_key: str) -> int:
    with store.read() as session:
        return next(r["id"] for r in messages.listing(session) if r["event_key"] == event_key)


def _payment_id(store: Store) -> int:
    from billbridge.store.models import Payment

    with store.read() as session:
        found = session.scalar(select(Payment.id).where(Payment.payment_ref == "p-part"))
    assert found is not None
    return int(found)
