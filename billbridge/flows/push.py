"""Pushing approved documents out through the outbox: one handler per target, one relay, one flow.

``push_invoices(target)`` delivers the ``push.<target>`` messages that approving drafts queued.
A target declares how to build its connector and how to deliver a batch; what the relay does
(leases, backoff, parking fatal failures, recording external ids) is the same for all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from sqlalchemy.orm import Session

from billbridge.app.secrets import Sealer
from billbridge.billing.documents import OutboundDocument
from billbridge.connectors.base import PushResult
from billbridge.connectors.errors import Classified, ErrorKind, VendorError
from billbridge.errors import NotConfigured
from billbridge.flows.credentials import StoredTokens
from billbridge.flows.limits import no_slot, vendor_slot
from billbridge.flows.outbox_relay import Delivery, ExternalLink, Handler, OnDelivered, RelaySummary, relay
from billbridge.settings import Settings
from billbridge.store import external_refs, outbox
from billbridge.store.db import Store, open_store
from billbridge.store.invoices import auto_charged
from billbridge.store.outbound_documents import mark_sent, outbound_documents
from billbridge.store.outbox import Message
from billbridge.store.reference import customer_ids

if TYPE_CHECKING:
    from billbridge.flows.messages import MessagesSent
    from billbridge.vendors.quickbooks import QuickBooks
    from billbridge.vendors.registry import TokenVault
    from billbridge.vendors.stripe import Stripe


@dataclass(frozen=True)
class Target:
    """An outbox topic's delivery: its handler (built per run) and what a delivery changes here."""

    name: str
    batch: int  # documents claimed per delivery (the handler splits them into the vendor's batches)
    handler: Callable[[Store, Settings], tuple[Handler, Callable[[], None]]]  # (handler, close)
    on_delivered: OnDelivered | None = None


def token_vault(store: Store, settings: Settings) -> TokenVault:
    """Rotating OAuth tokens kept (sealed) in the store, for the vendors that rotate them (the sealing
    key is read, or made, only when a vendor asks for its tokens)."""

    def tokens(key: str, initial: str | None) -> StoredTokens:
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        return StoredTokens(store, key, Sealer.from_settings(secret, settings.data_dir), initial)

    return tokens


def quickbooks_connector(store: Store, settings: Settings) -> QuickBooks:
    """The QuickBooks connector of the configured company, its rotating tokens kept (sealed) in the store."""
    from billbridge.vendors import quickbooks

    return quickbooks.connect(settings, token_vault(store, settings))


def delivery(target: str, message: Message, result: PushResult) -> Delivery:
    """A write's ``PushResult`` (any target's) as the relay's outcome: linked when it is there, else the error."""
    if result.external_id is not None and result.status in ("created", "existing"):
        link = ExternalLink(target, result.doc_type, message.aggregate_id, result.external_id, result.sync_token)
        return Delivery(message.id, links=(link,), outcome=result.status)
    kind = ErrorKind.RETRIABLE if result.retriable else ErrorKind.FATAL
    return Delivery(message.id, error=Classified(kind, result.error or "refused"))


Loaded = TypeVar("Loaded")


def quickbooks_batches(
    store: Store,
    settings: Settings,
    *,
    load: Callable[[Session, Sequence[int]], Mapping[int, Loaded]],
    write: Callable[[QuickBooks, Sequence[Loaded], bool], list[PushResult]],
    gone: str,
    settle: Callable[[QuickBooks, Loaded, Delivery], Delivery] | None = None,
) -> tuple[Handler, Callable[[], None]]:
    """A QuickBooks relay handler for any outbox topic whose aggregates ``load`` reads from the store and
    ``write(connector, items, look_up_first)`` delivers (one ``PushResult`` each, in order).

    One connector per run, built on the first batch (a run with nothing queued makes no call at all);
    a message whose aggregate is gone is parked with ``gone``; messages claimed before (their outcome is
    unknown) are written with look-up first, fresh ones without (nothing to look up); ``settle``, when
    given, adds to each item's delivery what the write learnt beside its result."""
    if settings.quickbooks is None:  # said before anything is claimed
        raise NotConfigured("QuickBooks is not configured (BILLBRIDGE_QUICKBOOKS__CLIENT_ID, ...)")
    built: list[QuickBooks] = []

    def handle(messages: Sequence[Message]) -> list[Delivery]:
        if not built:
            built.append(quickbooks_connector(store, settings))
        connector = built[0]
        with store.read() as session:
            items = load(session, [m.aggregate_id for m in messages])
        out = [Delivery(m.id, error=Classified(ErrorKind.FATAL, gone)) for m in messages if m.aggregate_id not in items]
        tried = [m for m in messages if m.aggregate_id in items and m.attempts]
        fresh = [m for m in messages if m.aggregate_id in items and not m.attempts]
        for group, look_up in ((tried, True), (fresh, False)):
            if group:
                results = write(connector, [items[m.aggregate_id] for m in group], look_up)
                for message, item, result in zip(group, [items[m.aggregate_id] for m in group], results, strict=True):
                    done = delivery("quickbooks", message, result)
                    out.append(settle(connector, item, done) if settle is not None else done)
        return out

    def close() -> None:
        for connector in built:
            connector.close()

    return handle, close


