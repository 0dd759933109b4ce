"""Partner fees, wired: accrue the referral fees the store's payments and invoices earned, close each
partner's monthly statement, and push its total to QuickBooks as a Bill to the partner as a Vendor.

Accruing a partner's agreements happens in a transaction holding its partner's lock (a batch of
partners a transaction), as does closing a statement, so a fee never lands on a statement being closed. Closing queues the Bill in the outbox in the same
transaction; the relay delivers it with the statement's deterministic number, looked up after an
uncertain outcome, so a run killed between QuickBooks accepting the Bill and our commit never makes a
second one. Closing also makes the partner's statement e-mail (``partner_statement``, once per partner
and month) in that transaction; the run sends it after its commits, as a push sends its deliveries.
The Prefect flow ``partner_fees`` does the steps and leaves a summary artifact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from sqlalchemy.orm import Session

from billbridge.billing.currency import money_str
from billbridge.billing.model import FeeBasis, ReferralAgreement
from billbridge.billing.partner_fees import (
    POOLED,
    Accrual,
    Booked,
    FeeEvent,
    FeeProblem,
    PartnerBill,
    accrue,
    partner_bill,
    period_bases,
    period_of,
    statement,
    statement_details,
    vanished,
)
from billbridge.flows.heap import bulk_gc
from billbridge.flows.messages import MessagesSent, send_made
from billbridge.flows.outbox_relay import Delivery, Handler, RelaySummary
from billbridge.flows.push import Target, deliver, quickbooks_batches, quickbooks_connector
from billbridge.settings import Settings
from billbridge.store import external_refs, messages, outbox, quarantine
from billbridge.store import partners as sql
from billbridge.store.db import Store, open_store
from billbridge.store.outbox import Message
from billbridge.vendors.registry import ledger, vendor

if TYPE_CHECKING:
    pass

BILLS_TO = "quickbooks"
"""The ledger whose Bills this module writes (``quickbooks_batches``, ``push_bills`` of vendors/quickbooks.py);
Bills go there when it is the ``ledger`` setting's vendor (``bills_ledger``)."""
TOPIC = f"bill.{BILLS_TO}"
SOURCE = "partner_fees"  # quarantine source of events that cannot accrue
EVENTS = "fee_events"  # their record type; the key is ``<agreement_ref>:<event_ref>``
PARTNERS_PER_TRANSACTION = 100  # partners accrued in one transaction holding their locks (see accrue_fees)


def today_utc() -> date:
    return datetime.now(UTC).date()


def previous_period(day: date) -> str:
    """The month before ``day``'s: the one a monthly run closes."""
    return period_of(date(day.year - (day.month == 1), (day.month - 2) % 12 + 1, 1))


@dataclass
class FeeSummary:
    """What a partner-fee run did."""

    accrued: int = 0
    fees: dict[str, Decimal] = field(default_factory=dict)  # per currency, of the accruals added
    problems: list[FeeProblem] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # statements not closed: a later month is
    # Customers an agreement earned fees on but no longer refers (its referral removed): what they earned
    # stands (only undoing their payments reverses it), and they earn nothing new.
    removed: list[dict[str, str]] = field(default_factory=list)
    pushed: Counter[str] = field(default_factory=Counter)
    statements: Counter[str] = field(default_factory=Counter)  # statement e-mails made, by state
    waiting: list[str] = field(default_factory=list)  # why a statement e-mail waits (the partner's e-mail)
    sent: MessagesSent | None = None  # the messages sent after the run's commits (statements among them)

    @property
    def statements_sent(self) -> int:
        """Statement e-mails this run sent."""
        return self.sent.summary.outcomes.get(messages.PARTNER_STATEMENT, 0) if self.sent and self.sent.summary else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "accrued": self.accrued,
            "fees": {c: money_str(a, c) for c, a in sorted(self.fees.items())},
            "problems": [
                {"agreement_ref": p.agreement_ref, "event_ref": p.event_ref, "field": p.field, "message": p.message}
                for p in self.problems
            ],
            "closed": [{**c, "total": money_str(c["total"], c["currency"])} for c in self.closed],
            "skipped": self.skipped,
            "removed_referrals": self.removed,
            "bills": dict(self.pushed),
            "statement_messages": dict(self.statements),
            "statements_sent": self.statements_sent,
            "statements_waiting": self.waiting,
            "messages": self.sent.as_dict() if self.sent else None,
        }


