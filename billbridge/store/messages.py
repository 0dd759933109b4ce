"""Customer messages in the store: billing contacts, messages made once per event, their states.

Every message that is to go out is also an outbox row (topic ``message.email``) committed with it,
so the relay delivers it with a lease like any other side effect; the message row carries what the
relay needs to send it exactly once (the state ``sending`` committed before the SMTP DATA command).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Connection, Integer, String, bindparam, func, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from billbridge.billing.messaging import (
    DEFAULT_LANGUAGE,
    Applied,
    Recipients,
    message_id,
    receipt_details,
    recipients,
)
from billbridge.billing.model import BillingContact, EntityMessaging, MessageKind, PartnerMessageKind, check_email
from billbridge.billing.statements import OpenItem, RecentPayment
from billbridge.store import outbox
from billbridge.store.bulk import BulkStatement, dbapi_cursor, insert_rows
from billbridge.store.external_refs import external_refs_of
from billbridge.store.invoices import auto_charged, documents_query, lines_of
from billbridge.store.message_models import BillingContactRow, CustomerMessage
from billbridge.store.models import (
    Customer,
    Invoice,
    LegalEntity,
    OutboxMessage,
    Payment,
    PaymentAllocation,
    table_of,
    utcnow,
)
from billbridge.store.partner_models import Partner

STATES = ("waiting_contact", "opted_out", "queued", "sending", "sent", "unconfirmed", "failed", "skipped")
"""Every state a message can be in (``messages list --status`` takes one)."""
TOPIC = "message.email"
QUICKBOOKS_TOPIC = "message.quickbooks"  # invoices QuickBooks e-mails itself (channel quickbooks)
STRIPE_TOPIC = "message.stripe"  # invoices Stripe e-mails itself (channel stripe)
VENDOR_TOPICS = {"quickbooks": QUICKBOOKS_TOPIC, "stripe": STRIPE_TOPIC}  # channels where a vendor sends invoices
MESSAGE_DOMAIN = "billbridge.invalid"
ZERO = Decimal(0)  # the Message-ID's right side when an entity names no sender


class MessageDraft(NamedTuple):
    """A message to create, as planning finds it; ``event_key`` makes it once per event."""

    event_key: str
    kind: MessageKind
    customer_id: int
    as_of: date
    invoice_id: int | None = None
    payment_id: int | None = None
    details: dict[str, Any] | None = None  # what the message says beside its documents (none: nothing)
    state: str | None = None  # set for a message recorded but never sent (a stale reminder step: "skipped")
    channel: str | None = None  # set to send it by this channel whatever the customer's (a copy by e-mail)
    recipients: Recipients | None = None  # set to send it to these, not to the customer's contacts for its kind


def _read_in(session: Session, query: Any, values: Iterable[Any], **fixed: Any) -> list[tuple[Any, ...]]:
    """The rows of ``query`` (its IN list the expanding parameter ``wanted``) for ``values``, in
    chunks, on the driver (BulkStatement: compiled once, not a Core execution a chunk); ``fixed``:
    its other parameters. What the session holds is flushed first, as the ORM's autoflush would."""
    wanted = list(values)
    if not wanted:
        return []
    session.flush()
    connection = session.connection()
    statement = BulkStatement.of(query, connection, ("wanted", *fixed))
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(wanted), CREATE_CHUNK):
        rows += statement.run(connection, {"wanted": wanted[start : start + CREATE_CHUNK], **fixed})
    return rows


_CONTACTS = table_of(BillingContactRow)
_CUSTOMERS, _ENTITIES = table_of(Customer), table_of(LegalEntity)
_ENTITY_MESSAGING = select(_ENTITIES.c.id, _ENTITIES.c.messaging, _ENTITIES.c.entity_ref).where(
    _ENTITIES.c.id.in_(bindparam("wanted", expanding=True))
)
# Each customer with its channel, entity and own e-mail, and its stored contacts in their order (a
# customer without one: a row of NULLs for them): who a message goes to and how, in one read.
_AUDIENCE_OF = (
    select(
        _CUSTOMERS.c.id,
        _CUSTOMERS.c.message_channel,
        _CUSTOMERS.c.entity_id,
        _CUSTOMERS.c.email,
        _CONTACTS.c.email,
        _CONTACTS.c.role,
        _CONTACTS.c.name,
        _CONTACTS.c.language,
        _CONTACTS.c.opt_out,
    )
    .outerjoin(_CONTACTS, _CONTACTS.c.customer_id == _CUSTOMERS.c.id)
    .where(_CUSTOMERS.c.id.in_(bindparam("wanted", expanding=True)))
    .order_by(_CUSTOMERS.c.id, _CONTACTS.c.position)
)
_EVENT_KEYS_IN = select(table_of(CustomerMessage).c.event_key).where(
    table_of(CustomerMessage).c.event_key.in_(bindparam("wanted", expanding=True))
)


class Addressing(NamedTuple):
    """How a message of one kind to a customer is addressed: its recipients, as the message keeps them
    (``document``), and the state it starts in (queued, or why not: no contact, all opted out)."""

    recipients: Recipients
    document: dict[str, list[str]]
    state: str


class Audience(NamedTuple):
    """Who a customer's messages go to and how: its contacts (its stored ones, or with none its own
    e-mail when that is an address), its entity's messaging settings, its channel (its own or the
    entity's), the entity's ref and the domain of its messages' ids; with the addressing of each
    kind worked out so far (``chosen``: kept as long as the audience is, a reconciliation's whole run)."""

    contacts: tuple[BillingContact, ...]
    messaging: EntityMessaging
    channel: str
    entity_ref: str
    domain: str
    chosen: dict[str, Addressing]

    def recipients(self, kind: MessageKind) -> Recipients:
        """Who gets a message of ``kind`` (billing.messaging.recipients), worked out once per kind."""
        return self.addressing(kind).recipients

    def addressing(self, kind: MessageKind) -> Addressing:
        """:class:`Addressing` of a message of ``kind`` to the customer's contacts, worked out once per kind."""
        found = self.chosen.get(kind)
        if found is None:
            chosen = recipients(self.contacts, kind)
            found = self.chosen[kind] = Addressing(chosen, chosen.as_dict(), _state_for(self.contacts, chosen))
        return found


def audiences(session: Session, customer_ids: Iterable[int]) -> dict[int, Audience]:
    """:class:`Audience` of each customer: one read of the customers with their contacts, then their
    entities, each entity's settings decoded and made into the model once (a page of receipts names
    a few entities and hundreds of customers)."""
    contacts: dict[int, list[BillingContact]] = defaultdict(list)
    heads: dict[int, tuple[str | None, int, str | None]] = {}
    for cid, channel, entity_id, email, *contact in _read_in(session, _AUDIENCE_OF, set(customer_ids)):
        heads[cid] = (channel, entity_id, email)
        if contact[0] is not None:
            contacts[cid].append(_stored_contact(*contact))
    entities = {
        entity_id: (EntityMessaging.model_validate(settings or {}), entity_ref)
        for entity_id, settings, entity_ref in _read_in(session, _ENTITY_MESSAGING, {e for _, e, _ in heads.values()})
    }
    out = {}
    for cid, (channel, entity_id, email) in heads.items():
        messaging, entity_ref = entities[entity_id]
        found = tuple(contacts[cid]) if cid in contacts else tuple(email_contact(email))
        out[cid] = Audience(
            found, messaging, channel or messaging.channel, entity_ref, _domain(messaging, entity_ref), {}
        )
    return out


def contacts_of(session: Session, customer_ids: Iterable[int]) -> dict[int, list[BillingContact]]:
    """Each customer's billing contacts: the stored ones, else its email when that is an address."""
    ids = set(customer_ids)
    found = audiences(session, ids)
    return {i: list(found[i].contacts) if i in found else [] for i in ids}


