"""Payments: recording received payments with their allocations to invoices (in batches, exactly
once by payment ref), the review list, applying by hand, and taking back or redoing a payment that
changed at its source. The rules (what may be applied where) are the domain's, billing/allocation.py."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session

from billbridge.billing import allocation
from billbridge.billing.allocation import Balance
from billbridge.store import messages
from billbridge.store.bulk import BulkStatement, insert_rows
from billbridge.store.models import Customer, Invoice, Payment, PaymentAllocation, table_of, utcnow

ZERO = Decimal(0)


def lock_payment_source(session: Session, source: str) -> None:
    """Serialise the recording of one source's payments until commit, so two reconciliations of the
    same source never both take a payment as new (the second waits, then sees it recorded).
    SQLite needs nothing: the write transaction already holds the database lock."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"billbridge-payments:{source}".encode()) - 2**31  # a signed 32-bit advisory key
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


class PaymentIn(NamedTuple):
    """A payment to record, with its allocations to invoices (by number)."""

    payment_ref: str
    currency: str
    amount: Decimal
    received_on: date
    allocations: tuple[tuple[str, Decimal], ...] = ()
    customer_ref: str | None = None
    method: str | None = None
    reference: str | None = None
    review_reason: str | None = None  # why matching could not (fully) apply it: puts it on the review list
    source_version: str | None = None  # its version at the source (QuickBooks' SyncToken)


def record_payment(
    session: Session,
    *,
    payment_ref: str,
    currency: str,
    amount: Decimal,
    received_on: date,
    allocations: Sequence[tuple[str, Decimal]],
    customer_ref: str | None = None,
    method: str | None = None,
    reference: str | None = None,
) -> bool:
    """Record a payment and apply it to invoices (by number). A payment_ref seen before is ignored
    (returns False), so a replayed payment never counts twice. What is not allocated stays unapplied."""
    payment = PaymentIn(payment_ref, currency, amount, received_on, tuple(allocations), customer_ref, method, reference)
    return record_payments(session, [payment])[0]


_PAYMENTS = table_of(Payment)
_INVOICES = table_of(Invoice)
_CUSTOMERS = table_of(Customer)
# The payment's customer id and the allocation's payment id are looked up by the database, row by
# row inside the statement (an unknown customer ref, or none, is NULL), not by two more queries.
_PAYMENT_COLUMNS = (
    "payment_ref",
    "currency",
    "amount",
    "unapplied_amount",
    "received_on",
    "method",
    "reference",
    "created_at",
    "review_reason",
    "source_version",
)
_INSERT_PAYMENTS = insert_rows(
    _PAYMENTS,
    _PAYMENT_COLUMNS,
    customer_id=select(_CUSTOMERS.c.id).where(_CUSTOMERS.c.customer_ref == bindparam("customer_ref")).scalar_subquery(),
)
# The rows' keys in the statement's order: the customer's ref feeds the look-up above.
_PAYMENT_KEYS = ("payment_ref", "customer_ref", *_PAYMENT_COLUMNS[1:])
_INSERT_ALLOCATIONS = insert_rows(
    table_of(PaymentAllocation),
    ("invoice_id", "amount", "created_at"),
    payment_id=select(_PAYMENTS.c.id).where(_PAYMENTS.c.payment_ref == bindparam("payment_ref")).scalar_subquery(),
)
_ALLOCATION_KEYS = ("payment_ref", "invoice_id", "amount", "created_at")
_SET_PAID = (
    update(_INVOICES)
    .where(_INVOICES.c.id == bindparam("iid"))
    .values(amount_paid=bindparam("paid"), status=bindparam("new_status"), updated_at=bindparam("now"))
)
_PAID_KEYS = ("iid", "paid", "new_status", "now")
_KNOWN_REFS = select(_PAYMENTS.c.payment_ref).where(_PAYMENTS.c.payment_ref.in_(bindparam("refs", expanding=True)))
_PAYABLE = select(
    _INVOICES.c.id,
    _INVOICES.c.number,
    _INVOICES.c.currency,
    _INVOICES.c.invoice_total,
    _INVOICES.c.amount_paid,
    _INVOICES.c.status,
).where(_INVOICES.c.number.in_(bindparam("numbers", expanding=True)))
_PAYABLE_LOCKED = _PAYABLE.with_for_update()