def accrue_fees(
    store: Store,
    *,
    as_of: date | None = None,
    rates: Mapping[tuple[str, str], Decimal] | None = None,
    summary: FeeSummary | None = None,
    partners: Iterable[str] | None = None,
) -> FeeSummary:
    """Accrue what every referral agreement's events earned since the last run (and reverse what undone
    events had earned). ``PARTNERS_PER_TRANSACTION`` partners accrue in one transaction holding their
    locks, their events, what they booked and their new accruals read and written a batch at a time (a
    query or two per partner was most of a run's time); a partner's agreements accrue together (tiers
    apply to the partner's total referred revenue across them). An event that cannot accrue (another
    currency without a rate, no amounts per product) is quarantined with the field named and the others
    go on. ``as_of`` dates the reversal of events gone from the store. ``partners``: only theirs (all
    of each one's agreements: tiers apply to its total)."""
    summary = summary or FeeSummary()
    day = as_of or today_utc()
    only = None if partners is None else set(partners)
    with bulk_gc():  # a run makes an event per payment or invoice and an accrual per fee: see flows/heap.py
        _accrue_all(store, day, rates, summary, only)
    return summary


@dataclass
class FeesAfter:
    """What accruing after a reconciliation or a push did: the run, or why it failed (reported; the
    reconciliation or push stands, and the next run accrues what this one could not)."""

    summary: FeeSummary | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        summary = self.summary or FeeSummary()
        return {"accrued": summary.accrued, "fees": summary.as_dict()["fees"], "problems": len(summary.problems)}

    def markdown(self) -> str:
        if self.error is not None:
            return f"\n**Partner fees not accrued:** {self.error.replace('|', '/')}\n"
        summary = self.summary or FeeSummary()
        fees = ", ".join(f"{money_str(a, c)} {c}" for c, a in sorted(summary.fees.items())) or "none"
        return f"\nPartner fees accrued: {summary.accrued} ({fees}).\n"


def accrue_after(
    store: Store, settings: Settings, customers: Iterable[str] | None = None, *, basis: FeeBasis | None = None
) -> FeesAfter:
    """Accrue the fees the events just recorded earned (a fee accrues when the event that earns it
    happens: a payment reconciled, an invoice issued), for the partners referring ``customers`` (or
    buying through them, a reseller; None: every partner), or with an agreement on ``basis``. Exactly once as every run is (a rerun adds
    nothing); never raises: a failure is reported and the monthly run accrues what it left."""
    try:
        partners: set[str] | None = None
        if customers is not None:
            wanted = set(customers)
            if not wanted:
                return FeesAfter(FeeSummary())
            with store.read() as session:
                partners = sql.partners_referring(session, wanted)
            if not partners:
                return FeesAfter(FeeSummary())
        if basis is not None:
            with store.read() as session:
                on_basis = {a.partner_ref for a in sql.load_agreements(session) if a.basis == basis}
            partners = on_basis if partners is None else partners & on_basis
            if not partners:
                return FeesAfter(FeeSummary())
        return FeesAfter(accrue_fees(store, rates=settings.fee_rates(), partners=partners))
    except Exception as error:  # noqa: BLE001 - the reconciliation (push) stands: reported, not raised
        return FeesAfter(error=f"{type(error).__name__}: {error}")


