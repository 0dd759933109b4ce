"""The outbox: messages written in the transaction of the change they announce, delivered at least once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from billbridge.store.bulk import BulkStatement, insert_rows
from billbridge.store.models import OutboxMessage, table_of, utcnow


@dataclass(frozen=True)
class Message:
    id: int
    topic: str
    aggregate_type: str
    aggregate_id: int
    payload: dict[str, Any]
    attempts: int


def enqueue(
    session: Session, *, topic: str, aggregate_type: str, aggregate_id: int, dedupe_key: str, payload: dict[str, Any]
) -> bool:
    """Add a message unless one with the same dedupe key exists (returns whether it was added)."""
    if session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)) is not None:
        return False
    session.add(
        OutboxMessage(
            topic=topic,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            dedupe_key=dedupe_key,
            payload=payload,
        )
    )
    return True


def enqueue_many(session: Session, messages: Sequence[dict[str, Any]]) -> int:
    """``enqueue`` for many (each a dict of enqueue's arguments), in one statement through the store's
    bulk door (rows read from arrays on PostgreSQL, executemany on SQLite): a message whose dedupe key
    is taken (stored, or earlier in the batch) is skipped by ``ON CONFLICT DO NOTHING``, as enqueue
    skips it, without reading the keys first. Returns how many were added."""
    return enqueue_values(session, [[m[key] for key in ENQUEUED] for m in messages])


def enqueue_values(session: Session, messages: Sequence[list[Any]]) -> int:
    """:func:`enqueue_many` of messages given as lists of enqueue's arguments in :data:`ENQUEUED` order
    (hot paths: no dict a message). The lists are completed and converted in place."""
    if not messages:
        return 0
    session.flush()  # objects added before these get their ids first, as when the session flushed them all
    connection = session.connection()
    now = utcnow()
    for m in messages:  # what every new row starts with
        m += (now, now, 0)
    statement = BulkStatement.of(_ENQUEUE[connection.dialect.name], connection, _ENQUEUE_KEYS)
    return statement.write_rows(connection, messages)


_OUTBOX = table_of(OutboxMessage)
ENQUEUED = ("topic", "aggregate_type", "aggregate_id", "dedupe_key", "payload")
"""enqueue's arguments, in the order :func:`enqueue_values` takes them."""
_ENQUEUE_KEYS = (*ENQUEUED, "created_at", "available_at", "attempts")
_ENQUEUE = {
    name: insert_rows(_OUTBOX, _ENQUEUE_KEYS, insert=dialect.insert).on_conflict_do_nothing(
        index_elements=["dedupe_key"]
    )
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def claim(
    session: Session,
    *,
    topic: str,
    limit: int,
    now: datetime | None = None,
    lease: timedelta | None = None,
    owner: str | None = None,
) -> list[Message]:
    """Due, undelivered messages of a topic, oldest first; on PostgreSQL locked so relays share the work.

    With ``lease`` the claimed messages become due again only after it: a relay delivering them
    outside this transaction keeps other relays off them, and a relay that dies mid-delivery
    hands them back when the lease runs out (delivery is at least once; receivers are idempotent).
    The lease is recorded with its ``owner`` (which run), so a run finding the work held can say by whom.
    """
    now = now or utcnow()
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.topic == topic, OutboxMessage.delivered_at.is_(None), OutboxMessage.available_at <= now)
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = list(session.scalars(query))
    claimed = [Message(m.id, m.topic, m.aggregate_type, m.aggregate_id, m.payload, m.attempts) for m in rows]
    if lease is not None:
        # A leased claim counts as an attempt at once: a relay that dies mid-delivery leaves attempts > 0,
        # which tells the next one that the outcome is unknown (look the document up before creating it).
        for row in rows:
            row.available_at = row.leased_until = now + lease
            row.leased_by = owner
            row.attempts += 1
    return claimed


def mark_delivered(session: Session, message_id: int, *, count_attempt: bool = True) -> None:
    """``count_attempt`` False when the claim counted it already (a leased claim)."""
    message = session.get(OutboxMessage, message_id)
    if message is not None:
        message.delivered_at = utcnow()
        message.attempts += int(count_attempt)
        message.last_error = None
        message.leased_until = message.leased_by = None


def mark_delivered_many(session: Session, message_ids: Sequence[int]) -> None:
    """Messages delivered by a leased claim (which counted their attempts), in one statement."""
    if message_ids:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(message_ids))
            .values(delivered_at=utcnow(), last_error=None, leased_until=None, leased_by=None)
            .execution_options(synchronize_session=False)
        )


