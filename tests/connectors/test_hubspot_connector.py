"""The HubSpot connector through hubspot-api-client against the HubSpot sandbox on loopback."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from billbridge.connectors.errors import ErrorKind, RetryPolicy, VendorError
from billbridge.connectors.hubspot import HubSpotClient, HubSpotSettings, HubSpotSource, connect
from billbridge.connectors.hubspot.source import LAG_MS
from billbridge.records import DealBundle, RecordPage
from billbridge.sandbox import demo_world
from billbridge.sandbox.hubspot import HubSpotSandbox
from billbridge.sandbox.hubspot.records import to_ms


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def settings_for(sandbox: HubSpotSandbox, *, oauth: bool = True) -> HubSpotSettings:
    creds = sandbox.credentials
    extra: dict[str, Any] = {}
    if oauth:
        extra = {
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "refresh_token": creds.refresh_token,
        }
    return HubSpotSettings(host=sandbox.url, access_token=creds.access_token, requests_per_10s=100_000, **extra)


def source_for(sandbox: HubSpotSandbox, sleeps: list[float] | None = None, **kwargs: Any) -> HubSpotSource:
    settings = settings_for(sandbox)
    policy = RetryPolicy(attempts=6, base_delay=0.001, max_delay=30)
    client = HubSpotClient(settings, policy=policy, sleep=(sleeps.append if sleeps is not None else lambda _: None))
    return HubSpotSource(settings, client=client, **kwargs)


def ids_of(pages: list[RecordPage[DealBundle]]) -> list[str]:
    return [str(b.deal["id"]) for p in pages for b in p.records]


def check_bundles(sandbox: HubSpotSandbox, world: demo_world.DemoWorld, pages: list[RecordPage[DealBundle]]) -> None:
    """Every bundle carries the world's lines, company and products, with HubSpot's string values."""
    ids = sandbox.data.ids
    by_id = {ids[d.key]: d for d in world.live_deals}
    for page in pages:
        for bundle in page.records:
            deal = by_id[str(bundle.deal["id"])]
            assert bundle.deal["properties"]["amount"] == str(deal.amount)
            assert [x["id"] for x in bundle.lines] == [ids[x.key] for x in deal.lines]
            assert [x["properties"]["quantity"] for x in bundle.lines] == [str(x.quantity) for x in deal.lines]
            assert bundle.company is not None and bundle.company["id"] == ids[deal.company_key]
            known = {ids[x.sku] for x in deal.lines if x.sku in world.products}
            assert set(bundle.products) == known
            assert all(bundle.products[p]["properties"]["hs_sku"] for p in known)


def minimum_calls(
    sandbox: HubSpotSandbox,
    world: demo_world.DemoWorld,
    deal_keys: list[str],
    fetched: int,
    page: int,
    group: int = 1000,
) -> int:
    """Search pages of ``page`` for ``fetched`` results, then per group of up to ``group`` new deals
    (one association read takes 1,000 ids) two association reads and batch reads of 100 for lines
    and for companies and products not read before, one read of the deals' contacts and one of the
    new companies' contacts; one archived list."""
    ids = sandbox.data.ids
    deals = sorted((world.deals[k] for k in deal_keys), key=lambda d: (d.modified_at, int(ids[d.key])))
    calls = max(1, math.ceil(fetched / page))
    companies: set[str] = set()
    products: set[str] = set()
    for start in range(0, len(deals), group):
        chunk = deals[start : start + group]
        new_companies = {d.company_key for d in chunk} - companies
        new_products = {x.sku for d in chunk for x in d.lines if x.sku in world.products} - products
        lines = sum(len(d.lines) for d in chunk)
        calls += 2 + math.ceil(lines / 100) + math.ceil(len(new_companies) / 100) + math.ceil(len(new_products) / 100)
        # billing contacts (none in the world): the deals' labelled contacts, then those of the new companies
        calls += 1 + math.ceil(len(new_companies) / 1000)
        companies |= new_companies
        products |= new_products
    archived = sum(1 for d in world.deals.values() if d.deleted)
    return calls + max(1, math.ceil(archived / 100))


@pytest.fixture(scope="module")
def world() -> demo_world.DemoWorld:
    return demo_world.generate(450, seed=3)


@pytest.fixture
def sandbox(world: demo_world.DemoWorld) -> Iterator[HubSpotSandbox]:
    with HubSpotSandbox.start(world) as running:
        yield running