def _accrue_all(
    store: Store,
    day: date,
    rates: Mapping[tuple[str, str], Decimal] | None,
    summary: FeeSummary,
    only: set[str] | None = None,
) -> None:
    with store.read() as session:
        agreements = [a for a in sql.load_agreements(session) if only is None or a.partner_ref in only]
        # Agreements with events waiting in quarantine: only theirs can be cleared (a statement per agreement
        # otherwise, every run, for nothing).
        waiting = {
            prefix  # the key is <agreement_ref>:<event_ref>, either may hold a colon: every cut is a candidate
            for kind, key in quarantine.open_keys(session, source=SOURCE)
            if kind == EVENTS
            for prefix in _prefixes(key)
        }
    by_partner: dict[str, list[ReferralAgreement]] = {}
    for agreement in agreements:
        by_partner.setdefault(agreement.partner_ref, []).append(agreement)
    partners = sorted(by_partner)
    for at in range(0, len(partners), PARTNERS_PER_TRANSACTION):
        batch = partners[at : at + PARTNERS_PER_TRANSACTION]
        mine = [agreement for partner_ref in batch for agreement in by_partner[partner_ref]]
        with store.write() as session:
            sql.lock_partners(session, batch)
            closed_through = sql.closed_through_many(session, batch)
            booked_rows = sql.accruals_by_agreement(session, [a.agreement_ref for a in mine])
            removed = _removed(mine, booked_rows)
            summary.removed += [{"agreement_ref": a, "customer_ref": c} for a, found in removed.items() for c in found]
            events = _events(session, mine, removed)
            accruals: list[Accrual] = []
            for partner_ref in batch:
                closed = closed_through[partner_ref]
                inputs = []
                for agreement in by_partner[partner_ref]:
                    found, booked = events[agreement.agreement_ref], booked_rows[agreement.agreement_ref]
                    present = {e.event_ref for e in found}
                    found += vanished(booked, present, day, agreement.basis)
                    inputs.append((agreement, found, Booked.of(booked), present))
                others = _others(inputs, closed, rates)
                for agreement, found, booked_of, present in inputs:
                    run = accrue(
                        agreement,
                        found,
                        booked_of,
                        closed_through=closed,
                        rates=rates,
                        others=others.get(agreement.agreement_ref),
                    )
                    accruals += run.accruals
                    if run.problems or agreement.agreement_ref in waiting:
                        _quarantine(session, agreement.agreement_ref, run.problems, present)
                    summary.problems += run.problems
            summary.accrued += sql.save_accruals(session, accruals)
            for accrual in accruals:
                summary.fees[accrual.currency] = summary.fees.get(accrual.currency, Decimal(0)) + accrual.fee


def _removed(agreements: Sequence[ReferralAgreement], booked: Mapping[str, Sequence[Accrual]]) -> dict[str, list[str]]:
    """Per agreement, the customers it booked fees on that it no longer refers (a referral removed)."""
    out: dict[str, list[str]] = {}
    for agreement in agreements:
        referred = {r.customer_ref for r in agreement.referrals}
        gone = {a.customer_ref for a in booked.get(agreement.agreement_ref, ()) if a.customer_ref != POOLED}
        if gone - referred:
            out[agreement.agreement_ref] = sorted(gone - referred)
    return out


def _events(
    session: Session, agreements: Sequence[ReferralAgreement], removed: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[FeeEvent]]:
    """Each agreement's events: its referred customers' payments (or invoices), and those of the customers
    whose referral was removed (``removed``: what they earned is kept, not reversed as if gone, and a
    refund of it still reverses it), read for a batch of agreements at once, one query per basis (and
    per product split) rather than one per agreement."""
    removed = removed or {}
    groups: dict[tuple[FeeBasis, bool], list[ReferralAgreement]] = {}
    for agreement in agreements:
        groups.setdefault((agreement.basis, agreement.products is not None), []).append(agreement)
    out: dict[str, list[FeeEvent]] = {}
    for (basis, per_product), group in groups.items():
        customers = {r.customer_ref for agreement in group for r in agreement.referrals}
        customers.update(c for agreement in group for c in removed.get(agreement.agreement_ref, ()))
        by_customer: dict[str, list[FeeEvent]] = {}
        for event in sql.fee_events(session, customers, basis, per_product=per_product):
            by_customer.setdefault(event.customer_ref, []).append(event)
        for agreement in group:
            mine = {r.customer_ref for r in agreement.referrals} | set(removed.get(agreement.agreement_ref, ()))
            out[agreement.agreement_ref] = [e for customer in sorted(mine) for e in by_customer.get(customer, ())]
    return out


def _prefixes(key: str) -> Iterator[str]:
    """``a:b:c`` -> ``a``, ``a:b``."""
    cut = key.find(":")
    while cut != -1:
        yield key[:cut]
        cut = key.find(":", cut + 1)


