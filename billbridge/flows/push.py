"""Pushing approved documents out through the outbox: one handler for every target, one relay, one flow.

``push_invoices(target)`` delivers the ``push.<target>`` messages that approving drafts queued.
Each target is the vendor registry's ``PushTarget`` (its writer, batch size, which documents it
takes, whether delivered invoices are collected); what the relay does (leases, backoff, parking
fatal failures, recording external ids) is the same for all. ``Target``, ``deliver`` and
``quickbooks_batches`` also serve other topics (partner fee Bills).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from sqlalchemy.orm import Session

from billbridge.billing.documents import OutboundDocument
from billbridge.connectors.base import PushResult
from billbridge.connectors.errors import Classified, ErrorKind
from billbridge.errors import NotConfigured
from billbridge.flows.credentials import StoredTokens
from billbridge.flows.limits import no_slot, vendor_slot
from billbridge.flows.outbox_relay import Delivery, ExternalLink, Handler, OnDelivered, RelaySummary, relay
from billbridge.secrets import Sealer
from billbridge.settings import Settings
from billbridge.store import external_refs, outbox
from billbridge.store.db import Store, open_store
from billbridge.store.invoices import auto_charged
from billbridge.store.outbound_documents import mark_sent, outbound_documents
from billbridge.store.outbox import Message
from billbridge.store.reference import customer_ids
from billbridge.vendors import registry
from billbridge.vendors.registry import DocumentWriter, TokenVault

if TYPE_CHECKING:
    from billbridge.flows.messages import MessagesSent
    from billbridge.vendors.quickbooks import QuickBooks
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
class _Document:
    """A document on its way to a push target with its customer: the store's id and, when recorded, the
    target's id of it (a customer created under another name is read by that id, not found by name)."""

    document: OutboundDocument
    customer_id: int | None
    recorded_customer: str | None


def _documents_loader(target: str) -> Callable[[Session, Sequence[int]], dict[int, _Document]]:
    def load(session: Session, ids: Sequence[int]) -> dict[int, _Document]:
        documents = outbound_documents(session, ids)
        refs = {d.customer_ref for d in documents.values()}
        customers = {ref: ident for ref, (ident, _) in customer_ids(session, refs).items()}
        recorded = external_refs.external_refs_of(session, target, "customer", customers.values())
        out = {}
        for key, doc in documents.items():
            ident = customers.get(doc.customer_ref)
            known = recorded.get(ident) if ident is not None else None
            out[key] = _Document(doc, ident, known[0] if known else None)
        return out

    return load


def document_handler(store: Store, settings: Settings, target: str) -> tuple[Handler, Callable[[], None]]:
    """The relay handler of ``push.<target>``, for any registered push target: its writer built on the
    first batch (a run with nothing queued builds nothing and makes no call), the documents read from
    the store, the ones claimed before (outcome unknown) written with look-up first, fresh ones
    without; a document that is gone is parked. A customer the target made under another name (a clash)
    is recorded with its id and name, so later runs read it by that id instead of finding the clash again."""
    spec = registry.vendor(target)
    push_spec = registry.push_target(target)
    if spec.settings_of(settings) is None:  # said before anything is claimed, by the builder's own NotConfigured
        push_spec.connect(settings, token_vault(store, settings)).close()
        raise NotConfigured(f"{spec.display} is not configured (BILLBRIDGE_{target.upper()}__...)")
    load = _documents_loader(target)
    built: list[DocumentWriter] = []

    def handle(messages: Sequence[Message]) -> list[Delivery]:
        if not built:
            built.append(push_spec.connect(settings, token_vault(store, settings)))
        writer = built[0]
        with store.read() as session:
            items = load(session, [m.aggregate_id for m in messages])
        gone = Classified(ErrorKind.FATAL, "the document no longer exists")
        out = [Delivery(m.id, error=gone) for m in messages if m.aggregate_id not in items]
        tried = [m for m in messages if m.aggregate_id in items and m.attempts]
        fresh = [m for m in messages if m.aggregate_id in items and not m.attempts]
        for group, look_up in ((tried, True), (fresh, False)):
            if not group:
                continue
            docs = [items[m.aggregate_id] for m in group]
            known = {i.document.customer_ref: i.recorded_customer for i in docs if i.recorded_customer is not None}
            results = writer.push_documents([i.document for i in docs], look_up_first=look_up, recorded_customers=known)
            for message, item, result in zip(group, docs, results, strict=True):
                out.append(_record_renamed(target, writer, item, delivery(target, message, result)))
        return out

    def close() -> None:
        for writer in built:
            writer.close()

    return handle, close


def _record_renamed(target: str, writer: DocumentWriter, item: _Document, done: Delivery) -> Delivery:
    renamed = writer.renamed_customers.get(item.document.customer_ref)
    if done.error is not None or renamed is None or item.recorded_customer is not None or item.customer_id is None:
        return done
    ident, name = renamed
    link = ExternalLink(target, "customer", item.customer_id, ident, name=name)
    return replace(done, links=(*done.links, link))


def stripe_connector(settings: Settings) -> Stripe:
    """The configured Stripe account (for collecting, pay links and tests; pushing goes through the registry)."""
    from billbridge.vendors import stripe

    return stripe.connect(settings)


def on_delivered(target: str) -> OnDelivered:
    """What a delivered push changes here, in the relay's transaction: the documents are sent and,
    for a target that collects (``PushTarget.collects``), the auto-charge invoices among them are
    queued on ``collect.<target>`` (the others, on its channel, are the target's to e-mail and the
    customer's to pay)."""
    collects = registry.push_target(target).collects

    def delivered(session: Session, done: Sequence[tuple[Message, Delivery]]) -> None:
        mark_sent(session, [message.aggregate_id for message, _ in done])
        if not collects:
            return
        charged = auto_charged(session, [message.aggregate_id for message, _ in done])
        collect = []
        for message, delivery in done:
            if message.aggregate_id not in charged:
                continue
            [link] = delivery.links
            collect.append(
                {
                    "topic": f"collect.{target}",
                    "aggregate_type": message.aggregate_type,
                    "aggregate_id": message.aggregate_id,
                    "dedupe_key": f"collect.{target}:{message.payload['number']}",
                    "payload": {**message.payload, f"{target}_invoice": link.external_id},
                }
            )
        outbox.enqueue_many(session, collect)

    return delivered


def target_of(name: str) -> Target:
    """The push target ``name`` of the registry as the relay delivers it (a ValueError for an unknown one)."""
    spec = registry.push_target(name)
    return Target(name, spec.batch, partial(document_handler, target=name), on_delivered(name))


def deliver(store: Store, settings: Settings, spec: Target, topic: str, *, limit: int | None = None) -> RelaySummary:
    """Relay what is due on ``topic`` through ``spec``'s handler, built for this run and closed after."""
    handler, close = spec.handler(store, settings)
    try:
        return relay(store, topic, handler, batch=spec.batch, limit=limit, on_delivered=spec.on_delivered)
    finally:
        close()


def push(store: Store, settings: Settings, target: str, *, limit: int | None = None) -> RelaySummary:
    """Deliver the queued pushes of ``target``; a delivered document is marked sent."""
    summary = deliver(store, settings, target_of(target), f"push.{target}", limit=limit)
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