def test_full_pull_equals_the_world_with_the_fewest_calls(sandbox: HubSpotSandbox, world: demo_world.DemoWorld) -> None:
    source = source_for(sandbox)
    pages = list(source.pull(None))
    pulled = ids_of(pages)
    assert sorted(pulled) == sorted(sandbox.data.ids[d.key] for d in world.live_deals)
    assert len(pulled) == len(set(pulled)) == 450
    check_bundles(sandbox, world, pages)
    assert pages[-1].deleted_ids == [] and pages[-1].records == []
    keys = [d.key for d in world.live_deals]
    expected = minimum_calls(sandbox, world, keys, len(keys), 200)
    assert sum(p.api_calls for p in pages) == source.client.calls == sandbox.faults.total_calls() == expected
    assert [len(p.records) for p in pages] == [450, 0]  # one group of search pages, then the archivals


def test_incremental_pull_returns_only_changes_and_archivals(
    sandbox: HubSpotSandbox, world: demo_world.DemoWorld
) -> None:
    source = source_for(sandbox)
    cursor = list(source.pull(None))[-1].cursor
    later = demo_world.changed(world, 0.05)
    sandbox.apply(later)
    sandbox.faults.reset_calls()
    pages = list(source_for(sandbox).pull(cursor))
    ids = sandbox.data.ids
    changed = {ids[d.key] for d in later.live_deals if d.modified_at == later.now}
    deleted = sorted(ids[d.key] for d in later.deals.values() if d.deleted)
    assert changed and deleted
    assert sorted(ids_of(pages)) == sorted(changed)
    assert sorted(i for p in pages for i in p.deleted_ids) == deleted
    check_bundles(sandbox, later, pages)
    newest = max(d.modified_at for d in world.deals.values())
    lagged = sum(1 for d in world.deals.values() if to_ms(newest) - to_ms(d.modified_at) <= LAG_MS)
    keys = [d.key for d in later.live_deals if ids[d.key] in changed]
    assert sandbox.faults.total_calls() == minimum_calls(sandbox, later, keys, len(keys) + lagged, 200)
    # Nothing changed since: a third pull finds nothing new.
    again = list(source_for(sandbox).pull(pages[-1].cursor))
    assert ids_of(again) == [] and [i for p in again for i in p.deleted_ids] == []


@pytest.mark.slow  # waits out the search pacer
def test_a_search_cap_is_handled_by_new_windows() -> None:
    """A sandbox capped at 20 results per query (HubSpot: 10,000), pages of 10: a full pull needs several
    windows, and an edit touching more deals than the cap in one millisecond is walked by id."""
    world = demo_world.generate(100, seed=9)
    with HubSpotSandbox.start(world, search_cap=20) as sandbox:
        source = source_for(sandbox, page_size=10, search_cap=20)
        pages = list(source.pull(None))
        pulled = ids_of(pages)
        assert len(pulled) == len(set(pulled)) == 100
        check_bundles(sandbox, world, pages)
        later = demo_world.changed(world, 0.3)
        sandbox.apply(later)
        changed = {sandbox.data.ids[d.key] for d in later.live_deals if d.modified_at == later.now}
        assert len(changed) > 20  # more than the cap share one hs_lastmodifieddate
        again = list(source_for(sandbox, page_size=10, search_cap=20).pull(pages[-1].cursor))
        assert Counter(ids_of(again)) == Counter(changed)
        check_bundles(sandbox, later, again)


@pytest.mark.slow
def test_faults_still_deliver_every_deal_once(world: demo_world.DemoWorld) -> None:
    clock = Clock()
    with HubSpotSandbox.start(world, clock=clock) as sandbox:
        sandbox.faults.add(kind="rate_limit", path="/search", after=1, retry_after=1)
        sandbox.faults.add(kind="server_error", path="line_items/batch/read", after=2, times=2)
        sandbox.faults.add(kind="drop", path="/associations/", after=1)
        sandbox.faults.add(kind="drop", path="companies/batch/read")
        sandbox.faults.add(kind="expired_auth", path="products/batch/read")
        sleeps: list[float] = []
        source = source_for(sandbox, sleeps, group_size=200)  # a page per search page: tokens expire between them
        pages = []
        for page in source.pull(None):
            pages.append(page)
            clock.now += 1801  # every token issued so far expires while the flow stores the page
        pulled = ids_of(pages)
        assert len(pulled) == len(set(pulled)) == 450
        check_bundles(sandbox, world, pages)
        assert 1.0 in sleeps  # Retry-After honoured
        assert source.client.refreshes >= 3 and sandbox.tokens.refreshes == source.client.refreshes
        assert sum(p.api_calls for p in pages) == source.client.calls == sandbox.faults.total_calls()