@dataclass(frozen=True)
class _QuickBooksDocument:
    """A document on its way to QuickBooks with its customer: the store's id and, when recorded, the
    QuickBooks Id (a customer created under its clash name is read by that Id, not found by name)."""

    document: OutboundDocument
    customer_id: int | None
    recorded_customer: str | None


def _load_documents(session: Session, ids: Sequence[int]) -> dict[int, _QuickBooksDocument]:
    documents = outbound_documents(session, ids)
    refs = {d.customer_ref for d in documents.values()}
    customers = {ref: ident for ref, (ident, _) in customer_ids(session, refs).items()}
    recorded = external_refs.external_refs_of(session, "quickbooks", "customer", customers.values())
    out = {}
    for key, doc in documents.items():
        ident = customers.get(doc.customer_ref)
        known = recorded.get(ident) if ident is not None else None
        out[key] = _QuickBooksDocument(doc, ident, known[0] if known else None)
    return out


def _write_documents(connector: QuickBooks, items: Sequence[_QuickBooksDocument], look_up: bool) -> list[PushResult]:
    known = {i.document.customer_ref: i.recorded_customer for i in items if i.recorded_customer is not None}
    return connector.push_documents([i.document for i in items], look_up_first=look_up, recorded_customers=known)


def _record_renamed(connector: QuickBooks, item: _QuickBooksDocument, done: Delivery) -> Delivery:
    """A customer created under its clash name: its Id and name are recorded, so later runs read it by
    that Id instead of finding the clash again."""
    renamed = connector.renamed_customers.get(item.document.customer_ref)
    if done.error is not None or renamed is None or item.recorded_customer is not None or item.customer_id is None:
        return done
    ident, name = renamed
    link = ExternalLink("quickbooks", "customer", item.customer_id, ident, name=name)
    return replace(done, links=(*done.links, link))


def quickbooks_handler(store: Store, settings: Settings) -> tuple[Handler, Callable[[], None]]:
    """Invoices and credit notes into QuickBooks, 30 per batch call, each once (requestid, DocNumber)."""
    return quickbooks_batches(
        store,
        settings,
        load=_load_documents,
        write=_write_documents,
        gone="the document no longer exists",
        settle=_record_renamed,
    )


def stripe_connector(settings: Settings) -> Stripe:
    from billbridge.vendors import stripe

    return stripe.connect(settings)


def stripe_handler(store: Store, settings: Settings) -> tuple[Handler, Callable[[], None]]:
    """Auto-charge invoices into Stripe (customer, invoice, lines, finalize), one by one: Stripe has no
    batch. Every write carries the document's idempotency key; a re-claimed one is looked up first."""
    from billbridge.connectors.stripe.client import StripeConflict

    connector = stripe_connector(settings)
    # Customers ensured in this run, by what was ensured: each is searched (and checked) once per run,
    # not once per invoice (that was two calls of five per invoice).
    customers: dict[tuple[str, str, str | None, str], str] = {}

    def handle(messages: Sequence[Message]) -> list[Delivery]:
        with store.read() as session:
            documents = outbound_documents(session, [m.aggregate_id for m in messages])
        out = []
        for message in messages:
            doc = documents.get(message.aggregate_id)
            if doc is None:
                out.append(Delivery(message.id, error=Classified(ErrorKind.FATAL, "the document no longer exists")))
                continue
            try:
                who = (doc.customer_ref, doc.customer_name, doc.customer_email, doc.entity_ref)
                customer = customers.get(who)
                if customer is None:
                    customer = customers[who] = connector.ensure_customer(
                        doc.customer_ref, doc.customer_name, doc.customer_email, entity_ref=doc.entity_ref
                    )
                result = connector.push_invoice(doc, customer, look_up=message.attempts > 0)
            except VendorError as exc:
                retriable = exc.classified.kind == ErrorKind.RETRIABLE
                result = PushResult(
                    doc.number, doc.doc_type, "failed", error=exc.classified.reason, retriable=retriable
                )
            except (StripeConflict, ValueError) as exc:
                result = PushResult(doc.number, doc.doc_type, "failed", error=str(exc))
            out.append(delivery("stripe", message, result))
        return out

    return handle, lambda: None