@lru_cache(maxsize=8192)
def _stored_contact(email: str, role: str, name: str | None, language: str, opt_out: str) -> BillingContact:
    """A stored contact row as the model, validated once per distinct row (not once per read: a
    reconciliation page reads hundreds, the same ones page after page). Still validated, not trusted
    as stored: a row written by other means than the model fails here, naming the field. Shared
    safely: the model is frozen (its ``opt_out`` list is read, never changed)."""
    return BillingContact.model_validate(
        {
            "email": email,
            "role": role,
            "name": name,
            "language": language,
            "opt_out": [k for k in opt_out.split(",") if k],
        }
    )


def email_contact(email: str | None) -> list[BillingContact]:
    """The customer's own email as its one contact; none when it is missing or malformed (no address
    is guessed)."""
    if not email:
        return []
    try:
        return [BillingContact(email=email)]
    except ValueError:
        return []


def existing_keys(session: Session, keys: Iterable[str]) -> set[str]:
    return {key for (key,) in _read_in(session, _EVENT_KEYS_IN, set(keys))}


CREATE_CHUNK = 500  # keys or ids per IN list of a look-up


def create(
    session: Session,
    drafts: Sequence[MessageDraft],
    *,
    taken: list[str] | None = None,
    known: dict[int, Audience] | None = None,
) -> Counter[str]:
    """Create the drafts whose event has no message yet (each once, however often planning runs), with
    their recipients fixed now: a customer without a contact gets ``waiting_contact`` (shown by
    ``status``; nothing is sent to a guessed address), one whose contacts all opted out of the kind
    ``opted_out``. Queued messages get their outbox row in this transaction. Returns counts by state.

    Two runs making the same message at once (PostgreSQL: neither sees the other's uncommitted
    row) do not fail on the unique event key: the insert skips an event another transaction made
    first (ON CONFLICT DO NOTHING waits for it to commit); its key goes to ``taken`` and is not counted.
    ``known``: the customers' audiences read earlier in the caller's run (a reconciliation's pages),
    kept there: only the others are read, and added to it."""
    counts: Counter[str] = Counter()
    present = existing_keys(session, [d.event_key for d in drafts])
    fresh = {d.event_key: d for d in drafts if d.event_key not in present}
    if not fresh:
        return counts
    wanted = {d.customer_id for d in fresh.values()}
    if known is None:
        audience = audiences(session, wanted)
    else:
        if unread := wanted - known.keys():
            known.update(audiences(session, unread))
        audience = known
    # The document type and the auto-charge decide only an invoice message's channel (below).
    invoice_ids = [d.invoice_id for d in fresh.values() if d.invoice_id is not None and d.kind == "invoice"]
    doc_types: dict[int, str] = dict(_read_in(session, _DOC_TYPES_OF, set(invoice_ids)))
    charged = auto_charged(session, invoice_ids)  # Stripe charges these: it does not e-mail them
    # Rows as lists of values in _MESSAGE_KEYS order (a page of receipts is hundreds: no dict each).
    rows: list[list[Any]] = []
    sent: list[tuple[str, str, str, str]] = []  # (event key, kind, state, channel) of each row
    now = utcnow()
    for draft in fresh.values():
        to = audience[draft.customer_id]
        channel = to.channel
        if draft.channel is not None:
            channel = draft.channel
        elif channel in VENDOR_TOPICS and (
            draft.kind != "invoice" or doc_types.get(draft.invoice_id or 0) != "invoice"
        ):
            channel = "email"  # QuickBooks or Stripe sends its invoices; everything else goes by e-mail
        elif channel == "stripe" and draft.invoice_id in charged:
            channel = "email"
        if draft.recipients is None:
            chosen, document, state = to.addressing(draft.kind)
        else:
            chosen = draft.recipients
            document, state = chosen.as_dict(), _state_for(to.contacts, chosen)
        state = draft.state or state
        event_key = draft.event_key
        sent.append((event_key, draft.kind, state, channel))
        rows.append(
            [
                event_key,
                draft.kind,
                draft.customer_id,
                draft.invoice_id,
                draft.payment_id,
                channel,
                state,
                document,
                chosen.language,
                draft.as_of,
                {} if draft.details is None else draft.details,
                message_id(event_key, to.domain),
                0,
                now,
                now,
            ]
        )
    made = _insert_new(session, rows)  # event key -> id, of the rows this transaction inserted
    queued = []
    for event_key, kind, state, channel in sent:
        if event_key not in made:
            if taken is not None:
                taken.append(event_key)
            continue
        counts[f"{kind}.{state}"] += 1
        if state == "queued":
            queued.append(_outbox_values(made[event_key], channel, kind, event_key, 0))
    outbox.enqueue_values(session, queued)
    return counts


_MESSAGES = table_of(CustomerMessage)
_DOC_TYPES_OF = select(table_of(Invoice).c.id, table_of(Invoice).c.doc_type).where(
    table_of(Invoice).c.id.in_(bindparam("wanted", expanding=True))
)
_MESSAGE_KEYS = (
    "event_key",
    "kind",
    "customer_id",
    "invoice_id",
    "payment_id",
    "channel",
    "state",
    "recipients",
    "language",
    "as_of",
    "details",
    "message_id",
    "attempts",
    "created_at",
    "updated_at",
)
# INSERT ... SELECT of one row of parameters (store/bulk.py: rows read from arrays on PostgreSQL),
# skipping an event key another transaction made first.
_PARTNER_MESSAGE_KEYS = (*_MESSAGE_KEYS, "partner_id", "last_error")  # a partner's: no customer, maybe a reason


def _inserts_new(keys: tuple[str, ...]) -> dict[str, Any]:
    """The INSERT ... SELECT of message rows with these columns, per dialect (PostgreSQL's returning)."""
    made: dict[str, Any] = {
        name: insert_rows(_MESSAGES, keys, insert=dialect.insert).on_conflict_do_nothing(index_elements=["event_key"])
        for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
    }
    made["postgresql returning"] = made["postgresql"].returning(_MESSAGES.c.event_key, _MESSAGES.c.id)
    return made


_INSERTS_NEW: dict[tuple[str, ...], dict[str, Any]] = {
    keys: _inserts_new(keys) for keys in (_MESSAGE_KEYS, _PARTNER_MESSAGE_KEYS)
}
_IDS_OF_KEYS = select(_MESSAGES.c.event_key, _MESSAGES.c.id).where(
    _MESSAGES.c.event_key.in_(bindparam("keys", expanding=True))
)


def _insert_new(session: Session, rows: list[list[Any]], keys: tuple[str, ...] = _MESSAGE_KEYS) -> dict[str, int]:
    """Insert message rows (lists of values in ``keys`` order, the event key first; converted in place)
    through the store's bulk door; event key -> id of those inserted here.
    PostgreSQL: one statement reading the rows from arrays, returning what it inserted (an event
    key another transaction inserted first, not committed when this one looked, is skipped after
    that one commits). SQLite: executemany, the ids known from the table's largest id before and
    after (:meth:`BulkStatement.write_rows_ids`) or else read back: a write transaction holds the
    database lock from the look-up in :func:`create` on, so none of these keys can have come since."""
    session.flush()  # the rows these refer to (a customer, an invoice added in this transaction) first
    connection = session.connection()
    statements = _INSERTS_NEW[keys]
    if connection.dialect.name == "postgresql":
        returned = BulkStatement.of(statements["postgresql returning"], connection, keys).write_returning(
            connection, rows
        )
        return {str(key): int(ident) for key, ident in returned}
    event_keys = [row[0] for row in rows]
    inserted, given = BulkStatement.of(statements[connection.dialect.name], connection, keys).write_rows_ids(
        connection, rows, _MESSAGES.c.id
    )
    if inserted != len(rows):
        raise RuntimeError(
            f"{len(rows) - inserted} of {len(rows)} new messages' event keys appeared under the write lock"
        )
    if given is not None:
        return dict(zip(event_keys, given, strict=True))
    ids = BulkStatement.of(_IDS_OF_KEYS, connection, ("keys",))
    made: dict[str, int] = {}
    for start in range(0, len(event_keys), CREATE_CHUNK):
        chunk = event_keys[start : start + CREATE_CHUNK]
        made.update((str(key), int(ident)) for key, ident in ids.run(connection, {"keys": chunk}))
    return made


