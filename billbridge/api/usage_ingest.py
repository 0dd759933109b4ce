"""Taking usage events in: validate each, resolve refs, dedupe by idempotency key, store the new
ones in one transaction, and say which invoice each lands on.

A batch is answered event by event: a refused event never stops the others, and the accepted ones
commit together. Idempotency keys are scoped to the API key's legal entity (stored as
``"<entity id>:<key>"``), so two entities can never collide or see each other's events.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection

from billbridge.api import idempotency
from billbridge.api.body import comparable, storable
from billbridge.api.errors import ApiError, Problem, problems_of
from billbridge.api.lookups import Lookups
from billbridge.api.usage_models import UsageEventIn
from billbridge.billing.usage_billing_dates import correction_date, document_ref, usage_billing_date
from billbridge.store import usage as usage_repo
from billbridge.store.api_keys import Principal
from billbridge.store.db import Store


@dataclass
class Outcome:
    """One event's answer: status accepted / duplicate / refused, with the event or the problems."""

    index: int
    status: str = "refused"
    http_status: int = 422
    answer: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass
class _Answer:
    outcome: Outcome
    event: usage_repo.StoredEvent
    replayed: bool


@dataclass
class _Valid:
    index: int
    event: UsageEventIn
    key: str | None
    properties: dict[str, Any] | None
    customer_id: int = 0
    product_id: int = 0
    timestamp: datetime | None = None


def _refuse(outcome: Outcome, status: int, code: str, message: str, field_name: str | None) -> None:
    outcome.http_status = status
    outcome.problems = [Problem(field=field_name, message=message, code=code, index=outcome.index)]


def ingest(
    store: Store,
    principal: Principal,
    raw_events: Sequence[Any],
    header_key: str | None = None,
    lookups: Lookups | None = None,
) -> list[Outcome]:
    """Validate, dedupe and store events; one Outcome per input event, in order.

    Everything that only reads runs outside the write transaction, so that concurrent writers
    (on SQLite: the other API workers, who wait for its one write lock) wait as little as
    possible: validation, customer and product ids, contract terms and each event's billing date
    before it (from the caches; a read connection only when one misses), then the transaction:
    insert the new events (ON CONFLICT DO NOTHING), read back the stored events of the keys that
    conflicted (replays), add to the per-day rollups. The invoices of the contracts concerned are
    read after the inserts: in the transaction where writers only lock rows (PostgreSQL), after
    the commit where they lock the database (SQLite), which sees the same invoices or newer ones;
    one contract's invoices (a single event's) are read in the transaction on SQLite too.
    """
    lookups = lookups or Lookups(0)
    outcomes = [Outcome(index=i) for i in range(len(raw_events))]
    valid: list[_Valid] = []
    for i, raw in enumerate(raw_events):
        item = _validate(outcomes[i], principal, raw, header_key)
        if item is not None:
            valid.append(item)
    if not valid:
        return outcomes

    reader = _Reader(store)
    try:
        resolved = _resolve(outcomes, principal, valid, lookups, reader)
        billed = _billing_dates(lookups, reader, resolved)
    finally:
        reader.close()
    if not resolved:
        return outcomes

    seen_keys: set[str] = set()
    new: list[tuple[_Valid, dict[str, Any]]] = []
    replays: list[_Valid] = []
    refs = iter(event_refs(len(resolved)))
    for v in resolved:
        if v.key is not None and v.key in seen_keys:  # the same key earlier in this batch
            replays.append(v)
            continue
        if v.key is not None:
            seen_keys.add(v.key)
        new.append((v, _row(principal, v, next(refs))))
    # Rows in key order: two requests inserting overlapping keys then wait on each other in the
    # same order, never in a cycle (a deadlock on PostgreSQL).
    ordered = sorted((row for _, row in new), key=lambda row: row["idempotency_key"] or "")
    contract_ids = {c.contract_id for c, _ in billed.values()}
    since = min((d for _, d in billed.values()), default=None)
    documents: dict[int, dict[date, usage_repo.Document]] | None = None

    if len(ordered) == 1 and store.dialect == "postgresql":
        # One event: one statement stores it and adds it to its day row, atomic by itself, so no
        # BEGIN and COMMIT round trips.
        with store.autocommit_connection() as connection:
            _received(ordered)
            inserted = (
                {ordered[0]["event_ref"]} if usage_repo.insert_event_with_its_day(connection, ordered[0]) else set()
            )
            new, stored = _taken(connection, new, inserted, replays)
            if since is not None:
                documents = usage_repo.documents_from(connection, contract_ids, since)
    else:
        # On SQLite the transaction locks the database, so a batch's invoices are read after it
        # commits; one contract's invoices are one indexed read, cheaper under the lock than a
        # second pooled connection after it (about a quarter of a single event's CPU, in-process).
        read_inside = not store.locks_database or len(contract_ids) == 1
        with store.queued_write_connection() as connection:
            _received(ordered)
            inserted = usage_repo.insert_new_events(connection, ordered)
            new, stored = _taken(connection, new, inserted, replays)
            usage_repo.add_to_daily(connection, [row for _, row in new])  # the rollups billing reads
            if read_inside and since is not None:
                documents = usage_repo.documents_from(connection, contract_ids, since)
    if documents is None and since is not None:
        reader = _Reader(store)
        try:
            documents = usage_repo.documents_from(reader(), contract_ids, since)
        finally:
            reader.close()

    answers: list[_Answer] = []
    for v, row in new:
        assert v.timestamp is not None
        saved = usage_repo.StoredEvent(
            row["event_ref"],
            v.key,
            v.customer_id,
            v.product_id,
            v.timestamp,
            v.event.quantity,
            v.properties,
            row["received_at"],
        )
        if v.key is not None:
            stored[v.key] = saved
        answers.append(_Answer(outcomes[v.index], saved, replayed=False))
    for v in sorted(replays, key=lambda r: r.index):
        first = stored.get(v.key) if v.key is not None else None
        assert v.timestamp is not None
        if first is None or _fingerprint(first) != (
            v.customer_id,
            v.product_id,
            v.timestamp,
            v.event.quantity,
            comparable(v.properties),
        ):
            outcomes[v.index].http_status = 409
            outcomes[v.index].problems = [
                p.model_copy(update={"index": v.index}) for p in idempotency.conflict("event", "event_id").problems
            ]
            continue
        answers.append(_Answer(outcomes[v.index], first, replayed=True))
    _answer(answers, billed, documents or {})
    return outcomes


