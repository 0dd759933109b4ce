"""Quarantined records: kept with reason and raw payload, shown to users, cleared once the source is
fixed, or once the store has what a record was refused for lacking (``healed``: a sync retries them)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.orm import Session

from billbridge.store.bulk import BulkStatement
from billbridge.store.models import QuarantinedRecord, utcnow
from billbridge.store.reference import customer_ids, entity_ids, product_ids


@dataclass(frozen=True)
class Entry:
    """One bad record to keep: what it is, which field is at fault and why, and the record as received."""

    record_type: str
    record_key: str
    field: str | None
    reason: str
    payload: Any
    missing: tuple[str, str] | None = None  # what the store lacked (record type, ref), if that was why


KEY_MAX = 300  # record_key and field columns
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL and unpaired surrogates: no database keeps them


def storable(text: str, limit: int | None = None) -> str:
    """``text`` as the store can keep it: NUL and unpaired surrogates replaced (U+FFFD); cut to
    ``limit`` characters with a digest of the whole, so distinct long keys stay distinct."""
    clean = _UNSTORABLE.sub("\ufffd", text)
    if limit is None or len(clean) <= limit:
        return clean
    digest = hashlib.sha256(clean.encode()).hexdigest()[:16]
    return f"{clean[: limit - 20]}...#{digest}"


def _storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(str(k)): _storable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable_json(v) for v in value]
    return value


def quarantine(
    session: Session,
    *,
    source: str,
    record_type: str,
    record_key: str,
    field: str | None,
    reason: str,
    payload: Any,
    missing: tuple[str, str] | None = None,
) -> None:
    """Keep a bad record (or refresh the entry when it comes back still bad)."""
    quarantine_many(session, source=source, entries=[Entry(record_type, record_key, field, reason, payload, missing)])


def quarantine_many(session: Session, *, source: str, entries: Sequence[Entry]) -> None:
    """Batch form of :func:`quarantine` (one query for the entries already kept, whatever their
    number); a record named twice keeps the last entry."""
    latest = {(e.record_type, storable(e.record_key, KEY_MAX)): e for e in entries}
    if not latest:
        return
    existing = {
        (row.record_type, row.record_key): row
        for row in session.scalars(
            select(QuarantinedRecord).where(
                QuarantinedRecord.source == source,
                QuarantinedRecord.record_key.in_({key for _, key in latest}),
            )
        )
    }
    now = utcnow()
    for key, entry in latest.items():
        # Raw payloads come from YAML and vendor SDKs (dates, Decimals): keep them as JSON text values,
        # with what no database keeps replaced (the record is kept to be seen, whatever it holds).
        safe = _storable_json(json.loads(json.dumps(entry.payload, default=str)))
        stored = safe if isinstance(safe, dict) else {"value": safe}
        field = storable(entry.field, KEY_MAX) if entry.field is not None else None
        reason = storable(entry.reason)
        missing = storable(f"{entry.missing[0]}:{entry.missing[1]}", KEY_MAX) if entry.missing else None
        row = existing.get(key)
        if row is None:
            session.add(
                QuarantinedRecord(
                    source=source,
                    record_type=entry.record_type,
                    record_key=key[1],
                    field=field,
                    reason=reason,
                    payload=stored,
                    missing_ref=missing,
                )
            )
            continue
        row.field, row.reason, row.payload, row.missing_ref = field, reason, stored, missing
        row.last_seen = now
        row.seen_count += 1
        row.resolved_at = None


def resolve(session: Session, *, source: str, record_type: str, record_key: str) -> bool:
    """Mark an entry fixed (its record has now been taken in). Returns whether one was open."""
    row = session.scalar(
        select(QuarantinedRecord).where(
            QuarantinedRecord.source == source,
            QuarantinedRecord.record_type == record_type,
            QuarantinedRecord.record_key == storable(record_key, KEY_MAX),
            QuarantinedRecord.resolved_at.is_(None),
        )
    )
    if row is None:
        return False
    row.resolved_at = utcnow()
    return True


def resolve_many(session: Session, *, source: str, record_type: str, record_keys: list[str]) -> int:
    """Bulk form of :func:`resolve` for runs that take many records in at once."""
    if not record_keys:
        return 0
    result = session.execute(
        update(QuarantinedRecord)
        .where(
            QuarantinedRecord.source == source,
            QuarantinedRecord.record_type == record_type,
            QuarantinedRecord.record_key.in_([storable(k, KEY_MAX) for k in record_keys]),
            QuarantinedRecord.resolved_at.is_(None),
        )
        .values(resolved_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _partner_ids(session: Session, refs: Iterable[str]) -> Mapping[str, object]:
    from billbridge.store.partners import partner_ids  # partners imports the reference module this one does

    return partner_ids(session, refs)


MISSING_LOOKUPS: dict[str, Callable[[Session, Iterable[str]], Mapping[str, object]]] = {
    "entities": entity_ids,
    "customers": customer_ids,
    "products": product_ids,
    "partners": _partner_ids,
}
"""What a record can be refused for lacking, and how to tell whether the store has it now."""


@dataclass(frozen=True)
class Healed:
    """An open entry whose missing entity, customer or product the store now has."""

    record_type: str
    record_key: str
    payload: Any


def healed(session: Session, *, source: str) -> list[Healed]:
    """``source``'s open entries refused for lacking something the store has gained since (one
    query for the entries, one per kind of reference), oldest first."""
    rows = session.execute(
        select(
            QuarantinedRecord.record_type,
            QuarantinedRecord.record_key,
            QuarantinedRecord.missing_ref,
            QuarantinedRecord.payload,
        )
        .where(
            QuarantinedRecord.source == source,
            QuarantinedRecord.resolved_at.is_(None),
            QuarantinedRecord.missing_ref.is_not(None),
        )
        .order_by(QuarantinedRecord.id)
    ).all()
    wanted: dict[str, set[str]] = {}
    for row in rows:
        kind, _, ref = str(row.missing_ref).partition(":")
        wanted.setdefault(kind, set()).add(ref)
    present = {
        f"{kind}:{ref}"
        for kind, refs in wanted.items()
        if kind in MISSING_LOOKUPS
        for ref in MISSING_LOOKUPS[kind](session, refs)
    }
    return [Healed(r.record_type, r.record_key, r.payload) for r in rows if r.missing_ref in present]


def open_keys(session: Session, *, source: str) -> set[tuple[str, str]]:
    """(record type, record key) of ``source``'s open entries."""
    rows = session.execute(
        select(QuarantinedRecord.record_type, QuarantinedRecord.record_key).where(
            QuarantinedRecord.source == source, QuarantinedRecord.resolved_at.is_(None)
        )
    )
    return {(t, k) for t, k in rows}


