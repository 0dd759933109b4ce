"""Revenue recognition, wired: rebuild the schedules of contracts that changed, close and reopen months,
and the reports (schedule, waterfall, rollforward) the CLI and API show. The Prefect flow
``recognize_revenue`` rebuilds and leaves a summary artifact.

A schedule is rebuilt only for a contract whose versions or documents changed since it was built (or, for
an evergreen contract, whose term moved into a new month; for a contract with a usage line, whose customer
reported usage or whose month moved), in chunks, one transaction per chunk; a contract
that cannot be recognised is recorded with the reason and never stops the run."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from sqlalchemy.orm import Session

from billbridge.billing import revenue as rr
from billbridge.billing.currency import money_str
from billbridge.billing.revenue_check import billed_mismatches, books_month
from billbridge.connectors.errors import Classified, ErrorKind, VendorError
from billbridge.errors import NotConfigured
from billbridge.flows.ahead import done_ahead
from billbridge.flows.heap import bulk_gc
from billbridge.flows.outbox_relay import Delivery, Handler, RelaySummary, relay
from billbridge.flows.push import token_vault
from billbridge.flows.revenue_build import Ahead, build, build_ahead
from billbridge.mapping.journal import (
    AccountMapping,
    PeriodRevenue,
    doc_number,
    entity_key,
    journal_entry_payload,
    journal_key,
)
from billbridge.settings import Settings
from billbridge.store import outbox
from billbridge.store import revenue as sql
from billbridge.store.db import Store, open_store
from billbridge.store.outbound_documents import pass_through_lines
from billbridge.store.outbox import Message
from billbridge.vendors import registry
from billbridge.vendors.registry import JournalTarget, vendor

ZERO = Decimal(0)
CHUNK = 500
JOURNAL_BATCH = 30  # entries claimed per delivery (one QuickBooks batch call)


def today_utc() -> date:
    return datetime.now(UTC).date()


@dataclass
class RecognitionSummary:
    """What a rebuild did, and the entity-wide balances at the end of ``through``'s month per currency."""

    through: date
    contracts: int = 0
    rebuilt: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    recognised: dict[str, Decimal] = field(default_factory=dict)  # in through's month
    deferred: dict[str, Decimal] = field(default_factory=dict)
    contract_assets: dict[str, Decimal] = field(default_factory=dict)
    journals: dict[str, Any] | None = None  # journal entries posted by this run (revenue_accounts set)
    account_problems: list[str] | None = None  # revenue_accounts against the chart of accounts, checked first

    def as_dict(self) -> dict[str, Any]:
        def money(d: dict[str, Decimal]) -> dict[str, str]:
            return {c: money_str(a, c) for c, a in sorted(d.items())}

        return {
            "through": self.through.isoformat(),
            "contracts": self.contracts,
            "rebuilt": self.rebuilt,
            "failed": [{"contract_id": cid, "reason": reason} for cid, reason in self.failed],
            "recognised": money(self.recognised),
            "deferred": money(self.deferred),
            "contract_assets": money(self.contract_assets),
            **({"journals": self.journals} if self.journals is not None else {}),
            **({"account_problems": self.account_problems} if self.account_problems is not None else {}),
        }


def rebuild(
    store: Store, through: date, *, full: bool = False, chunk: int = CHUNK, workers: int = 0
) -> RecognitionSummary:
    """Rebuild the schedule of every contract whose inputs changed (every one with ``full``).

    With ``workers`` > 0, that many processes build the next chunks (read their inputs, recognise,
    convert the rows) while this one writes the current chunk; a chunk built while a month was closed
    or reopened is built again inside the write transaction, so the result is the same as building there."""
    summary = RecognitionSummary(through)
    stale = _stale(store, through, full, summary)
    chunks = [dict(stale[start : start + chunk]) for start in range(0, len(stale), chunk)]
    with bulk_gc():  # millions of short-lived objects (periods, obligations, rows): see flows/heap.py
        for todo, ahead in zip(chunks, done_ahead(store, chunks, build_ahead, (through,), workers), strict=True):
            _write_chunk(store, todo, ahead, through, summary)
    return summary