def _others(
    inputs: Sequence[tuple[ReferralAgreement, list[FeeEvent], Booked, set[str]]],
    closed: str | None,
    rates: Mapping[tuple[str, str], Decimal] | None,
) -> dict[str, dict[str, Decimal]]:
    """For each tiered agreement of a partner with several, the referred revenue of its other agreements
    per period once this run is booked: its tiers apply to the partner's total (one pass more)."""
    if len(inputs) < 2 or all(agreement.tiers is None for agreement, *_ in inputs):
        return {}
    bases = {
        agreement.agreement_ref: period_bases(
            booked, accrue(agreement, events, booked, closed_through=closed, rates=rates)
        )
        for agreement, events, booked, _ in inputs
    }
    out: dict[str, dict[str, Decimal]] = {}
    for agreement, *_ in inputs:
        if agreement.tiers is None:
            continue
        sums: dict[str, Decimal] = {}
        for ref, periods in bases.items():
            if ref != agreement.agreement_ref:
                for period, base in periods.items():
                    sums[period] = sums.get(period, Decimal(0)) + base
        out[agreement.agreement_ref] = sums
    return out


def _quarantine(session: Session, agreement_ref: str, problems: Sequence[FeeProblem], present: set[str]) -> None:
    """Keep each event that could not accrue on the quarantine list; clear the agreement's entries whose
    events accrue now."""
    entries = [
        quarantine.Entry(EVENTS, f"{agreement_ref}:{p.event_ref}", p.field, p.message, {"event_ref": p.event_ref})
        for p in problems
    ]
    if entries:
        quarantine.quarantine_many(session, source=SOURCE, entries=entries)
    failing = {p.event_ref for p in problems}
    fine = [f"{agreement_ref}:{ref}" for ref in sorted(present - failing)]
    if fine:
        quarantine.resolve_many(session, source=SOURCE, record_type=EVENTS, record_keys=fine)


def close_period(store: Store, period: str, summary: FeeSummary | None = None) -> FeeSummary:
    """Close every referral partner's statement of ``period`` (later fees go to the next one) and queue
    the Bill of each non-zero total for QuickBooks, in the same transaction. A statement takes every fee
    booked after the partner's last closed month up to ``period``: months never closed (a first run after
    go-live, a missed monthly run) are billed on it, once. Closing twice does nothing. A statement with
    lines gets its e-mail to the partner made in the same transaction (queued, or waiting for the
    partner's e-mail), once per partner and month; one with nothing accrued gets none."""
    summary = summary or FeeSummary()
    with store.read() as session:
        partners = [p for p in sql.load_partners(session).values() if p.kind != "reseller"]
    for partner in partners:
        with store.write() as session:
            sql.lock_partner(session, partner.partner_ref)
            last = sql.closed_through(session, partner.partner_ref)
            if last is not None and last > period:  # a later month is closed: its statement took these fees
                summary.skipped.append(
                    {
                        "partner_ref": partner.partner_ref,
                        "period": period,
                        "reason": f"a later month, {last}, is closed already: its statement billed the fees of {period}",
                    }
                )
                continue
            if last == period:  # closed already: a rerun
                continue
            first, accruals = sql.statement_accruals(session, partner.partner_ref, period)
            of = statement(partner.partner_ref, period, partner.currency, accruals, first=first)
            statement_id, closed = sql.close_statement(session, partner.partner_ref, period, of.total)
            if not closed:
                continue
            bill = partner_bill(statement_id, partner.name, partner.email, partner.payment_terms_days, of)
            queued = of.total != 0  # a Bill, or a VendorCredit when reversals exceed the fees
            if queued:
                outbox.enqueue(
                    session,
                    topic=TOPIC,
                    aggregate_type="partner_statement",
                    aggregate_id=statement_id,
                    dedupe_key=f"{TOPIC}:{statement_id}",
                    payload={"partner_ref": partner.partner_ref, "period": period, "number": bill.number},
                )
            else:
                sql.set_statement_status(session, [statement_id], "no_bill")
            if of.lines:  # something accrued (fees and reversals netting to zero too): the partner is told
                details = statement_details(
                    bill,
                    (a.fee for a in accruals if first <= a.period <= period),
                    partner.payment_terms_days,
                    billed=queued,
                )
                state = messages.create_partner_statement(session, partner.partner_ref, period, bill.bill_date, details)
                if state is not None:
                    summary.statements[state] += 1
                if state == "waiting_contact":
                    summary.waiting.append(
                        messages.partner_contact(partner.partner_ref, partner.email)[1] or partner.partner_ref
                    )
            summary.closed.append(
                {
                    "partner_ref": partner.partner_ref,
                    "period": period,
                    "months": of.months,
                    "currency": partner.currency,
                    "total": of.total,
                    "number": bill.number if queued else None,
                }
            )
    return summary


