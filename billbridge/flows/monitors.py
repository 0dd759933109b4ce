"""Monitors' daily snapshot: every monitor's value for every customer it covers, kept per day, and the
alerts of conditions that start to hold, announced as Prefect events and signed webhooks.

Customers are taken a chunk at a time; a chunk's values, alerts and outbox messages commit together,
so a run killed halfway leaves whole chunks and a rerun does the rest: values already right are not
written again and an alert exists once per (monitor, customer, condition, day). The outbox relays
then emit each alert's Prefect event (``billbridge.monitor.triggered``, with an id derived from the
alert, so the Prefect server keeps one even when the relay repeats it) and its webhook delivery.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from sqlalchemy import select
from sqlalchemy.orm import Session

from billbridge.billing import monitors as mon
from billbridge.billing.periods import Period
from billbridge.billing.usage_periods import DailyUsage, UsageQuery, aggregate
from billbridge.connectors import monitor_webhook
from billbridge.connectors.errors import Classified, ErrorKind
from billbridge.flows.outbox_relay import Delivery, RelaySummary, relay
from billbridge.secrets import Sealer
from billbridge.settings import Settings
from billbridge.store import monitors as sql
from billbridge.store import outbox
from billbridge.store.contracts import ContractTimeline, load_timelines
from billbridge.store.db import Store, open_store
from billbridge.store.models import Contract
from billbridge.store.outbox import Message
from billbridge.store.reference import entity_ids, product_ids
from billbridge.store.statistics import FreshStatistics
from billbridge.store.usage_aggregates import daily_usage

ONE_DAY = timedelta(days=1)
CHUNK = 1000  # customers per evaluation transaction
EVENT = "billbridge.monitor.triggered"
EVENT_TOPIC = "monitor.event"
WEBHOOK_TOPIC = "monitor.webhook"
_EVENT_NAMESPACE = uuid.UUID("6f1c5a0e-8a8e-4f4a-9d1e-6d0a7c1b1e16")


def today_utc() -> date:
    return datetime.now(UTC).date()


def today_in(zone: str, now: datetime | None = None) -> date:
    """The calendar day in ``zone`` (an entity's IANA time zone) at ``now`` (default: this instant):
    a monitor's day is its entity's."""
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(zone)).date()


@dataclass
class SnapshotSummary:
    """What a snapshot did: monitors evaluated, values written (new or changed), alerts raised."""

    first: date
    last: date
    monitors: int = 0
    values: int = 0
    written: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    relayed: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "monitors": self.monitors,
            "values": self.values,
            "written": self.written,
            "alerts": len(self.alerts),
            "alerts_by_monitor": dict(Counter(f"{a['entity_ref']}/{a['monitor']}" for a in self.alerts)),
            "failed": [{"monitor": m, "reason": r} for m, r in self.failed],
            "relayed": self.relayed,
        }

    def markdown(self) -> str:
        days = f"{self.first}" if self.first == self.last else f"{self.first} to {self.last}"
        lines = [f"# Monitors on {days}", "", "| | |", "|---|---:|"]
        lines += [
            f"| monitors evaluated | {self.monitors} |",
            f"| values (customer and day) | {self.values} |",
            f"| values written (new or changed) | {self.written} |",
            f"| alerts triggered | {len(self.alerts)} |",
        ]
        lines += [f"| {topic} delivered | {n} |" for topic, n in sorted(self.relayed.items())]
        if self.alerts:
            lines += ["", "## Alerts", "", "| monitor | customer | day | condition | value | increment |"]
            lines += ["|---|---|---|---|---:|---:|"]
            lines += [
                f"| {a['monitor']} | {a['customer_ref']} | {a['day']} | {a['condition']['when']} "
                f"{a['condition']['value']} | {a['value']} | {a['increment'] or ''} |"
                for a in self.alerts[:200]
            ]
        if self.failed:
            lines += ["", "## Monitors that could not be evaluated", "", "| monitor | reason |", "|---|---|"]
            lines += [f"| {m} | {r.replace('|', '/')} |" for m, r in self.failed]
        return "\n".join(lines) + "\n"


@dataclass
class _Chunk:
    """What the monitors of one entity need about a chunk of its customers."""

    customer_ids: list[int]
    contracts: dict[int, list[ContractTimeline]]  # customer id -> timelines
    series: dict[int, mon.ContractSeries]  # contract id -> its values day after day
    invoices: dict[int, list[mon.InvoiceFact]]  # contract id -> documents
    usage: dict[tuple[int, str], dict[date, DailyUsage]]
    names: dict[int, tuple[str, str]]


class MonitorRefused(ValueError):
    """A definition the store cannot take, with the field at fault."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_definition(session: Session, definition: mon.MonitorDefinition) -> int:
    """The definition's legal entity id when the store has what it names and the watched lines have
    its item; else :class:`MonitorRefused` naming the field (an item the line's pricing model lacks
    lists the items it has)."""
    entity_id = entity_ids(session, [definition.entity_ref]).get(definition.entity_ref)
    if entity_id is None:
        raise MonitorRefused("entity_ref", f"no legal entity {definition.entity_ref!r}")
    if definition.usage is not None:
        ref = definition.usage.product_ref
        if not product_ids(session, [ref]):
            raise MonitorRefused("usage.product_ref", f"no product {ref!r}")
        if definition.usage.customer_ref and sql.customer_id(session, entity_id, definition.usage.customer_ref) is None:
            raise MonitorRefused(
                "usage.customer_ref", f"no customer {definition.usage.customer_ref!r} in {definition.entity_ref}"
            )
        return entity_id
    watch = definition.contract
    assert watch is not None
    customer = None
    if watch.customer_ref is not None:
        customer = sql.customer_id(session, entity_id, watch.customer_ref)
        if customer is None:
            raise MonitorRefused(
                "contract.customer_ref", f"no customer {watch.customer_ref!r} in {definition.entity_ref}"
            )
    ids = sql.scope_contracts(session, entity_id, contract_ref=watch.contract_ref, customer_id=customer, limit=500)
    if watch.contract_ref is not None and not ids:
        raise MonitorRefused("contract.contract_ref", f"no contract {watch.contract_ref!r} in {definition.entity_ref}")
    where = (
        f"contract {watch.contract_ref}"
        if watch.contract_ref
        else f"the contracts of {watch.customer_ref}"
        if watch.customer_ref
        else "any contract"
    )
    lines = [
        line
        for timeline in load_timelines(session, ids).values()
        if timeline.versions
        for line in max(timeline.versions, key=lambda v: (v.effective_date, v.version_no)).contract.lines
    ]
    problem = mon.check_against_lines(watch, lines, where)
    if problem is not None:
        raise MonitorRefused("contract.item" if "is not an item" in problem else "contract.line_ref", problem)
    return entity_id


def add_monitor(session: Session, definition: mon.MonitorDefinition) -> int:
    """Check a definition against the store and keep it; its id."""
    entity_id = check_definition(session, definition)
    try:
        return sql.add_monitor(session, entity_id, definition)
    except sql.MonitorExists as exc:
        raise MonitorRefused("name", str(exc)) from None


def snapshot(
    store: Store,
    first: date,
    last: date | None = None,
    *,
    names: Sequence[str] | None = None,
    entity_ids: Sequence[int] | None = None,
    alerts: bool = True,
    chunk: int = CHUNK,
) -> SnapshotSummary:
    """Evaluate the monitors (all, or those ``names``) for the days ``first`` to ``last`` and keep
    their values; with ``alerts``, raise the crossings of those days (a backfill may leave them off)."""
    last = last or first
    if last < first:
        raise ValueError(f"the last day {last} is before the first {first}")
    by_entity = _by_entity(store, names, entity_ids)
    return _run(store, by_entity, dict.fromkeys(by_entity, (first, last)), SnapshotSummary(first, last), alerts, chunk)


def snapshot_today(
    store: Store, days: int = 1, *, names: Sequence[str] | None = None, now: datetime | None = None
) -> SnapshotSummary:
    """The daily run: each entity's monitors for the ``days`` days up to the entity's own current day
    (its calendar day at ``now``, default this instant), with their alerts."""
    by_entity = _by_entity(store, names, None)
    windows: dict[int, tuple[date, date]] = {}
    for entity_id, group in by_entity.items():
        last = today_in(group[0].timezone, now)
        windows[entity_id] = (last - timedelta(days=days - 1), last)
    utc = today_in("UTC", now)
    summary = SnapshotSummary(
        min((w[0] for w in windows.values()), default=utc - timedelta(days=days - 1)),
        max((w[1] for w in windows.values()), default=utc),
    )
    return _run(store, by_entity, windows, summary, True, CHUNK)


def _by_entity(
    store: Store, names: Sequence[str] | None, entity_ids: Sequence[int] | None
) -> dict[int, list[sql.StoredMonitor]]:
    with store.read() as session:
        chosen = sql.list_monitors(session, entity_ids)
    wanted = None if names is None else set(names)
    by_entity: dict[int, list[sql.StoredMonitor]] = defaultdict(list)
    for monitor in chosen:
        if wanted is None or monitor.name in wanted:
            by_entity[monitor.entity_id].append(monitor)
    return dict(by_entity)


def _run(
    store: Store,
    by_entity: dict[int, list[sql.StoredMonitor]],
    windows: dict[int, tuple[date, date]],
    summary: SnapshotSummary,
    alerts: bool,
    chunk: int,
) -> SnapshotSummary:
    """Evaluate each entity's monitors over its (first, last) window of days."""
    summary.monitors = sum(len(group) for group in by_entity.values())
    statistics = FreshStatistics(store, grown=("monitor_values",)) if by_entity else None
    for entity_id, group in by_entity.items():
        first, last = windows[entity_id]
        _snapshot_entity(store, entity_id, group, first, last, alerts, chunk, summary, statistics)
    return summary


def _snapshot_entity(
    store: Store,
    entity_id: int,
    group: list[sql.StoredMonitor],
    first: date,
    last: date,
    alerts: bool,
    chunk: int,
    summary: SnapshotSummary,
    statistics: FreshStatistics | None,
) -> None:
    with store.read() as session:
        only: dict[int, int | None] = {}  # monitor id -> the one customer it covers (None: every customer)
        for monitor in list(group):
            found = _one_customer(session, entity_id, monitor.definition)
            if found is False:
                summary.failed.append((monitor.name, "its customer or contract is not in the store"))
                group.remove(monitor)
            else:
                only[monitor.id] = found
    if not group:
        return
    singles = {c for c in only.values() if c is not None}
    everyone = any(c is None for c in only.values())
    after = 0
    while True:
        with store.read() as session:
            if everyone:
                ids = sql.scope_customers(session, entity_id, after_id=after, limit=chunk)
            else:
                ids = sorted(c for c in singles if c > after)[:chunk]
            if not ids:
                return
            data = _load(session, ids, group, first, last, group[0].timezone)
        after = ids[-1]
        written = summary.written
        with store.write() as session:
            for monitor in group:
                covered = ids if only[monitor.id] is None else [c for c in ids if c == only[monitor.id]]
                _evaluate(session, monitor, covered, data, first, last, alerts, summary)
        if statistics is not None:  # PostgreSQL plans the next chunks' reads of the values it grew
            statistics.wrote(summary.written - written)


def _one_customer(session: Session, entity_id: int, definition: mon.MonitorDefinition) -> int | None | bool:
    """The customer id a monitor is limited to, None when it covers every customer, False when the
    customer or contract it names is missing."""
    if definition.contract is not None and definition.contract.contract_ref is not None:
        found = session.scalar(
            select(Contract.customer_id).where(
                Contract.entity_id == entity_id, Contract.contract_ref == definition.contract.contract_ref
            )
        )
        return False if found is None else found
    if definition.customer_ref is not None:
        customer = sql.customer_id(session, entity_id, definition.customer_ref)
        return False if customer is None else customer
    return None


def _eval_days(first: date, last: date, before: int) -> list[date]:
    """The days evaluated: ``before`` days before ``first`` too (two for the first day's crossings:
    its increment and the previous day's)."""
    return [first - before * ONE_DAY + timedelta(days=i) for i in range((last - first).days + 1 + before)]


def _load(
    session: Session, ids: list[int], group: list[sql.StoredMonitor], first: date, last: date, zone: str
) -> _Chunk:
    """What a chunk's monitors need, usage counted on the entity's calendar days (``zone``)."""
    contract_ids = list(session.scalars(select(Contract.id).where(Contract.customer_id.in_(ids)).order_by(Contract.id)))
    timelines = load_timelines(session, contract_ids)
    by_customer: dict[int, list[ContractTimeline]] = defaultdict(list)
    for contract_id in contract_ids:
        timeline = timelines[contract_id]
        by_customer[timeline.customer_id].append(timeline)
    items = {m.definition.contract.item for m in group if m.definition.contract is not None}
    invoices = sql.invoice_facts(session, contract_ids, last) if "invoice_total" in items else {}
    usage: dict[tuple[int, str], dict[date, DailyUsage]] = {}
    usage_monitors = [m.definition.usage for m in group if m.definition.usage is not None]
    if usage_monitors or items & {"amount", "billed_amount", "usage_quantity"}:
        start = _usage_start(timelines.values(), usage_monitors, first - 2 * ONE_DAY)
        last_for: set[str] = {w.product_ref for w in usage_monitors if w.aggregation == "last"}
        distinct_for: set[tuple[str, str]] = {
            (w.product_ref, w.usage_property) for w in usage_monitors if w.usage_property is not None
        }
        for timeline in timelines.values():
            for version in timeline.versions:
                for line in version.contract.lines:
                    if line.charge != "usage":
                        continue
                    if line.usage_aggregation == "last":
                        last_for.add(line.product_ref)
                    if line.usage_property:
                        distinct_for.add((line.product_ref, line.usage_property))
        usage = daily_usage(
            session, ids, start, last + ONE_DAY, last_for=last_for, distinct_for=distinct_for, zone=zone
        )
    series = {t.contract_id: mon.ContractSeries(t.versions) for t in timelines.values() if t.versions}
    return _Chunk(ids, dict(by_customer), series, invoices, usage, sql.customers(session, ids))


def _usage_start(timelines: Iterable[ContractTimeline], watches: Sequence[mon.UsageWatch], day: date) -> date:
    """The first day any usage figure of these days can need: the period start of the earliest day,
    a rolling window's start, or the month's first day."""
    start = day.replace(day=1)
    for watch in watches:
        if watch.window_days is not None:
            start = min(start, day - timedelta(days=watch.window_days))
    for timeline in timelines:
        for version in timeline.versions:
            period = mon.current_period(version.contract, day)
            if period is not None:
                start = min(start, period.start)
    return start


def _evaluate(
    session: Session,
    monitor: sql.StoredMonitor,
    customer_ids: list[int],
    data: _Chunk,
    first: date,
    last: date,
    alerts: bool,
    summary: SnapshotSummary,
) -> None:
    definition = monitor.definition
    checks = alerts and bool(definition.conditions)
    lookback = 2 if checks else 0
    days = _eval_days(first, last, lookback)
    kept: dict[tuple[int, date], str | None] = {}
    seen = sql.seen_before(session, monitor.id, customer_ids, first) if checks else set()
    for customer_id in customer_ids:
        try:
            values = _customer_values(definition, customer_id, data, days)
        except ValueError as exc:  # a stored contract the engine cannot read: that customer is skipped
            summary.failed.append((monitor.name, f"customer {data.names[customer_id][0]}: {exc}"))
            continue
        for day in days[lookback:]:
            value = values.get(day)
            kept[(customer_id, day)] = None if value is None else mon.to_text(value)
            if checks:
                fresh = day == first and customer_id not in seen
                for condition in mon.crossings(definition.conditions, day, values, fresh=fresh):
                    raised = _raise_alert(session, monitor, customer_id, data, condition, day, values)
                    if raised is not None:
                        summary.alerts.append(raised)
    summary.values += sum(1 for v in kept.values() if v is not None)
    summary.written += sql.write_values(session, monitor.id, kept)


def _customer_values(
    definition: mon.MonitorDefinition, customer_id: int, data: _Chunk, days: list[date]
) -> dict[date, mon.Value | None]:
    contracts = data.contracts.get(customer_id, [])
    usage = _lookup(data.usage, customer_id)
    if definition.contract is not None:
        watch = definition.contract
        chosen = [c for c in contracts if watch.contract_ref in (None, c.contract_ref)]
        for timeline in chosen:
            if timeline.error:
                raise ValueError(f"contract {timeline.contract_ref}: {timeline.error}")
        return {
            day: mon.combine(
                definition.kind,
                (
                    data.series[t.contract_id].value(watch, day, data.invoices.get(t.contract_id, ()), usage)
                    for t in chosen
                    if t.contract_id in data.series
                ),
            )
            for day in days
        }
    assert definition.usage is not None
    watch_usage = definition.usage
    per_day = data.usage.get((customer_id, watch_usage.product_ref), {})
    out: dict[date, mon.Value | None] = {}
    for day in days:
        period, declared = _usage_terms(contracts, watch_usage.product_ref, day)
        out[day] = mon.usage_value(watch_usage, day, per_day, period=period, declared=declared)
    return out


def _usage_terms(contracts: list[ContractTimeline], product_ref: str, day: date) -> tuple[Period | None, str | None]:
    """The billing period and declared aggregation of the customer's first contract billing that
    usage product on ``day``."""
    for timeline in contracts:
        known = mon.known_versions(timeline.versions, day)
        if not known:
            continue
        contract = max(known, key=lambda v: (v.effective_date, v.version_no)).contract
        period = mon.current_period(contract, day)
        line = next((ln for ln in contract.lines if ln.charge == "usage" and ln.product_ref == product_ref), None)
        if period is not None and line is not None:
            return period, line.usage_aggregation
    return None, None


def _lookup(usage: dict[tuple[int, str], dict[date, DailyUsage]], customer_id: int) -> mon.UsageLookup:
    def measure(query: UsageQuery) -> Decimal:
        return aggregate(usage.get((customer_id, query.product_ref), {}), query)

    return measure


def _alert_payload(
    monitor: sql.StoredMonitor,
    customer_id: int,
    data: _Chunk,
    condition: mon.Condition,
    day: date,
    values: dict[date, mon.Value | None],
) -> dict[str, Any]:
    definition = monitor.definition
    value, previous = values.get(day), values.get(day - ONE_DAY)
    change = mon.increment(definition.kind, value, previous)
    ref, name = data.names[customer_id]
    return {
        "monitor": monitor.name,
        "entity_ref": monitor.entity_ref,
        "source": definition.source,
        "item": definition.contract.item if definition.contract else definition.usage.product_ref,  # type: ignore[union-attr]
        "customer_ref": ref,
        "customer_name": name,
        "day": day.isoformat(),
        "value": None if value is None else mon.to_text(value),
        "previous": None if previous is None else mon.to_text(previous),
        "increment": None if change is None else mon.to_text(change),
        "condition": {"when": condition.when, "value": mon.to_text(condition.value)},
    }


def _raise_alert(
    session: Session,
    monitor: sql.StoredMonitor,
    customer_id: int,
    data: _Chunk,
    condition: mon.Condition,
    day: date,
    values: dict[date, mon.Value | None],
) -> dict[str, Any] | None:
    """The alert of a crossing with its outbox messages, or None when it was raised before."""
    payload = _alert_payload(monitor, customer_id, data, condition, day, values)
    alert_id = sql.insert_alert(
        session, monitor.id, customer_id, condition.key, day, payload["value"], payload["increment"]
    )
    if alert_id is None:
        return None
    key = f"{monitor.entity_ref}/{monitor.name}/{payload['customer_ref']}/{condition.key}/{day}"
    payload["id"] = str(uuid.uuid5(_EVENT_NAMESPACE, key))
    payload["alert_id"] = alert_id
    outbox.enqueue(
        session,
        topic=EVENT_TOPIC,
        aggregate_type="monitor_alert",
        aggregate_id=alert_id,
        dedupe_key=f"monitor-alert:{payload['id']}:event",
        payload=payload,
    )
    if monitor.definition.webhook_url:
        outbox.enqueue(
            session,
            topic=WEBHOOK_TOPIC,
            aggregate_type="monitor_alert",
            aggregate_id=alert_id,
            dedupe_key=f"monitor-alert:{payload['id']}:webhook",
            payload={**payload, "url": monitor.definition.webhook_url},
        )
    return payload


def prefect_event(payload: dict[str, Any]) -> dict[str, Any]:
    """An alert as a Prefect event: the monitor is the resource, the customer a related one."""
    occurred = datetime.combine(date.fromisoformat(payload["day"]), datetime.min.time(), UTC)
    return {
        "id": payload["id"],
        "occurred": occurred.isoformat(),
        "event": EVENT,
        "resource": {
            "prefect.resource.id": f"billbridge.monitor.{payload['entity_ref']}.{payload['monitor']}",
            "prefect.resource.name": payload["monitor"],
        },
        "related": [
            {
                "prefect.resource.id": f"billbridge.customer.{payload['customer_ref']}",
                "prefect.resource.role": "customer",
                "prefect.resource.name": payload["customer_name"],
            }
        ],
        "payload": {k: v for k, v in payload.items() if k not in ("id", "url", "alert_id")},
    }


def emit_events(messages: Sequence[Message]) -> list[Delivery]:
    """Post a batch of alerts to the Prefect API's events endpoint (the server keeps an event id
    once, so a repeated batch changes nothing)."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            response = client.request("POST", "/events", json=[prefect_event(m.payload) for m in messages])
        response.raise_for_status()
    except Exception as exc:  # noqa: BLE001 - any failure reaching Prefect: the batch is retried
        error = Classified(ErrorKind.RETRIABLE, f"Prefect events: {type(exc).__name__}: {exc}"[:500])
        return [Delivery(m.id, error) for m in messages]
    return [Delivery(m.id, outcome="event emitted") for m in messages]


def webhook_secret(sealer: Sealer, entity_ref: str, name: str) -> str:
    """A monitor's webhook signing secret (derived from the installation's key, never stored)."""
    return sealer.derive(f"monitor-webhook:{entity_ref}:{name}")


def sealer_of(settings: Settings) -> Sealer:
    return Sealer.from_settings(
        settings.secret_key.get_secret_value() if settings.secret_key else None, settings.data_dir
    )


def webhook_sender(sealer: Sealer, client: httpx.Client) -> Any:
    def send(messages: Sequence[Message]) -> list[Delivery]:
        out = []
        for message in messages:
            payload = message.payload
            body = {
                "id": payload["id"],
                "type": EVENT,
                "data": {k: v for k, v in payload.items() if k not in ("url", "id")},
            }
            text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
            secret = webhook_secret(sealer, payload["entity_ref"], payload["monitor"])
            error = monitor_webhook.deliver(client, payload["url"], text, secret, payload["id"])
            out.append(Delivery(message.id, error) if error else Delivery(message.id, outcome="webhook delivered"))
        return out

    return send


def prefect_api_configured() -> bool:
    """Whether a Prefect API is configured (a command outside a flow run emits events only then;
    otherwise they wait in the outbox for the deployment)."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def relay_alerts(store: Store, settings: Settings, *, events: bool = True) -> dict[str, int]:
    """Deliver the alerts waiting in the outbox: Prefect events (with ``events``), then webhooks.
    Returns what was delivered."""
    summaries: list[RelaySummary] = [relay(store, EVENT_TOPIC, emit_events, batch=100)] if events else []
    with httpx.Client(follow_redirects=False) as client:
        summaries.append(relay(store, WEBHOOK_TOPIC, webhook_sender(sealer_of(settings), client), batch=20))
    counts: Counter[str] = Counter()
    for relayed in summaries:
        counts.update(relayed.outcomes)
    return dict(counts)


