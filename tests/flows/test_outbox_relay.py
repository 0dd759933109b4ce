"""The outbox relay on both backends: delivery, links, retriable vs fatal failures, leases, retries by hand.

The receiving side here is a small idempotent receiver (what a vendor with idempotency keys does):
it keeps one document per key, however often a message is delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from billbridge.connectors.errors import Classified, ErrorKind
from billbridge.flows.outbox_relay import Delivery, ExternalLink, relay
from billbridge.store import external_refs, outbox
from billbridge.store.db import Store
from billbridge.store.models import utcnow
from billbridge.store.outbox import Message


class Receiver:
    """Keeps one document per idempotency key; can be told to fail some keys."""

    def __init__(self) -> None:
        self.documents: dict[str, str] = {}
        self.calls = 0
        self.batches: list[int] = []
        self.failing: dict[str, Classified] = {}

    def __call__(self, messages: Sequence[Message]) -> list[Delivery]:
        self.calls += 1
        self.batches.append(len(messages))
        out = []
        for m in messages:
            key = m.payload["key"]
            if key in self.failing:
                out.append(Delivery(m.id, error=self.failing[key]))
                continue
            external = self.documents.setdefault(key, f"ext-{len(self.documents) + 1}")
            out.append(Delivery(m.id, links=(ExternalLink("erp", "invoice", m.aggregate_id, external, "v1"),)))
        return out


def enqueue(store: Store, n: int, topic: str = "push.erp") -> None:
    with store.write() as session:
        for i in range(1, n + 1):
            outbox.enqueue(
                session,
                topic=topic,
                aggregate_type="invoice",
                aggregate_id=i,
                dedupe_key=f"{topic}:{i}:v1",
                payload={"key": f"INV-{i}"},
            )


def test_relay_delivers_in_batches_and_links(store: Store) -> None:
    enqueue(store, 65)
    receiver = Receiver()
    summary = relay(store, "push.erp", receiver, batch=30)
    assert receiver.batches == [30, 30, 5]
    assert summary.outcomes == {"delivered": 65}
    with store.read() as session:
        assert outbox.pending(session) == []
        assert external_refs.get_external_id(session, "erp", "invoice", 7) == receiver.documents["INV-7"]
    # Nothing left: a second run calls nobody.
    assert relay(store, "push.erp", receiver).outcomes == {}
    assert receiver.calls == 3


def test_retriable_failures_wait_fatal_ones_park_until_retried(store: Store) -> None:
    enqueue(store, 3)
    receiver = Receiver()
    receiver.failing = {
        "INV-2": Classified(ErrorKind.RETRIABLE, "HTTP 503"),
        "INV-3": Classified(ErrorKind.FATAL, "HTTP 400: CustomerRef is invalid"),
    }
    summary = relay(store, "push.erp", receiver)
    assert summary.outcomes == {"delivered": 1, "retrying": 1, "failed": 1}
    with store.read() as session:
        waiting = {p["aggregate_id"]: p for p in outbox.pending(session)}
    now = utcnow().replace(tzinfo=None)  # stored timestamps are naive UTC
    assert waiting[2]["last_error"] == "HTTP 503" and waiting[2]["available_at"].replace(tzinfo=None) > now
    assert waiting[3]["last_error"] == "HTTP 400: CustomerRef is invalid"
    # Parked: not retried by itself.
    assert waiting[3]["available_at"].replace(tzinfo=None) > now + timedelta(days=365)
    # Nothing is due now: the relay does not hammer a failing vendor.
    assert relay(store, "push.erp", receiver).outcomes == {}
    receiver.failing.clear()
    with store.write() as session:
        assert outbox.retry_now(session, [2, 3]) == 2
    assert relay(store, "push.erp", receiver).outcomes == {"delivered": 2}
    assert sorted(receiver.documents) == ["INV-1", "INV-2", "INV-3"]


def test_a_relay_that_dies_mid_delivery_hands_back_after_the_lease(store: Store) -> None:
    """The receiver took the batch but the relay never recorded it: after the lease it is delivered
    again, and the idempotent receiver still holds one document per message."""
    enqueue(store, 4)
    receiver = Receiver()

    def dies(messages: Sequence[Message]) -> list[Delivery]:
        receiver(messages)
        raise KeyboardInterrupt("killed after the vendor accepted")

    with pytest.raises(KeyboardInterrupt):
        relay(store, "push.erp", dies)
    assert relay(store, "push.erp", receiver).outcomes == {}  # leased: another relay keeps off
    with store.write() as session:
        expired = outbox.claim(session, topic="push.erp", limit=10, now=utcnow() + timedelta(minutes=6))
        assert len(expired) == 4
        outbox.retry_now(session, [m.id for m in expired])
    assert relay(store, "push.erp", receiver).outcomes == {"delivered": 4}
    assert len(receiver.documents) == 4 and receiver.calls == 2