def test_errors_are_classified(sandbox: HubSpotSandbox) -> None:
    client = source_for(sandbox).client
    with pytest.raises(VendorError) as fatal:
        client.search("deals", {"limit": 500})
    assert fatal.value.classified.kind == ErrorKind.FATAL and fatal.value.attempts == 1
    sandbox.tokens.expire_all()
    private = HubSpotClient(settings_for(sandbox, oauth=False), sleep=lambda _: None)
    with pytest.raises(VendorError) as auth:
        private.search("deals", {"limit": 1})
    assert auth.value.classified.kind == ErrorKind.AUTH
    sandbox.faults.add(kind="server_error", times=None)
    flaky = HubSpotClient(settings_for(sandbox), policy=RetryPolicy(attempts=3), sleep=lambda _: None)
    with pytest.raises(VendorError) as down:
        flaky.search("deals", {"limit": 1})
    assert down.value.classified.kind == ErrorKind.RETRIABLE and down.value.attempts == 3


def test_connect_reads_hubspot_settings_from_the_environment(
    sandbox: HubSpotSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="access_token"):
        HubSpotSettings(host=sandbox.url)
    for name, value in sandbox.env().items():
        if name != "BILLBRIDGE_HUBSPOT__ACCESS_TOKEN":
            monkeypatch.setenv(name, value)
    source = connect(None)
    assert source.client.refreshes == 1  # no access token configured: one is fetched first
    assert source.client.search("deals", {"limit": 1})["total"] == 450


def test_pulled_bundles_map_to_the_worlds_contracts(sandbox: HubSpotSandbox, world: demo_world.DemoWorld) -> None:
    """Connector and mapping together: the won deals a correct sync keeps map, the broken ones do not."""
    from billbridge.mapping.crm import MappingError, is_won, map_deal
    from billbridge.mapping.hubspot import DEFAULT_MAPPING, bundle_to_crm

    key_of = {v: k for k, v in sandbox.data.ids.items()}
    mapped: set[str] = set()
    failed: dict[str, str] = {}
    for page in source_for(sandbox).pull(None):
        for bundle in page.records:
            deal, company, products = bundle_to_crm(bundle)
            if not is_won(deal, DEFAULT_MAPPING):
                continue
            key = key_of[deal.deal_id]
            try:
                contract = map_deal(deal, company, products, DEFAULT_MAPPING).contract
            except MappingError as exc:
                failed[key] = exc.field
                continue
            mapped.add(key)
            expected = world.deals[key]
            assert (contract.contract_start_date, contract.contract_end_date) == (
                expected.start_date,
                expected.end_date,
            )
            assert (contract.auto_charge, contract.payment_terms_days) == (
                expected.auto_charge,
                expected.payment_terms_days,
            )
            assert contract.entity_ref == expected.entity_ref and len(contract.lines) == len(expected.lines)
    assert mapped == world.expected_contract_keys()
    assert set(failed) == world.broken_keys()
    fields = {"deal_currency_code", "billing_start_date", "quantity", "hs_product_id", "amount"}
    assert set(failed.values()) == fields


@pytest.mark.slow  # a sandbox of its own
def test_associations_are_followed_page_by_page_per_deal() -> None:
    """Issue 19 item 9: associations v4 batch read pages each input's links (HubSpot: paging.next.after
    per input); a sandbox paging one link at a time still yields every line of every deal."""
    world = demo_world.generate(30, seed=4)
    assert any(len(d.lines) > 1 for d in world.live_deals)
    with HubSpotSandbox.start(world, associations_page=1) as sandbox:
        pages = list(source_for(sandbox).pull(None))
        assert len(ids_of(pages)) == 30
        check_bundles(sandbox, world, pages)


@pytest.mark.slow  # waits out the search pacer
def test_search_calls_are_paced_under_their_own_limit() -> None:
    """Issue 19 item 10: a pull of many search pages gets no 429 from the per-token search limit."""
    world = demo_world.generate(100, seed=9)
    with HubSpotSandbox.start(world) as sandbox:
        pages = list(source_for(sandbox, page_size=10).pull(None))
        assert len(ids_of(pages)) == 100
        assert sandbox.app.state.search_throttled == 0
