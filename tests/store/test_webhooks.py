"""The webhook inbox stores each (source, event_id) once and hands events to one processor at a time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from billbridge.store import webhooks as inbox
from billbridge.store.db import Store
from billbridge.store.webhooks import InboxEvent

T0 = datetime.now(UTC)


def event(event_id: str, source: str = "stripe", event_type: str = "charge.succeeded") -> InboxEvent:
    return InboxEvent(source, event_id, event_type, "ch_1", T0, json.dumps({"id": event_id}))


def test_each_event_is_stored_once_per_source(store: Store) -> None:
    with store.write() as session:
        assert inbox.receive(session, [event("evt_1"), event("evt_2"), event("evt_1")]) == {"evt_1", "evt_2"}
    with store.write() as session:
        # A redelivery stores nothing; the same id from another vendor is another event.
        assert inbox.receive(session, [event("evt_2"), event("evt_2", source="quickbooks")]) == {"evt_2"}
    with store.read() as session:
        rows = inbox.list_events(session)
    assert sorted((r["source"], r["event_id"]) for r in rows) == [
        ("quickbooks", "evt_2"),
        ("stripe", "evt_1"),
        ("stripe", "evt_2"),
    ]
    assert all(r["processed_at"] is None and r["attempts"] == 0 for r in rows)


def test_claims_are_leased_disjoint_and_come_back_after_a_failure(store: Store) -> None:
    t0 = datetime.now(UTC)  # mark_failed counts from the store's clock: the test's own start, not the import's
    with store.write() as session:
        inbox.receive(session, [event(f"evt_{n}") for n in range(5)])
    lease = timedelta(minutes=10)
    with store.write() as session:
        first = inbox.claim(session, limit=3, lease=lease, now=t0)
    with store.write() as session:
        second = inbox.claim(session, limit=10, lease=lease, now=t0)
    with store.write() as session:
        assert inbox.claim(session, limit=10, lease=lease, now=t0 + timedelta(minutes=9)) == []  # all leased
    assert [e.event_id for e in first] == ["evt_0", "evt_1", "evt_2"]
    assert [e.event_id for e in second] == ["evt_3", "evt_4"]
    assert {e.attempts for e in first + second} == {1}

    with store.write() as session:
        inbox.mark_processed(session, [e.id for e in first], outcome="reconcile:stripe", note="matched 1")
        inbox.mark_failed(session, [second[0].id], error="StripeError: down", retry_in=timedelta(minutes=1))
    # The processor holding evt_4 died: its lease runs out and another claims it, as a second attempt.
    with store.write() as session:
        again = inbox.claim(session, limit=10, lease=lease, now=t0 + timedelta(minutes=11))
    assert [(e.event_id, e.attempts) for e in again] == [("evt_3", 2), ("evt_4", 2)]
    with store.read() as session:
        rows = {r["event_id"]: r for r in inbox.list_events(session)}
        pending = {r["event_id"] for r in inbox.list_events(session, pending_only=True)}
    assert rows["evt_0"]["outcome"] == "reconcile:stripe" and rows["evt_0"]["note"] == "matched 1"
    assert rows["evt_0"]["processed_at"] is not None and rows["evt_0"]["last_error"] is None
    assert rows["evt_3"]["last_error"] == "StripeError: down" and rows["evt_3"]["processed_at"] is None
    assert pending == {"evt_3", "evt_4"}


def test_a_failed_event_waits_for_its_retry_time(store: Store) -> None:
    with store.write() as session:
        inbox.receive(session, [event("evt_1")])
    with store.write() as session:
        (claimed,) = inbox.claim(session, limit=1, lease=timedelta(minutes=10))
        inbox.mark_failed(session, [claimed.id], error="boom", retry_in=timedelta(minutes=5))
    now = datetime.now(UTC)
    with store.write() as session:
        assert inbox.claim(session, limit=1, lease=timedelta(minutes=10), now=now + timedelta(minutes=4)) == []
    with store.write() as session:
        assert len(inbox.claim(session, limit=1, lease=timedelta(minutes=10), now=now + timedelta(minutes=6))) == 1