def _write_chunk(
    store: Store, todo: dict[int, str], ahead: Ahead | None, through: date, summary: RecognitionSummary
) -> None:
    """One chunk in one transaction: built here, or written as its planning process built it."""
    with store.write() as session:
        if ahead is None or ahead.marker != sql.close_marker(session):
            done, failed, closed = build(session, todo, through)
            sql.save_built(session, done, through, closed)
            rebuilt = len(done)
        else:
            failed, closed = ahead.failed, ahead.closed
            sql.write_prepared(session, ahead.prepared, closed)
            rebuilt = ahead.rebuilt
        sql.save_failed(session, failed, through)
    summary.rebuilt += rebuilt
    summary.failed += [(cid, reason) for cid, (_, reason) in failed.items()]


def _stale(store: Store, through: date, full: bool, summary: RecognitionSummary) -> list[tuple[int, str]]:
    """(contract id, stamp) of every contract whose schedule is not built from what it is now."""
    with store.read() as session:
        summary.contracts = sql.contract_count(session)
        return sql.stale_contracts(session, through, full=full)


def with_balances(summary: RecognitionSummary, store: Store) -> RecognitionSummary:
    """The summary with the month's recognised revenue and the deferred revenue and contract assets at its
    end, per currency (read from every schedule row: the flow's and the command's report, not the rebuild's)."""
    month = rr.month_of(summary.through)
    with store.read() as session:
        rows = sql.schedule_rows(session, until=month)
    net: dict[tuple[int, str], Decimal] = defaultdict(lambda: ZERO)
    for row in rows:
        net[(row.contract_id, row.currency)] += row.billed - row.recognised
        if row.month == month:
            summary.recognised[row.currency] = summary.recognised.get(row.currency, ZERO) + row.recognised
    for (_, currency), value in net.items():
        summary.deferred[currency] = summary.deferred.get(currency, ZERO) + max(value, ZERO)
        summary.contract_assets[currency] = summary.contract_assets.get(currency, ZERO) + max(-value, ZERO)
    return summary


# --- the close ----------------------------------------------------------------------------------


def _entity(store: Store, entity_ref: str) -> int:
    with store.read() as session:
        found = sql.entity_id_of(session, entity_ref)
    if found is None:
        raise LookupError(f"unknown legal entity {entity_ref!r}")
    return found


@dataclass
class Closed:
    """What a close (or reopening) did: the close event (None for a reopening), the checks a forced close
    went past, and the month's documents still in draft (not pushed to the ledger: its entry leaves them
    out until the month is reopened and closed again)."""

    event: int | None = None
    accepted: list[str] = field(default_factory=list)
    drafts: list[str] = field(default_factory=list)


def close_problems(store: Store, entity_id: int, month: date) -> list[str]:
    """Why the month of an entity should not be closed as it stands: each of its contracts whose schedule
    could not be built (its revenue would be missing from the month and its journal entry), and each
    contract and currency where the month's rollforward does not agree with the invoices and credit notes."""
    with store.read() as session:
        failed = sql.failed_contracts(session, entity_id)
    problems = [f"{ref}: not recognised: {reason}" for ref, reason in failed]
    for roll in rollforward_report(store, entity_id, month):
        c = roll["currency"]
        for m in roll["mismatches"]:
            problems.append(
                f"{m['contract_ref']} {c}: the rollforward does not agree: the invoices and credit notes bill "
                f"{m['billed_in_documents']} in {roll['period']}, the schedule {m['billed_in_schedule']} "
                f"(difference {m['difference']})"
            )
        if not roll["balanced"] and not roll["mismatches"]:
            problems.append(f"{c}: the rollforward's movements do not add up to its closing balances")
    return problems


