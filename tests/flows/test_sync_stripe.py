"""Stripe subscriptions as a contract source, end to end: the Stripe sandbox, the real stripe SDK,
the CRM sync pipeline (``spec_for("stripe")``), the store (SQLite and PostgreSQL).

Every seeded subscription becomes one contract billed by Stripe; a worked example (2 seats at USD
49.00 a month) has MRR 98.00; an upgrade is a new version from its day, cancellations end the
contract; reruns change nothing; broken subscriptions are quarantined with their field and raw
payload and cleared once fixed; the billing run invoices none of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import stripe
from sqlalchemy import select

from billbridge.billing.engine import Version, plan_invoices
from billbridge.billing.metrics import mrr
from billbridge.billing.model import Contract
from billbridge.connectors.stripe import StripeConnector
from billbridge.connectors.stripe.source import SubscriptionSource
from billbridge.flows.crm_pages import SyncSummary, spec_for, sync_pages
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import preview, run_billing
from billbridge.sandbox import demo_world
from billbridge.sandbox.faults import Fault
from billbridge.sandbox.stripe import RunningStripe, start_seeded
from billbridge.store import quarantine
from billbridge.store.contracts import contract_ids, current_contracts, load_timelines
from billbridge.store.db import Store
from tests.settings_env import QUICK_RETRY, as_environment

DAY0 = date(2026, 11, 2)


def _epoch(day: date, hour: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp())


class Clock:
    """The sandbox's and the source's time: noon of DAY0 to start with."""

    def __init__(self) -> None:
        self.now = float(_epoch(DAY0, 12))

    def __call__(self) -> float:
        return self.now

    @property
    def day(self) -> date:
        return datetime.fromtimestamp(self.now, UTC).date()


@dataclass
class Example:
    """The worked example: a self-serve customer on 2 seats of a USD 49.00 monthly price."""

    sub_id: str
    item_id: str

    @property
    def ref(self) -> str:
        return f"st-{self.sub_id}"


@dataclass
class Env:
    running: RunningStripe
    client: stripe.StripeClient
    clock: Clock
    world: demo_world.DemoWorld
    example: Example


@pytest.fixture
def env(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    world = demo_world.generate(40, seed=11)
    import_document(store, demo_world.entities_document(world))
    clock = Clock()
    with start_seeded(world, clock=clock) as running:
        monkeypatch.setenv("BILLBRIDGE_STRIPE__API_KEY", running.api_key)
        monkeypatch.setenv("BILLBRIDGE_STRIPE__BASE_URL", running.url)
        for key, value in as_environment("BILLBRIDGE_STRIPE__RETRY", QUICK_RETRY).items():  # faults retried at once
            monkeypatch.setenv(key, value)
        client = stripe.StripeClient(running.api_key, base_addresses={"api": running.url})
        customer = client.v1.customers.create({"name": "Acme Self-Serve", "email": "ap@acme.test"})
        product = client.v1.products.create({"name": "Team seats", "metadata": {"sku": "TEAM-SEATS"}})
        price = client.v1.prices.create(
            {"product": product.id, "currency": "usd", "unit_amount": 4900, "recurring": {"interval": "month"}}
        )
        sub = client.v1.subscriptions.create(
            {
                "customer": customer.id,
                "items": [{"price": price.id, "quantity": 2}],
                "backdate_start_date": _epoch(date(2026, 10, 15)),
            }
        )
        running.ids.subscriptions["example"] = sub.id
        yield Env(running, client, clock, world, Example(sub.id, sub["items"].data[0].id))


def sync(store: Store, env: Env) -> SyncSummary:
    connector = StripeConnector(env.running.api_key, base_url=env.running.url, sleep=lambda _seconds: None)
    source = SubscriptionSource(connector, clock=env.clock)
    return sync_pages(store, spec_for("stripe"), source, today=env.clock.day)


def stored(store: Store) -> dict[str, Contract]:
    with store.read() as session:
        return current_contracts(session, None)


def versions(store: Store, ref: str) -> list[Version]:
    with store.read() as session:
        [timeline] = load_timelines(session, contract_ids(session, refs=[ref])).values()
    return list(timeline.versions)


def open_quarantine(store: Store) -> dict[str, dict[str, Any]]:
    with store.read() as session:
        return {q["record_key"]: q for q in quarantine.list_open(session, source="stripe")}


def test_full_sync_then_rerun_then_upgrade_and_cancellations(store: Store, env: Env) -> None:
    subs = env.running.ids.subscriptions
    first = sync(store, env)
    contracts = stored(store)
    assert set(contracts) == {f"st-{sub_id}" for sub_id in subs.values()}
    assert first.counts["contracts.created"] == len(subs) == first.deals_pulled > 20
    assert not first.errors and open_quarantine(store) == {}
    assert {c.billed_by for c in contracts.values()} == {"stripe"}
    models = {line.pricing.model for c in contracts.values() for line in c.lines if line.pricing}
    assert models == {"per_unit", "package", "graduated", "volume"}  # flat fees are per-unit prices at Stripe
    for deal_key, sub_id in subs.items():  # terms as the world's deal says (seeded from it)
        if deal_key == "example":
            continue
        deal, contract = env.world.deals[deal_key], contracts[f"st-{sub_id}"]
        assert (contract.currency, contract.entity_ref, contract.contract_start_date) == (
            deal.currency,
            deal.entity_ref,
            deal.start_date,
        )
        assert contract.contract_end_date == deal.end_date

    example = contracts[env.example.ref]
    assert (example.currency, example.entity_ref, example.cycle_unit, example.cycle_length) == (
        "USD",
        "us-inc",
        "month",
        1,
    )
    assert example.contract_start_date == date(2026, 10, 15) and example.contract_end_date is None
    assert [(line.product_ref, line.quantity) for line in example.lines] == [("TEAM-SEATS", Decimal(2))]
    assert mrr([example], DAY0) == {"USD": Decimal("98.00")}

    again = sync(store, env)  # nothing changed in Stripe: nothing changes here
    assert again.counts["contracts.created"] == again.counts["contracts.updated"] == 0
    assert again.counts["contracts.unchanged"] == again.deals_pulled
    assert stored(store) == contracts

    # A day later: the example upgrades to 5 seats, one evergreen subscription is canceled now and
    # another is scheduled to end with the year.
    evergreen = [
        (k, s)
        for k, s in subs.items()
        if k != "example" and env.world.deals[k].end_date is None and env.world.deals[k].start_date <= DAY0
    ]
    (_, canceled), (_, scheduled) = evergreen[:2]
    env.clock.now += 86400
    changed_on = env.clock.day
    env.client.v1.subscriptions.update(env.example.sub_id, {"items": [{"id": env.example.item_id, "quantity": 5}]})
    env.client.v1.subscriptions.cancel(canceled)
    env.client.v1.subscriptions.update(scheduled, {"cancel_at": _epoch(date(2027, 1, 1))})
    env.clock.now += 600
    incremental = sync(store, env)
    # (the cursor's lag window also re-reads the seeding's events, minutes before the first sync)
    assert incremental.counts["contracts.updated"] == 3 and incremental.counts["contracts.created"] == 0

    first_terms, upgraded = versions(store, env.example.ref)
    assert (first_terms.effective_date, first_terms.contract.lines[0].quantity) == (date(2026, 10, 15), 2)
    assert (upgraded.effective_date, upgraded.contract.lines[0].quantity) == (changed_on, 5)
    assert mrr([upgraded.contract], changed_on) == {"USD": Decimal("245.00")}
    ended = versions(store, f"st-{canceled}")[-1]
    assert (ended.effective_date, ended.contract.contract_end_date) == (changed_on, changed_on)  # ended at noon
    assert mrr([ended.contract], changed_on + timedelta(days=1)) == {}  # out of recurring revenue from then
    ending = versions(store, f"st-{scheduled}")[-1]
    assert (ending.effective_date, ending.contract.contract_end_date) == (changed_on, date(2026, 12, 31))

    before = stored(store)
    env.clock.now += 60
    rerun = sync(store, env)  # the lag window reads the same events again: nothing twice
    assert rerun.deals_pulled == 3 and rerun.counts["contracts.unchanged"] == 3
    assert rerun.counts["contracts.updated"] == rerun.counts["contracts.created"] == 0
    assert stored(store) == before and len(versions(store, env.example.ref)) == 2


def test_broken_subscriptions_are_quarantined_then_cleared_when_fixed(store: Store, env: Env) -> None:
    client = env.client
    customer = client.v1.customers.create({"name": "Zurich Self-Serve"})
    product = client.v1.products.create({"name": "Seats CH", "metadata": {"sku": "SEATS-CH"}})
    bare = client.v1.products.create({"name": "API calls"})  # no sku: usage events could not name it

    def subscribe(currency: str, **recurring: Any) -> str:
        price = client.v1.prices.create(
            {
                "product": (bare if recurring else product).id,
                "currency": currency,
                "unit_amount": 1000,
                "recurring": {"interval": "month", **recurring},
            }
        )
        return str(client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]}).id)

    no_entity = subscribe("chf")  # no legal entity configured for CHF, none in metadata
    unknown_currency = subscribe("xyz")
    metered = subscribe("usd", usage_type="metered")
    summary = sync(store, env)
    held = open_quarantine(store)
    assert {key: row["field"] for key, row in held.items()} == {
        f"st-{no_entity}": f"subscription {no_entity}: metadata.billbridge_entity",
        f"st-{unknown_currency}": f"subscription {unknown_currency}: currency",
        f"st-{metered}": f"subscription {metered}: items.data[0].price.product.metadata.sku",
    }
    assert "without a usage product" in held[f"st-{metered}"]["reason"]
    assert held[f"st-{no_entity}"]["payload"]["deal"]["id"] == no_entity  # the raw subscription is kept
    assert held[f"st-{no_entity}"]["payload"]["company"]["name"] == "Zurich Self-Serve"
    assert {e.key for e in summary.errors} == set(held)
    assert summary.counts["contracts.created"] == len(env.running.ids.subscriptions)  # the others went on

    env.clock.now += 3600
    client.v1.subscriptions.update(no_entity, {"metadata": {"billbridge_entity": "eu-bv"}})  # fixed in Stripe
    fixed = sync(store, env)
    assert fixed.counts["contracts.created"] == 1
    assert set(open_quarantine(store)) == {f"st-{unknown_currency}", f"st-{metered}"}
    contract = stored(store)[f"st-{no_entity}"]
    assert (contract.currency, contract.entity_ref, contract.billed_by) == ("CHF", "eu-bv", "stripe")


def test_faults_during_a_sync_change_nothing_in_the_outcome(store: Store, env: Env) -> None:
    plan = [
        Fault("rate_limit", path="^/v1/subscriptions$", times=2, retry_after=0),
        Fault("server_error", path="^/v1/subscriptions$", times=1),
        Fault("drop", path="^/v1/prices/", times=1),
        Fault("server_error", path="^/v1/products/", after=2, times=2),
    ]
    for fault in plan:
        env.running.sandbox.faults.add(fault)
    summary = sync(store, env)
    assert [f.hits for f in env.running.sandbox.faults.faults] == [f.times for f in plan]  # every fault met
    assert summary.counts["contracts.created"] == len(env.running.ids.subscriptions) and not summary.errors
    assert set(stored(store)) == {f"st-{sub_id}" for sub_id in env.running.ids.subscriptions.values()}


def test_billing_never_invoices_what_stripe_bills(store: Store, env: Env) -> None:
    sync(store, env)
    as_of = DAY0 + timedelta(days=90)
    summary = run_billing(store, as_of)
    assert summary.contracts == len(env.running.ids.subscriptions)
    assert sum(summary.documents.values()) == 0 and not summary.failed
    assert preview(store, env.example.ref, as_of).invoices == []
    # The same terms billed by billbridge would invoice: the flag is what keeps Stripe's customers
    # from being billed twice.
    [version] = versions(store, env.example.ref)
    ours = Version(1, version.effective_date, version.contract.model_copy(update={"billed_by": "billbridge"}))
    planned = plan_invoices(env.example.ref, [ours], as_of)
    assert [d.invoice_total for d in planned.invoices][:2] == [Decimal("98.00"), Decimal("98.00")]


def test_the_cli_syncs_stripe(store: Store, env: Env, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from billbridge.app.cli import app

    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", "/nonexistent/billbridge.toml")
    result = CliRunner().invoke(app, ["sync", "crm", "--source", "stripe", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["contracts.created"] == len(env.running.ids.subscriptions)


def test_the_prefect_flow_syncs_stripe(flow_env: str, env: Env) -> None:
    from billbridge.flows.sync_crm import sync_crm
    from billbridge.store.db import open_store

    store = open_store(flow_env)
    state = sync_crm(source="stripe", return_state=True)
    assert state.result()["counts"]["contracts.created"] == len(env.running.ids.subscriptions)
    again = sync_crm(source="stripe", return_state=True)
    assert again.result()["counts"].get("contracts.created", 0) == 0
    assert len(stored(store)) == len(env.running.ids.subscriptions)
    store.dispose()


def test_payments_of_invoices_stripe_makes_for_subscriptions_are_recorded_not_sent_to_review(
    store: Store, env: Env, tmp_path: Any, database_url: str
) -> None:
    """Stripe bills its subscriptions itself: the renewal's payment has no billbridge invoice to match.
    It is recorded once, under the subscription's customer, as billed by Stripe (not as unmatched)."""
    from pydantic import SecretStr

    from billbridge.flows.reconcile import reconcile
    from billbridge.sandbox.stripe import payments as stripe_billing
    from billbridge.settings import Settings, StripeSettings
    from billbridge.store.models import Customer, Payment

    sync(store, env)
    customer = env.client.v1.subscriptions.retrieve(env.example.sub_id).customer
    pm = env.client.v1.payment_methods.attach("pm_card_visa", {"customer": customer})
    env.client.v1.customers.update(customer, {"invoice_settings": {"default_payment_method": pm.id}})
    invoice = stripe_billing.bill_subscription(env.running.sandbox.state, env.example.sub_id)
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 9800)  # 2 seats x 49.00
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        stripe=StripeSettings(api_key=SecretStr(env.running.api_key), base_url=env.running.url),
    )
    summary = reconcile(store, settings, "stripe")
    assert summary.outcomes == {"billed_by_stripe": 1}, summary.unmatched
    assert summary.unmatched == []
    with store.read() as session:
        [(amount, unapplied, owner)] = session.execute(
            select(Payment.amount, Payment.unapplied_amount, Customer.customer_ref).join(
                Customer, Customer.id == Payment.customer_id
            )
        ).all()
    assert (amount, unapplied, owner) == (Decimal("98.00"), Decimal("98.00"), f"st-{customer}")
    assert set(reconcile(store, settings, "stripe").outcomes) <= {"seen_before"}  # once