def record_payments(
    session: Session,
    payments: Sequence[PaymentIn],
    *,
    refs_checked: bool = False,
    open_rows: Sequence[Mapping[str, Any]] = (),
    audiences: dict[int, messages.Audience] | None = None,
) -> list[bool]:
    """Batch form of :func:`record_payment`: a handful of statements for the whole batch (known refs,
    the invoices concerned, the new payments, their allocations, the invoice updates). Returns, per
    payment, whether it was recorded (False: its ref was seen before, in the store or the batch).
    ``refs_checked``: the caller read in this transaction, under :func:`lock_payment_source`, that
    none of the refs is recorded, and they are distinct (reconciliation does, before matching).
    ``open_rows``: :func:`open_invoices` rows read in this transaction with ``lock=True``: their
    balances are current (the invoices locked on PostgreSQL; SQLite's write transaction holds the
    database lock) and are not read again. Other invoices are read here, locked on PostgreSQL, as a
    concurrent transaction may be paying them. ``audiences``: who the receipts' customers' messages
    go to, as read earlier in the caller's run (messages.create's ``known``).
    Raises ValueError / LookupError / InvalidTransition for an allocation that cannot be applied."""
    connection = session.connection()
    if refs_checked:
        fresh, recorded = list(payments), [True] * len(payments)
    else:
        seen = known_payment_refs(session, [p.payment_ref for p in payments])
        fresh, recorded = [], []
        for p in payments:
            is_new = p.payment_ref not in seen
            recorded.append(is_new)
            if is_new:
                seen.add(p.payment_ref)
                fresh.append(p)
    if not fresh:
        return recorded
    numbers = {n for p in fresh for n, _ in p.allocations}
    invoices: dict[str, Balance] = {}
    billed: dict[str, tuple[int, str]] = {}  # invoice number -> its customer's (id, ref), where read
    if open_rows:
        # Open means sent or part paid, which take payments alike (lifecycle.status_after_payment).
        invoices = {
            r["number"]: Balance(r["id"], r["currency"], r["invoice_total"], r["amount_paid"], "sent")
            for r in open_rows
            if r["number"] in numbers
        }
        billed = {r["number"]: (r["customer_id"], r["customer_ref"]) for r in open_rows if r["number"] in numbers}
    missing = [n for n in numbers if n not in invoices]
    if missing:  # locked on PostgreSQL: a concurrent payment of the same invoice waits, then adds to ours
        query = _PAYABLE_LOCKED if connection.dialect.name == "postgresql" else _PAYABLE
        rows = BulkStatement.of(query, connection, ("numbers",)).run(connection, {"numbers": missing})
        invoices.update(
            (number, Balance(iid, currency, total, paid, status)) for iid, number, currency, total, paid, status in rows
        )
    now = utcnow()
    # Rows as lists of values in the statements' key order (_PAYMENT_KEYS, _ALLOCATION_KEYS, _PAID_KEYS):
    # a page's hundreds of rows are written without a dict each (BulkStatement.write_rows).
    payment_rows: list[list[Any]] = []
    allocations: list[list[Any]] = []
    left = []
    applied: list[tuple[tuple[int, str, Decimal], ...]] = []  # each payment's (invoice id, number, amount)
    for p in fresh:
        unapplied = allocation.apply_payment(p.payment_ref, p.currency, p.amount, p.allocations, invoices)
        left.append(unapplied)
        shares = tuple([(invoices[number].invoice_id, number, share) for number, share in p.allocations])
        applied.append(shares)
        allocations += [[p.payment_ref, invoice_id, share, now] for invoice_id, _, share in shares]
        payment_rows.append(
            [
                p.payment_ref,
                p.customer_ref,
                p.currency,
                p.amount,
                unapplied,
                p.received_on,
                p.method,
                p.reference,
                now,
                p.review_reason,
                p.source_version,
            ]
        )
    # One statement each for the page, rows read from arrays, on PostgreSQL (a statement a row cost 4-6x
    # the page's read, multi-row VALUES 1.6x to 3x this); executemany on SQLite (its fastest way).
    _, payment_ids = BulkStatement.of(_INSERT_PAYMENTS, connection, _PAYMENT_KEYS).write_rows_ids(
        connection, payment_rows, _PAYMENTS.c.id
    )
    if allocations:
        touched = {row[1] for row in allocations}
        BulkStatement.of(_INSERT_ALLOCATIONS, connection, _ALLOCATION_KEYS).write_rows(connection, allocations)
        paid_rows = [[v.invoice_id, v.paid, v.status, now] for v in invoices.values() if v.invoice_id in touched]
        BulkStatement.of(_SET_PAID, connection, _PAID_KEYS).write_rows(connection, paid_rows)  # one row an invoice
        # Applying a payment is the event of its receipt: made here, in the same transaction.
        # From what was computed here, not read back (store/messages.receipts_of_recorded).
        paying = [
            messages.RecordedPayment(
                p.payment_ref, p.amount, unapplied, p.received_on, shares, payment_id, _payer(p, billed)
            )
            for p, unapplied, shares, payment_id in zip(
                fresh, left, applied, payment_ids or [0] * len(fresh), strict=True
            )
            if shares and p.amount > 0 and p.method != "dispute"
        ]
        if paying:
            open_after = {v.invoice_id: v.total - v.paid for v in invoices.values() if v.invoice_id in touched}
            messages.receipts_of_recorded(session, paying, open_after, known=audiences)
    return recorded