def _fingerprint(event: usage_repo.StoredEvent) -> tuple[Any, ...]:
    """What a replay must repeat: customer, product, timestamp, quantity and report data (which
    ``distinct`` aggregations count). The names are informational and not stored."""
    return (event.customer_id, event.product_id, event.timestamp, event.quantity, comparable(event.properties))


def _received(rows: list[dict[str, Any]]) -> None:
    """Stamp the rows' received_at once the write has begun (on SQLite: holding the lock).

    A late event is one whose period was invoiced before it was received. Stamped before waiting
    for the lock, a billing run could take the lock in between and invoice that period without the
    event, and the event would not be answered as late.
    """
    now = datetime.now(timezone.utc)
    for row in rows:
        row["received_at"] = now


def _taken(
    connection: Connection, new: list[tuple[_Valid, dict[str, Any]]], inserted: set[str], replays: list[_Valid]
) -> tuple[list[tuple[_Valid, dict[str, Any]]], dict[str, usage_repo.StoredEvent]]:
    """The rows really inserted, and the stored events of the keys that were taken already (those
    events join ``replays``)."""
    taken = [v for v, row in new if row["event_ref"] not in inserted]  # keys stored before
    if not taken:
        return new, {}
    replays.extend(taken)
    stored = usage_repo.events_by_key(connection, {v.key for v in taken if v.key is not None})
    return [(v, row) for v, row in new if row["event_ref"] in inserted], stored


