"""The webhook inbox: each verified delivery stored once per (source, event_id), then claimed, acted on
and marked processed. Vendors deliver at least once and in any order; the inbox makes a repeat a no-op."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import String, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from billbridge.store.models import WebhookEvent, table_of, utcnow
from billbridge.store.types import storable_text

_TABLE = table_of(WebhookEvent)
_INSERT_NEW = {
    "postgresql": postgresql.insert(_TABLE).on_conflict_do_nothing().returning(_TABLE.c.event_id),
    "sqlite": sqlite.insert(_TABLE).on_conflict_do_nothing().returning(_TABLE.c.event_id),
}


@dataclass(frozen=True)
class InboxEvent:
    """A verified event as received: ``event_id`` is unique per source (Stripe's ``evt_...``, or the
    key of one QuickBooks entity change)."""

    source: str
    event_id: str
    event_type: str
    object_id: str | None
    occurred_at: datetime | None
    payload: str


_LIMITED = {"object_id": "object id", "event_type": "event type", "event_id": "event id"}  # the most telling first
_LENGTHS = {name: cast(String, _TABLE.c[name].type).length or 0 for name in _LIMITED}


def unstorable(event: InboxEvent) -> str | None:
    """Why the inbox cannot hold ``event`` as it is, or None: a text longer than its column, or
    with NUL or unpaired surrogates (which PostgreSQL and the SQLite driver refuse)."""
    for name, words in _LIMITED.items():
        value: str | None = getattr(event, name)
        if value is None:
            continue
        length = _LENGTHS[name]
        if len(value) > length:
            return f"{words}: {len(value)} characters, more than the {length} kept"
        if not storable_text(value):
            return f"{words}: contains NUL or an unpaired surrogate"
    return None if storable_text(event.payload) else "payload: contains NUL or an unpaired surrogate"


def keep_refused(session: Session, source: str, body: bytes, reason: str) -> bool:
    """Keep a signed delivery billbridge cannot take, processed as ``refused`` with the reason, so
    people see it (``webhooks list``) and nothing acts on it. Stored once per body: the vendor's
    retries of it change nothing. True when it was new."""
    text = body.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
    now = utcnow()
    row = session.execute(
        _INSERT_NEW[session.get_bind().dialect.name],
        {
            "source": source,
            "event_id": f"refused:{hashlib.sha256(body).hexdigest()}",
            "event_type": "refused",
            "object_id": None,
            "occurred_at": None,
            "payload": text,
            "received_at": now,
            "attempts": 0,
            "processed_at": now,
            "outcome": "refused",
            "note": reason,
        },
    ).first()
    return row is not None


@dataclass(frozen=True)
class ClaimedEvent:
    id: int
    source: str
    event_id: str
    event_type: str
    object_id: str | None
    payload: str
    attempts: int  # including this claim


def receive(session: Session, events: Sequence[InboxEvent]) -> set[str]:
    """Store each event unless its (source, event_id) is stored already (a redelivery, or a concurrent
    one: the unique constraint decides). Returns the event ids that were new."""
    statement = _INSERT_NEW[session.get_bind().dialect.name]
    now = utcnow()
    new: set[str] = set()
    for event in events:
        row = session.execute(
            statement,
            {
                "source": event.source,
                "event_id": event.event_id,
                "event_type": event.event_type,
                "object_id": event.object_id,
                "occurred_at": event.occurred_at,
                "payload": event.payload,
                "received_at": now,
                "attempts": 0,
            },
        ).first()
        if row is not None:
            new.add(event.event_id)
    return new


def claim(session: Session, *, limit: int, lease: timedelta, now: datetime | None = None) -> list[ClaimedEvent]:
    """Unprocessed events that no live lease holds, oldest first, leased for ``lease``.

    On PostgreSQL the rows are locked (SKIP LOCKED) so concurrent processors claim disjoint sets; the
    lease keeps them off while this one acts outside the transaction, and hands the events back if it
    dies. A claim counts as an attempt.
    """
    now = now or utcnow()
    query = (
        select(WebhookEvent)
        .where(
            WebhookEvent.processed_at.is_(None),
            or_(WebhookEvent.claimed_until.is_(None), WebhookEvent.claimed_until <= now),
        )
        .order_by(WebhookEvent.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for row in session.scalars(query):
        row.claimed_until = now + lease
        row.attempts += 1
        claimed.append(
            ClaimedEvent(row.id, row.source, row.event_id, row.event_type, row.object_id, row.payload, row.attempts)
        )
    return claimed


def mark_processed(session: Session, ids: Sequence[int], *, outcome: str, note: str | None = None) -> None:
    """Done: ``outcome`` is the action taken (or "ignored"), ``note`` why or what it did."""
    if ids:
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id.in_(ids))
            .values(processed_at=utcnow(), outcome=outcome[:80], note=note, last_error=None, claimed_until=None)
        )


def mark_failed(session: Session, ids: Sequence[int], *, error: str, retry_in: timedelta) -> None:
    """Keep the error visible; the events are claimable again after ``retry_in``."""
    if ids:
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id.in_(ids))
            .values(last_error=error, claimed_until=utcnow() + retry_in)
        )


def list_events(
    session: Session, *, source: str | None = None, pending_only: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """Newest first, for people: what came in, what was done with it, what failed."""
    query = select(WebhookEvent).order_by(WebhookEvent.id.desc()).limit(limit)
    if source is not None:
        query = query.where(WebhookEvent.source == source)
    if pending_only:
        query = query.where(WebhookEvent.processed_at.is_(None))
    return [
        {
            "id": e.id,
            "source": e.source,
            "event_id": e.event_id,
            "event_type": e.event_type,
            "object_id": e.object_id,
            "received_at": e.received_at,
            "attempts": e.attempts,
            "processed_at": e.processed_at,
            "outcome": e.outcome,
            "note": e.note,
            "last_error": e.last_error,
        }
        for e in session.scalars(query)
    ]