def _payer(payment: PaymentIn, billed: Mapping[str, tuple[int, str]]) -> int | None:
    """The id of the customer a payment's receipt goes to, where the invoices read tell it: the
    payment's customer (the insert looks it up by ref) is its first invoice's when it names that
    customer or none (then the receipt goes to the invoice's customer). None: read it back."""
    customer = billed.get(payment.allocations[0][0])
    if customer is not None and payment.customer_ref in (None, customer[1]):
        return customer[0]
    return None


def known_payment_refs(session: Session, refs: Iterable[str]) -> set[str]:
    """Which of these payment refs are recorded already (one statement per reconciliation page)."""
    wanted = list(set(refs))
    if not wanted:
        return set()
    connection = session.connection()
    return {ref for (ref,) in BulkStatement.of(_KNOWN_REFS, connection, ("refs",)).run(connection, {"refs": wanted})}


def payment_ids(session: Session, refs: Iterable[str]) -> dict[str, int]:
    """Payment ids by payment ref, for the refs that are recorded."""
    query = select(Payment.payment_ref, Payment.id).where(Payment.payment_ref.in_(list(refs)))
    return {ref: ident for ref, ident in session.execute(query)}


def payments_to_review(session: Session, *, limit: int = 500) -> list[dict[str, Any]]:
    """The review list: payments matching could not (fully) apply, with the reason, oldest first,
    until a person deals with them (:func:`mark_reviewed`)."""
    query = (
        select(
            Payment.payment_ref,
            Customer.customer_ref,
            Payment.currency,
            Payment.amount,
            Payment.unapplied_amount,
            Payment.received_on,
            Payment.reference,
            Payment.review_reason,
        )
        .outerjoin(Customer, Customer.id == Payment.customer_id)
        .where(Payment.review_reason.is_not(None), Payment.reviewed.is_(None))
        .order_by(Payment.received_on, Payment.id)
        .limit(limit)
    )
    return [dict(row._mapping) for row in session.execute(query)]


def mark_reviewed(session: Session, payment_ref: str, note: str) -> None:
    """Take a payment off the review list, saying how a person dealt with it (kept with the payment)."""
    if not note.strip():
        raise ValueError("say how the payment was dealt with (the note is kept with it)")
    payment = _locked_payment(session, payment_ref)
    if payment.review_reason is None or payment.reviewed is not None:
        raise ValueError(f"payment {payment_ref} is not on the review list")
    payment.reviewed = note.strip()


def _locked_payment(session: Session, payment_ref: str) -> Payment:
    """A recorded payment, locked for this transaction (on PostgreSQL)."""
    payment = session.scalar(select(Payment).where(Payment.payment_ref == payment_ref).with_for_update())
    if payment is None:
        raise LookupError(f"no payment {payment_ref!r} (payment refs read source:id, e.g. stripe:ch_...)")
    return payment


def _balance(invoice: Invoice) -> Balance:
    return Balance(invoice.id, invoice.currency, invoice.invoice_total, invoice.amount_paid, invoice.status)


def _store_balance(invoice: Invoice, balance: Balance) -> None:
    invoice.amount_paid, invoice.status = balance.paid, balance.status


def _pay(invoice: Invoice, change: Decimal) -> None:
    """``change`` more (or, negative, less) received by ``invoice``, as the domain says (allocation.change_paid)."""
    balance = _balance(invoice)
    allocation.change_paid(balance, change)
    _store_balance(invoice, balance)