def mark_failed(
    session: Session, message_id: int, error: str, *, retry_in: timedelta | None, count_attempt: bool = True
) -> None:
    """Keep the error visible; ``retry_in`` None parks the message until someone fixes and retries it."""
    message = session.get(OutboxMessage, message_id)
    if message is None:
        return
    message.attempts += int(count_attempt)
    message.last_error = error
    message.available_at = utcnow() + retry_in if retry_in is not None else datetime.max.replace(tzinfo=utcnow().tzinfo)
    message.leased_until = message.leased_by = None


def release(session: Session, message_ids: Sequence[int], error: str, *, tried: int | None = None) -> None:
    """Hand claimed messages back, due at once, with why they were not delivered: a run that stopped
    because its server or settings are wrong (not the messages) leaves them for the next run. The
    claim counted an attempt for each; only ``tried`` (the one that met the problem) keeps it."""
    if message_ids:
        untried = OutboxMessage.attempts - case((OutboxMessage.id == tried, 0), else_=1)
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(message_ids), OutboxMessage.delivered_at.is_(None))
            .values(available_at=utcnow(), last_error=error, leased_until=None, leased_by=None, attempts=untried)
            .execution_options(synchronize_session=False)
        )


def is_parked(available_at: datetime) -> bool:
    """A message ``mark_failed`` parked (due at datetime.max) waits for a person's ``retry_now``."""
    return available_at.year == datetime.max.year


def retry_now(session: Session, message_ids: list[int]) -> int:
    """Make parked or waiting messages due at once (after someone fixed the cause)."""
    count = 0
    for message_id in message_ids:
        message = session.get(OutboxMessage, message_id)
        if message is not None and message.delivered_at is None:
            message.available_at = utcnow()
            message.leased_until = message.leased_by = None  # a person takes the lease back (its run is gone)
            count += 1
    return count


def pending(session: Session, *, topic: str | None = None) -> list[dict[str, Any]]:
    """Undelivered messages (of ``topic``), oldest first, with their attempts and last error."""
    now = utcnow()
    query = select(OutboxMessage).where(OutboxMessage.delivered_at.is_(None)).order_by(OutboxMessage.id)
    if topic is not None:
        query = query.where(OutboxMessage.topic == topic)
    rows = session.scalars(query)
    return [
        {
            "id": m.id,
            "topic": m.topic,
            "aggregate_type": m.aggregate_type,
            "aggregate_id": m.aggregate_id,
            "reference": m.payload.get("number") or m.payload.get("payment_ref"),
            "attempts": m.attempts,
            "last_error": m.last_error,
            "available_at": m.available_at,
            "parked": is_parked(m.available_at),
            "leased_until": m.leased_until if is_leased(m.leased_until, now) else None,
            "leased_by": m.leased_by if is_leased(m.leased_until, now) else None,
        }
        for m in rows
    ]


def is_leased(leased_until: datetime | None, now: datetime) -> bool:
    """Whether a message's lease still holds it (a run claimed it and has not finished it)."""
    return leased_until is not None and _aware(leased_until) > now


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive UTC timestamps."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Leases:
    """Undelivered messages of a topic held by other runs' leases: how many, until when, by whom."""

    messages: int
    until: datetime
    by: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "until": self.until.isoformat(timespec="seconds"), "by": list(self.by)}


def leased_elsewhere(session: Session, *, topic: str, owner: str | None, now: datetime | None = None) -> Leases | None:
    """The messages of ``topic`` other runs than ``owner`` hold leased now (a run killed mid-delivery
    holds them until its lease runs out), or None."""
    now = now or utcnow()
    held = (OutboxMessage.topic == topic, OutboxMessage.delivered_at.is_(None), OutboxMessage.leased_until > now)
    mine = (OutboxMessage.leased_by.is_(None) | (OutboxMessage.leased_by != owner),) if owner else ()
    count, until = session.execute(select(func.count(), func.max(OutboxMessage.leased_until)).where(*held, *mine)).one()
    if not count or until is None:
        return None
    owners = session.scalars(select(OutboxMessage.leased_by).where(*held, *mine).distinct().limit(5))
    return Leases(count, _aware(until), tuple(sorted(o or "(unknown run)" for o in owners)))