@flow(name="snapshot_monitors")
def snapshot_monitors(as_of: date | None = None, days: int = 1, monitor: str | None = None) -> dict[str, Any]:
    """Keep every monitor's value per customer for the ``days`` days up to ``as_of`` (default each
    entity's today, in its time zone), raise the alerts of conditions that start to hold, and deliver
    them. Rerunning a day changes nothing and raises nothing twice."""
    if not 1 <= days <= 3660:
        raise ValueError("days must be from 1 to 3660")
    settings = Settings()
    store = open_store(settings.database)
    names = [monitor] if monitor else None
    if as_of is None:
        summary = snapshot_today(store, days, names=names)
    else:
        summary = snapshot(store, as_of - timedelta(days=days - 1), as_of, names=names)
    summary.relayed = relay_alerts(store, settings)
    create_markdown_artifact(summary.markdown(), key="snapshot-monitors", description=f"Monitors on {summary.last}")
    return summary.as_dict()


def find(store: Store, name: str, entity_ids: Sequence[int] | None = None) -> sql.StoredMonitor:
    """The monitor of that name (of these entities); LookupError when none or several entities have one."""
    with store.read() as session:
        found = sql.list_monitors(session, entity_ids, name=name)
    if not found:
        raise LookupError(f"no monitor {name!r}")
    if len(found) > 1:
        entities = ", ".join(m.entity_ref for m in found)
        raise LookupError(f"monitors named {name!r} exist in {entities}: name the entity")
    return found[0]


