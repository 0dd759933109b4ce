#!/usr/bin/env python
"""Benchmark of the push: N approved invoices into a QuickBooks and a Stripe sandbox, in API calls.

    python bench/bench_push.py                                  # 10,000 invoices to each sandbox
    python bench/bench_push.py --invoices 2000 --target stripe --json

Setup (not timed): N one-invoice contracts (1 to 3 lines from a handful of products) for N/10
customers are imported, billed by the billing engine and approved, which queues their pushes in the
outbox (``flows/bill.py``: QuickBooks takes every document, Stripe the auto-charge invoices).

Timed, per target, each against a fresh sandbox served from its own process:
- floor: a bare SDK loop (python-quickbooks / stripe's StripeClient) making exactly the fewest calls
  the vendor allows for the same documents, with payloads built by the same mapping functions;
- push: ``flows.push.push`` (what the ``push_invoices`` flow runs): relay, leases, connector,
  external references, status changes.

Then, untimed: a rerun (nothing is queued: nothing may be sent) and, with ``--replay``, a replay:
every message is made due again as if each commit after the vendor's answer had been lost, so every
document is looked up and none may be created twice. Printed: API calls against the minimum, calls per invoice, wall time
against the floor, and the documents the sandbox holds (must be N, one per number).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, cast

from common import Runs, SandboxProcess, add_runs_argument, code_version, log, repeat, stamp, timer
from pydantic import SecretStr
from sqlalchemy import CursorResult, select, update

from billbridge.billing.documents import OutboundDocument
from billbridge.flows.approval import approve_drafts
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.push import push
from billbridge.settings import QuickBooksSettings, Settings, StripeSettings
from billbridge.store.db import Store, open_store
from billbridge.store.models import OutboxMessage, utcnow
from billbridge.store.outbound_documents import outbound_documents

AS_OF = date(2026, 7, 1)
PRODUCTS = 6
QBO_BATCH = 30  # operations per QuickBooks batch request
QBO_LOOKUP = 30  # names per "Name IN (...)" look-up query (the connector's chunk)
STRIPE_LINES_PER_CALL = 50  # the connector's add_lines chunk
STRIPE_API_KEY = "sk_test_billbridge_bench"
UNPACED = 1_000_000  # the bench counts calls; Intuit's limits would set the pace otherwise (--at-limits: they do)
QBO_REQUESTS_PER_SECOND = 10  # Intuit's limits since 2025, per realm (--at-limits)
QBO_BATCHES_PER_MINUTE = 120


# ---------------------------------------------------------------------------------------------
# Sandboxes (each in its own process, see common.SandboxProcess)
# ---------------------------------------------------------------------------------------------


class QuickBooksHost:
    """An empty QuickBooks company over TLS; ``at_limits``: enforcing Intuit's rate limits."""

    def __init__(self, at_limits: bool = False) -> None:
        from billbridge.sandbox.quickbooks.limits import INTUIT_LIMITS
        from billbridge.sandbox.quickbooks.running import start_quickbooks

        self.running = start_quickbooks(limits=INTUIT_LIMITS if at_limits else None)
        self.faults = self.running.faults

    def throttled(self) -> int:
        """Requests the sandbox refused with 429 (its rate limits)."""
        return self.running.throttle.refused if self.running.throttle is not None else 0

    def info(self) -> dict[str, str]:
        r = self.running
        return {
            "client_id": r.client_id,
            "client_secret": r.client_secret,
            "realm_id": r.realm_id,
            "refresh_token": r.refresh_token,
            "api_url_v3": r.api_url_v3,
            "discovery_url": r.discovery_url,
            "ca_bundle": str(r.ca_bundle),
        }

    def holdings(self) -> dict[str, int]:
        company = self.running.company
        documents = company.all("Invoice") + company.all("CreditMemo")
        return {
            "documents": len(documents),
            "distinct_numbers": len({str(d["DocNumber"]) for d in documents}),
            "customers": len(company.all("Customer")),
            "items": len(company.all("Item")),
        }

    def stop(self) -> None:
        self.running.stop()


