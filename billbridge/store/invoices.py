"""Invoices and credit notes: what is billed already, saving planned documents with gapless numbers,
listing, and the open invoices payments are matched to (payments themselves: store/payments.py)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, and_, bindparam, case, func, insert, or_, select, true, tuple_, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import BindParameter

from billbridge.billing.engine import BilledItem, InvoiceDraft
from billbridge.billing.resellers import ConsolidatedDraft
from billbridge.store.bulk import BulkStatement, run_calls
from billbridge.store.contracts import ContractTimeline
from billbridge.store.models import (
    Contract,
    ContractVersion,
    Customer,
    Invoice,
    InvoiceLine,
    LegalEntity,
    NumberSequence,
    table_of,
    utcnow,
)

ONE_DAY = timedelta(days=1)
ZERO = Decimal(0)
# Core statements built once: bulk inserts without the ORM's per-statement bookkeeping.
# No RETURNING: PostgreSQL pipelines a plain executemany about 3x faster than multi-VALUES with
# RETURNING, and SQLite falls back to a row per statement for ordered RETURNING. Ids are read back
# by the number range the transaction reserved, which is unique per entity and document type.
_INSERT_INVOICES = insert(table_of(Invoice))
_INSERT_LINES = insert(table_of(InvoiceLine))


def lock_numbering(session: Session, entity_ids: Iterable[int]) -> None:
    """Take the numbering locks of these entities (in id order, so two generators never deadlock).

    Held to commit: a second generator waits here, then sees every invoice the first one made.
    SQLite needs nothing: the write transaction already holds the database lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(NumberSequence.entity_id)
            .where(NumberSequence.entity_id.in_(sorted(set(entity_ids))))
            .order_by(NumberSequence.entity_id, NumberSequence.doc_type)
            .with_for_update()
        ).all()


BillingState = tuple[int, int, int]
"""(current version number, invoices so far, highest invoice id) of one contract."""


_IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)
# Read once per chunk of a billing run, by its planning processes and its writer: built once and run
# on the driver (BulkStatement), whose IN list of a chunk's ids is rendered once per length, not per run.
_VERSIONS_OF = select(Contract.id, Contract.current_version_no).where(Contract.id.in_(_IDS))
_BILLED_OF = (
    select(InvoiceLine.contract_id, func.count(func.distinct(InvoiceLine.invoice_id)), func.max(Invoice.id))
    .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
    .where(InvoiceLine.contract_id.in_(_IDS), Invoice.period_released.is_(False))
    .group_by(InvoiceLine.contract_id)
)

_DATES_OF = select(Invoice.contract_id, Invoice.billing_date).where(
    Invoice.contract_id.in_(_IDS), Invoice.period_released.is_(False)
)
_LINES_OF = (
    select(
        InvoiceLine.contract_id,
        InvoiceLine.line_ref,
        InvoiceLine.kind,
        InvoiceLine.period_start,
        InvoiceLine.period_end,
        InvoiceLine.period_days,
        InvoiceLine.start_date,
        InvoiceLine.end_date,
        InvoiceLine.terms_hash,
        InvoiceLine.sign,
        InvoiceLine.amount,
        InvoiceLine.discount_amount,
        InvoiceLine.billed_amount,
        Invoice.billing_date,
        InvoiceLine.product_ref,
        InvoiceLine.description,
        InvoiceLine.quantity,
    )
    .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
    .where(InvoiceLine.contract_id.in_(_IDS), Invoice.period_released.is_(False))
    .order_by(InvoiceLine.id)
)