def view(
    store: Store,
    monitor: sql.StoredMonitor,
    first: date,
    last: date,
    *,
    customer_ref: str | None = None,
    increment: bool = False,
) -> list[dict[str, Any]]:
    """The kept values from ``first`` to ``last`` per customer (or one), with the increment over the
    previous day when asked: rows of customer_ref, day, value (and increment)."""
    with store.read() as session:
        ids: list[int] | None = None
        if customer_ref is not None:
            found = sql.customer_id(session, monitor.entity_id, customer_ref)
            if found is None:
                raise LookupError(f"no customer {customer_ref!r} in {monitor.entity_ref}")
            ids = [found]
        values = sql.values_on(session, monitor.id, first - ONE_DAY, last, ids)
        names = sql.customers(session, values)
    kind = monitor.definition.kind
    rows: list[dict[str, Any]] = []
    for customer_id, days in sorted(values.items(), key=lambda item: names[item[0]][0]):
        for day in sorted(d for d in days if d >= first):
            row: dict[str, Any] = {"customer_ref": names[customer_id][0], "day": day.isoformat(), "value": days[day]}
            if increment:
                before = days.get(day - ONE_DAY)
                change = mon.increment(
                    kind,
                    mon.from_text(kind, days[day]),
                    None if before is None else mon.from_text(kind, before),
                )
                row["increment"] = None if change is None else mon.to_text(change)
            rows.append(row)
    return rows