class StripeHost:
    """An empty Stripe account."""

    def __init__(self, at_limits: bool = False) -> None:  # noqa: ARG002 (the Stripe sandbox does not throttle)
        from billbridge.sandbox.server import SandboxServer
        from billbridge.sandbox.stripe import StripeSandbox

        self.sandbox = StripeSandbox((STRIPE_API_KEY,))
        self.server = SandboxServer(self.sandbox.app, name="stripe").start()
        self.faults = self.sandbox.faults

    def info(self) -> dict[str, str]:
        return {"url": self.server.url, "api_key": STRIPE_API_KEY}

    def holdings(self) -> dict[str, int]:
        invoices = self.sandbox.state.all("invoice")
        return {
            "documents": len(invoices),
            "distinct_numbers": len({i["metadata"].get("billbridge_number") for i in invoices}),
            "open": sum(1 for i in invoices if i["status"] == "open"),
            "customers": len(self.sandbox.state.all("customer")),
        }

    def stop(self) -> None:
        self.server.stop()


def route(key: str) -> str:
    """A call counter key with ids folded: "POST /v3/company/913.../batch" -> "POST /v3/company/{}/batch"."""
    method, _, path = key.partition(" ")
    parts = ["{}" if any(ch.isdigit() for ch in p) and not p.startswith("v") else p for p in path.split("/")]
    return f"{method} {'/'.join(parts)}"


def routes(sandbox: SandboxProcess) -> dict[str, int]:
    folded: Counter[str] = Counter()
    for key, n in sandbox.calls_by_route().items():
        folded[route(key)] += n
    return dict(folded.most_common())


# ---------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------


def setup(store: Store, n: int, customers: int, auto_charge: float, targets: list[str], seed: int) -> dict[str, int]:
    """Import N one-invoice contracts, bill them as of AS_OF, approve and queue them; messages per topic."""
    rng = random.Random(seed)
    import_document(
        store,
        {
            "entities": [{"entity_ref": "us", "name": "US", "currency": "USD", "invoice_prefix": "US-INV-"}],
            "customers": [
                {
                    "customer_ref": f"cust-{i:06d}",
                    "name": f"Customer {i:06d} Ltd",
                    "entity_ref": "us",
                    "email": f"ap{i}@customer.example",
                }
                for i in range(customers)
            ],
            "products": [{"product_ref": f"prod-{p}", "name": f"Product {p}", "prices": []} for p in range(PRODUCTS)],
        },
    )
    for start in range(0, n, 5000):
        contracts = []
        for i in range(start, min(n, start + 5000)):
            products = rng.sample(range(PRODUCTS), rng.randint(1, 3))
            contracts.append(
                {
                    "contract_ref": f"K{i:06d}",
                    "customer_ref": f"cust-{rng.randrange(customers):06d}",
                    "entity_ref": "us",
                    "currency": "USD",
                    "contract_start_date": AS_OF.isoformat(),
                    "auto_charge": rng.random() < auto_charge,
                    "lines": [
                        {
                            "line_ref": f"l{p}",
                            "product_ref": f"prod-{p}",
                            "quantity": str(rng.randint(1, 20)),
                            "pricing": {
                                "model": "per_unit",
                                "unit_price": f"{rng.randint(5, 400)}.{rng.randint(0, 99):02d}",
                            },
                        }
                        for p in products
                    ],
                }
            )
        import_document(store, {"contracts": contracts})
    summary = run_billing(store, AS_OF)
    if summary.failed:
        raise SystemExit(f"billing failed for {len(summary.failed)} contracts: {summary.failed[:3]}")
    return approve_drafts(store, targets)


def queued_documents(store: Store, topic: str) -> list[OutboundDocument]:
    with store.read() as session:
        query = select(OutboxMessage.aggregate_id).where(OutboxMessage.topic == topic).order_by(OutboxMessage.id)
        ids = list(session.scalars(query))
        documents = outbound_documents(session, ids)
    return [documents[i] for i in ids]


def settings_for(
    target: str, info: dict[str, str], database_url: str, data_dir: str, *, paced: bool = False
) -> Settings:
    common: dict[str, Any] = {"database_url": database_url, "data_dir": data_dir, "secret_key": None}
    if target == "quickbooks":
        return Settings(
            **common,
            quickbooks=QuickBooksSettings(
                client_id=info["client_id"],
                client_secret=SecretStr(info["client_secret"]),
                realm_id=info["realm_id"],
                refresh_token=SecretStr(info["refresh_token"]),
                api_url_v3=info["api_url_v3"],
                discovery_url=info["discovery_url"],
                ca_bundle=info["ca_bundle"],
                requests_per_second=None if paced else UNPACED,  # paced: Intuit's limits (the defaults)
                batches_per_minute=None if paced else UNPACED,
            ),
        )
    return Settings(**common, stripe=StripeSettings(api_key=SecretStr(info["api_key"]), base_url=info["url"]))


