"""Payments collected in Stripe, entered in QuickBooks against the invoices they paid there.

The books live in QuickBooks: an invoice paid by card in Stripe must not stay open in its accounts
receivable. Reconciliation queues a ``mirror.quickbooks`` message in the transaction that records a
Stripe payment applied to our invoices (``queue_mirrors``); this relay enters it as a QuickBooks
Payment linked to those invoices, once: its requestid is deterministic, a message claimed before is
looked up by the payment's PrivateNote first, and QuickBooks' own payment pull recognises that note
and does not record the payment a second time (mapping/quickbooks.py ``mirrored_from``).

Later changes to such a payment are made to that QuickBooks Payment too (``record_amendments``):
a refund (or a lost dispute) takes money back from its invoice here, which opens again, so the
same amount comes off the Payment's line and total there; unapplied money a person applies by hand
(``queue_application``) becomes a line there too. The Payment's PrivateNote lists the changes made
to it, so a retry never makes one twice. What waits, in which order, and what each change is are
the domain's decisions (billing/mirroring.py); this module reads, calls the connector and reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from billbridge.billing import mirroring
from billbridge.billing.documents import IncomingPayment
from billbridge.connectors.errors import Classified, ErrorKind, VendorError
from billbridge.flows.outbox_relay import Delivery, Handler, RelaySummary, relay
from billbridge.settings import Settings
from billbridge.store import external_refs, outbox
from billbridge.store.db import Store
from billbridge.store.invoices import invoice_ids
from billbridge.store.outbound_documents import outbound_documents
from billbridge.store.outbox import Message
from billbridge.store.payments import PaymentIn, payment_ids
from billbridge.vendors.registry import push_target

MIRRORS_TO = "quickbooks"
"""The ledger payments received elsewhere are entered in: the one whose payment entries this module
writes (``quickbooks_payments_handler``); flows that mirror read it here, not by name."""
TOPIC = f"mirror.{MIRRORS_TO}"
BATCH = 30  # one QuickBooks batch call


def mirror_targets(settings: Settings, source: str) -> tuple[str, ...]:
    """Where payments from ``source`` are entered too: the configured push targets that mirror payments
    (the registry's ``PushTarget.mirrors``: QuickBooks, the ledger of every invoice pushed there)."""
    return tuple(t for t in settings.push_targets if t != source and push_target(t).mirrors)


def queue_mirrors(
    session: Session,
    source: str,
    recorded: Sequence[PaymentIn],
    targets: Sequence[str],
    refund_of: Mapping[str, str] | None = None,
) -> int:
    """Queue the just-recorded payments that paid our invoices, and the refunds that took money back
    from them, for entry in ``targets`` (same transaction). ``refund_of``: a refund's payment ref ->
    the vendor ref of the payment it refunds (a refund without one stays with its source)."""
    if MIRRORS_TO not in targets:
        return 0
    refund_of = refund_of or {}
    applied = [p for p in recorded if mirroring.to_enter(p.amount, bool(p.allocations), p.payment_ref in refund_of)]
    ids = payment_ids(session, [p.payment_ref for p in applied])
    queued = 0
    for payment in applied:
        payload = _payload(source, payment, payment.amount, payment.allocations)
        if payment.amount < 0:
            payload["refund_of"] = refund_of[payment.payment_ref]
        queued += outbox.enqueue(
            session,
            topic=TOPIC,
            aggregate_type="payment",
            aggregate_id=ids[payment.payment_ref],
            dedupe_key=f"{TOPIC}:{payment.payment_ref}",
            payload=payload,
        )
    return queued


def queue_application(
    session: Session, source: str, payment: PaymentIn, number: str, share: Decimal, targets: Sequence[str]
) -> int:
    """Queue money a person applied by hand to invoice ``number``, from a payment entered in
    ``targets`` before (same transaction): the entry there gets the same application."""
    if MIRRORS_TO not in targets:
        return 0
    (payment_id,) = payment_ids(session, [payment.payment_ref]).values()
    applied_now = sum((a for n, a in payment.allocations if n == number), Decimal(0))
    return outbox.enqueue(
        session,
        topic=TOPIC,
        aggregate_type="payment",
        aggregate_id=payment_id,
        dedupe_key=f"{TOPIC}:{payment.payment_ref}:applied:{number}:{applied_now}",  # one per application
        payload=_payload(source, payment, share, [(number, share)]) | {"amends": payment.payment_ref},
    )


def _payload(
    source: str, payment: PaymentIn, amount: Decimal, allocations: Sequence[tuple[str, Decimal]]
) -> dict[str, Any]:
    """A message's payment: what ``_incoming`` reads back (the vendor's ref, without our source prefix)."""
    return {
        "source": source,
        "payment_ref": payment.payment_ref.removeprefix(f"{source}:"),
        "currency": payment.currency,
        "amount": str(amount),
        "received_on": payment.received_on.isoformat(),
        "customer_ref": payment.customer_ref,
        "allocations": [[number, str(share)] for number, share in allocations],
        "method": payment.method,
        "reference": payment.reference,
    }


def _incoming(payload: dict[str, Any]) -> IncomingPayment:
    numbers, amounts = zip(*payload["allocations"], strict=True)
    return IncomingPayment(
        source=payload["source"],
        payment_ref=payload["payment_ref"],
        currency=payload["currency"],
        amount=Decimal(payload["amount"]),
        received_on=date.fromisoformat(payload["received_on"]),
        customer_ref=payload.get("customer_ref"),
        invoice_numbers=tuple(numbers),
        invoice_amounts=tuple(Decimal(a) for a in amounts),
        method=payload.get("method"),
        reference=payload.get("reference"),
    )


def _amends(payload: dict[str, Any]) -> str:
    """Our ref of the payment a change message changes: a refund names the vendor's charge it refunds."""
    return str(payload["amends"]) if "amends" in payload else f"{payload['source']}:{payload['refund_of']}"


def _waiting(message: Message, waiting: mirroring.Waiting) -> Delivery:
    return Delivery(message.id, error=Classified(ErrorKind.RETRIABLE, waiting.reason), outcome="waiting")


def quickbooks_payments_handler(store: Store, settings: Settings) -> tuple[Handler, Callable[[], None]]:
    """Enter a batch of mirrored payments (customers found or made, then one batch call of Payments),
    then make the batch's changes (refunds, applications by hand) to the Payments they change."""
    from billbridge.flows.push import delivery, quickbooks_connector
    from billbridge.mapping.quickbooks import customer_spec
    from billbridge.vendors.quickbooks import AmendmentToRecord, PaymentToRecord, QuickBooksWriteError

    connector = quickbooks_connector(store, settings)

    def handle(messages: Sequence[Message]) -> list[Delivery]:
        payments = {m.id: _incoming(m.payload) for m in messages}
        numbers = {n for p in payments.values() for n in p.invoice_numbers}
        # A change's message -> our ref of the payment it changes (a refund names the vendor's charge).
        amended = {m.id: _amends(m.payload) for m in messages if "refund_of" in m.payload or "amends" in m.payload}
        with store.read() as session:
            ids = invoice_ids(session, numbers)
            in_qbo = {n: external_refs.get_external_id(session, "quickbooks", "invoice", i) for n, i in ids.items()}
            documents = outbound_documents(session, sorted(ids.values()))
            # our payment ref -> the QuickBooks Payment it was entered as (this batch's entries join below)
            entered = {
                ref: str(qbo_id)
                for ref, pid in payment_ids(session, set(amended.values())).items()
                if (qbo_id := external_refs.get_external_id(session, "quickbooks", "payment", pid)) is not None
            }
        out: list[Delivery] = []
        ready: list[Message] = []
        for message in messages:
            waiting = mirroring.waiting_for_invoices(payments[message.id], in_qbo)
            if waiting is not None:  # pushed later (or parked with an error there): try again
                out.append(_waiting(message, waiting))
            else:
                ready.append(message)

        def enter(ready: Sequence[Message]) -> list[Delivery]:
            if not ready:
                return []
            specs = {}
            for message in ready:
                doc = documents[ids[payments[message.id].invoice_numbers[0]]]
                specs[doc.customer_ref] = customer_spec(doc)
            try:
                customers = connector.ensure_customers(list(specs.values()))
            except VendorError as exc:
                return [Delivery(m.id, error=exc.classified) for m in ready]
            except QuickBooksWriteError as exc:
                error = Classified(ErrorKind.RETRIABLE, f"customer not in QuickBooks: {exc}")
                return [Delivery(m.id, error=error) for m in ready]
            items = []
            for message in ready:
                payment = payments[message.id]
                customer = documents[ids[payment.invoice_numbers[0]]].customer_ref
                qbo_invoices = {n: str(in_qbo[n]) for n in payment.invoice_numbers}
                items.append(PaymentToRecord(payment, customers[customer], qbo_invoices))
            try:
                results = connector.record_payments(items, look_up_first=any(m.attempts for m in ready))
            except VendorError as exc:
                return [Delivery(m.id, error=exc.classified) for m in ready]
            for message, result in zip(ready, results, strict=True):
                if result.external_id is not None:
                    entered[f"{message.payload['source']}:{message.payload['payment_ref']}"] = result.external_id
            return [delivery("quickbooks", m, result) for m, result in zip(ready, results, strict=True)]

        def amend(ready: Sequence[Message]) -> list[Delivery]:
            out: list[Delivery] = []
            items: list[AmendmentToRecord] = []
            changes: list[mirroring.Change] = []
            sent: list[Message] = []
            for message in ready:
                planned = mirroring.change(
                    message.id,
                    payments[message.id],
                    amended[message.id],
                    refund="refund_of" in message.payload,
                    entered=entered,
                    in_books=in_qbo,
                )
                if isinstance(planned, mirroring.Waiting):
                    out.append(_waiting(message, planned))
                    continue
                items.append(AmendmentToRecord(planned.key, planned.entry, planned.lines, planned.total_change))
                changes.append(planned)
                sent.append(message)
            if not items:
                return out
            try:
                results = connector.record_amendments(items)
            except VendorError as exc:
                return out + [Delivery(m.id, error=exc.classified) for m in sent]
            for message, planned, result in zip(sent, changes, results, strict=True):
                kind, said = mirroring.change_outcome(planned.made, result.status, result.retriable, result.error)
                if kind in ("retriable", "fatal"):
                    error_kind = ErrorKind.RETRIABLE if kind == "retriable" else ErrorKind.FATAL
                    out.append(Delivery(message.id, error=Classified(error_kind, said)))
                else:  # made, or made before (no link of its own: the Payment is the changed payment's)
                    out.append(Delivery(message.id, outcome=said))
            return out

        by_id = {m.id: m for m in ready}
        entries, changed = mirroring.entries_first([m.id for m in ready], amended)
        out += enter([by_id[i] for i in entries])
        return out + amend([by_id[i] for i in changed])

    return handle, connector.close


def mirror_payments(store: Store, settings: Settings, *, limit: int | None = None) -> RelaySummary:
    """Deliver the queued ``mirror.quickbooks`` payments."""
    handler, close = quickbooks_payments_handler(store, settings)
    try:
        return relay(store, TOPIC, handler, batch=BATCH, limit=limit)
    finally:
        close()
