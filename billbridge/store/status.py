"""What an operator asks first: how much is in the store, what is waiting or failing, when each
source last synced. Counts are SQL aggregates; open money is summed here (money is stored exact,
as text, so the database cannot add it)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billbridge.billing import lifecycle
from billbridge.store import external_refs, messages
from billbridge.store.models import (
    Contract,
    Customer,
    Invoice,
    OutboxMessage,
    Payment,
    QuarantinedRecord,
    SyncCursor,
)
from billbridge.store.outbox import is_leased, is_parked
from billbridge.store.partner_models import Partner, PartnerStatement


def overview(session: Session, today: date, *, errors: int = 5) -> dict[str, Any]:
    """Counts and open balances for ``billbridge status`` (the newest ``errors`` failures per topic)."""
    return {
        "customers": session.scalar(select(func.count()).select_from(Customer)) or 0,
        "contracts": session.scalar(select(func.count()).select_from(Contract)) or 0,
        "documents": _documents(session, today),
        "payments": _payments(session),
        "partners": _partners(session),
        "outbox": _outbox(session, errors),
        "messages": messages.overview(session),
        # records a vendor knows under a name not their own ("quickbooks customer": a name clash resolved)
        "renamed_in_vendors": external_refs.count_named(session),
        "quarantined": dict(
            session.execute(
                select(QuarantinedRecord.source, func.count())
                .where(QuarantinedRecord.resolved_at.is_(None))
                .group_by(QuarantinedRecord.source)
            ).all()
        ),
        "cursors": [
            {"source": source, "stream": stream, "updated_at": _iso(updated)}
            for source, stream, updated in session.execute(
                select(SyncCursor.source, SyncCursor.stream, SyncCursor.updated_at).order_by(
                    SyncCursor.source, SyncCursor.stream
                )
            )
        ],
    }


def _partners(session: Session) -> dict[str, Any]:
    """Partners by kind, and partner statements by status (closed: its Bill or VendorCredit waits; billed,
    credited: in QuickBooks; no_bill: nothing to pay)."""
    kinds = dict(session.execute(select(Partner.kind, func.count()).group_by(Partner.kind)).all())
    statuses = dict(
        session.execute(select(PartnerStatement.status, func.count()).group_by(PartnerStatement.status)).all()
    )
    return {"by_kind": kinds, "statements": statuses}


def _documents(session: Session, today: date) -> dict[str, Any]:
    by_status = dict(session.execute(select(Invoice.status, func.count()).group_by(Invoice.status)).all())
    open_rows = session.execute(
        select(Invoice.currency, Invoice.invoice_total, Invoice.amount_paid, Invoice.status, Invoice.due_date).where(
            Invoice.doc_type == "invoice", Invoice.status.in_(("sent", "partially_paid"))
        )
    )
    receivable: dict[str, Decimal] = defaultdict(Decimal)
    overdue: dict[str, Decimal] = defaultdict(Decimal)
    late = 0
    for currency, total, paid, status, due in open_rows:
        balance = lifecycle.open_balance(total, paid, status)
        receivable[currency] += balance
        if lifecycle.is_late(status, due, total, paid, today):
            overdue[currency] += balance
            late += 1
    return {
        "by_status": by_status,
        "late": late,
        "receivable": {c: str(v) for c, v in sorted(receivable.items())},
        "overdue": {c: str(v) for c, v in sorted(overdue.items())},
    }


def _payments(session: Session) -> dict[str, Any]:
    total = session.scalar(select(func.count()).select_from(Payment)) or 0
    unapplied: dict[str, Decimal] = defaultdict(Decimal)
    count = 0
    for currency, amount in session.execute(select(Payment.currency, Payment.unapplied_amount)):
        if amount:
            unapplied[currency] += amount
            count += 1
    to_review = session.scalar(
        select(func.count()).select_from(Payment).where(Payment.review_reason.is_not(None), Payment.reviewed.is_(None))
    )
    return {
        "recorded": total,
        "with_unapplied_money": count,
        "unapplied": {c: str(v) for c, v in unapplied.items()},
        "to_review": to_review or 0,
    }


def _outbox(session: Session, errors: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    topics: dict[str, dict[str, Any]] = {}
    rows = session.execute(
        select(
            OutboxMessage.topic,
            OutboxMessage.delivered_at,
            OutboxMessage.available_at,
            OutboxMessage.attempts,
            OutboxMessage.leased_until,
        ).order_by(OutboxMessage.topic)
    )
    for topic, delivered, available, attempts, leased_until in rows:
        counts = topics.setdefault(
            topic, {"delivered": 0, "due": 0, "leased": 0, "retrying": 0, "parked": 0, "errors": []}
        )
        if delivered is not None:
            counts["delivered"] += 1
        elif is_parked(available):
            counts["parked"] += 1
        elif is_leased(leased_until, now):  # claimed by a run (a killed one holds it until its lease ends)
            counts["leased"] += 1
        elif _aware(available) > now and attempts:
            counts["retrying"] += 1
        else:
            counts["due"] += 1
    failing = session.execute(
        select(OutboxMessage.topic, OutboxMessage.id, OutboxMessage.attempts, OutboxMessage.last_error)
        .where(OutboxMessage.delivered_at.is_(None), OutboxMessage.last_error.is_not(None))
        .order_by(OutboxMessage.id.desc())
    )
    for topic, message_id, attempts, error in failing:
        shown = topics[topic]["errors"]
        if len(shown) < errors:
            shown.append({"message": message_id, "attempts": attempts, "error": error})
    return topics


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return _aware(moment).isoformat(timespec="seconds") if moment is not None else None
