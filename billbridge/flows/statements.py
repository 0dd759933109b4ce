"""Statements of account: what a customer has open as of a day (open invoices after partial payments,
credits, recent payments, aging), sent as a ``statement`` message through the messages machinery.

A statement is made once per customer and day (event ``statement:<customer id>:<day>``): the request
commits the message, with the statement's content fixed in it, and its outbox row together; the relay
sends it like every message (deterministic Message-ID, ``sending`` before DATA), so asking again for
the same customer and day sends nothing twice. A customer without a billing contact gets a message
that waits visibly (``waiting_contact``), one whose contacts opted out of statements ``opted_out``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from sqlalchemy.orm import Session

from billbridge.billing.statements import Statement, statement
from billbridge.flows.message_templates import TemplateDir, template_dir
from billbridge.flows.messages import rendered, send_messages
from billbridge.flows.outbox_relay import RelaySummary
from billbridge.mapping.messages import Rendered
from billbridge.settings import Settings
from billbridge.store import messages as sql
from billbridge.store.db import Store, open_store


@dataclass
class StatementSummary:
    """What a request made: messages by state, customers asked for again (nothing new), errors."""

    created: Counter[str] = field(default_factory=Counter)
    already: list[str] = field(default_factory=list)  # customers whose statement of the day exists
    nothing_open: list[str] = field(default_factory=list)  # --all: customers with nothing open on the day
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": dict(self.created),
            "already": self.already,
            "nothing_open": self.nothing_open,
            "errors": self.errors,
        }


def statement_of(session: Session, customer_id: int, as_of: date, payment_days: int) -> Statement:
    """A customer's statement as of ``as_of`` from what the store holds."""
    items, payments = sql.statement_items(session, customer_id, as_of, payment_days)
    return statement(items, payments, as_of, payment_days=payment_days)


def request_statements(
    store: Store, customers: Sequence[str] | None, as_of: date, *, payment_days: int
) -> StatementSummary:
    """Make the statement message of each customer (by ref; None: every customer with something
    open on the day), each once per day, queued on the outbox in the same transaction. An unknown
    customer is reported by its ref and the others go on. A statement another request made meanwhile
    (two runs at once) counts as made before: nothing new, no error."""
    summary = StatementSummary()
    with store.write() as session:
        if customers is None:
            chosen = sql.customers_with_open_items(session, as_of)
        else:
            chosen = []
            for ref in dict.fromkeys(customers):
                customer_id = sql.customer_id_of(session, ref)
                if customer_id is None:
                    summary.errors.append(f"customer {ref}: no such customer (billbridge contracts list shows them)")
                else:
                    chosen.append((customer_id, ref))
        existing = sql.existing_keys(session, [sql.statement_key(cid, as_of) for cid, _ in chosen])
        drafts = []
        for customer_id, ref in chosen:
            if sql.statement_key(customer_id, as_of) in existing:
                summary.already.append(ref)
                continue
            made = statement_of(session, customer_id, as_of, payment_days)
            if customers is None and not made.has_open:
                summary.nothing_open.append(ref)
                continue
            drafts.append(
                sql.MessageDraft(
                    sql.statement_key(customer_id, as_of),
                    "statement",
                    customer_id,
                    as_of,
                    details={"statement": made.as_details()},
                )
            )
        taken: list[str] = []  # made by another request at the same time (PostgreSQL), since our look-up
        summary.created = sql.create(session, drafts, taken=taken)
        refs = {sql.statement_key(customer_id, as_of): ref for customer_id, ref in chosen}
        summary.already += [refs[key] for key in taken]
    return summary


def preview_statement(
    store: Store, customer: str, as_of: date, *, payment_days: int, files: TemplateDir | None = None
) -> tuple[dict[str, Any], Rendered]:
    """The statement a customer would get as of ``as_of``, rendered, with its recipients; nothing is
    saved. Raises LookupError for an unknown customer."""
    with store.read() as session:
        customer_id = sql.customer_id_of(session, customer)
        if customer_id is None:
            raise LookupError(f"customer {customer}: no such customer")
        made = statement_of(session, customer_id, as_of, payment_days)
        context = sql.statement_preview_context(session, customer_id, as_of, {"statement": made.as_details()})
    return context, rendered(context, files=files)


def statements_markdown(as_of: date, made: StatementSummary, sent: RelaySummary | None) -> str:
    """The flow's artifact: statements made by state, those made before, sends by kind, failures."""
    lines = [f"# Statements of account as of {as_of}", "", "| made | count |", "|---|---|"]
    lines += [f"| {key} | {count} |" for key, count in sorted(made.created.items())]
    if made.already:
        lines += ["", f"Made before (not sent again): {len(made.already)}"]
    if sent is not None:
        lines += ["", "| sent | count |", "|---|---|"]
        lines += [f"| {key} | {count} |" for key, count in sorted(sent.outcomes.items())]
        lines += [f"- message {mid}: {error}" for mid, error in sent.failures[:20]]
    lines += [f"- {error}" for error in made.errors[:20]]
    return "\n".join(lines) + "\n"


@flow(name="send_statements")
def send_statements(as_of: date | None = None, customers: list[str] | None = None) -> dict[str, Any]:
    """Statements of account as of the day (default today) for these customers, or every customer
    with something open, each once per customer and day, sent through SMTP when it is configured."""
    settings = Settings()
    template_dir(settings.message_templates_dir)  # a broken template file stops the run before anything is made
    store = open_store(settings.database)
    day = as_of or date.today()
    made = request_statements(store, customers, day, payment_days=settings.statement_payment_days)
    sent = send_messages(store, settings, today=day) if settings.smtp is not None else None
    create_markdown_artifact(
        statements_markdown(day, made, sent), key="send-statements", description="Statements of account"
    )
    return {"requested": made.as_dict(), "sent": sent.as_dict() if sent else None}