def _sent(session: Session, delivered: Sequence[tuple[Message, Delivery]]) -> None:
    mark_sent(session, [message.aggregate_id for message, _ in delivered])


def _sent_and_collect(session: Session, delivered: Sequence[tuple[Message, Delivery]]) -> None:
    """In Stripe and finalized: sent, and (same transaction) the auto-charge ones queued for
    collection (the others, on the stripe channel, are Stripe's to e-mail and the customer's to pay)."""
    _sent(session, delivered)
    charged = auto_charged(session, [message.aggregate_id for message, _ in delivered])
    collect = []
    for message, delivery in delivered:
        if message.aggregate_id not in charged:
            continue
        [link] = delivery.links
        collect.append(
            {
                "topic": "collect.stripe",
                "aggregate_type": message.aggregate_type,
                "aggregate_id": message.aggregate_id,
                "dedupe_key": f"collect.stripe:{message.payload['number']}",
                "payload": {**message.payload, "stripe_invoice": link.external_id},
            }
        )
    outbox.enqueue_many(session, collect)


TARGETS: dict[str, Target] = {
    # Ten QuickBooks batches (30 each) per claim: the customers new to a run are looked up and created
    # 30 at a time across them, not a few per batch (bench_push, 3,000 invoices: 1.55x the fewest calls
    # with claims of 30, 1.10x with 300).
    "quickbooks": Target("quickbooks", 300, quickbooks_handler, _sent),
    "stripe": Target("stripe", 20, stripe_handler, _sent_and_collect),
}


def deliver(store: Store, settings: Settings, spec: Target, topic: str, *, limit: int | None = None) -> RelaySummary:
    """Relay what is due on ``topic`` through ``spec``'s handler, built for this run and closed after."""
    handler, close = spec.handler(store, settings)
    try:
        return relay(store, topic, handler, batch=spec.batch, limit=limit, on_delivered=spec.on_delivered)
    finally:
        close()


def push(store: Store, settings: Settings, target: str, *, limit: int | None = None) -> RelaySummary:
    """Deliver the queued pushes of ``target``; a delivered document is marked sent."""
    if target not in TARGETS:
        raise ValueError(f"unknown push target {target!r} (expected {', '.join(TARGETS)})")
    summary = deliver(store, settings, TARGETS[target], f"push.{target}", limit=limit)
    if summary.outcomes:  # documents issued: fees on what referred customers are invoiced accrue now
        from billbridge.flows.partner_fees import accrue_after  # it builds its Bills' target from here

        fees = accrue_after(store, settings, basis="billed")
        if fees.error is not None:
            summary.notes.append(f"partner fees not accrued (the next run accrues them): {fees.error}")
    return summary


def push_markdown(summary: RelaySummary) -> str:
    lines = [f"# Push: {summary.topic}", "", "| outcome | documents |", "|---|---:|"]
    lines += [f"| {outcome} | {n} |" for outcome, n in sorted(summary.outcomes.items())]
    if (held := summary.leased_text()) is not None:
        lines += ["", f"**Waiting:** {held}."]
    if summary.failures:
        lines += ["", "## Failures", "", "| message | error |", "|---|---|"]
        lines += [f"| {mid} | {error.replace('|', '/')} |" for mid, error in summary.failures[:200]]
    return "\n".join(lines) + "\n"


def push_and_send(
    store: Store,
    settings: Settings,
    target: str,
    *,
    slot: Callable[[str], AbstractContextManager[None]] = no_slot,
) -> tuple[RelaySummary, MessagesSent]:
    """Push ``target``'s queued documents (``slot`` held while talking to it), then send the messages
    due, among them the deliveries of the documents this push issued (committed with them). A send
    that fails leaves them queued and is reported: the push stands."""
    from billbridge.flows.messages import send_made  # flows.messages builds its vendors from here

    with slot(target):
        summary = push(store, settings, target)
    return summary, send_made(store, settings)


@flow(name="push_invoices")
def push_invoices(target: str = "quickbooks") -> dict[str, Any]:
    """Push approved invoices and credit notes to ``target`` and deliver the ones it issued to their
    customers; rerunning never sends one twice."""
    settings = Settings()
    store = open_store(settings.database)
    summary, sent = push_and_send(store, settings, target, slot=vendor_slot)
    create_markdown_artifact(
        push_markdown(summary) + sent.markdown(), key=f"push-{target}", description=f"Push to {target}"
    )
    return {"target": target, **summary.as_dict(), "messages": sent.as_dict()}
