"""The outbox relay: deliver due messages of one topic through a handler, record the outcome.

A handler takes a batch (QuickBooks takes 30 documents per call) and answers one ``Delivery`` per
message. Delivered messages are marked with the external ids the handler reports, in one
transaction; retriable failures come back later with backoff; fatal ones are parked with their
error until someone fixes the cause and retries them (``billbridge outbox retry``). Delivery is at
least once: a crash between the vendor accepting and our commit repeats the message after its
lease, and the handler's deterministic idempotency keys (and look-up before create) make the
repeat a no-op at the vendor. A lease names its run (host and pid): a run that finds messages held
by another (one killed mid-delivery holds them for the rest of its lease) says how many, until
when and by whom, instead of looking like a run with nothing to do.
"""

from __future__ import annotations

import os
import random
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from billbridge.connectors.errors import Classified, ErrorKind
from billbridge.store import external_refs, outbox
from billbridge.store.db import Store
from billbridge.store.outbox import Leases, Message

LEASE = timedelta(minutes=5)
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=6)


@dataclass(frozen=True)
class ExternalLink:
    system: str
    object_type: str
    internal_id: int
    external_id: str
    version: str | None = None
    name: str | None = None  # its name there where it is not its own (a customer under a suffixed name)


@dataclass(frozen=True)
class Delivery:
    message_id: int
    error: Classified | None = None  # None: delivered
    links: tuple[ExternalLink, ...] = ()
    outcome: str = "delivered"  # what happened, for the summary (delivered, charged, declined, ...)
    retry_in: timedelta | None = None  # a retriable failure's own schedule (a card decline's dunning)


class StopRelay(Exception):
    """Raised by a handler when going on is pointless because the server or its settings are wrong,
    not the messages (an SMTP login refused, a server that cannot be reached): the relay records
    ``deliveries`` (the batch's messages handled before), hands the rest back due at once with
    ``reason`` and stops the run, which reports ``reason`` once instead of failing every message."""

    def __init__(self, reason: str, deliveries: Sequence[Delivery] = (), tried: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.deliveries = list(deliveries)
        self.tried = tried  # the message that met the problem (its attempt counts; the others' do not)


Handler = Callable[[Sequence[Message]], list[Delivery]]
"""Delivers a batch. A message with ``attempts`` > 0 was claimed before: its outcome is unknown, so
a handler looks the document up at the vendor before creating it."""
OnDelivered = Callable[[Session, Sequence[tuple[Message, Delivery]]], None]
"""Records what a batch of deliveries changes here (statuses), in the transaction marking them delivered."""


@dataclass
class RelaySummary:
    topic: str
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[int, str]] = field(default_factory=list)  # (message id, error)
    leased: Leases | None = None  # messages other runs held when this one finished (not delivered by it)
    stopped: str | None = None  # why the run stopped early (StopRelay), its messages left for the next run
    notes: list[str] = field(default_factory=list)  # what went wrong after delivering (reported, not raised)

    def as_dict(self) -> dict[str, Any]:
        """The outcome as data (flow results, the commands' JSON)."""
        leased = self.leased.as_dict() if self.leased else None
        out = {"outcomes": dict(self.outcomes), "failures": self.failures, "leased": leased, "stopped": self.stopped}
        return {**out, "notes": self.notes} if self.notes else out

    def leased_text(self) -> str | None:
        """What waits under other runs' leases, in a sentence, or None."""
        if self.leased is None:
            return None
        held = self.leased
        return (
            f"{held.messages} message(s) of {self.topic} leased by another run ({', '.join(held.by)}) until "
            f"{held.until:%Y-%m-%d %H:%M:%S} UTC: they go out after that, or now with "
            f"`billbridge outbox retry --topic {self.topic}` if that run is gone"
        )


def run_name() -> str:
    """This run, as its leases name it."""
    return f"{socket.gethostname()} pid {os.getpid()}"


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with full jitter for the next try of a retriable failure."""
    ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, attempts))
    return timedelta(seconds=random.uniform(ceiling.total_seconds() / 2, ceiling.total_seconds()))


def relay(
    store: Store,
    topic: str,
    handler: Handler,
    *,
    batch: int = 30,
    limit: int | None = None,
    on_delivered: OnDelivered | None = None,
    on_failed: OnDelivered | None = None,
) -> RelaySummary:
    """Deliver what is due on ``topic`` (at most ``limit`` messages) in batches of ``batch``.
    ``on_delivered`` records what a delivery changes here (a status), in the same transaction;
    ``on_failed`` what a failure does (a declined charge's dunning notice), in the one recording it."""
    summary = RelaySummary(topic)
    me = run_name()
    done = 0
    while limit is None or done < limit:
        size = batch if limit is None else min(batch, limit - done)
        with store.write() as session:
            messages = outbox.claim(session, topic=topic, limit=size, lease=LEASE, owner=me)
        if not messages:
            break
        stop: StopRelay | None = None
        try:
            handled = handler(messages)
        except StopRelay as stopped:
            stop, handled, summary.stopped = stopped, stopped.deliveries, stopped.reason
        deliveries = {d.message_id: d for d in handled}
        with store.write() as session:
            delivered: list[tuple[Message, Delivery]] = []
            failed: list[tuple[Message, Delivery]] = []
            if stop is not None:
                back = [m.id for m in messages if m.id not in deliveries]
                outbox.release(session, back, stop.reason, tried=stop.tried)
            for message in messages:
                delivery = deliveries.get(message.id)
                if delivery is None:  # a handler that skipped a message: try again after the lease
                    continue
                if delivery.error is None:
                    delivered.append((message, delivery))
                    summary.outcomes[delivery.outcome] += 1
                    continue
                retriable = delivery.error.kind == ErrorKind.RETRIABLE
                retry_in = (delivery.retry_in or backoff(message.attempts)) if retriable else None
                outbox.mark_failed(session, message.id, delivery.error.reason, retry_in=retry_in, count_attempt=False)
                failed.append((message, delivery))
                label = delivery.outcome if delivery.outcome != "delivered" else "retrying" if retriable else "failed"
                summary.outcomes[label] += 1
                summary.failures.append((message.id, delivery.error.reason))
            # The delivered ones a batch at a time: a handful of statements, not a few per message.
            links = [
                (link.system, link.object_type, link.internal_id, link.external_id, link.version, link.name)
                for _, delivery in delivered
                for link in delivery.links
            ]
            external_refs.link_many(session, links)
            outbox.mark_delivered_many(session, [message.id for message, _ in delivered])
            if on_delivered is not None and delivered:
                on_delivered(session, delivered)
            if on_failed is not None and failed:
                on_failed(session, failed)
        done += len(messages)
        if stop is not None:
            break
    with store.read() as session:
        summary.leased = outbox.leased_elsewhere(session, topic=topic, owner=me)
    return summary