def _state_for(contacts: Sequence[BillingContact], chosen: Recipients) -> str:
    if chosen.to:
        return "queued"
    return "opted_out" if contacts else "waiting_contact"


def _domain(messaging: EntityMessaging, entity_ref: str) -> str:
    if messaging.from_email:
        return messaging.from_email.rpartition("@")[2]
    return MESSAGE_DOMAIN


def sender_of(messaging: EntityMessaging, entity_ref: str) -> str:
    """The From address of an entity's messages."""
    return messaging.from_email or f"billing@{entity_ref}.{MESSAGE_DOMAIN}"


def _outbox_row(message: int, channel: str, kind: str, event_key: str, attempts: int) -> dict[str, Any]:
    """The outbox row delivering a message (topic by channel; a retry gets a row of its own)."""
    return dict(zip(outbox.ENQUEUED, _outbox_values(message, channel, kind, event_key, attempts), strict=True))


def _outbox_values(message: int, channel: str, kind: str, event_key: str, attempts: int) -> list[Any]:
    """:func:`_outbox_row` as a list of its values in ``outbox.ENQUEUED`` order (for many at once)."""
    return [
        VENDOR_TOPICS.get(channel, TOPIC),
        "message",
        message,
        f"message:{message}:{attempts}",
        {"message": message, "kind": kind, "number": event_key},
    ]


def _enqueue(session: Session, row: CustomerMessage) -> None:
    outbox.enqueue(session, **_outbox_row(row.id, row.channel, row.kind, row.event_key, row.attempts))


# Partner statements: a partner is not a customer; its one contact is its e-mail (``partners.email``).

PARTNER_STATEMENT: PartnerMessageKind = "partner_statement"


def partner_statement_key(partner_id: int, period: str) -> str:
    """The event of a partner's fee statement: one per partner and closed month, however often closed."""
    return f"{PARTNER_STATEMENT}:{partner_id}:{period}"


def partner_contact(partner_ref: str, email: str | None) -> tuple[Recipients, str | None]:
    """Who gets a partner's messages (its e-mail, in English), or why no one does: no e-mail, or one
    that is not an address, named with the partner and the field (nothing is sent to a guessed one)."""
    if not email or not email.strip():
        problem = f"partner {partner_ref}: field email: no e-mail address; the statement waits until one is set"
        return Recipients((), (), DEFAULT_LANGUAGE), problem
    try:
        address = check_email(email)
    except ValueError as exc:
        return Recipients((), (), DEFAULT_LANGUAGE), f"partner {partner_ref}: field email: {exc}; the statement waits"
    return Recipients((address,), (), DEFAULT_LANGUAGE), None


def partner_contacts(session: Session, partner_ids: Iterable[int]) -> dict[int, tuple[Recipients, str | None]]:
    """:func:`partner_contact` of each partner, by id."""
    rows = session.execute(
        select(Partner.id, Partner.partner_ref, Partner.email).where(Partner.id.in_(sorted(set(partner_ids))))
    )
    return {int(pid): partner_contact(ref, email) for pid, ref, email in rows}


def create_partner_statement(
    session: Session, partner_ref: str, period: str, as_of: date, details: dict[str, Any]
) -> str | None:
    """Make a partner's statement message of ``period`` in the caller's transaction (the one closing
    the statement), once per partner and period: queued with its outbox row when the partner has an
    e-mail, else ``waiting_contact`` with the reason (released by :func:`release_waiting` once the
    partners import sets one). The message's state, or None when it exists already (a rerun)."""
    partner_id, email, settings, entity_ref = session.execute(
        select(Partner.id, Partner.email, LegalEntity.messaging, LegalEntity.entity_ref)
        .join(LegalEntity, LegalEntity.id == Partner.entity_id)
        .where(Partner.partner_ref == partner_ref)
    ).one()
    event_key = partner_statement_key(partner_id, period)
    if existing_keys(session, [event_key]):
        return None
    chosen, problem = partner_contact(partner_ref, email)
    now = utcnow()
    state = "waiting_contact" if problem else "queued"
    row = {
        "event_key": event_key,
        "kind": PARTNER_STATEMENT,
        "customer_id": None,
        "partner_id": partner_id,
        "invoice_id": None,
        "payment_id": None,
        "channel": "email",  # QuickBooks and Stripe mail their own invoices only: a statement goes by e-mail
        "state": state,
        "recipients": chosen.as_dict(),
        "language": chosen.language,
        "as_of": as_of,
        "details": details,
        "message_id": message_id(event_key, _domain(EntityMessaging.model_validate(settings or {}), entity_ref)),
        "last_error": problem,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }
    made = _insert_new(session, [[row[key] for key in _PARTNER_MESSAGE_KEYS]], _PARTNER_MESSAGE_KEYS)
    if event_key not in made:  # another transaction made it first (see ``create``)
        return None
    if state == "queued":
        outbox.enqueue_values(session, [_outbox_values(made[event_key], "email", PARTNER_STATEMENT, event_key, 0)])
    return state


EXPLICIT_RECIPIENTS = ("invoice-copy:",)  # event keys of messages made for given addresses, not the contacts


def explicit_recipients(event_key: str) -> bool:
    """Whether a message's recipients were set when it was made (the e-mail copy of an invoice a
    vendor mailed to some contacts only) rather than chosen from the customer's contacts: those
    keep theirs on a retry; the others are chosen again from the contacts as they are now."""
    return event_key.startswith(EXPLICIT_RECIPIENTS)


def release_waiting(session: Session, *, partner_id: int | None = None) -> int:
    """Messages waiting for a contact whose customer (or partner) now has one: recipients fixed,
    queued. ``partner_id``: only that partner's (the partners import, when it sets its e-mail)."""
    query = select(CustomerMessage).where(CustomerMessage.state == "waiting_contact")
    if partner_id is not None:
        query = query.where(CustomerMessage.partner_id == partner_id)
    waiting = list(session.scalars(query))
    if not waiting:
        return 0
    contacts = contacts_of(session, {m.customer_id for m in waiting if m.customer_id is not None})
    partners = partner_contacts(session, {m.partner_id for m in waiting if m.partner_id is not None})
    released = 0
    for message in waiting:
        if message.partner_id is not None:  # a partner statement: to the partner's e-mail, when it is one
            chosen, problem = partners[message.partner_id]
            if problem is not None:
                message.last_error = problem  # a malformed address named, the message still waiting
                continue
            message.recipients, message.language, message.state = chosen.as_dict(), chosen.language, "queued"
            message.last_error = None
            session.flush()
            _enqueue(session, message)
            released += 1
            continue
        assert message.customer_id is not None  # (the check: a customer's or a partner's)
        chosen = recipients(contacts[message.customer_id], message.kind)  # type: ignore[arg-type]
        state = _state_for(contacts[message.customer_id], chosen)
        if state == "waiting_contact":
            continue
        message.recipients, message.language, message.state = chosen.as_dict(), chosen.language, state
        session.flush()
        if state == "queued":
            _enqueue(session, message)
            released += 1
    return released


def begin_sending(session: Session, message_id: int) -> bool:
    """Mark a queued message ``sending`` (committed by the caller before the SMTP DATA command): from
    then on, a crash leaves it ``sending`` and the next relay makes it ``unconfirmed`` instead of
    sending it again. False when it is not queued any more (another run has it, or it went out)."""
    done = session.execute(
        update(CustomerMessage)
        .where(CustomerMessage.id == message_id, CustomerMessage.state == "queued")
        .values(state="sending", attempts=CustomerMessage.attempts + 1, updated_at=utcnow())
    )
    return bool(getattr(done, "rowcount", 0))