# ---------------------------------------------------------------------------------------------
# The minimum, and the floor: a bare SDK loop making exactly those calls
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Minimum:
    total: int
    parts: dict[str, int]


def quickbooks_minimum(docs: list[OutboundDocument]) -> Minimum:
    """Connecting: the OAuth discovery document and one token refresh. Customers and items: one
    look-up per 30 names (the company may hold them already: a bookkeeper's, or an earlier run's whose
    answer was lost, and QuickBooks refuses a second customer with the same DisplayName), one batch
    create per 30. Documents: one batch create per 30; no look-up, as none was attempted before (the
    batch's requestid covers a retry of the same call)."""
    customers = len({d.customer_ref for d in docs})
    items = len({ln.product_ref for d in docs for ln in d.lines})
    parts = {
        "connect": 2,
        "customer look-ups": math.ceil(customers / QBO_LOOKUP),
        "customer creates": math.ceil(customers / QBO_BATCH),
        "item look-ups": math.ceil(items / QBO_LOOKUP),
        "item creates": math.ceil(items / QBO_BATCH),
        "document creates": math.ceil(len(docs) / QBO_BATCH),
    }
    return Minimum(sum(parts.values()), parts)


def stripe_minimum(docs: list[OutboundDocument]) -> Minimum:
    """Per customer: one search (a customer made by an earlier run must not be made again) and one
    create. Per invoice: create, add_lines (all its lines, up to 50, in one call: Stripe's invoice
    create takes no lines, and one invoice item per line would cost a call each), finalize. Charging
    (pay) is not part of the push: the collect step does it."""
    customers = len({d.customer_ref for d in docs})
    line_calls = sum(math.ceil(len(d.lines) / STRIPE_LINES_PER_CALL) for d in docs)
    parts = {
        "customer searches": customers,
        "customer creates": customers,
        "invoice creates": len(docs),
        "add_lines": line_calls,
        "finalize": len(docs),
    }
    return Minimum(sum(parts.values()), parts)


