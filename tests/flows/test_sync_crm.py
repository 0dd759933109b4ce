"""CRM sync end to end: a vendor sandbox, the real SDK, the pipeline, the store (SQLite and PostgreSQL).

Every valid won deal becomes exactly one contract, broken deals are quarantined with their field and
cleared once fixed, edits become versions, deletions end contracts, and faults change nothing in the
outcome. Parametrised over the CRMs whose sandboxes exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from billbridge.flows.crm_pages import SyncSummary, spec_for, sync_pages
from billbridge.flows.importing import import_document
from billbridge.flows.sync_crm import connect
from billbridge.sandbox import demo_world
from billbridge.sandbox.faults import Fault, FaultInjector
from billbridge.sandbox.hubspot import HubSpotSandbox
from billbridge.sandbox.salesforce import SalesforceSandbox
from billbridge.settings import Settings
from billbridge.store import quarantine
from billbridge.store.contracts import contract_summaries
from billbridge.store.db import Store
from tests.settings_env import QUICK_RETRY, as_environment

TODAY = date(2026, 11, 2)
# The field each kind of broken deal must be quarantined for, in each CRM's own names.
BROKEN_FIELDS = {
    "hubspot": {
        "no_start_date": "billing_start_date",
        "unknown_currency": "deal_currency_code",
        "negative_quantity": "quantity",
        "unknown_product": "hs_product_id",
        "lines_mismatch": "amount",
    },
    "salesforce": {
        "no_start_date": "Billing_Start_Date__c",
        "unknown_currency": "CurrencyIsoCode",
        "negative_quantity": "OpportunityLineItem.Quantity",
        "unknown_product": "OpportunityLineItem.Product2Id",
        "lines_mismatch": "Amount",
    },
}


@dataclass
class Crm:
    name: str
    faults: FaultInjector
    deal_id: dict[str, str]  # world deal key -> the CRM's id
    apply: Any
    fault_plan: list[Fault]  # one of each kind, placed where this CRM's calls will meet them

    def ref(self, key: str) -> str:
        return spec_for(self.name).mapping.ref_prefix + self.deal_id[key]


@pytest.fixture
def world() -> demo_world.DemoWorld:
    return demo_world.generate(300, seed=11)


@pytest.fixture(params=["hubspot", "salesforce"])
def crm(request: pytest.FixtureRequest, world: demo_world.DemoWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[Crm]:
    sandbox: Any
    if request.param == "hubspot":
        sandbox = HubSpotSandbox.start(world)
        monkeypatch.setenv("BILLBRIDGE_HUBSPOT__REQUESTS_PER_10S", "100000")
        plan = [
            Fault("rate_limit", after=1, times=2, retry_after=0),
            Fault("server_error", after=4, times=2),
            Fault("drop", after=7, times=1),
            Fault("expired_auth", after=9, times=1),
        ]
        found = Crm("hubspot", sandbox.faults, sandbox.data.ids, sandbox.apply, plan)
    else:
        sandbox = SalesforceSandbox(world).start()
        # 300 deals are two queries (price book, opportunities): every kind of fault meets the first.
        plan = [
            Fault("rate_limit", path="/query", times=2, retry_after=0),
            Fault("server_error", path="/query", times=2),
            Fault("drop", path="/query", times=1),
            Fault("expired_auth", path="/query", times=1),
        ]
        found = Crm("salesforce", sandbox.faults, sandbox.deal_ids, sandbox.apply, plan)
    quick = as_environment(f"BILLBRIDGE_{request.param.upper()}__RETRY", QUICK_RETRY)  # faults retried at once
    for key, value in {**sandbox.env(), **quick}.items():
        monkeypatch.setenv(key, value)
    try:
        yield found
    finally:
        sandbox.stop()


def sync(store: Store, crm: Crm) -> SyncSummary:
    return sync_pages(store, spec_for(crm.name), connect(crm.name, Settings()), today=TODAY)


def contracts(store: Store) -> dict[str, Any]:
    with store.read() as session:
        return {c["contract_ref"]: c for c in contract_summaries(session)}


def open_quarantine(store: Store, crm: Crm) -> dict[str, str]:
    with store.read() as session:
        return {q["record_key"]: q["field"] for q in quarantine.list_open(session, source=crm.name)}


@pytest.fixture
def ready(store: Store, world: demo_world.DemoWorld) -> Store:
    import_document(store, demo_world.entities_document(world))
    return store


def test_full_sync_then_rerun_then_incremental(ready: Store, crm: Crm, world: demo_world.DemoWorld) -> None:
    first = sync(ready, crm)
    expected = {crm.ref(k) for k in world.expected_contract_keys()}
    assert set(contracts(ready)) == expected
    assert first.counts["contracts.created"] == len(expected)
    broken = {crm.ref(d.key): BROKEN_FIELDS[crm.name][d.broken] for d in world.live_deals if d.won and d.broken}
    assert len(broken) == 6  # 300 deals: at least one of each kind
    assert open_quarantine(ready, crm) == broken
    assert first.not_won == sum(1 for d in world.live_deals if not d.won)

    again = sync(ready, crm)  # nothing changed at the vendor: nothing changes here
    assert again.counts["contracts.created"] == again.counts["contracts.updated"] == 0
    assert set(contracts(ready)) == expected

    before = contracts(ready)
    later = demo_world.changed(world, 0.1)
    crm.apply(later)
    incremental = sync(ready, crm)
    assert incremental.deals_pulled < len(world.deals) // 2  # only what changed came back
    now_expected = {crm.ref(k) for k in later.expected_contract_keys()}
    stored = contracts(ready)
    deleted = {crm.ref(d.key) for d in later.deals.values() if d.deleted and d.won and d.broken is None}
    assert set(stored) == now_expected | (deleted & set(stored))  # deleted deals' contracts are kept, ended
    # The broken deals were fixed in the CRM: their entries are cleared; what is left is for a person.
    left = open_quarantine(ready, crm)
    assert set(left.values()) <= {"(deleted)"} and set(left) <= deleted
    edited = {
        crm.ref(d.key)
        for d in later.live_deals
        if d.won
        and world.deals[d.key].won
        and world.deals[d.key].broken is None
        and world.deals[d.key].lines != d.lines
    }
    assert edited and all(stored[ref]["version_no"] == 2 for ref in edited)
    # Each deleted deal's contract ended (a new version), had ended already, or waits for a person.
    over = {ref for ref in deleted & set(before) if (before[ref]["contract_end_date"] or TODAY) < TODAY}
    assert incremental.counts["contracts.ended"] + len(over) + len(left) == len(deleted & set(before))
    for ref in (deleted & set(before)) - over - set(left):
        assert stored[ref]["contract_end_date"] == date(2026, 11, 1)  # service ended the day before


def test_faults_during_a_sync_change_nothing_in_the_outcome(
    ready: Store, crm: Crm, world: demo_world.DemoWorld
) -> None:
    for fault in crm.fault_plan:
        crm.faults.add(fault)
    sync(ready, crm)
    assert [f.hits for f in crm.faults.faults] == [f.times for f in crm.fault_plan]  # every fault met
    assert set(contracts(ready)) == {crm.ref(k) for k in world.expected_contract_keys()}
    assert all(c["version_no"] == 1 for c in contracts(ready).values())


def test_the_cli_syncs_and_lists_the_quarantine(
    ready: Store, crm: Crm, world: demo_world.DemoWorld, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from billbridge.app.cli import app

    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    runner = CliRunner()
    result = runner.invoke(app, ["sync", "crm", "--source", crm.name, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["contracts.created"] == len(world.expected_contract_keys())
    assert {e["record"] for e in summary["errors"]} == {crm.ref(k) for k in world.broken_keys()}
    listed = runner.invoke(app, ["quarantine", "list", "--source", crm.name, "--json"])
    assert listed.exit_code == 0
    rows = json.loads(listed.stdout)
    assert {r["record_key"] for r in rows} == {crm.ref(k) for k in world.broken_keys()}
    assert all(r["payload"]["deal"] for r in rows)  # the raw vendor record is kept
    bad = runner.invoke(app, ["sync", "crm", "--source", "pipedrive"])
    assert bad.exit_code != 0 and "unknown CRM source" in bad.output


def test_the_prefect_flow_syncs_and_summarises(flow_env: str, crm: Crm, world: demo_world.DemoWorld) -> None:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from billbridge.flows.sync_crm import sync_crm
    from billbridge.store.db import open_store

    store = open_store(flow_env)
    import_document(store, demo_world.entities_document(world))
    state = sync_crm(source=crm.name, return_state=True)
    result = state.result()
    assert result["counts"]["contracts.created"] == len(world.expected_contract_keys())
    assert set(contracts(store)) == {crm.ref(k) for k in world.expected_contract_keys()}
    again = sync_crm(source=crm.name, return_state=True)
    assert again.result()["counts"].get("contracts.created", 0) == 0  # a rerun: nothing twice

    async def artifact(flow_run_id: Any) -> str:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[f"sync-crm-{crm.name}"]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                )
            )
            [only] = found
            return str(only.data)

    first = asyncio.run(artifact(state.state_details.flow_run_id))
    rerun = asyncio.run(artifact(again.state_details.flow_run_id))
    assert "## Quarantined" in first and crm.ref(next(iter(world.broken_keys()))) in first
    assert "| contracts created | 0 |" in rerun
    store.dispose()


@pytest.fixture
def hubspot(world: demo_world.DemoWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubSpotSandbox]:
    sandbox = HubSpotSandbox.start(world)
    monkeypatch.setenv("BILLBRIDGE_HUBSPOT__REQUESTS_PER_10S", "100000")
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    try:
        yield sandbox
    finally:
        sandbox.stop()


def test_a_malformed_value_quarantines_its_deal_and_the_sync_goes_on(
    ready: Store,
    hubspot: HubSpotSandbox,
    world: demo_world.DemoWorld,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A date property as a huge digit string raised OverflowError: the sync exited 1 having stored
    none of the page, and every later run failed the same way."""
    from typing import cast

    from typer.testing import CliRunner

    from billbridge.app.cli import app

    poisoned = sorted(world.expected_contract_keys())[:3]
    values = {"billing_start_date": "9" * 23, "billing_end_date": "0", "payment_terms_days": "1e999999"}
    for key, (name, value) in zip(poisoned, values.items(), strict=True):
        hubspot.data.tables["deals"].live[hubspot.data.ids[key]].properties[name] = value
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    runner = CliRunner()
    result = runner.invoke(app, ["sync", "crm", "--source", "hubspot"])
    assert result.exit_code == 0, result.output
    ref = "hs-" + cast(str, hubspot.data.ids[poisoned[0]])
    said = " ".join(result.stderr.split())
    assert f"quarantined {ref}: field billing_start_date: cannot read '99999999999999999999999'" in said
    again = runner.invoke(app, ["sync", "crm", "--source", "hubspot"])  # and the next run goes on too
    assert again.exit_code == 0, again.output
    expected = {f"hs-{hubspot.data.ids[k]}" for k in world.expected_contract_keys() - set(poisoned)}
    assert set(contracts(ready)) == expected
    held = open_quarantine(ready, Crm("hubspot", hubspot.faults, hubspot.data.ids, hubspot.apply, []))
    assert {k: held[k] for k in (f"hs-{hubspot.data.ids[p]}" for p in poisoned)} == {
        f"hs-{hubspot.data.ids[p]}": name for p, name in zip(poisoned, values, strict=True)
    }