@dataclass(frozen=True)
class Ended:
    """How an attempt to send a message ended, to be recorded (see :func:`record_attempts`)."""

    message_id: int
    state: str  # sent, queued, failed, skipped or unconfirmed
    error: str | None = None
    subject: str | None = None
    text: str | None = None  # a sent e-mail's text and HTML, kept as sent
    html: str | None = None


_ENDED = (
    update(CustomerMessage)
    .where(CustomerMessage.id == bindparam("m_id"))
    .values(
        state=bindparam("m_state"),
        last_error=bindparam("m_error"),
        updated_at=bindparam("m_now"),
        sent_at=func.coalesce(bindparam("m_sent_at", type_=CustomerMessage.sent_at.type), CustomerMessage.sent_at),
        subject=func.coalesce(bindparam("m_subject", type_=CustomerMessage.subject.type), CustomerMessage.subject),
        sent_text=func.coalesce(bindparam("m_text", type_=CustomerMessage.sent_text.type), CustomerMessage.sent_text),
        sent_html=func.coalesce(bindparam("m_html", type_=CustomerMessage.sent_html.type), CustomerMessage.sent_html),
    )
)


_SENDING = (  # constants inline: BulkStatement fills in the parameters it is given, no others
    update(CustomerMessage)
    .where(CustomerMessage.id == bindparam("m_id"), CustomerMessage.state == literal_column("'queued'", String))
    .values(
        state=literal_column("'sending'", String),
        attempts=CustomerMessage.attempts + literal_column("1", Integer),
        updated_at=bindparam("m_now"),
    )
)


_ENDED_KEYS = ("m_id", "m_state", "m_error", "m_now", "m_sent_at", "m_subject", "m_text", "m_html")
_SENDING_KEYS = ("m_id", "m_now")


def record_attempts(connection: Connection, ended: Sequence[Ended], sending: int | None = None) -> bool:
    """Record how attempts ended and, in the same transaction, mark message ``sending`` (as
    :func:`begin_sending`): the SMTP relay commits once per message, before its DATA command, the
    outcome of the message before it riding along. True when ``sending`` was queued and is now
    ``sending``; False when it is not queued any more (or none was given). Both statements are
    compiled once and run on the driver's cursor (``store.bulk``): once per message sent, Core's
    execution bookkeeping cost more than the statements."""
    now = utcnow()
    cursor = dbapi_cursor(connection)
    try:
        if ended:
            statement = BulkStatement.of(_ENDED, connection, _ENDED_KEYS)
            cursor.executemany(statement.sql, statement.driver_rows([_ended_row(e, now) for e in ended]))
        if sending is None:
            return False
        statement = BulkStatement.of(_SENDING, connection, _SENDING_KEYS)
        cursor.execute(*statement.driver_call({"m_id": sending, "m_now": now}))
        return int(cursor.rowcount) == 1
    finally:
        cursor.close()


def _ended_row(ended: Ended, now: datetime) -> dict[str, Any]:
    return {
        "m_id": ended.message_id,
        "m_state": ended.state,
        "m_error": ended.error,
        "m_now": now,
        "m_sent_at": now if ended.state == "sent" else None,
        "m_subject": ended.subject,
        "m_text": ended.text,
        "m_html": ended.html,
    }


def finish(session: Session, message_id: int, state: str, error: str | None = None, subject: str | None = None) -> None:
    """Record how an attempt ended: ``sent``, ``queued`` (a retriable answer before the server took
    it), ``failed`` (refused, with the server's answer) or ``unconfirmed``."""
    values: dict[str, Any] = {"state": state, "last_error": error, "updated_at": utcnow()}
    if state == "sent":
        values["sent_at"] = utcnow()
    if subject is not None:
        values["subject"] = subject
    session.execute(update(CustomerMessage).where(CustomerMessage.id == message_id).values(**values))


def retry(session: Session, message_id: int) -> str:
    """Queue an ``unconfirmed`` or ``failed`` message again, after a person checked (the recipient's
    mailbox, the server's log) that it did not arrive or fixed the cause (a bounced address corrected
    in the contacts: the recipients are chosen again from the customer's contacts as they are now,
    as :func:`release_waiting` does, unless they were set when the message was made). Returns the
    new state: ``queued``, or ``waiting_contact`` / ``opted_out`` when no contact is left to send to."""
    message = session.get(CustomerMessage, message_id)
    if message is None:
        raise LookupError(f"no message {message_id}")
    if message.state not in ("unconfirmed", "failed"):
        raise ValueError(f"message {message_id} is {message.state}: only unconfirmed or failed messages are retried")
    pending = session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.topic.in_((TOPIC, *VENDOR_TOPICS.values())),
            OutboxMessage.aggregate_id == message_id,
            OutboxMessage.delivered_at.is_(None),
        )
    ).all()
    for row in pending:  # its parked outbox row is done with: the retry gets a new one
        row.delivered_at = utcnow()
        row.leased_until = row.leased_by = None
    message.last_error = None
    if message.partner_id is not None:  # a partner statement: to the partner's e-mail as it is now
        chosen, problem = partner_contacts(session, [message.partner_id])[message.partner_id]
        message.recipients, message.language = chosen.as_dict(), chosen.language
        if problem is not None:
            message.state, message.last_error = "waiting_contact", problem
            return "waiting_contact"
    elif not explicit_recipients(message.event_key):  # a bounce fixed by correcting the contact reaches the new one
        assert message.customer_id is not None
        contacts = contacts_of(session, [message.customer_id])[message.customer_id]
        chosen = recipients(contacts, message.kind)  # type: ignore[arg-type]
        message.recipients, message.language = chosen.as_dict(), chosen.language
        state = _state_for(contacts, chosen)
        if state != "queued":  # no contact left (waits visibly) or all opted out: nothing to send
            message.state = state
            return state
    message.state = "queued"
    session.flush()
    # A row of its own, keyed by when the person retried: the message's ``attempts`` counts SMTP
    # sends only, so one that failed before sending (a template, its logo) would otherwise get its
    # first row's key again and be dropped as a duplicate, left queued with nothing to deliver it.
    fresh = _outbox_row(message.id, message.channel, message.kind, message.event_key, message.attempts)
    outbox.enqueue(session, **{**fresh, "dedupe_key": f"{fresh['dedupe_key']}:retry:{utcnow().isoformat()}"})
    return "queued"


def failed_ids(session: Session, *, kind: str | None = None, customer_ref: str | None = None) -> list[int]:
    """Every failed message (of a kind, of a customer), oldest first: what ``messages retry --failed`` queues."""
    query = select(CustomerMessage.id).where(CustomerMessage.state == "failed").order_by(CustomerMessage.id)
    if kind:
        query = query.where(CustomerMessage.kind == kind)
    if customer_ref:
        query = query.join(Customer, Customer.id == CustomerMessage.customer_id).where(
            Customer.customer_ref == customer_ref
        )
    return list(session.scalars(query))


def get(session: Session, message_id: int) -> CustomerMessage | None:
    return session.get(CustomerMessage, message_id)


def listing(
    session: Session,
    *,
    kind: str | None = None,
    customer_ref: str | None = None,
    state: str | None = None,
    limit: int = 500,
    partner_ref: str | None = None,
) -> list[dict[str, Any]]:
    """Messages, newest first, with their customer (or partner: ``customer_ref`` None) and invoice number."""
    query = (
        select(
            CustomerMessage.id,
            CustomerMessage.kind,
            CustomerMessage.state,
            CustomerMessage.channel,
            Customer.customer_ref,
            Partner.partner_ref,
            Invoice.number,
            CustomerMessage.recipients,
            CustomerMessage.as_of,
            CustomerMessage.event_key,
            CustomerMessage.attempts,
            CustomerMessage.last_error,
            CustomerMessage.sent_at,
        )
        .outerjoin(Customer, Customer.id == CustomerMessage.customer_id)
        .outerjoin(Partner, Partner.id == CustomerMessage.partner_id)
        .outerjoin(Invoice, Invoice.id == CustomerMessage.invoice_id)
        .order_by(CustomerMessage.id.desc())
        .limit(limit)
    )
    if kind:
        query = query.where(CustomerMessage.kind == kind)
    if customer_ref:
        query = query.where(Customer.customer_ref == customer_ref)
    if partner_ref:
        query = query.where(Partner.partner_ref == partner_ref)
    if state:
        query = query.where(CustomerMessage.state == state)
    return [dict(r) for r in session.execute(query).mappings()]