def quickbooks_floor(info: dict[str, str], docs: list[OutboundDocument]) -> None:
    """The minimum calls through python-quickbooks (and intuit-oauth), nothing stored."""
    from billbridge.connectors.quickbooks.client import OAuthClient, QuickBooksClient, QuickBooksConfig
    from billbridge.connectors.quickbooks.writers import batch_item_id, batch_request_id
    from billbridge.mapping.quickbooks import (
        customer_payload,
        customer_spec,
        document_payload,
        item_payload,
        qbo_entity,
    )

    config = QuickBooksConfig(
        info["client_id"],
        info["client_secret"],
        info["realm_id"],
        api_url_v3=info["api_url_v3"],
        discovery_url=info["discovery_url"],
        ca_bundle=info["ca_bundle"],
    )
    specs = {d.customer_ref: customer_spec(d) for d in docs}
    skus = {ln.product_ref: ln.description for d in docs for ln in d.lines}
    auth = OAuthClient(config)
    auth.refresh(refresh_token=info["refresh_token"])
    qb = QuickBooksClient.connect(config, auth)
    url = f"{qb.api_url}/company/{config.realm_id}/batch"

    def quote(v: str) -> str:
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def look_up(entity: str, name_field: str, names: list[str]) -> None:
        for start in range(0, len(names), QBO_LOOKUP):
            chunk = names[start : start + QBO_LOOKUP]
            qb.query(f"SELECT * FROM {entity} WHERE {name_field} IN ({', '.join(quote(v) for v in chunk)})")

    def create(entity_of: Callable[[int], str], payloads: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        out = []
        for start in range(0, len(payloads), QBO_BATCH):
            chunk = payloads[start : start + QBO_BATCH]
            items = [
                {"bId": batch_item_id(key), "operation": "create", entity_of(start + k): body}
                for k, (key, body) in enumerate(chunk)
            ]
            rid = batch_request_id(key for key, _ in chunk)
            answer = qb.make_request("POST", url, json.dumps({"BatchItemRequest": items}), request_id=rid)
            out += [next(v for k, v in item.items() if k != "bId") for item in answer["BatchItemResponse"]]
        return out

    look_up("Customer", "DisplayName", sorted({s.display_name for s in specs.values()}))
    made = create(lambda _: "Customer", [(f"c-{ref}", customer_payload(s)) for ref, s in specs.items()])
    customer_ids = {ref: str(r["Id"]) for ref, r in zip(specs, made, strict=True)}
    look_up("Item", "Name", sorted(skus))
    made = create(
        lambda _: "Item",
        [(f"i-{sku}", item_payload(sku, desc, config.income_account_id)) for sku, desc in skus.items()],
    )
    item_ids = {sku: str(r["Id"]) for sku, r in zip(skus, made, strict=True)}
    payloads = [
        (f"d-{d.number}", document_payload(d, customer_id=customer_ids[d.customer_ref], item_ids=item_ids))
        for d in docs
    ]
    made = create(lambda k: qbo_entity(docs[k]), payloads)
    assert all("Fault" not in r and "Id" in r for r in made), "the floor's documents were refused"
    auth.close()
    qb.session.close()


def stripe_floor(info: dict[str, str], docs: list[OutboundDocument]) -> None:
    """The minimum calls through stripe's StripeClient, nothing stored."""
    import stripe

    from billbridge.mapping import stripe as mapping

    client = stripe.StripeClient(
        info["api_key"], base_addresses={"api": info["url"]}, max_network_retries=0, http_client=stripe.RequestsClient()
    )
    api: Any = client.v1
    customers = {d.customer_ref: d for d in docs}
    prepared = [(d, mapping.invoice_params(d, ""), mapping.invoice_lines(d)) for d in docs]
    ids: dict[str, str] = {}
    for ref, d in customers.items():
        api.customers.search({"query": f"metadata['{mapping.METADATA_CUSTOMER}']:'{ref}'", "limit": 1})
        params = {
            "name": d.customer_name,
            "email": d.customer_email or "",
            "metadata": {mapping.METADATA_CUSTOMER: ref},
        }
        ids[ref] = api.customers.create(params, {"idempotency_key": f"c-{ref}"}).id
    for d, params, lines in prepared:
        invoice = api.invoices.create({**params, "customer": ids[d.customer_ref]}, {"idempotency_key": f"i-{d.number}"})
        for start in range(0, len(lines), STRIPE_LINES_PER_CALL):
            chunk = lines[start : start + STRIPE_LINES_PER_CALL]
            api.invoices.add_lines(invoice.id, {"lines": chunk}, {"idempotency_key": f"l-{d.number}-{start}"})
        done = api.invoices.finalize_invoice(invoice.id, {"auto_advance": False}, {"idempotency_key": f"f-{d.number}"})
        assert done.status == "open", done.status


@dataclass(frozen=True)
class TargetSpec:
    host: Callable[[], Any]
    minimum: Callable[[list[OutboundDocument]], Minimum]
    floor: Callable[[dict[str, str], list[OutboundDocument]], None]


TARGETS: dict[str, TargetSpec] = {
    "quickbooks": TargetSpec(QuickBooksHost, quickbooks_minimum, quickbooks_floor),
    "stripe": TargetSpec(StripeHost, stripe_minimum, stripe_floor),
}


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class Result:
    target: str
    invoices: int
    customers: int
    items: int
    calls: int
    minimum: int
    push_s: float
    floor_s: float
    floor_calls: int
    outcomes: dict[str, int]
    holdings: dict[str, int]
    rerun_calls: int
    rerun_outcomes: dict[str, int]
    replay_calls: int | None
    replay_outcomes: dict[str, int] | None
    holdings_after: dict[str, int]
    minimum_parts: dict[str, int]
    routes: dict[str, int] = field(default_factory=dict)
    limits_minimum_s: float | None = None  # --at-limits: the least wall time Intuit's limits allow these calls
    throttled: int | None = None  # --at-limits: requests the sandbox refused (429)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "calls_per_invoice": round(self.calls / self.invoices, 4),
            "minimum_per_invoice": round(self.minimum / self.invoices, 4),
            "call_ratio": round(self.calls / self.minimum, 3),
            "invoices_per_s": round(self.invoices / self.push_s, 1),
            "wall_ratio": round(self.push_s / self.floor_s, 2),
        }


def replay_all(store: Store, topic: str) -> int:
    """Make every delivered message of ``topic`` due again, as if each commit after the vendor's answer
    had been lost (attempts stay > 0, so the handler looks every document up before creating it)."""
    with store.write() as session:
        done = session.execute(  # an UPDATE: a CursorResult, which has a row count
            update(OutboxMessage)
            .where(OutboxMessage.topic == topic, OutboxMessage.delivered_at.is_not(None))
            .values(delivered_at=None, available_at=utcnow())
        )
        return int(cast(CursorResult[Any], done).rowcount)


