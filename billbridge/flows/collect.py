"""Collecting auto-charge invoices: charge the customer's default payment method in Stripe.

``collect.stripe`` messages are queued when an auto-charge invoice reaches Stripe. A decline leaves
the invoice open; the message shows the decline reason and comes back on the dunning schedule,
with a new idempotency key per attempt (Stripe remembers a decline under its key). After the last
attempt it is parked for a person. Payments themselves are recorded by reconciliation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from sqlalchemy.orm import Session

from billbridge.connectors.errors import Classified, ErrorKind, VendorError
from billbridge.flows.limits import vendor_slot
from billbridge.flows.messages import dunning_draft
from billbridge.flows.outbox_relay import Delivery, Handler, RelaySummary, relay
from billbridge.flows.push import push_markdown, stripe_connector
from billbridge.settings import Settings
from billbridge.store import messages
from billbridge.store.db import Store, open_store
from billbridge.store.models import utcnow
from billbridge.store.outbox import Message

DUNNING = (timedelta(days=1), timedelta(days=3), timedelta(days=5), timedelta(days=7))
"""Waits after the 1st, 2nd, ... decline; after the last, a person decides."""


def charge_key(number: str, attempt: int) -> str:
    return f"billbridge-{number}-charge-{attempt}"


def stripe_collector(settings: Settings) -> Handler:
    connector = stripe_connector(settings)

    def handle(messages: Sequence[Message]) -> list[Delivery]:
        out = []
        for message in messages:
            number, invoice = message.payload["number"], message.payload["stripe_invoice"]
            try:
                outcome = connector.charge_invoice(invoice, charge_key(number, message.attempts))
            except VendorError as exc:
                out.append(Delivery(message.id, error=exc.classified))
                continue
            except ValueError as exc:  # void, or otherwise not payable any more
                out.append(Delivery(message.id, error=Classified(ErrorKind.FATAL, str(exc))))
                continue
            if outcome.status == "paid":
                out.append(Delivery(message.id, outcome="charged"))
            elif outcome.status == "pending":
                out.append(Delivery(message.id, outcome="pending"))
            else:
                reason = f"declined ({outcome.decline_code or 'card_error'}): {outcome.message or ''}".strip()
                last = message.attempts >= len(DUNNING)
                kind = ErrorKind.FATAL if last else ErrorKind.RETRIABLE
                wait = None if last else DUNNING[message.attempts]
                out.append(Delivery(message.id, error=Classified(kind, reason), outcome="declined", retry_in=wait))
        return out

    return handle


def _declined(session: Session, failed: Sequence[tuple[Message, Delivery]]) -> None:
    """A declined charge's dunning notice, made in the transaction recording the decline: once per
    try, however the run ends after (the relay sends it, this run or the next)."""
    declines = [(m, d) for m, d in failed if d.outcome == "declined" and d.error is not None]
    if not declines:
        return
    customers = messages.customers_of(session, [m.aggregate_id for m, _ in declines])
    today = utcnow().date()
    messages.create(
        session,
        [
            dunning_draft(
                m.aggregate_id,
                customers[m.aggregate_id],
                m.attempts + 1,  # the claim counted this try: the message's attempts after it
                d.error.reason,
                final=d.error.kind == ErrorKind.FATAL,  # the last try: parked for a person
                as_of=today,
            )
            for m, d in declines
            if d.error is not None and m.aggregate_id in customers
        ],
    )


def collect(store: Store, settings: Settings, *, limit: int | None = None) -> RelaySummary:
    """Charge what is due; a decline's dunning notice is made with it (sent by the next message relay)."""
    return relay(store, "collect.stripe", stripe_collector(settings), batch=20, limit=limit, on_failed=_declined)


@flow(name="collect_payments")
def collect_payments() -> dict[str, Any]:
    """Charge the auto-charge invoices that are due; declines wait for their next dunning date."""
    settings = Settings()
    store = open_store(settings.database)
    with vendor_slot("stripe"):
        summary = collect(store, settings)
    create_markdown_artifact(push_markdown(summary), key="collect-stripe", description="Auto-charge")
    return summary.as_dict()