def overview(session: Session) -> dict[str, Any]:
    """For ``status``: messages by kind and state, and the customers (and partners, with the reason:
    no e-mail or a malformed one) whose messages wait for a contact."""
    by_state: dict[str, dict[str, int]] = defaultdict(dict)
    for kind, state, count in session.execute(
        select(CustomerMessage.kind, CustomerMessage.state, func.count()).group_by(
            CustomerMessage.kind, CustomerMessage.state
        )
    ):
        by_state[kind][state] = count
    waiting = [
        {"customer_ref": ref, "name": name, "messages": count}
        for ref, name, count in session.execute(
            select(Customer.customer_ref, Customer.name, func.count())
            .join(CustomerMessage, CustomerMessage.customer_id == Customer.id)
            .where(CustomerMessage.state == "waiting_contact")
            .group_by(Customer.customer_ref, Customer.name)
            .order_by(Customer.customer_ref)
        )
    ]
    partners = [
        {"partner_ref": ref, "name": name, "messages": count, "reason": reason}
        for ref, name, count, reason in session.execute(
            select(Partner.partner_ref, Partner.name, func.count(), func.max(CustomerMessage.last_error))
            .join(CustomerMessage, CustomerMessage.partner_id == Partner.id)
            .where(CustomerMessage.state == "waiting_contact")
            .group_by(Partner.partner_ref, Partner.name)
            .order_by(Partner.partner_ref)
        )
    ]
    return {
        "by_kind": dict(by_state),
        "waiting_for_contact": waiting,
        "partners_waiting_for_contact": partners,
        "customers_without_contact": without_contact(session),
    }


def without_contact(session: Session, *, limit: int = 50) -> list[str]:
    """Refs of customers with contracts but no one to send to (no contact, no valid email)."""
    has_rows = select(BillingContactRow.customer_id).distinct()
    rows = session.execute(
        select(Customer.id, Customer.customer_ref, Customer.email)
        .where(Customer.id.not_in(has_rows))
        .order_by(Customer.customer_ref)
    )
    out = []
    for _cid, ref, email in rows:
        if email_contact(email):
            continue
        out.append(ref)
        if len(out) >= limit:
            break
    return out


def sending_context(session: Session, message_id: int) -> dict[str, Any] | None:
    """What sending a message needs, as plain data: the message, its customer, the entity (with its
    messaging settings) and the invoice with its lines and what is open on it."""
    return sending_contexts(session, [message_id]).get(message_id)


CONTEXT_CHUNK = 500  # message ids per IN (...)


