"""The CRM sync's writer process (flows/page_writer.py): pages stored exactly once and in order, a
failed page stops the ones after it, a record refused by the store keeps its raw payload, and the
result is the same as storing in process. Against the Salesforce sandbox, 200 records a page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from billbridge.flows.crm_pages import SyncSummary, map_page, spec_for, sync_pages
from billbridge.flows.importing import import_document
from billbridge.flows.sync_crm import connect
from billbridge.sandbox import demo_world
from billbridge.sandbox.salesforce import SalesforceSandbox
from billbridge.settings import Settings
from billbridge.store import quarantine
from billbridge.store.contracts import contract_summaries
from billbridge.store.cursors import get_cursor
from billbridge.store.db import Store, open_store

TODAY = date(2026, 11, 2)


@pytest.fixture
def world() -> demo_world.DemoWorld:
    return demo_world.generate(500, seed=5)  # 500 opportunities: three pages of at most 200


@pytest.fixture
def salesforce(world: demo_world.DemoWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    sandbox = SalesforceSandbox(world).start()
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BILLBRIDGE_SALESFORCE__BATCH_SIZE", "200")
    try:
        yield
    finally:
        sandbox.stop()


def sync(store: Store, *, writer: bool) -> SyncSummary:
    return sync_pages(
        store, spec_for("salesforce"), connect("salesforce", Settings()), today=TODAY, writer_process=writer
    )


def stored(store: Store) -> dict[str, Any]:
    with store.read() as session:
        return {c["contract_ref"]: c for c in contract_summaries(session)}


def cursor(store: Store) -> str | None:
    with store.read() as session:
        return get_cursor(session, "salesforce", "deals")


def test_the_writer_stores_what_the_sync_stores_in_process(
    store: Store, tmp_path: Path, world: demo_world.DemoWorld, salesforce: None
) -> None:
    import_document(store, demo_world.entities_document(world))
    through_writer = sync(store, writer=True)
    assert through_writer.pages >= 3
    other = open_store(f"sqlite:///{tmp_path / 'in-process.db'}")
    import_document(other, demo_world.entities_document(world))
    in_process = sync(other, writer=False)
    assert through_writer.as_dict() == in_process.as_dict()
    assert stored(store) == stored(other) and len(stored(store)) == len(world.expected_contract_keys())
    assert cursor(store) == cursor(other)
    other.dispose()


def test_a_page_the_writer_cannot_store_stops_the_pages_after_it(
    store: Store, world: demo_world.DemoWorld, salesforce: None
) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("the failure is injected with a SQLite trigger")
    import_document(store, demo_world.entities_document(world))
    spec = spec_for("salesforce")
    pages = list(connect("salesforce", Settings()).pull(None))
    assert len(pages) >= 3
    second = [r.key for r in map_page(pages[1], spec).records if r.section == "contracts"]
    later = {r.key for page in pages[2:] for r in map_page(page, spec).records if r.section == "contracts"}
    with store.engine.begin() as connection:  # the store refuses one contract of the second page
        connection.execute(
            text(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON contracts WHEN NEW.contract_ref = :ref "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END".replace(":ref", f"'{second[0]}'")
            )
        )
    with pytest.raises(Exception, match="injected failure"):
        sync(store, writer=True)
    first_only = set(stored(store))
    assert first_only and not first_only & (set(second) | later)  # nothing of page 2 or after
    assert cursor(store) == pages[0].cursor  # the cursor stopped after the last page stored

    with store.engine.begin() as connection:
        connection.execute(text("DROP TRIGGER refuse_one"))
    rerun = sync(store, writer=True)
    assert set(stored(store)) == first_only | set(second) | later
    assert rerun.counts["contracts.created"] == len(set(second) | later)  # the first page not again


def test_a_record_the_store_refuses_is_quarantined_with_its_payload(
    store: Store, world: demo_world.DemoWorld, salesforce: None
) -> None:
    """A page goes to the writer without the raw records; one the store refuses (its legal entity
    is not set up here) makes the writer ask for the page again with them."""
    entities = demo_world.entities_document(world)
    missing = entities["entities"].pop()
    import_document(store, entities)
    summary = sync(store, writer=True)
    refused = [e for e in summary.errors if e.section == "customers" and missing["entity_ref"] in e.message]
    assert refused, summary.errors
    with store.read() as session:
        kept = {q["record_key"]: q for q in quarantine.list_open(session, source="salesforce")}
    for error in refused:
        payload = kept[error.key]["payload"]
        assert payload["deal"]["Id"] and payload["lines"], payload  # the record as Salesforce sent it
    assert stored(store)  # the other records of those pages are stored


def _writer_pids() -> list[int]:
    """The page writer processes this test process started (from /proc: no handle is exposed)."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except OSError:
            continue
        if parent == os.getpid() and b"billbridge.flows.page_writer" in command:
            found.append(int(entry))
    return found


def test_a_killed_writer_fails_the_sync_and_a_rerun_stores_each_deal_once(
    store: Store, world: demo_world.DemoWorld, salesforce: None
) -> None:
    import os
    import signal

    import_document(store, demo_world.entities_document(world))

    def kill_after_the_first_page(summary: SyncSummary) -> None:
        if summary.pages == 1:
            [pid] = _writer_pids()
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(RuntimeError, match="page writer process"):
        sync_pages(
            store,
            spec_for("salesforce"),
            connect("salesforce", Settings()),
            today=TODAY,
            writer_process=True,
            on_page=kill_after_the_first_page,
        )
    before = set(stored(store))
    assert before and cursor(store) is not None
    rerun = sync(store, writer=True)
    after = set(stored(store))
    assert before < after and len(after) == len(world.expected_contract_keys())
    assert rerun.counts["contracts.created"] == len(after - before)  # nothing stored twice


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_a_killed_sync_takes_its_writer_process_with_it(
    store: Store, world: demo_world.DemoWorld, database_url: str
) -> None:
    """The writer reads its pages from the sync's pipe: when the sync is killed with SIGKILL the pipe
    closes, and the writer ends (it never outlives the sync that started it)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.flows.test_invoice_generation import alive, children

    import_document(store, demo_world.entities_document(world))
    sandbox = SalesforceSandbox(world).start()
    try:
        sandbox.faults.add(kind="slow", path="/query", after=1, times=None, delay=2.0)  # pages come slowly
        env = {**os.environ, **sandbox.env(), "BILLBRIDGE_SALESFORCE__BATCH_SIZE": "200"}
        code = (
            "import sys\n"
            "from billbridge.settings import Settings\n"
            "from billbridge.flows.crm_pages import spec_for, sync_pages\n"
            "from billbridge.flows.sync_crm import connect\n"
            "from billbridge.store.db import open_store\n"
            "sync_pages(open_store(sys.argv[1]), spec_for('salesforce'), connect('salesforce', Settings()),"
            " writer_process=True)\n"
        )
        run = subprocess.Popen([sys.executable, "-c", code, database_url], env=env)
        deadline = time.monotonic() + 60
        writers: set[int] = set()
        while not writers or cursor(store) is None:  # the writer is up and has stored the first page
            assert run.poll() is None and time.monotonic() < deadline, "the sync ended before it could be killed"
            writers = {p for p in children(run.pid) if b"page_writer" in _command_line(p)}
            time.sleep(0.05)
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 5
        while alive(writers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(writers), f"the writer outlived its sync: {sorted(alive(writers))}"
    finally:
        sandbox.stop()


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended in between
        return b""