class _Reader:
    """A read connection opened on first use: with warm caches, ingesting reads nothing before
    its write transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._connection: Connection | None = None

    def __call__(self) -> Connection:
        if self._connection is None:
            self._connection = self._store.engine.connect()
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _resolve(
    outcomes: list[Outcome], principal: Principal, valid: list[_Valid], lookups: Lookups, reader: _Reader
) -> list[_Valid]:
    """The events whose customer (of this legal entity) and product exist, with their ids."""
    customers = lookups.customer_ids(reader, {v.event.customer_ref for v in valid})
    products = lookups.product_ids(reader, {v.event.usage_product_ref for v in valid})
    resolved: list[_Valid] = []
    for v in valid:
        found = customers.get(v.event.customer_ref)
        if found is None or found[1] != principal.entity_id:  # other entities' customers do not exist here
            _refuse(outcomes[v.index], 422, "unknown_customer", "unknown customer", "customer_ref")
            continue
        product_id = products.get(v.event.usage_product_ref)
        if product_id is None:
            _refuse(outcomes[v.index], 422, "unknown_product", "unknown usage product", "usage_product_ref")
            continue
        v.customer_id, v.product_id = found[0], product_id
        v.timestamp = v.event.timestamp.astimezone(timezone.utc)
        resolved.append(v)
    return resolved


_Billed = dict[tuple[int, int, date], tuple[usage_repo.UsageContract, date]]


def _billing_dates(lookups: Lookups, reader: _Reader, events: list[_Valid]) -> _Billed:
    """(customer id, product id, UTC day) -> the contract billing that usage and its billing date.

    A replay is answered from the same key: the stored event must have the same customer,
    product and timestamp, or it is a conflict.
    """
    billed: _Billed = {}
    if not events:
        return billed
    contracts = lookups.usage_contracts(reader, {v.customer_id for v in events})
    seen: set[tuple[int, int, date]] = set()
    for v in events:
        assert v.timestamp is not None
        key = (v.customer_id, v.product_id, v.timestamp.date())
        if key in seen:
            continue
        seen.add(key)
        for contract in contracts.get(key[0], {}).get(key[1], []):
            billing_date = usage_billing_date(contract.versions, key[2])
            if billing_date is not None:
                billed[key] = (contract, billing_date)
                break
    return billed


def _validate(outcome: Outcome, principal: Principal, raw: Any, header_key: str | None) -> _Valid | None:
    if not isinstance(raw, dict):
        _refuse(outcome, 422, "not_an_object", "an event must be a JSON object", None)
        return None
    try:
        event = UsageEventIn.model_validate(raw)
    except ValidationError as exc:
        outcome.problems = problems_of(exc, outcome.index)
        return None
    properties = None
    if event.additional_report_data is not None:
        try:
            properties = storable(event.additional_report_data, "additional_report_data", outcome.index)
        except ApiError as exc:
            outcome.problems = exc.problems
            return None
    if event.validations.entity_ref != principal.entity_ref:
        _refuse(
            outcome,
            403,
            "entity_mismatch",
            f"this API key is for legal entity {principal.entity_ref!r}",
            "validations.entity_ref",
        )
        return None
    if event.validations.currency != principal.currency:
        _refuse(
            outcome,
            403,
            "currency_mismatch",
            f"legal entity {principal.entity_ref!r} bills in {principal.currency}",
            "validations.currency",
        )
        return None
    if header_key is not None and event.event_id is not None and header_key != event.event_id:
        _refuse(outcome, 422, "key_mismatch", "event_id differs from the Idempotency-Key header", "event_id")
        return None
    key = header_key or event.event_id
    return _Valid(
        outcome.index, event, idempotency.scoped(principal.entity_id, key) if key is not None else None, properties
    )


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant: as uuid.uuid4() sets them


def event_refs(n: int) -> list[str]:
    """``n`` new event refs: random version-4 UUIDs as ``str(uuid.uuid4())`` writes them, from one
    read of ``os.urandom`` (uuid.UUID's checks cost more per event than the randomness)."""
    raw = os.urandom(16 * n)
    refs = []
    for start in range(0, 16 * n, 16):
        x = f"{int.from_bytes(raw[start : start + 16], 'big') & _UUID_CLEAR | _UUID_SET:032x}"
        refs.append(f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}")
    return refs


def _row(principal: Principal, v: _Valid, event_ref: str) -> dict[str, Any]:
    """The event as stored (naive UTC timestamp, quantity in micro-units too: ``event_row``)."""
    assert v.timestamp is not None
    return usage_repo.event_row(
        {
            "event_ref": event_ref,
            "idempotency_key": v.key,
            "entity_id": principal.entity_id,
            "customer_id": v.customer_id,
            "product_id": v.product_id,
            "timestamp": v.timestamp,
            "quantity": v.event.quantity,
            "properties": v.properties,
            "received_at": None,  # stamped by _received once the write has begun
        }
    )


def _answer(answers: list[_Answer], billed: _Billed, documents: dict[int, dict[date, usage_repo.Document]]) -> None:
    """Fill in each accepted or replayed event's related documents.

    The event's period is billed on the invoice of its billing date. If that invoice was generated
    before the event was received, the event is late: it is charged on the first later billing
    date whose invoice did not exist yet when the event came in. An invoice that exists is named by
    its own document ref (its header's contract: a reseller's invoice names its first contract);
    one to come, by the contract's.
    """
    for a in answers:
        answer: dict[str, Any] = {
            "event_ref": a.event.event_ref,
            "related_document_ref": None,
            "related_document_numbers": None,
            "related_parent_document_ref": None,
            "related_parent_document_numbers": None,
            "related_document_billing_date": None,
            "late": False,
            "replayed": a.replayed,
        }
        found = billed.get((a.event.customer_id, a.event.product_id, a.event.timestamp.date()))
        if found is not None:
            contract, billing_date = found
            issued = documents.get(contract.contract_id, {})
            before = {d for d, doc in issued.items() if doc.created_at <= a.event.received_at}
            target: date | None = billing_date
            if billing_date in before:  # that period was invoiced without it: a correction comes next
                answer["late"] = True
                answer["related_parent_document_ref"] = document_ref(issued[billing_date].header_ref, billing_date)
                answer["related_parent_document_numbers"] = issued[billing_date].number
                target = correction_date(contract.versions, billing_date, before)
            if target is not None:
                doc = issued.get(target)
                answer["related_document_ref"] = document_ref(
                    doc.header_ref if doc is not None else contract.contract_ref, target
                )
                answer["related_document_numbers"] = doc.number if doc is not None else None
                answer["related_document_billing_date"] = target.isoformat()
        a.outcome.status = "duplicate" if a.replayed else "accepted"
        a.outcome.http_status = 200 if a.replayed else 201
        a.outcome.answer = answer