def sending_contexts(session: Session, message_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """:func:`sending_context` of many messages in a handful of queries (a relay batch is read at
    once, not with a dozen queries per message); a message that does not exist is left out."""
    ids = sorted(set(message_ids))
    messages: list[CustomerMessage] = []
    for start in range(0, len(ids), CONTEXT_CHUNK):
        messages += session.scalars(
            select(CustomerMessage).where(CustomerMessage.id.in_(ids[start : start + CONTEXT_CHUNK]))
        )
    parties = _parties_of(
        session,
        {m.customer_id for m in messages if m.customer_id is not None},
        {m.invoice_id for m in messages if m.invoice_id is not None},
        {m.invoice_id for m in messages if m.invoice_id is not None and m.kind == "invoice"},
    )
    partners, partner_entities = _partners_of(session, {m.partner_id for m in messages if m.partner_id is not None})
    return {
        message.id: {
            "customer": parties.customers[message.customer_id] if message.customer_id is not None else None,
            "partner": partners[message.partner_id] if message.partner_id is not None else None,
            "entity": (
                parties.entities[message.customer_id]
                if message.customer_id is not None
                else partner_entities[message.partner_id or 0]
            ),
            "invoice": parties.invoices.get(message.invoice_id) if message.invoice_id is not None else None,
            "id": message.id,
            "customer_id": message.customer_id,
            "partner_id": message.partner_id,
            "invoice_id": message.invoice_id,
            "kind": message.kind,
            "state": message.state,
            "channel": message.channel,
            "event_key": message.event_key,
            "message_id": message.message_id,
            "recipients": message.recipients,
            "language": message.language,
            "as_of": message.as_of,
            "details": message.details,
            "subject": message.subject,
            "sent_text": message.sent_text,
            "sent_html": message.sent_html,
            "last_error": message.last_error,
            "sent_at": message.sent_at,
            "attempts": message.attempts,
            "created_at": message.created_at,
        }
        for message in messages
    }


@dataclass
class _Parties:
    customers: dict[int, dict[str, Any]]  # by customer id
    entities: dict[int, dict[str, Any]]  # by customer id: the customer's entity
    invoices: dict[int, dict[str, Any]]  # by invoice id


def _parties_of(session: Session, customer_ids: set[int], invoice_ids: set[int], with_lines: set[int]) -> _Parties:
    """:func:`_parties` of many customers and documents at once (lines only for ``with_lines``)."""
    customers: dict[int, dict[str, Any]] = {}
    entities: dict[int, dict[str, Any]] = {}
    by_entity: dict[int, dict[str, Any]] = {}
    wanted = sorted(customer_ids)
    for start in range(0, len(wanted), CONTEXT_CHUNK):
        rows = session.execute(
            select(
                Customer.id,
                Customer.customer_ref,
                Customer.name,
                LegalEntity.id,
                LegalEntity.entity_ref,
                LegalEntity.name,
                LegalEntity.currency,
                LegalEntity.messaging,
            )
            .join(LegalEntity, LegalEntity.id == Customer.entity_id)
            .where(Customer.id.in_(wanted[start : start + CONTEXT_CHUNK]))
        )
        for cid, ref, name, eid, entity_ref, entity_name, currency, messaging in rows:
            customers[cid] = {"customer_ref": ref, "name": name}
            if eid not in by_entity:
                by_entity[eid] = _entity(entity_ref, entity_name, currency, messaging)
            entities[cid] = by_entity[eid]
    invoices: dict[int, dict[str, Any]] = {}
    docs = sorted(invoice_ids)
    for start in range(0, len(docs), CONTEXT_CHUNK):
        chunk = docs[start : start + CONTEXT_CHUNK]
        credits = credited(session, chunk)
        for row in session.execute(documents_query().where(Invoice.id.in_(chunk))).mappings():
            invoice = {**row, "lines": []}
            invoice["credited"] = credits.get(row["id"], ZERO)
            invoice["open"] = invoice["invoice_total"] - invoice["amount_paid"] - invoice["credited"]
            invoices[row["id"]] = invoice
        lines = lines_of(session, [i for i in chunk if i in with_lines])
        for system in ("stripe", "quickbooks"):
            for doc_type in ("invoice", "credit_note"):
                typed = [i for i in chunk if i in invoices and invoices[i]["doc_type"] == doc_type]
                refs = external_refs_of(session, system, doc_type, typed) if typed else {}
                for i in typed:
                    invoices[i][f"{system}_invoice"] = refs[i][0] if i in refs else None
        for i in chunk:
            if i in invoices:
                invoices[i]["lines"] = lines.get(i, [])
    return _Parties(customers, entities, invoices)


def _partners_of(
    session: Session, partner_ids: set[int]
) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """The partners of partner messages and their entities, by partner id."""
    partners: dict[int, dict[str, Any]] = {}
    entities: dict[int, dict[str, Any]] = {}
    if not partner_ids:
        return partners, entities
    rows = session.execute(
        select(
            Partner.id,
            Partner.partner_ref,
            Partner.name,
            Partner.email,
            LegalEntity.entity_ref,
            LegalEntity.name,
            LegalEntity.currency,
            LegalEntity.messaging,
        )
        .join(LegalEntity, LegalEntity.id == Partner.entity_id)
        .where(Partner.id.in_(sorted(partner_ids)))
    )
    for pid, ref, name, email, entity_ref, entity_name, currency, messaging in rows:
        partners[pid] = {"partner_ref": ref, "name": name, "email": email}
        entities[pid] = _entity(entity_ref, entity_name, currency, messaging)
    return partners, entities


def _entity(entity_ref: str, name: str, currency: str, settings: dict[str, Any] | None) -> dict[str, Any]:
    messaging = EntityMessaging.model_validate(settings or {})
    return {
        "entity_ref": entity_ref,
        "name": name,
        "currency": currency,
        "address": messaging.address,
        "payment_instructions": messaging.payment_instructions,
        "logo": messaging.logo,
        "sender": sender_of(messaging, entity_ref),
    }


def preview_context(session: Session, number: str, kind: MessageKind, as_of: date) -> dict[str, Any] | None:
    """The context a message of ``kind`` about document ``number`` would have now (nothing is saved)."""
    invoice = session.scalar(select(Invoice).where(Invoice.number == number))
    if invoice is None:
        return None
    to = audiences(session, [invoice.customer_id])[invoice.customer_id]
    chosen, messaging, channel, entity_ref = to.recipients(kind), to.messaging, to.channel, to.entity_ref
    offset = (as_of - invoice.due_date).days
    return {
        **_parties(session, invoice.customer_id, invoice.id),
        "id": 0,
        "kind": kind,
        "state": "preview",
        "channel": channel,
        "event_key": f"preview:{invoice.id}",
        "message_id": message_id(f"preview:{invoice.id}", _domain(messaging, entity_ref)),
        "recipients": chosen.as_dict(),
        "language": chosen.language,
        "as_of": as_of,
        "details": {"offset": offset, "final": False, "reason_code": None, "reason_text": "the card was declined"},
        "subject": None,
        "last_error": None,
        "sent_at": None,
    }


def _parties(session: Session, customer_id: int, invoice_id: int | None, *, lines: bool = True) -> dict[str, Any]:
    """The customer, its entity and the document (with its lines when ``lines``: the PDF needs them)."""
    docs = {invoice_id} if invoice_id is not None else set()
    found = _parties_of(session, {customer_id}, docs, docs if lines else set())
    invoice = None
    if invoice_id is not None:
        invoice = found.invoices.get(invoice_id)
        if invoice is None:
            raise LookupError(f"no document {invoice_id}")
    return {"customer": found.customers[customer_id], "entity": found.entities[customer_id], "invoice": invoice}


# Messages made with the events that cause them (deliveries, receipts), and what planning reads.


def deliveries(session: Session, invoice_ids: Sequence[int], as_of: date) -> Counter[str]:
    """The delivery message of each document just issued (approved and now at the vendor), made in
    the caller's transaction, the one that marks it sent: however late a document is issued after
    its billing date, its delivery exists once it is, and a repeated push makes none twice (the
    event key ``invoice:<id>``). Documents not issued (still approved, void) get none."""
    drafts: list[MessageDraft] = []
    ids = sorted(set(invoice_ids))
    for start in range(0, len(ids), CREATE_CHUNK):
        rows = session.execute(
            select(Invoice.id, Invoice.customer_id).where(
                Invoice.id.in_(ids[start : start + CREATE_CHUNK]), Invoice.status.in_(ISSUED)
            )
        )
        drafts += [MessageDraft(f"invoice:{i}", "invoice", c, as_of, invoice_id=i) for i, c in rows]
    return create(session, drafts)


def open_for_reminders(session: Session, due_by: date) -> list[dict[str, Any]]:
    """Open invoices (sent or part-paid, money open, not in a dispute) due by ``due_by``, with their
    entity's messaging settings and the reminder steps that already have a message."""
    withdrawn = _still_withdrawn(session) | _being_collected(session)
    rows = session.execute(
        select(
            Invoice.id,
            Invoice.customer_id,
            Invoice.number,
            Invoice.due_date,
            Invoice.invoice_total,
            Invoice.amount_paid,
            LegalEntity.messaging,
        )
        .join(LegalEntity, LegalEntity.id == Invoice.entity_id)
        .where(
            Invoice.doc_type == "invoice",
            Invoice.status.in_(("sent", "partially_paid")),
            Invoice.due_date <= due_by,
        )
        .order_by(Invoice.id)
    ).mappings()
    found = [dict(r) for r in rows if r["invoice_total"] > r["amount_paid"] and r["id"] not in withdrawn]
    credits = credited(session, [r["id"] for r in found])
    found = [r for r in found if r["invoice_total"] - r["amount_paid"] - credits.get(r["id"], ZERO) > 0]
    done: dict[int, list[int]] = defaultdict(list)
    ids = [r["id"] for r in found]
    for start in range(0, len(ids), 1000):
        for invoice_id, key in session.execute(
            select(CustomerMessage.invoice_id, CustomerMessage.event_key).where(
                CustomerMessage.kind == "reminder", CustomerMessage.invoice_id.in_(ids[start : start + 1000])
            )
        ):
            if invoice_id is not None:
                done[int(invoice_id)].append(int(key.rpartition(":")[2]))
    for row in found:
        row["done"] = done.get(row["id"], [])
        row["reminder_days"] = EntityMessaging.model_validate(row.pop("messaging") or {}).reminder_days
    return found


def _being_collected(session: Session) -> set[int]:
    """Auto-charge invoices on their way to Stripe or waiting for the next try of a charge: dunning
    notices speak for them; after the last failed try (parked) they join the reminder schedule."""
    rows = session.execute(
        select(OutboxMessage.aggregate_id, OutboxMessage.available_at).where(
            OutboxMessage.topic.in_(("push.stripe", "collect.stripe")), OutboxMessage.delivered_at.is_(None)
        )
    )
    return {invoice_id for invoice_id, available_at in rows if not outbox.is_parked(available_at)}


def _still_withdrawn(session: Session) -> set[int]:
    """Invoices a dispute took money back from and has not given it back (open disputes, lost ones)."""
    totals: dict[int, Any] = defaultdict(int)
    for invoice_id, amount in session.execute(
        select(PaymentAllocation.invoice_id, PaymentAllocation.amount)
        .join(Payment, Payment.id == PaymentAllocation.payment_id)
        .where(Payment.method == "dispute")
    ):
        totals[invoice_id] += amount
    return {invoice_id for invoice_id, total in totals.items() if total < 0}


def receipts(session: Session, payment_ids: Sequence[int], *, event: str | None = None) -> Counter[str]:
    """The receipt of each payment just applied to invoices, made in the caller's transaction (the
    one recording the application): whatever date the payment carries (a cheque entered weeks
    late), it gets its receipt, once (``receipt:<payment id>``, or ``event`` for one payment: money
    applied by hand later). It names what the payment applied to each invoice and what each has
    open now, to the payment's customer (a QuickBooks payment names none of ours: its invoices'
    customer). Refunds, disputes and payments applied to nothing get none."""
    ids = sorted(set(payment_ids))
    if event is not None and len(ids) != 1:
        raise ValueError("an event key names the receipt of one payment")
    return _receipts(session, ids, event)


class RecordedPayment(NamedTuple):
    """A payment recorded in this transaction, as its receipt needs it, from what recording it knew."""

    payment_ref: str
    amount: Decimal
    unapplied: Decimal
    received_on: date
    applied: tuple[tuple[int, str, Decimal], ...]  # (invoice id, number, amount applied), in allocation order
    payment_id: int = 0  # its id, when recording it told (0: read back by ref)
    payer_id: int | None = None  # the customer its receipt goes to, when recording it told (else read back)


def receipts_of_recorded(
    session: Session,
    payments: Sequence[RecordedPayment],
    open_after: dict[int, Decimal],
    *,
    known: dict[int, Audience] | None = None,
) -> Counter[str]:
    """:func:`receipts` of payments just recorded in this transaction (a reconciliation page's), made
    from what recording them computed rather than read back: their allocations, and ``open_after``,
    each invoice's total less what is paid on it now (after every payment of the batch, as the
    read-back would find it). Only the ids and customers recording did not tell are read (the
    receipt's event key names the id). The caller gives only payments applied to invoices, for more
    than nothing, not disputes. ``known``: see :func:`create`."""
    if not payments:
        return Counter()
    unknown = [p.payment_ref for p in payments if not (p.payment_id and p.payer_id)]
    read: dict[str, tuple[int, int | None]] = {
        ref: (pid, cid) for pid, ref, cid in _read_in(session, _IDS_BY_REF, unknown)
    }
    missing = set(unknown) - read.keys()
    if missing:
        raise LookupError(f"payments {sorted(missing)[:5]} are not recorded: no receipt without the payment")
    nameless = [p.applied[0][0] for p in payments if p.payment_ref in read and read[p.payment_ref][1] is None]
    payers = customers_of(session, nameless) if nameless else {}  # its first invoice's customer pays for it
    credits = credited(session, list(open_after))
    if credits:  # what is open on each invoice after payments and credits
        open_after = {iid: left - credits.get(iid, ZERO) for iid, left in open_after.items()}
    drafts = []
    for p in payments:
        payment_id, customer_id = read.get(p.payment_ref, (p.payment_id, p.payer_id))
        applied = [Applied(iid, number, share, open_after[iid]) for iid, number, share in p.applied]
        drafts.append(
            MessageDraft(  # by position (event key, kind, customer, as of, invoice, payment, details): hundreds a page
                f"receipt:{payment_id}",
                "receipt",
                customer_id or payers[applied[0].invoice_id],
                p.received_on,
                applied[0].invoice_id,
                payment_id,
                receipt_details(p.payment_ref, p.amount, p.received_on, applied, p.unapplied),
            )
        )
    drafts.sort(key=lambda d: d.payment_id or 0)  # in payment order, as receipts() makes them
    return create(session, drafts, known=known)


_PAYMENTS, _ALLOCATIONS, _INVOICES = table_of(Payment), table_of(PaymentAllocation), table_of(Invoice)
# Each allocation of the payments wanted, with its payment and its invoice (a payment applied to
# nothing has none: it gets no receipt), on the driver (BulkStatement): one statement a page.
_APPLIED = (
    select(
        _PAYMENTS.c.id,
        _PAYMENTS.c.payment_ref,
        _PAYMENTS.c.customer_id,
        _PAYMENTS.c.amount,
        _PAYMENTS.c.unapplied_amount,
        _PAYMENTS.c.received_on,
        _ALLOCATIONS.c.amount,
        _INVOICES.c.id,
        _INVOICES.c.number,
        _INVOICES.c.invoice_total,
        _INVOICES.c.amount_paid,
        _INVOICES.c.customer_id,
    )
    .join(_ALLOCATIONS, _ALLOCATIONS.c.payment_id == _PAYMENTS.c.id)
    .join(_INVOICES, _INVOICES.c.id == _ALLOCATIONS.c.invoice_id)
    .order_by(_PAYMENTS.c.id, _ALLOCATIONS.c.id)
)
_IDS_BY_REF = select(_PAYMENTS.c.id, _PAYMENTS.c.payment_ref, _PAYMENTS.c.customer_id).where(
    _PAYMENTS.c.payment_ref.in_(bindparam("wanted", expanding=True))
)
_NOT_DISPUTE = _PAYMENTS.c.method.is_distinct_from(literal_column("'dispute'", String))
_APPLIED_BY_ID = _APPLIED.where(_PAYMENTS.c.id.in_(bindparam("wanted", expanding=True)), _NOT_DISPUTE)


def _receipts(session: Session, wanted: Sequence[int], event: str | None) -> Counter[str]:
    """The receipts of the payments of these ids, as :func:`receipts`."""
    session.flush()  # read on the driver: what the session holds (an allocation added by hand) first
    connection = session.connection()
    statement = BulkStatement.of(_APPLIED_BY_ID, connection, ("wanted",))
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(wanted), CREATE_CHUNK):
        rows += statement.run(connection, {"wanted": list(wanted[start : start + CREATE_CHUNK])})
    rows = [r for r in rows if r[3] > 0]  # money compares in Python: SQLite stores it as text
    credits = credited(session, [r[7] for r in rows])
    payments: dict[int, tuple[Any, ...]] = {}
    applied: dict[int, list[Applied]] = defaultdict(list)
    for row in rows:
        payment_id, _, _, _, _, _, amount, invoice_id, number, total, paid, _ = row
        payments.setdefault(payment_id, row)  # the first: its invoice's customer pays for a payment naming none
        applied[payment_id].append(Applied(invoice_id, number, amount, total - paid - credits.get(invoice_id, ZERO)))
    drafts = [
        MessageDraft(
            event or f"receipt:{payment_id}",
            "receipt",
            customer_id or payer,
            received_on,
            invoice_id=applied[payment_id][0].invoice_id,
            payment_id=payment_id,
            details=receipt_details(payment_ref, amount, received_on, applied[payment_id], unapplied),
        )
        for payment_id, (_, payment_ref, customer_id, amount, unapplied, received_on, *_, payer) in payments.items()
    ]
    return create(session, drafts)