def billing_states(session: Session, contract_ids: Sequence[int]) -> dict[int, BillingState]:
    """What planning a contract depends on, in three integers per contract.

    Versions and invoices are only ever added, never rewritten, and a contract's invoices are
    created under its entity's numbering lock, so an unchanged state means unchanged terms and an
    unchanged billing history; a voided draft giving its period back lowers the count. Read it
    *before* the terms and billed lines a plan is built from.
    """
    if not contract_ids:
        return {}
    connection = session.connection()
    params = {"ids": list(contract_ids)}
    versions = BulkStatement.of(_VERSIONS_OF, connection, ("ids",)).run(connection, params)
    # Counted through the lines: a reseller's consolidated invoice bills several contracts (its header
    # names the first), and each of them must see it.
    billed = {
        int(cid): (int(count), int(top))
        for cid, count, top in BulkStatement.of(_BILLED_OF, connection, ("ids",)).run(connection, params)
    }
    return {int(cid): (int(version), *billed.get(int(cid), (0, 0))) for cid, version in versions}


def load_billed(session: Session, contract_ids: Sequence[int]) -> dict[int, tuple[list[BilledItem], set[date]]]:
    """Per contract: every invoice line billed so far (ends made exclusive) and the billing dates used;
    a draft voided before it was issued bills nothing and uses no date."""
    out: dict[int, tuple[list[BilledItem], set[date]]] = {cid: ([], set()) for cid in contract_ids}
    if not contract_ids:
        return out
    connection = session.connection()
    params = {"ids": list(contract_ids)}
    for cid, billing_date in BulkStatement.of(_DATES_OF, connection, ("ids",)).run(connection, params):
        out[cid][1].add(billing_date)
    rows = BulkStatement.of(_LINES_OF, connection, ("ids",)).run(connection, params)
    # Unpacked by name (as fast as indexing, on the billing run's hot path).
    for (
        contract_id,
        line_ref,
        kind,
        period_start,
        period_end,
        period_days,
        start_date,
        end_date,
        terms_hash,
        sign,
        amount,
        discount_amount,
        billed_amount,
        billing_date,
        product_ref,
        description,
        quantity,
    ) in rows:
        out[contract_id][1].add(billing_date)  # a consolidated invoice uses its date for each of its contracts
        out[contract_id][0].append(
            BilledItem(
                line_ref=line_ref,
                kind=kind,
                slot_start=period_start,
                slot_end=period_end + ONE_DAY,
                slot_days=period_days,
                span_start=start_date,
                span_end=end_date + ONE_DAY,
                terms_hash=terms_hash,
                sign=sign,
                amount=amount,
                discount=discount_amount,
                billed_amount=billed_amount,
                billing_date=billing_date,
                product_ref=product_ref,
                description=description,
                quantity=quantity,
            )
        )
    return out


@dataclass
class PreparedDrafts:
    """Planned documents as the rows the driver takes (values converted by Core's own bind processors,
    :class:`BulkStatement`), built where they are planned: a planning process does the per-value work
    and sends plain rows, quick to pickle, to the process that writes them. What only the writer can
    know is left empty for :func:`write_prepared`: each document's number and sequence number (taken
    under the numbering locks), its timestamps (the time it is written) and its lines' invoice id."""

    dialect: str
    invoice_keys: tuple[str, ...] = ()
    invoices: list[Any] = field(default_factory=list)  # in numbering order: contract, then billing date
    numbering: list[tuple[int, str]] = field(default_factory=list)  # (entity id, document type) of each
    line_keys: tuple[str, ...] = ()
    lines: list[Any] = field(default_factory=list)  # each document's lines after those of the one before
    line_counts: list[int] = field(default_factory=list)  # lines of each document
    # (position, contract id, billing date): a credit note and the billing date of the contract's
    # invoice it credits (``InvoiceDraft.credits``), linked once both are written
    credits: list[tuple[int, int, date]] = field(default_factory=list)


# The columns a billing run writes, in the tables' order (the order of the driver's positional rows).
_INVOICE_KEYS = (
    "doc_type",
    "number",
    "sequence_no",
    "entity_id",
    "customer_id",
    "contract_id",
    "version_no",
    "billing_date",
    "due_date",
    "currency",
    "status",
    "subtotal",
    "discount_total",
    "invoice_total",
    "amount_paid",
    "created_at",
    "updated_at",
)
_LINE_KEYS = (
    "invoice_id",
    "contract_id",
    "position",
    "line_ref",
    "kind",
    "product_ref",
    "description",
    "period_start",
    "period_end",
    "period_days",
    "start_date",
    "end_date",
    "billed_days",
    "quantity",
    "amount",
    "discount_amount",
    "billed_amount",
    "terms_hash",
    "sign",
    "version_no",
)