def test_the_window_of_plausible_dates_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLBRIDGE_CRM_EARLIEST_DATE", "1990-01-01")
    monkeypatch.setenv("BILLBRIDGE_CONFIG", "/nonexistent/billbridge.toml")
    spec = spec_for("hubspot", dates=Settings().crm_dates)
    assert spec.mapping.window == (date(1990, 1, 1), date(2099, 12, 31))  # type: ignore[union-attr]


def test_deals_waiting_for_an_entity_are_stored_by_the_next_sync_once_it_is_imported(
    store: Store,
    crm: Crm,
    world: demo_world.DemoWorld,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cursor moved past deals quarantined for an unknown legal entity, so they stayed unbilled
    until someone edited each in the CRM. Now the next incremental sync retries them from their kept
    payloads once the entity is imported: no call for them, stored as contracts, off the quarantine."""
    from typer.testing import CliRunner

    from billbridge.app.cli import app

    missing = "eu-bv"
    document = demo_world.entities_document(world)
    entity = next(e for e in document["entities"] if e["entity_ref"] == missing)
    import_document(store, {"entities": [e for e in document["entities"] if e is not entity]})
    waiting = {crm.ref(d.key) for d in world.live_deals if d.won and not d.broken and d.entity_ref == missing}
    assert len(waiting) > 10
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    runner = CliRunner()

    first = runner.invoke(app, ["sync", "crm", "--source", crm.name, "--json"])
    assert first.exit_code == 0, first.output
    assert not waiting & set(contracts(store))
    held = open_quarantine(store, crm)
    assert waiting <= set(held)
    assert {held[ref] for ref in waiting} <= {"customer_ref", "entity_ref"}
    rows = json.loads(runner.invoke(app, ["quarantine", "list", "--source", crm.name, "--json"]).stdout)
    assert {r["waiting_for"] for r in rows if r["record_key"] in waiting} <= {f"entities:{missing}"} | {
        f"customers:{r['record_key']}" for r in rows if r["record_type"] == "customers"
    }

    file = tmp_path / "entity.json"
    file.write_text(json.dumps({"entities": [entity]}))
    imported = runner.invoke(app, ["contracts", "import", str(file)])
    assert imported.exit_code == 0, imported.output
    crm.faults.reset_calls()
    second = runner.invoke(app, ["sync", "crm", "--source", crm.name])
    assert second.exit_code == 0, second.output
    assert f"{len(waiting)} quarantined deal(s) retried" in second.stdout
    assert waiting <= set(contracts(store))
    assert set(contracts(store)) == {crm.ref(k) for k in world.expected_contract_keys()}
    assert not waiting & set(open_quarantine(store, crm))
    listed = json.loads(runner.invoke(app, ["quarantine", "list", "--source", crm.name, "--json"]).stdout)
    assert {r["record_key"] for r in listed} == {crm.ref(k) for k in world.broken_keys()}  # only the broken
    retrying_calls = crm.faults.total_calls()

    crm.faults.reset_calls()
    again = runner.invoke(app, ["sync", "crm", "--source", crm.name, "--json"])  # nothing left to retry
    assert json.loads(again.stdout)["retried_from_quarantine"] == 0
    assert json.loads(again.stdout)["counts"].get("contracts.created", 0) == 0
    assert retrying_calls == crm.faults.total_calls()  # retried from the kept payloads: not one call for them


def test_a_full_sync_reads_every_deal_again(ready: Store, crm: Crm, world: demo_world.DemoWorld) -> None:
    sync(ready, crm)
    incremental = sync(ready, crm)
    full = sync_pages(ready, spec_for(crm.name), connect(crm.name, Settings()), today=TODAY, full=True)
    assert incremental.deals_pulled == 0
    assert full.deals_pulled == len(world.deals) - sum(1 for d in world.deals.values() if d.deleted)
    assert full.counts["contracts.created"] == full.counts["contracts.updated"] == 0
    assert full.counts["contracts.unchanged"] == len(world.expected_contract_keys())