_CREDITED = select(_INVOICES.c.applies_to_id, _INVOICES.c.invoice_total).where(
    _INVOICES.c.applies_to_id.in_(bindparam("ids", expanding=True)),
    _INVOICES.c.doc_type == literal_column("'credit_note'", String),
    _INVOICES.c.status.in_(bindparam("issued", expanding=True)),
)


def credited(session: Session, invoice_ids: Sequence[int]) -> dict[int, Decimal]:
    """What issued credit notes take back from each of these invoices (positive amounts; invoices
    no credit note applies to are left out): no longer open on the invoice, so a reminder asks for
    what is open after payments and credits, and none goes once they cover it."""
    out: dict[int, Decimal] = defaultdict(Decimal)
    ids = sorted(set(invoice_ids))
    if not ids:
        return {}
    session.flush()  # read on the driver (BulkStatement): what the session holds first
    connection = session.connection()
    statement = BulkStatement.of(_CREDITED, connection, ("ids", "issued"))
    for start in range(0, len(ids), CREATE_CHUNK):
        for invoice_id, total in statement.run(
            connection, {"ids": ids[start : start + CREATE_CHUNK], "issued": list(ISSUED)}
        ):
            if invoice_id is not None:  # (the IN above says so; the column may be null)
                out[invoice_id] -= total  # a credit note's total is negative
    return dict(out)


def customers_of(session: Session, invoice_ids: Iterable[int]) -> dict[int, int]:
    """invoice id -> its customer's id."""
    ids = list(set(invoice_ids))
    return {
        int(i): int(c) for i, c in session.execute(select(Invoice.id, Invoice.customer_id).where(Invoice.id.in_(ids)))
    }


def declined_charges(session: Session) -> list[dict[str, Any]]:
    """Auto-charges Stripe declined, still undelivered (waiting for the next try, or parked after the
    last): the invoice, how many tries, the decline and whether it was the last."""
    rows = session.execute(
        select(OutboxMessage.aggregate_id, OutboxMessage.attempts, OutboxMessage.last_error, OutboxMessage.available_at)
        .where(
            OutboxMessage.topic == "collect.stripe",
            OutboxMessage.delivered_at.is_(None),
            OutboxMessage.last_error.like("declined%"),
        )
        .order_by(OutboxMessage.id)
    )
    out = []
    for invoice_id, attempts, error, available_at in rows:
        invoice = session.get(Invoice, invoice_id)
        if invoice is None:
            continue
        out.append(
            {
                "invoice_id": invoice_id,
                "customer_id": invoice.customer_id,
                "attempts": attempts,
                "error": error,
                "final": outbox.is_parked(available_at),
            }
        )
    return out