def prepare_drafts(session: Session, drafts: Sequence[tuple[ContractTimeline, InvoiceDraft]]) -> PreparedDrafts:
    """The rows of planned documents and their lines, in the order their numbers are taken (contract,
    then billing date). Reads nothing. A reseller's consolidated document (``ConsolidatedDraft``) comes
    with its lead contract's timeline; each of its lines is stored under the contract it bills. Each row
    is built as its values (no dict a row) and converted a column at a time (``BulkStatement.shaped``)."""
    connection = session.connection()
    prepared = PreparedDrafts(connection.dialect.name)
    if not drafts:
        return prepared
    ordered = sorted(drafts, key=lambda d: (d[0].contract_id, d[1].billing_date))
    invoice_rows: list[list[Any]] = []
    line_rows: list[list[Any]] = []
    for timeline, draft in ordered:
        if draft.credits is not None:
            prepared.credits.append((len(prepared.numbering), timeline.contract_id, draft.credits))
        prepared.numbering.append((timeline.entity_id, draft.doc_type))
        contract_id = timeline.contract_id
        invoice_rows.append(
            [
                draft.doc_type,
                None,  # number, sequence_no, created_at, updated_at: write_prepared
                None,
                timeline.entity_id,
                timeline.bill_to_id(draft.version_no),  # a reseller's contract: the reseller
                contract_id,
                draft.version_no,
                draft.billing_date,
                draft.due_date,
                draft.currency,
                "draft",
                draft.subtotal,
                draft.discount_total,
                draft.invoice_total,
                ZERO,
                None,
                None,
            ]
        )
        line_contracts = draft.line_contracts if isinstance(draft, ConsolidatedDraft) else ()
        prepared.line_counts.append(len(draft.lines))
        for position, line in enumerate(draft.lines):
            line_rows.append(
                [
                    None,  # invoice_id: write_prepared
                    line_contracts[position] if line_contracts else contract_id,
                    position,
                    line.line_ref,
                    line.kind,
                    line.product_ref,
                    line.description,
                    line.slot_start,
                    line.slot_end - ONE_DAY,
                    line.slot_days,
                    line.span_start,
                    line.span_end - ONE_DAY,
                    line.billed_days,
                    line.quantity,
                    line.amount,
                    line.discount,
                    line.billed_amount,
                    line.terms_hash,
                    line.sign,
                    line.version_no,
                ]
            )
    prepared.invoice_keys = _INVOICE_KEYS
    prepared.invoices = BulkStatement.of(_INSERT_INVOICES, connection, _INVOICE_KEYS).shaped(invoice_rows)
    if line_rows:
        prepared.line_keys = _LINE_KEYS
        prepared.lines = BulkStatement.of(_INSERT_LINES, connection, _LINE_KEYS).shaped(line_rows)
    return prepared