AUTOMATION_NAME = "billbridge monitor alerts"
NOTIFICATION_SUBJECT = "billbridge: {{ event.payload.monitor }} for {{ event.payload.customer_ref }}"
NOTIFICATION_BODY = (
    "Monitor {{ event.payload.monitor }} ({{ event.payload.entity_ref }}, {{ event.payload.item }}) "
    "for {{ event.payload.customer_name }} ({{ event.payload.customer_ref }}) on {{ event.payload.day }}: "
    "{{ event.payload.condition.when }} {{ event.payload.condition.value }}; value {{ event.payload.value }}, "
    "increment {{ event.payload.increment }}."
)


def create_example_automation(url: str, *, slack: bool = False) -> tuple[str, str]:
    """A Prefect Automation routing every ``billbridge.monitor.triggered`` event to a notification:
    a Slack incoming webhook (``slack``) or any URL that takes a JSON POST. Creates (or replaces)
    the notification block ``billbridge-monitor-alerts`` and the automation; returns their ids."""
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
    from prefect.client.orchestration import get_client
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    block: Any = (
        SlackWebhook(url=url)
        if slack
        else CustomWebhookNotificationBlock(
            name="billbridge monitor alerts", url=url, json_data={"subject": "{{subject}}", "text": "{{body}}"}
        )
    )
    block_id = block.save("billbridge-monitor-alerts", overwrite=True)
    with get_client(sync_client=True) as client:  # replaced, not added twice, when run again
        for found in client.read_automations_by_name(name=AUTOMATION_NAME):
            client.delete_automation(found.id)
    automation = Automation(
        name=AUTOMATION_NAME,
        description="Every monitor alert of billbridge as a notification (created by `billbridge monitors automation`)",
        trigger=EventTrigger(expect={EVENT}, posture=Posture.Reactive, threshold=1),
        actions=[SendNotification(block_document_id=block_id, subject=NOTIFICATION_SUBJECT, body=NOTIFICATION_BODY)],
    ).create()
    assert isinstance(automation, Automation)  # called outside an event loop: the synchronous create
    return str(block_id), str(automation.id)