def load_bills(session: Session, statement_ids: Sequence[int]) -> dict[int, PartnerBill]:
    """The Bills of closed statements, by statement id (from the statement and its accruals)."""
    out = {}
    for row in sql.statements_by_id(session, statement_ids):
        partner = sql.load_partners(session, [row["partner_ref"]])[row["partner_ref"]]
        first, accruals = sql.statement_accruals(session, partner.partner_ref, row["period"])
        of = statement(partner.partner_ref, row["period"], partner.currency, accruals, first=first)
        out[row["id"]] = partner_bill(row["id"], partner.name, partner.email, partner.payment_terms_days, of)
    return out


def bills_ledger(settings: Settings) -> str:
    """The ledger partner fee Bills go to: the ``ledger`` setting's, when its registry entry takes
    ``bills`` and it is the one this module writes Bills to (QuickBooks so far); a ValueError naming
    the setting otherwise (said before any Bill is claimed, so none is half-delivered)."""
    name = ledger(settings)
    if not vendor(name).bills:
        raise ValueError(f"ledger: {name!r} takes no partner fee bills (its registry entry has no bills)")
    if name != BILLS_TO:
        raise ValueError(f"ledger: partner fee bills are written to {BILLS_TO} only so far, not {name!r}")
    return name


def bill_handler(store: Store, settings: Settings) -> tuple[Handler, Callable[[], None]]:
    """Statements' Bills into QuickBooks, each once, on the same QuickBooks relay handler as invoices:
    vendors and the expense account found or made, a re-claimed Bill looked up by its number first."""
    bills_ledger(settings)
    account = settings.partner_fee_account
    return quickbooks_batches(
        store,
        settings,
        load=load_bills,
        write=lambda connector, bills, look_up: connector.push_bills(bills, fee_account=account, look_up_first=look_up),
        gone="the statement no longer exists",
    )


def _billed(session: Session, delivered: Sequence[tuple[Message, Delivery]]) -> None:
    """A statement whose Bill QuickBooks holds is ``billed``; one whose VendorCredit it holds ``credited``."""
    credits = {m.aggregate_id for m, d in delivered if any(link.object_type == "vendor_credit" for link in d.links)}
    sql.set_statement_status(session, [m.aggregate_id for m, _ in delivered if m.aggregate_id not in credits], "billed")
    sql.set_statement_status(session, sorted(credits), "credited")


BILLS = Target(BILLS_TO, 30, bill_handler, _billed)


def push_bills(store: Store, settings: Settings, *, limit: int | None = None) -> RelaySummary:
    """Deliver the queued partner Bills to QuickBooks; a delivered statement is marked billed."""
    return deliver(store, settings, BILLS, TOPIC, limit=limit)


def read_paid(store: Store, settings: Settings) -> int:
    """Read what was paid on the partners' Bills (QuickBooks' BillPayments) into their statements, so
    fees paid show without a call to QuickBooks; the number of statements read."""
    with store.read() as session:
        billed = [s["id"] for s in sql.statements(session) if s["status"] == "billed"]
        bills = {sid: external_refs.get_external_id(session, BILLS_TO, "bill", sid) for sid in billed}
    ids = {sid: bill for sid, bill in bills.items() if bill is not None}
    if not ids:
        return 0
    connector = quickbooks_connector(store, settings)
    try:
        paid = connector.bill_payments(ids.values())
    finally:
        connector.close()
    with store.write() as session:
        sql.set_statements_paid(session, {sid: paid.get(bill, Decimal(0)) for sid, bill in ids.items()})
    return len(ids)