def write_prepared(session: Session, prepared: PreparedDrafts) -> list[str]:
    """Insert prepared documents with their lines; numbers are taken in one block per entity and
    document type, in the order the rows come. Returns the numbers given. Run it under the entities'
    numbering locks (:func:`lock_numbering`)."""
    if not prepared.invoices:
        return []
    connection = session.connection()
    if connection.dialect.name != prepared.dialect:
        raise ValueError(f"rows prepared for {prepared.dialect} cannot be written to {connection.dialect.name}")
    wanted = Counter(prepared.numbering)
    prefixes = {
        entity_id: {"invoice": invoice_prefix, "credit_note": credit_prefix}
        for entity_id, invoice_prefix, credit_prefix in session.execute(
            select(LegalEntity.id, LegalEntity.invoice_prefix, LegalEntity.credit_note_prefix).where(
                LegalEntity.id.in_({e for e, _ in wanted})
            )
        )
    }
    next_no = _reserve_all(session, wanted)
    reserved = {key: (first, first + wanted[key]) for key, first in next_no.items()}

    invoices = BulkStatement.of(_INSERT_INVOICES, connection, prepared.invoice_keys)
    number_at, sequence_at = invoices.slot("number"), invoices.slot("sequence_no")
    created_at, updated_at = invoices.slot("created_at"), invoices.slot("updated_at")
    now = utcnow()
    stamp = invoices.convert("created_at", now), invoices.convert("updated_at", now)
    numbers: list[str] = []
    sequences: list[int] = []
    for row, key in zip(prepared.invoices, prepared.numbering, strict=True):
        seq = next_no[key]
        next_no[key] = seq + 1
        number = f"{prefixes[key[0]][key[1]]}{seq}"
        numbers.append(number)
        sequences.append(seq)
        row[number_at] = invoices.convert("number", number)
        row[sequence_at] = invoices.convert("sequence_no", seq)
        row[created_at], row[updated_at] = stamp
    run_calls(connection, [(True, invoices.sql, prepared.invoices)])
    if prepared.lines:
        ids = _ids_of_numbers(session, reserved)
        lines = BulkStatement.of(_INSERT_LINES, connection, prepared.line_keys)
        invoice_at = lines.slot("invoice_id")
        position = 0
        for key, seq, count in zip(prepared.numbering, sequences, prepared.line_counts, strict=True):
            invoice_id = lines.convert("invoice_id", ids[(key[0], key[1], seq)])
            for line in prepared.lines[position : position + count]:
                line[invoice_at] = invoice_id
            position += count
        run_calls(connection, [(True, lines.sql, prepared.lines)])
    if prepared.credits:
        _link_credits(session, prepared, sequences, reserved)
    return numbers


_CREDITED = table_of(Invoice).alias("credited")


def _link_credits(
    session: Session,
    prepared: PreparedDrafts,
    sequences: Sequence[int],
    reserved: dict[tuple[int, str], tuple[int, int]],
) -> None:
    """Each credit note written the invoice it credits: the contract's invoice of that billing date
    (one per contract and date among those that bill). Credit notes are few: one statement each."""
    ids = _ids_of_numbers(session, reserved)
    for position, contract_id, billing_date in prepared.credits:
        entity_id, doc_type = prepared.numbering[position]
        credited = (
            select(_CREDITED.c.id)
            .where(
                _CREDITED.c.contract_id == contract_id,
                _CREDITED.c.billing_date == billing_date,
                _CREDITED.c.doc_type == "invoice",
                _CREDITED.c.period_released.is_(False),
            )
            .scalar_subquery()
        )
        session.execute(
            update(Invoice)
            .where(Invoice.id == ids[(entity_id, doc_type, sequences[position])])
            .values(applies_to_id=credited)
            .execution_options(synchronize_session=False)
        )


def save_drafts(session: Session, drafts: Sequence[tuple[ContractTimeline, InvoiceDraft]]) -> list[str]:
    """Insert planned documents with their lines (:func:`prepare_drafts`, then :func:`write_prepared`)."""
    return write_prepared(session, prepare_drafts(session, drafts))


def _ids_of_numbers(
    session: Session, reserved: dict[tuple[int, str], tuple[int, int]]
) -> dict[tuple[int, str, int], int]:
    """Invoice ids by (entity, document type, sequence number) for the half-open number ranges (one query)."""
    rows = session.connection().execute(
        select(Invoice.id, Invoice.entity_id, Invoice.doc_type, Invoice.sequence_no).where(
            or_(
                *(
                    and_(
                        Invoice.entity_id == entity_id,
                        Invoice.doc_type == doc_type,
                        Invoice.sequence_no >= first,
                        Invoice.sequence_no < end,
                    )
                    for (entity_id, doc_type), (first, end) in sorted(reserved.items())
                )
            )
        )
    )
    return {(entity_id, doc_type, seq): invoice_id for invoice_id, entity_id, doc_type, seq in rows}