def limits_minimum(by_route: dict[str, int]) -> float:
    """The least wall time Intuit's sliding windows allow for these calls, answered instantly: the
    batch calls sent as early as both windows let them (the k-th no sooner than a second after the
    (k-10)-th and a minute after the (k-120)-th), the other calls fitted in the waits; or, if
    more, all calls at 10 a second. The OAuth calls are not the company's."""
    api = sum(n for r, n in by_route.items() if "/v3/company/" in r)
    batches = sum(n for r, n in by_route.items() if r.endswith("/batch"))
    sent: list[float] = []
    for k in range(batches):
        earliest = sent[-1] if sent else 0.0
        if k >= QBO_REQUESTS_PER_SECOND:
            earliest = max(earliest, sent[k - QBO_REQUESTS_PER_SECOND] + 1.0)
        if k >= QBO_BATCHES_PER_MINUTE:
            earliest = max(earliest, sent[k - QBO_BATCHES_PER_MINUTE] + 60.0)
        sent.append(earliest)
    return max(sent[-1] if sent else 0.0, (math.ceil(api / QBO_REQUESTS_PER_SECOND) - 1) * 1.0)


def run_target(
    target: str,
    store: Store,
    database_url: str,
    workdir: str,
    replay: bool,
    profile: str | None,
    at_limits: bool = False,
) -> Result:
    spec = TARGETS[target]
    docs = queued_documents(store, f"push.{target}")
    customers = len({d.customer_ref for d in docs})
    items = len({ln.product_ref for d in docs for ln in d.lines})
    minimum = spec.minimum(docs)
    at_limits = at_limits and target == "quickbooks"

    if at_limits:  # the comparison is the least time the limits allow, not a bare loop's
        floor_s, floor_calls = [float("nan")], 0
    else:
        with SandboxProcess(spec.host) as sandbox:
            with timer(freeze=True) as floor_s:
                spec.floor(sandbox.info, docs)
            floor_calls = sandbox.calls()
        log(f"[{target}] floor: {len(docs):,} documents, {floor_calls:,} calls in {floor_s[0]:.1f}s")
        if floor_calls != minimum.total:
            log(f"[{target}] warning: the floor made {floor_calls} calls, the minimum is {minimum.total}")

    with SandboxProcess(spec.host, at_limits) as sandbox:
        settings = settings_for(target, sandbox.info, database_url, workdir, paced=at_limits)
        profiler = cProfile.Profile() if profile else None
        with timer(freeze=True) as push_s:
            if profiler:
                profiler.enable()
            summary = push(store, settings, target)
            if profiler:
                profiler.disable()
        if profiler and profile:
            buffer = io.StringIO()
            pstats.Stats(profiler, stream=buffer).sort_stats(profile).print_stats(25)
            log(f"[{target}] cProfile of the push (wall time inflated), top 25 by {profile}:\n{buffer.getvalue()}")
        calls, by_route, holdings = sandbox.calls(), routes(sandbox), sandbox.ask("holdings")
        log(f"[{target}] push: {dict(summary.outcomes)} with {calls:,} calls in {push_s[0]:.1f}s; {by_route}")
        limits_s = throttled = None
        if at_limits:
            limits_s, throttled = limits_minimum(by_route), int(sandbox.ask("throttled"))
            log(
                f"[{target}] at Intuit's limits: {push_s[0]:.1f}s against the {limits_s:.0f}s they allow at "
                f"least for these calls ({push_s[0] / max(limits_s, 1e-9):.2f}x); {throttled} requests throttled"
            )
        if summary.failures:
            log(f"[{target}] failures (first 3): {summary.failures[:3]}")

        sandbox.reset_calls()
        rerun = push(store, settings, target)
        rerun_calls = sandbox.calls()
        log(f"[{target}] rerun: {dict(rerun.outcomes)} with {rerun_calls} calls; {routes(sandbox)}")

        replay_calls = replay_outcomes = None
        if replay:
            sandbox.reset_calls()
            replayed = replay_all(store, f"push.{target}")
            started = time.perf_counter()
            again = push(store, settings, target)
            replay_calls, replay_outcomes = sandbox.calls(), dict(again.outcomes)
            log(
                f"[{target}] replay of {replayed:,} delivered messages: {replay_outcomes} with {replay_calls:,} calls "
                f"in {time.perf_counter() - started:.1f}s; {routes(sandbox)}"
            )
        holdings_after = sandbox.ask("holdings")

    return Result(
        target,
        len(docs),
        customers,
        items,
        calls,
        minimum.total,
        push_s[0],
        floor_s[0],
        floor_calls,
        dict(summary.outcomes),
        holdings,
        rerun_calls,
        dict(rerun.outcomes),
        replay_calls,
        replay_outcomes,
        holdings_after,
        minimum.parts,
        by_route,
        limits_s,
        throttled,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=None, help="default: invoices / 10")
    parser.add_argument("--target", choices=[*TARGETS, "both"], default="both")
    parser.add_argument(
        "--auto-charge",
        type=float,
        default=1.0,
        help="share of contracts charged automatically; only those go to Stripe (default 1: all)",
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="also replay every message as if each commit had been lost (slow: the sandboxes scan their documents)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="cumulative",
        choices=["cumulative", "tottime"],
        help="cProfile the push (top 25 on stderr; its wall time is inflated)",
    )
    parser.add_argument(
        "--at-limits",
        action="store_true",
        help="QuickBooks: the sandbox enforces Intuit's rate limits and the connector paces at them (no floor run)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    add_runs_argument(parser)
    args = parser.parse_args()
    targets = list(TARGETS) if args.target == "both" else [args.target]
    customers = args.customers or max(1, args.invoices // 10)

    def one_run() -> list[Result]:
        """Setup (not timed) and a push to each target, on a fresh database."""
        with tempfile.TemporaryDirectory(prefix="billbridge-push-bench-") as workdir:
            database_url = f"sqlite:///{os.path.join(workdir, 'push.db')}"
            store = open_store(database_url)
            started = time.perf_counter()
            queued = setup(store, args.invoices, customers, args.auto_charge, targets, args.seed)
            log(
                f"setup: {args.invoices:,} invoices for {customers:,} customers, queued {queued} "
                f"in {time.perf_counter() - started:.1f}s"
            )
            results = [
                run_target(t, store, database_url, workdir, args.replay, args.profile, args.at_limits) for t in targets
            ]
            store.dispose()
        return results

    repeated = repeat(one_run, args.runs, "push")
    per_target = [Runs([run[i] for run in repeated.results], repeated.loads) for i in range(len(targets))]
    if args.json:
        payload = {
            "code": code_version(),
            "loads": repeated.loads,
            "results": [[r.as_dict() for r in runs.results] for runs in per_target],
        }
        print(json.dumps(payload, indent=2))
        return
    print(f"\n{stamp()}\n")
    print(f"median (lowest-highest) of {args.runs} runs; ratios per run, against its own floor\n")
    header = (
        f"{'target':<11}{'invoices':>9}  {'calls / minimum':<24}{'push s':<20}{'x floor (wall)':<24}"
        f"{'rerun calls':>12}{'held':>7}  {'load (1 min)':<20}"
    )
    print(header + "\n" + "-" * len(header))
    for runs in per_target:
        r = runs.first
        print(
            f"{r.target:<11}{r.invoices:>9,}  {runs.spread(lambda x: x.calls / x.minimum).show('.2f', 'x'):<24}"
            f"{runs.spread(lambda x: x.push_s).show('.1f'):<20}"
            f"{runs.spread(lambda x: x.push_s / x.floor_s).show('.2f', 'x'):<24}"
            f"{max(x.rerun_calls for x in runs.results):>12,}{r.holdings_after['documents']:>7,}  {runs.load.show('.2f'):<20}"
        )
    print(
        "\nminimum = "
        + "; ".join(
            f"{runs.first.target}: " + ", ".join(f"{k} {v:,}" for k, v in runs.first.minimum_parts.items())
            for runs in per_target
        )
    )
    for runs in per_target:
        for r in runs.results:
            ok = r.holdings_after["documents"] == r.holdings_after["distinct_numbers"] == r.invoices
            print(
                f"[{r.target}] outcomes {r.outcomes}; rerun {r.rerun_outcomes}; replay {r.replay_outcomes}; "
                f"sandbox holds {r.holdings_after} -> {'one copy of each document' if ok else 'MISMATCH'}"
            )
            if r.limits_minimum_s is not None:
                print(
                    f"[{r.target}] at Intuit's limits: {r.push_s:.1f}s against the least they allow, "
                    f"{r.limits_minimum_s:.0f}s ({r.push_s / max(r.limits_minimum_s, 1e-9):.2f}x); "
                    f"{r.throttled} requests throttled"
                )


if __name__ == "__main__":
    main()