def close(
    store: Store,
    entity_ref: str,
    month: date,
    *,
    reopen: bool = False,
    reason: str | None = None,
    ledger: str | None = None,
    force: bool = False,
    actor: str | None = None,
    today: date | None = None,
) -> Closed:
    """Close a month of an entity (its schedules brought up to date first), or reopen it (recorded with
    the reason and ``actor``). With ``ledger`` (a vendor taking journal entries), the close queues the
    month's entries for it in the same transaction (outbox).

    PeriodError when it is closed already, or not closed; when the month has not ended (its last day is
    ``today``, UTC by default, or later: the demo passes its simulated day); and when a contract of the
    entity could not be recognised or the month's rollforward does not agree with the documents (each
    named with its reason): its revenue would be left out of a month that never changes again. ``force``
    closes anyway, the problems accepted recorded with the close (with ``reason``)."""
    month = rr.month_of(month)
    entity_id = _entity(store, entity_ref)
    if reopen:
        with store.write() as session:
            sql.reopen_period(session, entity_id, month, reason, actor=actor)
        return Closed()
    today = today or today_utc()
    if rr.month_end(month) >= today:
        raise sql.PeriodError(
            f"{month:%Y-%m} has not ended: its last day, {rr.month_end(month)}, is not before today ({today}, UTC)"
        )
    rebuild(store, max(rr.month_end(month), today))
    problems = close_problems(store, entity_id, month)
    if problems and not force:
        raise sql.PeriodError(
            f"{month:%Y-%m} of {entity_ref} is not closed: "
            + "; ".join(problems)
            + " (fix them and close again, or close with --force to accept them)"
        )
    recorded = reason
    if problems:
        recorded = "; ".join([*([reason] if reason else []), *(f"accepted: {p}" for p in problems)])
    with store.write() as session:
        event = sql.close_period(session, entity_id, month, actor=actor, forced=bool(problems), reason=recorded)
        if ledger is not None:
            periods = _period_revenues(session, entity_id, entity_ref, month)
            removals = _removals(session, ledger, entity_ref, month, periods)
            queue_journal_entries(session, ledger, entity_id, event, periods + removals)
        drafts = sql.draft_documents(session, entity_id, month, rr.month_end(month))
    return Closed(event, problems, drafts)


def journal_topic(ledger: str) -> str:
    return f"journal.{ledger}"


def queue_journal_entries(
    session: Session, ledger: str, entity_id: int, event: int, periods: Sequence[PeriodRevenue]
) -> int:
    """Queue a closed month's entries (one per currency) for ``ledger``; keyed by the close event, so a
    month reopened and closed again queues its new amounts once more (the entry is replaced, not added)."""
    return outbox.enqueue_many(
        session,
        [
            {
                "topic": journal_topic(ledger),
                "aggregate_type": "revenue_close",
                "aggregate_id": event,
                "dedupe_key": f"{journal_topic(ledger)}:{journal_key(p)}:{event}",
                "payload": {"entity_id": entity_id, "period": p.as_message()},
            }
            for p in periods
        ],
    )


def _removals(
    session: Session, ledger: str, entity_ref: str, month: date, periods: list[PeriodRevenue]
) -> list[PeriodRevenue]:
    """Empty recognitions for the currencies an earlier close of the month queued an entry in and this
    close does not (the month reclosed to nothing there): posting one deletes the entry standing for it."""
    prefix = f"{journal_topic(ledger)}:{entity_key(entity_ref)}"
    earlier = sql.journal_currencies(session, prefix, month)
    return [
        PeriodRevenue(entity_ref, currency, month, {}, ZERO, ZERO)
        for currency in sorted(earlier - {p.currency for p in periods})
    ]


# --- reports ------------------------------------------------------------------------------------


def schedule_report(store: Store, contract_ref: str, entity_id: int | None = None) -> dict[str, Any] | None:
    """A contract's obligations and its monthly schedule with billed, recognised, deferred and contract
    asset balances (None when unknown, or of another entity than ``entity_id``)."""
    with store.read() as session:
        head = sql.contract_head(session, contract_ref)
        if head is None or (entity_id is not None and head.entity_id != entity_id):
            return None
        obligations = sql.obligations_of(session, head.contract_id)
        rows = sql.schedule_rows(session, contract_id=head.contract_id)
    currency = rows[0].currency if rows else (obligations[0].currency if obligations else "")
    billed: dict[date, Decimal] = defaultdict(lambda: ZERO)
    recognised: dict[date, Decimal] = defaultdict(lambda: ZERO)
    catch_up: dict[date, Decimal] = defaultdict(lambda: ZERO)
    for row in rows:
        billed[row.month] += row.billed
        recognised[row.month] += row.recognised
        catch_up[row.month] += row.catch_up

    def m(amount: Decimal) -> str:
        return money_str(amount, currency) if currency else str(amount)

    return {
        "contract_ref": head.contract_ref,
        "customer_ref": head.customer_ref,
        "entity_ref": head.entity_ref,
        "currency": currency,
        "obligations": [
            {
                "line_ref": ob.line_ref,
                "product_ref": ob.product_ref,
                "description": ob.description,
                "recognition": ob.method,
                "treatment": ob.treatment,
                "version_no": ob.version_no,
                "start_date": ob.start_date.isoformat(),
                "end_date": ob.end_date.isoformat(),
                "ssp": m(ob.ssp),
                "price": m(ob.price),
                "allocated": m(ob.allocated),
            }
            for ob in obligations
        ],
        "months": [
            {
                "month": b.month.strftime("%Y-%m"),
                "billed": m(b.billed),
                "recognised": m(b.recognised),
                "catch_up": m(catch_up[b.month]),
                "deferred": m(b.deferred),
                "contract_asset": m(b.contract_asset),
            }
            for b in rr.month_balances(billed, recognised)
        ],
    }