def _reserve_all(session: Session, wanted: dict[tuple[int, str], int]) -> dict[tuple[int, str], int]:
    """Take ``count`` consecutive numbers for each (entity, document type) in one statement; the first
    of each. Rolled back with the transaction, so no gap."""
    keys = sorted(wanted)
    step = case(
        *(((NumberSequence.entity_id == e) & (NumberSequence.doc_type == d), wanted[(e, d)]) for e, d in keys),
        else_=0,
    )
    rows = session.connection().execute(
        update(NumberSequence)
        .where(tuple_(NumberSequence.entity_id, NumberSequence.doc_type).in_(keys))
        .values(next_value=NumberSequence.next_value + step)
        .returning(NumberSequence.entity_id, NumberSequence.doc_type, NumberSequence.next_value)
    )
    first = {(int(e), str(d)): int(new_next) - wanted[(int(e), str(d))] for e, d, new_next in rows}
    if len(first) != len(keys):
        missing = [key for key in keys if key not in first]
        raise LookupError(f"no number sequence for (entity id, document type) {missing}")
    return first


def documents_query() -> Select:
    """Invoice and credit note headers with their contract, customer and entity refs; callers add
    filters, order and limits (the CLI's listing, the API's paged and entity-scoped one)."""
    return (
        select(
            Invoice.id,
            Invoice.number,
            Invoice.doc_type,
            Contract.contract_ref,
            Customer.customer_ref,
            LegalEntity.entity_ref,
            Invoice.billing_date,
            Invoice.due_date,
            Invoice.currency,
            Invoice.status,
            Invoice.subtotal,
            Invoice.discount_total,
            Invoice.invoice_total,
            Invoice.amount_paid,
        )
        .join(Contract, Contract.id == Invoice.contract_id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .join(LegalEntity, LegalEntity.id == Invoice.entity_id)
    )


def invoice_lines(session: Session, invoice_id: int) -> list[dict[str, Any]]:
    """A document's lines in their order."""
    return lines_of(session, [invoice_id]).get(invoice_id, [])


def lines_of(session: Session, invoice_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Documents' lines in their order, by invoice id (with what ``billing.invoice_view`` shows them by:
    their period's days and sign)."""
    if not invoice_ids:
        return {}
    rows = session.execute(
        select(
            InvoiceLine.invoice_id,
            InvoiceLine.line_ref,
            InvoiceLine.kind,
            InvoiceLine.product_ref,
            InvoiceLine.description,
            InvoiceLine.start_date,
            InvoiceLine.end_date,
            InvoiceLine.billed_days,
            InvoiceLine.quantity,
            InvoiceLine.amount,
            InvoiceLine.discount_amount,
            InvoiceLine.billed_amount,
            InvoiceLine.period_days,
            InvoiceLine.sign,
        )
        .where(InvoiceLine.invoice_id.in_(list(invoice_ids)))
        .order_by(InvoiceLine.invoice_id, InvoiceLine.position)
    )
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows.mappings():
        line = dict(row)
        out[int(line.pop("invoice_id"))].append(line)
    return dict(out)


def list_invoices(
    session: Session, *, contract_ref: str | None = None, status: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    query = documents_query().order_by(Invoice.entity_id, Invoice.doc_type, Invoice.sequence_no)
    if contract_ref:  # by its lines: a reseller's consolidated document bills several contracts
        billed = aliased(Contract)  # not the header's contract of the outer query
        billing = select(InvoiceLine.invoice_id).join(billed, billed.id == InvoiceLine.contract_id)
        query = query.where(Invoice.id.in_(billing.where(billed.contract_ref == contract_ref)))
    if status:
        query = query.where(Invoice.status == status)
    if limit:
        query = query.limit(limit)
    return [dict(r) for r in session.execute(query).mappings()]


def get_invoice(session: Session, number: str) -> dict[str, Any] | None:
    """One document with its lines, or None."""
    row = session.execute(documents_query().where(Invoice.number == number)).mappings().first()
    if row is None:
        return None
    return {**row, "lines": invoice_lines(session, row["id"])}


def open_invoices(
    session: Session, *, numbers: Iterable[str] = (), customer_refs: Iterable[str] = (), lock: bool = False
) -> list[dict[str, Any]]:
    """Sent or part-paid invoices named by number or belonging to the customers, oldest due first,
    with their open balance (for matching payments), id, total, amount paid and customer's id (for
    recording them).
    ``lock``: lock the invoices until commit (PostgreSQL; in id order, so two transactions locking
    the same invoices queue rather than deadlock), so the balances read stay current: payments can
    be matched and recorded on them without reading them again (SQLite's write transaction already
    holds the database lock)."""
    numbers, refs = list(set(numbers)), list(set(customer_refs))
    if not numbers and not refs:
        return []
    base = (
        select(
            Invoice.id,
            Invoice.number,
            Customer.customer_ref,
            Invoice.currency,
            Invoice.invoice_total,
            Invoice.amount_paid,
            Invoice.due_date,
            Invoice.customer_id,
        )
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(Invoice.doc_type == "invoice", Invoice.status.in_(("sent", "partially_paid")))
    )
    if lock:
        base = base.order_by(Invoice.id).with_for_update(of=Invoice)
    # One query per condition, each on its own index (an OR of the two makes SQLite scan every invoice).
    found: dict[int, Any] = {}
    if numbers:
        found.update((r.id, r) for r in session.execute(base.where(Invoice.number.in_(numbers))))
    if refs:
        found.update((r.id, r) for r in session.execute(base.where(Customer.customer_ref.in_(refs))))
    rows = sorted(found.values(), key=lambda r: (r.due_date, r.id))
    return [
        {
            "number": number,
            "customer_ref": customer_ref,
            "currency": currency,
            "open_amount": total - paid,
            "due_date": due_date,
            "id": iid,
            "invoice_total": total,
            "amount_paid": paid,
            "customer_id": customer_id,
        }
        for iid, number, customer_ref, currency, total, paid, due_date, customer_id in rows
    ]


def paid_amounts(session: Session, numbers: Iterable[str]) -> list[dict[str, Any]]:
    """Money received so far by these invoices (whatever their status but void), for refunds."""
    query = select(Invoice.number, Invoice.currency, Invoice.amount_paid).where(
        Invoice.number.in_(list(set(numbers))), Invoice.doc_type == "invoice", Invoice.status != "void"
    )
    return [{"number": r.number, "currency": r.currency, "amount_paid": r.amount_paid} for r in session.execute(query)]


def invoice_ids(session: Session, numbers: Iterable[str]) -> dict[str, int]:
    """Invoice ids by document number, for the numbers that exist."""
    query = select(Invoice.number, Invoice.id).where(Invoice.number.in_(list(numbers)))
    return {number: ident for number, ident in session.execute(query)}


def auto_charged(session: Session, invoice_ids: Sequence[int]) -> set[int]:
    """Of ``invoice_ids``, those whose contract version charges automatically (the others in Stripe
    are there for Stripe to e-mail, not to charge)."""
    ids = sorted(set(invoice_ids))
    if not ids:
        return set()
    session.flush()  # read on the driver (BulkStatement): what the session holds first
    connection = session.connection()
    statement = BulkStatement.of(_AUTO_CHARGED, connection, ("ids",))
    return {
        invoice_id
        for start in range(0, len(ids), 500)
        for (invoice_id,) in statement.run(connection, {"ids": ids[start : start + 500]})
    }


_AUTO_CHARGED = (
    select(table_of(Invoice).c.id)
    .join(
        table_of(ContractVersion),
        (table_of(ContractVersion).c.contract_id == table_of(Invoice).c.contract_id)
        & (table_of(ContractVersion).c.version_no == table_of(Invoice).c.version_no),
    )
    .where(
        table_of(Invoice).c.id.in_(bindparam("ids", expanding=True)),
        table_of(ContractVersion).c.auto_charge.is_(true()),
    )
)
