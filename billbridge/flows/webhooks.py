"""Acting on stored webhook events: each event is a trigger, never the truth.

A vendor delivers at least once and in any order, so an event's snapshot may be stale by the time
it arrives. What an event asks for is an idempotent action on the vendor's *current* state (a
payment event: reconcile that source, which pulls incrementally and records each payment once).
Events are claimed with a lease, grouped by the action they ask for, and each action runs once per
pass however many events asked for it: a burst of fifty payment events costs one reconciliation.
Events with nothing to do are marked processed as ignored, with the reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from billbridge.flows.limits import no_slot, vendor_slot
from billbridge.flows.reconcile import reconcile
from billbridge.settings import Settings
from billbridge.store import webhooks as inbox
from billbridge.store.db import Store, open_store
from billbridge.store.webhooks import ClaimedEvent
from billbridge.vendors import registry

LEASE = timedelta(minutes=10)  # longer than any action runs; a processor that dies hands events back after it
CLAIM_BATCH = 500
RETRY_AFTER = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1))
"""Wait after the 1st, 2nd, ... failed attempt (then hourly): the actions are safe to repeat, so never parked."""


@dataclass(frozen=True)
class Action:
    """Something an event can ask for: idempotent, acting on the vendor's current state."""

    vendor: str  # whose concurrency slot it takes
    run: Callable[[Store, Settings], str]  # returns a short note of what it did


def _reconciler(source: str) -> Callable[[Store, Settings], str]:
    def run(store: Store, settings: Settings) -> str:
        summary = reconcile(store, settings, source)
        return ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items())) or "no new payments"

    return run


def _subscriptions_sync(source: str) -> Callable[[Store, Settings], str]:
    def run(store: Store, settings: Settings) -> str:
        """The incremental pull of the vendor's subscriptions into contracts (reads the latest state)."""
        from billbridge.flows.crm_pages import spec_for, sync_pages
        from billbridge.flows.sync_crm import connect

        summary = sync_pages(
            store, spec_for(source), connect(source, settings), writer_process=settings.crm_sync_writer
        )
        return ", ".join(f"{k} {v}" for k, v in sorted(summary.counts.items())) or "no changes"

    return run


# What events can ask for, from the registry: reconcile a payment source, sync a subscriptions source.
ACTIONS: dict[str, Action] = {
    **{f"reconcile:{name}": Action(name, _reconciler(name)) for name in registry.payment_sources()},
    **{
        f"sync:{name}": Action(name, _subscriptions_sync(name))  # when its subscriptions are a contract source
        for name, contracts in registry.contract_sources().items()
        if contracts.kind == "subscriptions"
    },
}


def decide(event: ClaimedEvent, settings: Settings) -> tuple[str | None, str]:
    """(action, why) for one event, by its vendor's webhook rules (the registry's); action None means
    ignore it."""
    webhook = registry.webhooks().get(event.source)
    if webhook is None:
        return None, f"{event.source} sends no webhooks billbridge reads"
    if webhook.ignores is not None and (reason := webhook.ignores(settings, event.payload)) is not None:
        return None, reason
    for prefix, action, why in webhook.rules:
        if event.event_type.startswith(prefix):
            verb, _, source = (action or "").partition(":")
            if verb == "sync" and source not in settings.crm_sources:
                title = registry.vendor(source).display
                return None, f"{title} subscriptions are not a contract source here (crm_sources)"
            return action, why
    return None, f"nothing to do for {event.event_type}"


@dataclass
class WebhookSummary:
    events: Counter[str] = field(default_factory=Counter)  # outcome (action or "ignored", "failed") -> events
    actions: Counter[str] = field(default_factory=Counter)  # action -> times it ran
    notes: dict[str, str] = field(default_factory=dict)  # action -> what its last run did
    failures: list[tuple[str, str]] = field(default_factory=list)  # (action, error)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": dict(self.events),
            "actions": dict(self.actions),
            "notes": self.notes,
            "failures": [{"action": a, "error": e} for a, e in self.failures],
        }

    def markdown(self) -> str:
        lines = ["# Webhook events", "", "| outcome | events |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(self.events.items())]
        lines += ["", "| action | runs | last result |", "|---|---:|---|"]
        lines += [f"| {k} | {v} | {self.notes.get(k, '').replace('|', '/')} |" for k, v in sorted(self.actions.items())]
        if self.failures:
            lines += ["", "## Failed (retried later)", "", "| action | error |", "|---|---|"]
            lines += [f"| {a} | {e.replace('|', '/')[:300]} |" for a, e in self.failures]
        return "\n".join(lines) + "\n"


def process_pending(
    store: Store,
    settings: Settings,
    *,
    slot: Callable[[str], AbstractContextManager[None]] = no_slot,
    now: datetime | None = None,
) -> WebhookSummary:
    """Act on every claimable event; each action once per pass, whatever number of events asked for it.

    Passes repeat until nothing is claimable, so events that arrive while an action runs get a run
    that starts after them. Safe to run in several processes at once: claims are leased and disjoint,
    and the actions are idempotent. A failed action leaves its events' error visible and retries them
    after a backoff. ``now`` (default: the clock) decides which leases and retry waits are over.
    """
    summary = WebhookSummary()
    while True:
        claimed: list[ClaimedEvent] = []
        while batch := _claim(store, now):
            claimed += batch
        if not claimed:
            return summary
        wanted: dict[str, list[ClaimedEvent]] = defaultdict(list)
        ignored: dict[str, list[int]] = defaultdict(list)
        for event in claimed:
            action, why = decide(event, settings)
            if action is None:
                ignored[why].append(event.id)
            else:
                wanted[action].append(event)
        with store.write() as session:
            for why, ids in ignored.items():
                inbox.mark_processed(session, ids, outcome="ignored", note=why)
                summary.events["ignored"] += len(ids)
        for name, events in wanted.items():
            _act(store, settings, name, events, slot, summary)


def _claim(store: Store, now: datetime | None) -> list[ClaimedEvent]:
    with store.write() as session:
        return inbox.claim(session, limit=CLAIM_BATCH, lease=LEASE, now=now)


def _act(
    store: Store,
    settings: Settings,
    name: str,
    events: list[ClaimedEvent],
    slot: Callable[[str], AbstractContextManager[None]],
    summary: WebhookSummary,
) -> None:
    action = ACTIONS[name]
    ids = [e.id for e in events]
    summary.actions[name] += 1
    try:
        with slot(action.vendor):
            note = action.run(store, settings)
    # Whatever went wrong (vendor down, not configured, a concurrent run won a unique key), the
    # events stay with the error and come back: the other actions of this pass still run.
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        attempts = max(e.attempts for e in events)
        with store.write() as session:
            inbox.mark_failed(session, ids, error=error, retry_in=RETRY_AFTER[min(attempts, len(RETRY_AFTER)) - 1])
        summary.events["failed"] += len(ids)
        summary.failures.append((name, error))
        return
    with store.write() as session:
        inbox.mark_processed(session, ids, outcome=name, note=note)
    summary.events[name] += len(ids)
    summary.notes[name] = note


@flow(name="process_webhooks")
def process_webhooks() -> dict[str, Any]:
    """Act on the webhook events the API stored (and retry failed ones); each action once per pass."""
    settings = Settings()
    store = open_store(settings.database)
    summary = process_pending(store, settings, slot=vendor_slot)
    create_markdown_artifact(summary.markdown(), key="webhooks", description="Webhook events acted on")
    return summary.as_dict()