def waterfall_report(store: Store, entity_id: int, first: date, last: date) -> list[dict[str, Any]]:
    """The waterfall of an entity: booked months ``first``..``last`` as rows, recognised months as columns."""
    first, last = rr.month_of(first), rr.month_of(last)
    with store.read() as session:
        rows = sql.schedule_rows(session, entity_id=entity_id)
    table = rr.waterfall(((r.booked_month, r.month, r.currency, r.recognised) for r in rows), first, last)
    return [
        {
            "booked_month": w.booked.strftime("%Y-%m"),
            "currency": w.currency,
            "booked": money_str(w.total, w.currency),
            "recognised": {k.strftime("%Y-%m"): money_str(v, w.currency) for k, v in sorted(w.by_month.items())},
            "recognised_to_date": money_str(w.to_date, w.currency),
            "remaining": money_str(w.remaining, w.currency),
        }
        for w in table
    ]


def rollforward_report(store: Store, entity_id: int, month: date) -> list[dict[str, Any]]:
    """Deferred revenue and contract assets of a month, per currency, each with ``balanced``: the
    movements add up, and what the schedule billed in the month is what the entity's invoices and credit
    notes billed (read from the documents themselves; ``recognition: none`` lines and contracts Stripe
    bills left out, as the schedule leaves them). Each contract where they differ is in ``mismatches``."""
    month = rr.month_of(month)
    with store.read() as session:
        rows = sql.schedule_rows(session, entity_id=entity_id, until=month)
        closed = sql.closed_at(session, entity_id)
        late = {m: (rr.month_end(m), at) for m, at in closed.items() if m < month}
        lines = sql.document_lines(session, entity_id, month, rr.month_end(month), late)
        billing = {ln.contract_id for ln in lines}
        others = sql.billed_by_others(session, billing)  # Stripe bills and recognises them
        passed = pass_through_lines(session, billing)  # recognition: none
        refs = sql.contract_refs(session, {r.contract_id for r in rows} | billing)
    documents = [
        (
            ln.contract_id,
            ln.currency,
            books_month(rr.month_of(ln.billing_date), ln.created_at, closed),
            ln.billed_amount,
        )
        for ln in lines
        if ln.contract_id not in others and ln.line_ref not in passed.get(ln.contract_id, ())
    ]
    schedule = [(r.contract_id, r.month, r.currency, r.billed, r.recognised) for r in rows]
    mismatches: dict[str, list[dict[str, Any]]] = defaultdict(list)
    billed_in_documents: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for _, currency, m, amount in documents:
        if m == month:
            billed_in_documents[currency] += amount
    for found in billed_mismatches(schedule, documents, month):
        c = found.currency
        mismatches[c].append(
            {
                "contract_ref": refs.get(found.contract_id, str(found.contract_id)),
                "billed_in_documents": money_str(found.billed, c),
                "billed_in_schedule": money_str(found.scheduled, c),
                "opening": money_str(found.opening, c),
                "recognised": money_str(found.recognised, c),
                "closing": money_str(found.closing, c),
                "expected_closing": money_str(found.expected_closing, c),
                "difference": money_str(found.difference, c),
            }
        )
    rolls = {roll.currency: roll for roll in rr.rollforward(schedule, month)}
    out = []
    for c in sorted(set(rolls) | set(mismatches)):
        roll = rolls.get(c) or rr.Rollforward(c)
        out.append(
            {
                "currency": c,
                "period": month.strftime("%Y-%m"),
                "deferred_revenue": {
                    "opening": money_str(roll.opening_deferred, c),
                    "billed": money_str(roll.billed_to_deferred, c),
                    "recognised": money_str(roll.recognised_from_deferred, c),
                    "closing": money_str(roll.closing_deferred, c),
                },
                "contract_assets": {
                    "opening": money_str(roll.opening_asset, c),
                    "recognised": money_str(roll.recognised_to_asset, c),
                    "billed": money_str(roll.billed_from_asset, c),
                    "closing": money_str(roll.closing_asset, c),
                },
                "billed": money_str(roll.billed, c),
                "billed_in_documents": money_str(billed_in_documents.get(c, ZERO), c),
                "recognised": money_str(roll.recognised, c),
                "balanced": roll.balanced and not mismatches.get(c),
                "mismatches": mismatches.get(c, []),
            }
        )
    return out