def customers_without_stored_contacts(session: Session) -> list[tuple[int, str]]:
    """(id, ref) of the customers with no stored billing contact, by ref."""
    has_rows = select(BillingContactRow.customer_id).distinct()
    rows = session.execute(
        select(Customer.id, Customer.customer_ref).where(Customer.id.not_in(has_rows)).order_by(Customer.customer_ref)
    )
    return [(int(cid), str(ref)) for cid, ref in rows]


# Statements of account: what a customer has open as of a day.

ISSUED = ("sent", "partially_paid", "paid")


def customer_id_of(session: Session, customer_ref: str) -> int | None:
    return session.scalar(select(Customer.id).where(Customer.customer_ref == customer_ref))


def statement_items(
    session: Session, customer_id: int, as_of: date, payment_days: int
) -> tuple[list[OpenItem], list[RecentPayment]]:
    """A customer's open items as of ``as_of`` and its payments of the ``payment_days`` before it
    (``as_of`` included). An issued document's open amount as of the day is what is open now plus
    what payments received after the day applied to it (so a statement dated in the past says what
    was open then); a payment not applied yet is a credit (its unapplied amount now)."""
    """A credit note linked to an invoice (``applies_to``) is applied to it first, as reminders
    apply it: the invoice shows what is open after it and the credit note only what is left of it
    (none, usually), so an invoice credited in full is neither open nor overdue on a statement."""
    later: dict[int, Decimal] = defaultdict(Decimal)
    for invoice_id, amount in session.execute(
        select(PaymentAllocation.invoice_id, PaymentAllocation.amount)
        .join(Payment, Payment.id == PaymentAllocation.payment_id)
        .join(Invoice, Invoice.id == PaymentAllocation.invoice_id)
        .where(Invoice.customer_id == customer_id, Payment.received_on > as_of)
    ):
        later[invoice_id] += amount
    documents = [
        dict(row)
        for row in session.execute(
            select(
                Invoice.id,
                Invoice.doc_type,
                Invoice.number,
                Invoice.currency,
                Invoice.billing_date,
                Invoice.due_date,
                Invoice.invoice_total,
                Invoice.amount_paid,
                Invoice.applies_to_id,
            )
            .where(Invoice.customer_id == customer_id, Invoice.status.in_(ISSUED), Invoice.billing_date <= as_of)
            .order_by(Invoice.id)
        ).mappings()
    ]
    open_of = {d["id"]: d["invoice_total"] - d["amount_paid"] + later[d["id"]] for d in documents}
    kinds = {d["id"]: d["doc_type"] for d in documents}
    for note in documents:  # linked credit notes (issued by the day) taken off their invoice's open amount
        target = note["applies_to_id"]
        if note["doc_type"] != "credit_note" or target is None or kinds.get(target) != "invoice":
            continue
        taken = min(max(open_of[target], ZERO), max(-open_of[note["id"]], ZERO))
        open_of[target] -= taken
        open_of[note["id"]] += taken
    items = []
    for row in documents:
        credit = row["doc_type"] == "credit_note"
        items.append(
            OpenItem(
                "credit_note" if credit else "invoice",
                row["number"],
                row["currency"],
                row["billing_date"],
                row["billing_date"] if credit else row["due_date"],
                row["invoice_total"],
                open_of[row["id"]],
            )
        )
    since = as_of - timedelta(days=payment_days)
    applied: dict[int, list[str]] = defaultdict(list)
    payments = session.execute(
        select(
            Payment.id,
            Payment.payment_ref,
            Payment.currency,
            Payment.amount,
            Payment.unapplied_amount,
            Payment.received_on,
        )
        .where(
            Payment.customer_id == customer_id,
            Payment.received_on <= as_of,
            Payment.method.is_distinct_from("dispute"),
        )
        .order_by(Payment.id)
    ).all()
    payments = [p for p in payments if p.amount > 0]  # money compares in Python: SQLite stores it as text
    recent = [p for p in payments if p.received_on > since]
    for payment_id, number in session.execute(
        select(PaymentAllocation.payment_id, Invoice.number)
        .join(Invoice, Invoice.id == PaymentAllocation.invoice_id)
        .where(PaymentAllocation.payment_id.in_([p.id for p in recent]))
        .order_by(PaymentAllocation.id)
    ):
        applied[payment_id].append(number)
    for p in payments:
        if p.unapplied_amount > 0:
            items.append(
                OpenItem(
                    "payment", p.payment_ref, p.currency, p.received_on, p.received_on, p.amount, -p.unapplied_amount
                )
            )
    return items, [
        RecentPayment(p.payment_ref, p.currency, p.received_on, p.amount, tuple(applied[p.id])) for p in recent
    ]


def customers_with_open_items(session: Session, as_of: date) -> list[tuple[int, str]]:
    """(id, ref) of the customers with an issued document not settled or a payment not applied, by
    ref: the candidates of ``statements send --all`` (each is checked as of the day). An invoice
    counts with the credit notes linked to it taken off (credited in full: nothing is owed), a
    linked credit note only through its invoice (a credit larger than what is open on it)."""
    ids: set[int] = set()
    documents = session.execute(
        select(
            Invoice.id,
            Invoice.customer_id,
            Invoice.doc_type,
            Invoice.applies_to_id,
            Invoice.invoice_total,
            Invoice.amount_paid,
        ).where(Invoice.status.in_(ISSUED), Invoice.billing_date <= as_of)
    ).all()
    credits = credited(session, [d.id for d in documents if d.doc_type == "invoice"])
    for d in documents:  # money compares in Python: SQLite stores it as text
        if d.doc_type == "invoice":
            if d.invoice_total - d.amount_paid - credits.get(d.id, ZERO) != 0:
                ids.add(d.customer_id)
        elif d.applies_to_id is None and d.invoice_total != d.amount_paid:
            ids.add(d.customer_id)
    for payer, unapplied in session.execute(
        select(Payment.customer_id, Payment.unapplied_amount).where(Payment.customer_id.is_not(None))
    ):
        if payer is not None and unapplied > 0:
            ids.add(payer)
    ids.update(  # a document paid after the day was open on it
        session.scalars(
            select(Invoice.customer_id)
            .join(PaymentAllocation, PaymentAllocation.invoice_id == Invoice.id)
            .join(Payment, Payment.id == PaymentAllocation.payment_id)
            .where(Payment.received_on > as_of, Invoice.billing_date <= as_of)
        )
    )
    rows = session.execute(
        select(Customer.id, Customer.customer_ref).where(Customer.id.in_(list(ids))).order_by(Customer.customer_ref)
    )
    return [(int(cid), str(ref)) for cid, ref in rows]


def statement_preview_context(
    session: Session, customer_id: int, as_of: date, details: dict[str, Any]
) -> dict[str, Any]:
    """The context the statement of a customer as of a day would have (nothing is saved): its
    recipients and Message-ID are those ``statements send`` would use."""
    to = audiences(session, [customer_id])[customer_id]
    chosen, messaging, entity_ref = to.recipients("statement"), to.messaging, to.entity_ref
    key = statement_key(customer_id, as_of)
    return {
        **_parties(session, customer_id, None),
        "id": 0,
        "kind": "statement",
        "state": "preview" if chosen.to else ("opted_out" if chosen.opted_out else "waiting_contact"),
        "channel": "email",
        "event_key": key,
        "message_id": message_id(key, _domain(messaging, entity_ref)),
        "recipients": chosen.as_dict(),
        "language": chosen.language,
        "as_of": as_of,
        "details": details,
        "subject": None,
        "last_error": None,
        "sent_at": None,
    }


def statement_key(customer_id: int, as_of: date) -> str:
    """The event of a statement: one per customer and day, however often it is asked for."""
    return f"statement:{customer_id}:{as_of.isoformat()}"
