"""The Salesforce connector through simple-salesforce against the sandbox: full and incremental pulls,
faults and expired sessions, the number of calls, and the bundles mapping to the world's contracts."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from billbridge.connectors.errors import ErrorKind, RetryPolicy, VendorError
from billbridge.connectors.pacing import Pacer
from billbridge.connectors.salesforce import SalesforceClient, SalesforceSettings, SalesforceSource, connect
from billbridge.mapping.crm import MappingError, is_won, map_deal
from billbridge.mapping.salesforce import DEFAULT_FIELDS, DEFAULT_MAPPING, bundle_to_crm
from billbridge.records import DealBundle, RecordPage
from billbridge.sandbox.demo_world import DemoWorld, changed, generate
from billbridge.sandbox.faults import Fault
from billbridge.sandbox.salesforce import SalesforceSandbox, opportunity_id

FAST = RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.05)
DATA_CALLS = r"^GET /services/data/"


@pytest.fixture
def world() -> DemoWorld:
    return generate(600, seed=5)


@pytest.fixture
def sandbox(world: DemoWorld) -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(world) as sf:
        yield sf


def source_for(
    sf: SalesforceSandbox, world: DemoWorld, *, batch_size: int = 2000, password_flow: bool = False, **settings: object
) -> SalesforceSource:
    creds = sf.credentials
    login = {"username": creds["username"], "password": creds["password"]} if password_flow else {}
    config = SalesforceSettings(
        instance_url=sf.url,
        client_id=creds["client_id"],
        client_secret=creds["client_secret"],
        ca_bundle=sf.ca,
        batch_size=batch_size,
        **login,
        **settings,  # type: ignore[arg-type]
    )
    client = SalesforceClient(config, policy=FAST)
    # The connector's clock decides the end of the Get Deleted window; the sandbox runs on the world's time.
    return SalesforceSource(client, columns=DEFAULT_FIELDS.columns(), clock=lambda: world.now + timedelta(days=1))


def deal_ids(pages: list[RecordPage[DealBundle]]) -> list[str]:
    return [b.deal["Id"] for p in pages for b in p.records]


def test_a_full_pull_delivers_every_live_opportunity_once_with_its_lines_account_and_products(
    sandbox: SalesforceSandbox, world: DemoWorld
) -> None:
    pages = list(source_for(sandbox, world, batch_size=200).pull(None))
    ids = deal_ids(pages)
    assert len(ids) == len(set(ids))
    assert set(ids) == {opportunity_id(d.key) for d in world.live_deals}
    by_id = {b.deal["Id"]: b for p in pages for b in p.records}
    for deal in world.live_deals:
        bundle = by_id[opportunity_id(deal.key)]
        assert bundle.deal["Amount"] == deal.amount and isinstance(bundle.deal["Amount"], Decimal)
        assert sorted(line["Quantity"] for line in bundle.lines) == sorted(line.quantity for line in deal.lines)
        assert bundle.company is not None and bundle.company["Name"] == world.companies[deal.company_key].name
        known = {line.sku for line in deal.lines} & set(world.products)
        assert {p["ProductCode"] for p in bundle.products.values()} == known
    assert [p.deleted_ids for p in pages] == [[]] * len(pages)


def test_the_pulled_bundles_map_to_exactly_the_worlds_contracts(sandbox: SalesforceSandbox, world: DemoWorld) -> None:
    mapped, broken = set(), set()
    for page in source_for(sandbox, world).pull(None):
        for bundle in page.records:
            deal, company, products = bundle_to_crm(bundle)
            if not is_won(deal, DEFAULT_MAPPING):
                continue
            try:
                map_deal(deal, company, products, DEFAULT_MAPPING)
                mapped.add(deal.deal_id)
            except MappingError:
                broken.add(deal.deal_id)
    assert mapped == {opportunity_id(k) for k in world.expected_contract_keys()}
    assert broken == {opportunity_id(k) for k in world.broken_keys()}


def test_an_incremental_pull_returns_only_the_changes_and_the_deletions(
    sandbox: SalesforceSandbox, world: DemoWorld
) -> None:
    source = source_for(sandbox, world)
    cursor = list(source.pull(None))[-1].cursor
    later = changed(world, fraction=0.05)
    sandbox.apply(later)
    pages = list(source.pull(cursor))
    edited = {opportunity_id(k) for k, d in later.deals.items() if d != world.deals[k] and not d.deleted}
    deleted = {opportunity_id(k) for k, d in later.deals.items() if d.deleted and not world.deals[k].deleted}
    assert edited and deleted
    assert sorted(deal_ids(pages)) == sorted(edited)
    assert sorted(i for p in pages for i in p.deleted_ids) == sorted(deleted)
    # nothing changed since: nothing comes back, and the delete log is not read twice
    again = list(source.pull(pages[-1].cursor))
    assert deal_ids(again) == [] and [i for p in again for i in p.deleted_ids] == []


def test_the_lag_window_repeats_nothing_already_delivered(sandbox: SalesforceSandbox, world: DemoWorld) -> None:
    source = source_for(sandbox, world)
    first = list(source.pull(None))
    newest = max(d.modified_at for d in world.live_deals)
    in_window = [d for d in world.live_deals if d.modified_at >= newest - timedelta(minutes=5)]
    assert in_window  # the newest at least: re-read by the inclusive bound, then skipped
    assert deal_ids(list(source.pull(first[-1].cursor))) == []


def test_a_late_commit_inside_the_lag_window_is_still_delivered(sandbox: SalesforceSandbox, world: DemoWorld) -> None:
    source = source_for(sandbox, world)
    cursor = list(source.pull(None))[-1].cursor
    newest = max(d.modified_at for d in world.live_deals)
    late = next(d for d in world.live_deals if d.modified_at < newest - timedelta(days=1))
    # committed now, but stamped a minute before the newest record already delivered
    stamped = replace(late, name="Late commit", modified_at=newest - timedelta(minutes=1))
    sandbox.org.put("Opportunity", sandbox.renderer.opportunity(stamped))
    pages = list(source.pull(cursor))
    assert opportunity_id(late.key) in deal_ids(pages)


def test_a_pull_resumed_from_a_page_inside_one_system_modstamp_misses_nothing(
    sandbox: SalesforceSandbox, world: DemoWorld
) -> None:
    source = source_for(sandbox, world, batch_size=200)
    cursor = list(source.pull(None))[-1].cursor
    later = changed(world, fraction=0.5)  # hundreds of deals share one SystemModstamp
    sandbox.apply(later)
    edited = {opportunity_id(k) for k, d in later.deals.items() if d != world.deals[k] and not d.deleted}
    first = next(iter(source.pull(cursor)))  # stored, then the run stopped
    assert 0 < len(first.records) < len(edited)
    resumed = list(source.pull(first.cursor))
    assert {b.deal["Id"] for b in first.records} | set(deal_ids(resumed)) == edited
    assert all(len(p.cursor or "") <= 200 for p in [first, *resumed])  # the store's cursor column


def test_calls_are_the_minimum_the_page_size_allows(sandbox: SalesforceSandbox, world: DemoWorld) -> None:
    source = source_for(sandbox, world, batch_size=200)
    pages = list(source.pull(None))
    n = len(world.live_deals)
    # the opportunity pages, the price book query, and the delete log that starts the next run's cursor
    minimum = math.ceil(n / 200) + 2
    assert sum(p.api_calls for p in pages) == minimum == sandbox.injector.total_calls(DATA_CALLS)
    assert len(pages) == math.ceil(n / 200)

    sandbox.injector.reset_calls()
    later = changed(world, fraction=0.01)
    sandbox.apply(later)
    incremental = list(source.pull(pages[-1].cursor))
    # one page of changes, the price book and the delete log
    assert sum(p.api_calls for p in incremental) == 3 == sandbox.injector.total_calls(DATA_CALLS)


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault",
    [
        Fault("rate_limit", path="/query", after=1, times=2),
        Fault("server_error", path="/query/01g", times=2),
        Fault("drop", path="/query/01g", after=1),
        Fault("expired_auth", path="/query/01g", after=1),
        Fault("lost_response", path="/query/01g"),
        Fault("expired_auth", path="/sobjects/Opportunity/deleted"),
    ],
    ids=lambda f: f"{f.kind}-{f.path}",
)
def test_with_faults_every_record_still_arrives_exactly_once(
    sandbox: SalesforceSandbox, world: DemoWorld, fault: Fault
) -> None:
    source = source_for(sandbox, world, batch_size=200)
    cursor = list(source.pull(None))[-1].cursor
    later = changed(world, fraction=0.05)
    sandbox.apply(later)
    full_source = source_for(sandbox, later, batch_size=200)
    sandbox.injector.add(fault)
    pages = list(full_source.pull(None))
    incremental = list(full_source.pull(cursor))
    assert fault.hits >= 1
    ids = deal_ids(pages)
    assert sorted(ids) == sorted({opportunity_id(d.key) for d in later.live_deals})
    deleted = {opportunity_id(k) for k, d in later.deals.items() if d.deleted and not world.deals[k].deleted}
    assert sorted(i for p in incremental for i in p.deleted_ids) == sorted(deleted)


def test_an_expired_session_mid_paging_fetches_a_new_one(sandbox: SalesforceSandbox, world: DemoWorld) -> None:
    source = source_for(sandbox, world, batch_size=200, password_flow=True)
    ids = []
    for n, page in enumerate(source.pull(None)):
        ids += [b.deal["Id"] for b in page.records]
        if n == 0:
            sandbox.org.expire_sessions()
    assert sorted(ids) == sorted(opportunity_id(d.key) for d in world.live_deals)
    assert source.client.token_calls == 2


def test_a_malformed_query_fails_at_once(sandbox: SalesforceSandbox, world: DemoWorld) -> None:
    creds = sandbox.credentials
    config = SalesforceSettings(
        instance_url=sandbox.url,
        client_id=creds["client_id"],
        client_secret=creds["client_secret"],
        ca_bundle=sandbox.ca,
    )
    source = SalesforceSource(SalesforceClient(config, policy=FAST), columns={"Opportunity": ("Colour__c",)})
    with pytest.raises(VendorError) as caught:
        list(source.pull(None))
    assert (caught.value.classified.kind, caught.value.attempts) == (ErrorKind.FATAL, 1)
    assert "INVALID_FIELD" in str(caught.value)


def test_wrong_credentials_fail_without_retrying(sandbox: SalesforceSandbox, world: DemoWorld) -> None:
    config = SalesforceSettings(instance_url=sandbox.url, client_id="x", client_secret="y", ca_bundle=sandbox.ca)
    client = SalesforceClient(config, policy=FAST)
    with pytest.raises(VendorError) as caught:
        list(SalesforceSource(client).pull(None))
    assert caught.value.classified.kind == ErrorKind.FATAL
    assert client.token_calls == 1


def test_near_the_daily_limit_the_client_slows_down(world: DemoWorld) -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    with SalesforceSandbox(world, daily_api_limit=20) as sf:
        creds = sf.credentials
        config = SalesforceSettings(
            instance_url=sf.url, client_id=creds["client_id"], client_secret=creds["client_secret"], ca_bundle=sf.ca
        )
        client = SalesforceClient(config, policy=FAST, pacer=Pacer(1000, 1.0))
        client.near_limit_pacer = Pacer(1, 1.0, clock=lambda: now[0], sleep=sleep)
        for _ in range(17):
            client.call(lambda sdk: sdk.query("SELECT Id FROM Account LIMIT 1"))
        assert (client.api_usage, client.near_limit) == ((17, 20), False)
        client.call(lambda sdk: sdk.query("SELECT Id FROM Account LIMIT 1"))
        assert client.near_limit  # 18 of 20 used: past 90%
        client.call(lambda sdk: sdk.query("SELECT Id FROM Account LIMIT 1"))
        assert waits == []  # the first call at the slow pace has its slot
        client.call(lambda sdk: sdk.query("SELECT Id FROM Account LIMIT 1"))
        assert waits == [1.0]  # the next waits a full second


def test_connect_is_configured_by_settings_alone(
    sandbox: SalesforceSandbox, world: DemoWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    source = connect()
    source.clock = lambda: world.now + timedelta(days=1)
    assert sorted(deal_ids(list(source.pull(None)))) == sorted(opportunity_id(d.key) for d in world.live_deals)
    assert source.client.settings.client_secret.get_secret_value() not in repr(source.client.settings)


def test_a_quiet_org_whose_newest_change_is_older_than_the_delete_log_still_syncs_incrementally(
    sandbox: SalesforceSandbox, world: DemoWorld
) -> None:
    """Found by the demo: the delete cursor began at the newest SystemModstamp, which in an org with no
    change for 15 days is before the delete log, and the next run failed with INVALID_REPLICATION_DATE."""
    later = world.now + timedelta(days=30)
    sandbox.org.set_clock(later)
    source = source_for(sandbox, world)
    source.clock = sandbox.org.now
    first = list(source.pull(None))
    assert deal_ids(first)
    assert deal_ids(list(source.pull(first[-1].cursor))) == []  # failed before the fix

    gone = opportunity_id(world.live_deals[0].key)
    sandbox.org.delete("Opportunity", gone, sandbox.org.now())
    sandbox.org.set_clock(sandbox.org.now() + timedelta(minutes=2))  # the log covers whole minutes
    again = list(source.pull(first[-1].cursor))
    assert [i for p in again for i in p.deleted_ids] == [gone]