def apply_by_hand(
    session: Session, payment_ref: str, number: str, amount: Decimal | None = None
) -> tuple[PaymentIn, Decimal, bool]:
    """A person applies a recorded payment's unapplied money to open invoice ``number``: ``amount``,
    or as much as both have. Returns the payment as it stands now (all its allocations), the amount
    applied, and whether it was applied to invoices before (so already queued for other books). A
    payment with nothing left unapplied comes off the review list, the application noted.
    Raises LookupError / ValueError, naming the payment or the invoice, for what cannot be applied."""
    payment = _locked_payment(session, payment_ref)
    invoice = session.scalar(
        select(Invoice).where(Invoice.number == number, Invoice.doc_type == "invoice").with_for_update()
    )
    if invoice is None:
        raise LookupError(f"no invoice numbered {number!r}")
    share = allocation.by_hand(
        payment_ref, payment.currency, payment.amount, payment.unapplied_amount, number, _balance(invoice), amount
    )
    before = session.scalars(select(PaymentAllocation).where(PaymentAllocation.payment_id == payment.id)).all()
    existing = next((a for a in before if a.invoice_id == invoice.id), None)
    if existing is None:
        session.add(PaymentAllocation(payment_id=payment.id, invoice_id=invoice.id, amount=share))
    else:
        existing.amount += share
    _pay(invoice, share)
    payment.unapplied_amount -= share
    if payment.customer_id is None:  # the person says whose it is
        payment.customer_id = invoice.customer_id
    if payment.unapplied_amount == 0 and payment.review_reason is not None and payment.reviewed is None:
        payment.reviewed = f"applied by hand to {number}"
    session.flush()
    # The application's receipt, with it: the payment's first, or one per later application by hand.
    event = None if not before else f"receipt:{payment.id}:{number}:{existing.amount if existing else share}"
    messages.receipts(session, [payment.id], event=event)
    allocations = [
        (str(n), a)
        for n, a in session.execute(
            select(Invoice.number, PaymentAllocation.amount)
            .join(Invoice, Invoice.id == PaymentAllocation.invoice_id)
            .where(PaymentAllocation.payment_id == payment.id)
            .order_by(PaymentAllocation.id)
        )
    ]
    customer = session.get(Customer, payment.customer_id) if payment.customer_id is not None else None
    now = PaymentIn(
        payment.payment_ref,
        payment.currency,
        payment.amount,
        payment.received_on,
        tuple(allocations),
        customer.customer_ref if customer else None,
        payment.method,
        payment.reference,
    )
    return now, share, bool(before)


def source_versions(session: Session, refs: Iterable[str]) -> dict[str, str | None]:
    """The version at its source each of these recorded payments was recorded at (None: not known)."""
    query = select(Payment.payment_ref, Payment.source_version).where(Payment.payment_ref.in_(list(set(refs))))
    return {ref: version for ref, version in session.execute(query)}


def undo_payment(session: Session, payment_ref: str) -> None:
    """Take back what a recorded payment applied, because it changed at its source (edited, voided):
    its invoices open again by what it gave them and its allocations go, before :func:`redo_payment`
    records it as it now is (in the same transaction)."""
    payment = _locked_payment(session, payment_ref)
    for applied in session.scalars(select(PaymentAllocation).where(PaymentAllocation.payment_id == payment.id)):
        invoice = session.scalar(select(Invoice).where(Invoice.id == applied.invoice_id).with_for_update())
        if invoice is None:  # the foreign key makes this impossible
            raise LookupError(f"payment {payment_ref}: its allocation's invoice {applied.invoice_id} is gone")
        _pay(invoice, -applied.amount)
        session.delete(applied)
    payment.unapplied_amount = payment.amount
    session.flush()


def redo_payment(session: Session, payment: PaymentIn) -> None:
    """Record a payment undone by :func:`undo_payment` as it now is at its source: amount, date,
    allocations (to open invoices, as matched), review reason and version."""
    row = _locked_payment(session, payment.payment_ref)
    allocation.allocated(payment.payment_ref, payment.amount, payment.allocations)
    numbers = list(dict.fromkeys(n for n, _ in payment.allocations))
    found = {i.number: i for i in session.scalars(select(Invoice).where(Invoice.number.in_(numbers)).with_for_update())}
    balances = {number: _balance(invoice) for number, invoice in found.items()}
    unapplied = allocation.apply_payment(
        payment.payment_ref, payment.currency, payment.amount, payment.allocations, balances, redone=True
    )
    for number, balance in balances.items():
        _store_balance(found[number], balance)
    for number, share in payment.allocations:
        session.add(PaymentAllocation(payment_id=row.id, invoice_id=found[number].id, amount=share))
    row.amount, row.received_on, row.currency = payment.amount, payment.received_on, payment.currency
    row.unapplied_amount = unapplied
    row.review_reason, row.reviewed = payment.review_reason, None
    row.source_version = payment.source_version
    session.flush()


def zero_payment(session: Session, payment_ref: str, version: str) -> None:
    """A payment deleted at its source, after :func:`undo_payment`: nothing was received. Kept, at
    amount 0, so its ref is never recorded again, with the version that says why."""
    row = _locked_payment(session, payment_ref)
    row.amount = row.unapplied_amount = ZERO
    row.review_reason, row.reviewed, row.source_version = None, None, version