class PeriodNotEnded(ValueError):
    """A month asked to be closed that has not ended: closing it would move every later fee past it."""


def check_ended(period: str, day: date) -> None:
    """Refuse to close a month that has not ended on ``day`` (the current or a future one)."""
    if period >= period_of(day):
        raise PeriodNotEnded(
            f"period {period} has not ended (today is {day.isoformat()}): only a past month can be closed"
        )


def run_partner_fees(
    store: Store, settings: Settings, *, period: str | None = None, as_of: date | None = None, push: bool = True
) -> FeeSummary:
    """Accrue, close ``period`` (default: last month; a month that has not ended is refused with
    ``PeriodNotEnded``), push its Bills and read back what was paid on the partners' Bills (when
    QuickBooks is configured), then send the statement e-mails closing made (with any other message
    due, as a push does: a failed send never fails the run, the messages stay queued or failed)."""
    day = as_of or today_utc()
    if period is not None:
        check_ended(period, day)
    summary = accrue_fees(store, as_of=day, rates=settings.fee_rates())
    close_period(store, period or previous_period(day), summary)
    if push and vendor(bills_ledger(settings)).settings_of(settings) is not None:
        summary.pushed.update(push_bills(store, settings).outcomes)
        read_paid(store, settings)
    if push:
        summary.sent = send_made(store, settings)
    return summary


def fees_markdown(summary: FeeSummary) -> str:
    lines = ["# Partner fees", "", f"Accrued: {summary.accrued} new fee(s) or reversal(s)."]
    for currency, amount in sorted(summary.fees.items()):
        lines.append(f"- {money_str(amount, currency)} {currency}")
    if summary.closed:
        lines += ["", "| partner | months | total | bill |", "|---|---|---:|---|"]
        lines += [
            f"| {c['partner_ref']} | {c['months']} | {money_str(c['total'], c['currency'])} {c['currency']} | "
            f"{c['number'] or '-'} |"
            for c in summary.closed
        ]
    if summary.skipped:
        lines += ["", "## Statements not closed", ""]
        lines += [f"- {s['partner_ref']} {s['period']}: {s['reason']}" for s in summary.skipped]
    if summary.pushed:
        lines += ["", "Bills: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.pushed.items()))]
    made = ", ".join(f"{k} {v}" for k, v in sorted(summary.statements.items())) or "none"
    lines += ["", f"Statements sent to partners: {summary.statements_sent} (e-mails made: {made})."]
    lines += [f"- waiting: {reason.replace('|', '/')}" for reason in summary.waiting[:200]]
    sent = summary.sent
    if sent is not None and (sent.skipped or sent.error or (sent.summary is not None and sent.summary.stopped)):
        why = sent.skipped or sent.error or (sent.summary.stopped if sent.summary else "")
        lines.append(f"- not sent: {str(why).replace('|', '/')} (they stay queued: `billbridge messages list`)")
    if sent is not None and sent.summary is not None:
        lines += [f"- message {mid}: {error.replace('|', '/')}" for mid, error in sent.summary.failures[:50]]
    if summary.removed:
        lines += ["", "## Referrals removed (their fees stand; they earn nothing new)", ""]
        lines += [f"- {r['agreement_ref']}: {r['customer_ref']}" for r in summary.removed[:200]]
    if summary.problems:
        lines += ["", "## Events that could not accrue", ""]
        lines += [f"- {str(p).replace('|', '/')}" for p in summary.problems[:200]]
    return "\n".join(lines) + "\n"


@flow(name="partner_fees")
def partner_fees(period: str | None = None, as_of: date | None = None) -> dict[str, Any]:
    """Monthly: accrue referral fees, close last month's partner statements and push their Bills to
    QuickBooks. Rerunning adds nothing and never makes a second Bill. ``as_of``: the run's day (default
    today; the demo's simulated day), which ``period`` must be before."""
    settings = Settings()
    store = open_store(settings.database)
    summary = run_partner_fees(store, settings, period=period, as_of=as_of)
    create_markdown_artifact(fees_markdown(summary), key="partner-fees", description="Partner fees")
    return summary.as_dict()