def has_open(session: Session, *, source: str, record_type: str) -> bool:
    """Whether ``source`` has open entries of ``record_type`` (clearing them costs a statement per batch)."""
    connection = session.connection()  # once per page of every sync: on the driver (store/bulk.py)
    found = BulkStatement.of(_ANY_OPEN, connection, ("source", "record_type")).run(
        connection, {"source": source, "record_type": record_type}
    )
    return bool(found[0][0])


_ANY_OPEN = select(
    exists().where(
        QuarantinedRecord.source == bindparam("source"),
        QuarantinedRecord.record_type == bindparam("record_type"),
        QuarantinedRecord.resolved_at.is_(None),
    )
)


def list_open(session: Session, *, source: str | None = None) -> list[dict[str, Any]]:
    query = select(QuarantinedRecord).where(QuarantinedRecord.resolved_at.is_(None)).order_by(QuarantinedRecord.id)
    if source is not None:
        query = query.where(QuarantinedRecord.source == source)
    return [
        {
            "source": r.source,
            "record_type": r.record_type,
            "record_key": r.record_key,
            "field": r.field,
            "reason": r.reason,
            "first_seen": r.first_seen,
            "last_seen": r.last_seen,
            "seen_count": r.seen_count,
            "waiting_for": r.missing_ref,  # retried by the next sync once the store has it
            "payload": r.payload,
        }
        for r in session.scalars(query)
    ]