def period_revenues(store: Store, entity_ref: str, month: date) -> list[PeriodRevenue]:
    """An entity's recognition in a month per currency, as a journal entry needs it: revenue per product
    and recognition kind, the rollforward's split between deferred revenue drawn and contract assets
    made, and what billing took off contract assets."""
    entity_id = _entity(store, entity_ref)
    with store.read() as session:
        return _period_revenues(session, entity_id, entity_ref, rr.month_of(month))


def _period_revenues(session: Session, entity_id: int, entity_ref: str, month: date) -> list[PeriodRevenue]:
    rows = sql.schedule_rows(session, entity_id=entity_id, until=month)
    kinds = sql.line_products(session, entity_id)
    by_kind: dict[str, dict[tuple[str, str], Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for row in rows:
        if row.month == month and row.recognised:
            by_kind[row.currency][kinds.get((row.contract_id, row.line_ref), ("", "usage"))] += row.recognised
    rolls = rr.rollforward(((r.contract_id, r.month, r.currency, r.billed, r.recognised) for r in rows), month)
    return [
        PeriodRevenue(
            entity_ref,
            roll.currency,
            month,
            dict(by_kind.get(roll.currency, {})),
            roll.recognised_from_deferred,
            roll.recognised_to_asset,
            roll.billed_from_asset,
        )
        for roll in rolls
        if roll.recognised or roll.billed_from_asset
    ]


# --- posting to the books -----------------------------------------------------------------------


def journal_handler(store: Store, settings: Settings, ledger: str) -> tuple[Handler, Callable[[], None]]:
    """Deliver queued journal entries to ``ledger`` (a registry vendor taking them). A message announced
    by a close the month no longer stands by (reopened, or closed again since) is superseded: only the
    newest close of a month posts, and posting it replaces an entry an older close made."""
    accounts = settings.revenue_accounts
    build = vendor(ledger).journals
    if accounts is None or build is None:  # said before anything is claimed
        raise NotConfigured(
            "revenue_accounts is not configured ([revenue_accounts] deferred_revenue, contract_asset, revenue)"
            if accounts is None
            else f"{ledger} takes no journal entries"
        )
    if getattr(settings, ledger, None) is None:
        raise NotConfigured(f"{ledger} is not configured: journal entries wait in the outbox until it is")
    built: list[JournalTarget] = []

    def handle(messages: Sequence[Message]) -> list[Delivery]:
        with store.read() as session:
            current = {
                m.id: sql.current_close(
                    session, int(m.payload["entity_id"]), date.fromisoformat(m.payload["period"]["month"])
                )
                for m in messages
            }
        # Only the close a month stands by posts (one per month and currency, so one per entry)
        out = [Delivery(m.id, outcome="superseded") for m in messages if current[m.id] != m.aggregate_id]
        todo = [m for m in messages if current[m.id] == m.aggregate_id]
        if not todo:
            return out
        if not built:
            built.append(build(settings, token_vault(store, settings)))
        entries = []
        for m in todo:
            period = replace(PeriodRevenue.from_message(m.payload["period"]), close_id=m.aggregate_id)
            entries.append((period, AccountMapping.model_validate(accounts.for_entity(period.entity_ref))))
        try:
            results = built[0].post_journal_entries(entries)
        except VendorError as exc:
            return out + [Delivery(m.id, error=exc.classified) for m in todo]
        for m, result in zip(todo, results, strict=True):
            if result.status == "failed":
                kind = ErrorKind.RETRIABLE if result.retriable else ErrorKind.FATAL
                out.append(Delivery(m.id, error=Classified(kind, f"{result.number}: {result.error or 'refused'}")))
            else:
                out.append(Delivery(m.id, outcome=result.status))
        return out

    def close_all() -> None:
        for target in built:
            target.close()

    return handle, close_all


def journal_report(store: Store, settings: Settings, entity_ref: str, month: date) -> list[dict[str, Any]]:
    """The JournalEntry of each currency of an entity's month, as the close posts it (the accounts of
    ``revenue_accounts``, or each line's role while they are unset), and how its posting went: what a
    controller checks before closing, and after."""
    month = rr.month_of(month)
    entity_id = _entity(store, entity_ref)
    if settings.revenue_accounts is not None:
        accounts = AccountMapping.model_validate(settings.revenue_accounts.for_entity(entity_ref))
    else:
        accounts = AccountMapping(
            revenue="revenue", deferred_revenue="deferred_revenue", contract_asset="contract_asset"
        )
    ledger = ledger_of(settings) or registry.ledger(settings)
    out = []
    with store.read() as session:
        periods = _period_revenues(session, entity_id, entity_ref, month)
        periods += _removals(session, ledger, entity_ref, month, periods)
        closed = sql.current_close(session, entity_id, month)
        postings = {
            p.currency: sql.journal_posting(session, f"{journal_topic(ledger)}:{journal_key(p)}:") for p in periods
        }
    for period in periods:
        payload = journal_entry_payload(period, accounts) or {"Line": []}
        posting = postings[period.currency]
        if posting is None:
            state = "not queued"
        elif posting.close_event != closed:
            state = "superseded (reopened)" if closed is None else "superseded"
        elif posting.delivered_at is not None:
            state = "posted"
        else:
            state = "failed" if posting.last_error else "queued"
        out.append(
            {
                "currency": period.currency,
                "period": month.strftime("%Y-%m"),
                "doc_number": doc_number(period),
                "closed": closed is not None,
                "posting": state,
                "removal": not payload["Line"],  # nothing recognised: the entry an earlier close made goes
                "error": posting.last_error if posting is not None and posting.delivered_at is None else None,
                "lines": [
                    {
                        "posting": ln["JournalEntryLineDetail"]["PostingType"],
                        "account": ln["JournalEntryLineDetail"]["AccountRef"]["value"],
                        "description": ln["Description"],
                        "amount": ln["Amount"],
                    }
                    for ln in payload["Line"]
                ],
            }
        )
    return out


def check_accounts(store: Store, settings: Settings, ledger: str | None = None) -> list[str]:
    """``revenue_accounts`` against the ledger's chart of accounts (default: the ``ledger`` setting's), for
    the company and every entity the store knows: each missing, inactive or mistyped account named (empty:
    posting can go ahead)."""
    ledger = ledger or registry.ledger(settings)
    accounts = settings.revenue_accounts
    build = vendor(ledger).journals
    if accounts is None or build is None or getattr(settings, ledger, None) is None:
        raise NotConfigured(f"revenue_accounts and {ledger} must both be configured to check the accounts")
    with store.read() as session:
        entities = sql.entity_refs(session)
    unknown = sorted(set(accounts.entities) - set(entities))
    mappings = [AccountMapping.model_validate(accounts.for_entity(ref)) for ref in ["", *entities]]
    target = build(settings, token_vault(store, settings))
    try:
        problems = target.account_problems(mappings)
    finally:
        target.close()
    if unknown:
        problems.insert(0, f"revenue_accounts.entities names unknown legal entities: {', '.join(unknown)}")
    return problems


def start_check(store: Store, settings: Settings, ledger: str) -> list[str]:
    """``check_accounts`` as a run starts posting: each account QuickBooks does not hold named with its key
    and id, for the summary. Posting then fails the entries (of the entities) naming a wrong account, and
    posts the others; a ledger that cannot be reached is said, and posting tries (and retries) as usual."""
    try:
        return check_accounts(store, settings, ledger)
    except VendorError as exc:
        return [f"the accounts could not be checked: {exc}"]


def ledger_of(settings: Settings) -> str | None:
    """Where closed months post their journal entries: the ``ledger`` setting's vendor once
    ``revenue_accounts`` is set (None before); a ledger that takes no journal entries is refused."""
    if settings.revenue_accounts is None:
        return None
    name = registry.ledger(settings)
    if vendor(name).journals is None:
        raise ValueError(f"ledger: {name!r} takes no journal entries, and revenue_accounts is set")
    return name


def post_journals(store: Store, settings: Settings, ledger: str | None = None) -> RelaySummary:
    """Post the journal entries closes queued for ``ledger`` (default: the ``ledger`` setting's); rerunning
    never posts one twice."""
    ledger = ledger or registry.ledger(settings)
    handler, close_all = journal_handler(store, settings, ledger)
    try:
        return relay(store, journal_topic(ledger), handler, batch=JOURNAL_BATCH)
    finally:
        close_all()


# --- the Prefect flow ---------------------------------------------------------------------------


def summary_markdown(summary: RecognitionSummary) -> str:
    lines = [f"# Revenue recognised through {summary.through}", "", "| | |", "|---|---:|"]
    lines += [f"| contracts | {summary.contracts} |", f"| schedules rebuilt | {summary.rebuilt} |"]
    data = summary.as_dict()
    for label, key in (
        ("recognised", "recognised"),
        ("deferred revenue", "deferred"),
        ("contract assets", "contract_assets"),
    ):
        lines += [f"| {label} {c} | {a} |" for c, a in data[key].items()]
    if summary.journals is not None:
        lines += [f"| journal entries {k} | {n} |" for k, n in sorted(summary.journals["outcomes"].items())]
    if summary.account_problems:
        lines += ["", "## revenue_accounts: entries naming these accounts are not posted", ""]
        lines += [f"- {problem}" for problem in summary.account_problems]
    if summary.failed:
        lines += ["", "## Contracts that could not be recognised", "", "| contract | reason |", "|---|---|"]
        lines += [f"| {cid} | {reason.replace('|', '/')} |" for cid, reason in summary.failed[:200]]
    return "\n".join(lines) + "\n"


PREVIOUS = "previous"
"""``recognize_revenue``'s default period: the last complete month (a monthly run on the 1st summarises the
month that just ended, not the one that just began)."""


def period_through(period: str, today: date) -> date:
    """The last day ``period`` (YYYY-MM, or ``previous``: the month before ``today``'s) recognises through."""
    if period == PREVIOUS:
        return rr.month_of(today) - rr.ONE_DAY
    try:
        if len(period) != 7:
            raise ValueError(period)
        return rr.month_end(date.fromisoformat(f"{period}-01"))
    except ValueError:
        raise ValueError(f"period {period!r} is not a month (YYYY-MM) or {PREVIOUS!r}") from None


@flow(name="recognize_revenue")
def recognize_revenue(period: str = PREVIOUS, full: bool = False, through: date | None = None) -> dict[str, Any]:
    """Recognise revenue through the end of ``period`` (YYYY-MM; default ``previous``, the last complete
    month, what the monthly deployment runs on the 1st), or through the day ``through`` when given
    (``quote_to_cash`` passes its as-of day): rebuild the schedules whose contracts or documents changed.
    Rerunning changes nothing; closed months never change."""
    through = through or period_through(period, today_utc())
    settings = Settings()
    store = open_store(settings.database)
    summary = with_balances(rebuild(store, through, full=full), store)
    ledger = ledger_of(settings)
    if ledger is not None and getattr(settings, ledger, None) is not None:  # what closes queued since the last run
        summary.account_problems = start_check(store, settings, ledger)
        summary.journals = post_journals(store, settings, ledger).as_dict()
    create_markdown_artifact(
        summary_markdown(summary), key="revenue-recognition", description=f"Revenue through {through}"
    )
    return summary.as_dict()
