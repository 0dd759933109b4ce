"""Pushing to QuickBooks end to end: approved documents go out once each, marked sent and linked;
reruns and a process killed between QuickBooks accepting and our commit never make a second copy."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from pydantic import SecretStr

from billbridge.connectors.errors import RetryPolicy
from billbridge.flows.approval import approve_drafts
from billbridge.flows.importing import import_file
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.push import push, quickbooks_connector
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.settings import QuickBooksSettings, Settings
from billbridge.store import external_refs, messages, outbox
from billbridge.store.db import Store
from billbridge.store.invoices import list_invoices
from tests.settings_env import QUICK_RETRY, as_environment

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "contracts"


def settings_for(qbo: RunningQuickBooks, database_url: str, data_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        quickbooks=QuickBooksSettings(
            client_id=qbo.client_id,
            client_secret=SecretStr(qbo.client_secret),
            realm_id=qbo.realm_id,
            refresh_token=SecretStr(qbo.refresh_token),
            api_url_v3=qbo.api_url_v3,
            discovery_url=qbo.discovery_url,
            ca_bundle=str(qbo.ca_bundle),
            requests_per_second=100_000,
            batches_per_minute=100_000,
            retry=QUICK_RETRY,
        ),
    )


def test_the_company_takes_its_retries_from_its_settings(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(qbo, database_url, tmp_path)
    assert quickbooks_connector(store, settings).policy == RetryPolicy.of(QUICK_RETRY)


def billed(store: Store) -> list[dict[str, object]]:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        import_file(store, path)
    run_billing(store, date(2026, 11, 22))
    approve_drafts(store, ["quickbooks"])
    with store.read() as session:
        return list_invoices(session)


def in_quickbooks(qbo: RunningQuickBooks) -> list[str]:
    return sorted(str(r["DocNumber"]) for entity in ("Invoice", "CreditMemo") for r in qbo.company.all(entity))


def test_push_sends_each_document_once_and_marks_it_sent(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    documents = billed(store)
    settings = settings_for(qbo, database_url, tmp_path)
    summary = push(store, settings, "quickbooks")
    assert summary.outcomes == {"created": len(documents)}
    assert in_quickbooks(qbo) == sorted(str(d["number"]) for d in documents)
    with store.read() as session:
        assert {d["status"] for d in list_invoices(session)} == {"sent"}
        assert outbox.pending(session, topic="push.quickbooks") == []
        assert len(messages.listing(session, kind="invoice")) == len(documents)  # issued: their deliveries made
        for d in documents:
            assert external_refs.get_external_id(session, "quickbooks", str(d["doc_type"]), int(d["id"]))  # type: ignore[arg-type]
    qbo.faults.reset_calls()
    assert push(store, settings, "quickbooks").outcomes == {}  # nothing queued: nothing sent
    assert qbo.faults.total_calls() == 0  # not even a token refresh
    assert in_quickbooks(qbo) == sorted(str(d["number"]) for d in documents)


def test_a_push_killed_after_quickbooks_accepted_is_finished_by_the_rerun(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """SIGKILL while QuickBooks holds the answer to a batch it has already committed. The rerun
    (after the lease) finds the documents by DocNumber and records them: one copy each."""
    documents = billed(store)
    settings = settings_for(qbo, database_url, tmp_path)
    # The push's batch calls: customers, items, then documents 30 at a time. Hold the first documents'.
    hold = qbo.faults.add(kind="hold_response", path="/batch", after=2, delay=5)
    env = {**os.environ, "BILLBRIDGE_DATABASE_URL": database_url, "BILLBRIDGE_DATA_DIR": str(tmp_path)}
    env.update(_plain(settings))
    script = "from billbridge.settings import Settings\nfrom billbridge.flows.push import push\nfrom billbridge.store.db import open_store\ns = Settings()\npush(open_store(s.database), s, 'quickbooks')\n"
    child = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.monotonic() + 60
    while not hold.done:
        assert child.poll() is None and time.monotonic() < deadline, "the push never reached QuickBooks"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    accepted = in_quickbooks(qbo)
    assert len(accepted) == 30  # QuickBooks committed the first batch of documents...
    with store.read() as session:
        assert {d["status"] for d in list_invoices(session)} == {"approved"}  # ...which we never recorded

    qbo.faults.clear()
    with store.write() as session:  # the lease of the dead relay runs out
        outbox.retry_now(session, [p["id"] for p in outbox.pending(session)])
    summary = push(store, settings, "quickbooks")
    assert summary.outcomes == {"existing": 30, "created": len(documents) - 30}
    assert in_quickbooks(qbo) == sorted(str(d["number"]) for d in documents)  # still one copy each
    with store.read() as session:
        assert {d["status"] for d in list_invoices(session)} == {"sent"}


def _plain(settings: Settings) -> dict[str, str]:
    """The QuickBooks settings as BILLBRIDGE_QUICKBOOKS__* variables."""
    assert settings.quickbooks is not None
    return as_environment("BILLBRIDGE_QUICKBOOKS", settings.quickbooks)


def test_the_cli_pushes_and_reconciles(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from billbridge.app.cli import app

    documents = billed(store)
    settings = settings_for(qbo, database_url, tmp_path)
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path))
    for key, value in _plain(settings).items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    pushed = runner.invoke(app, ["push", "--target", "quickbooks", "--json"])
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(pushed.stdout)["outcomes"] == {"created": len(documents)}
    reconciled = runner.invoke(app, ["reconcile", "--source", "quickbooks", "--json"])
    assert reconciled.exit_code == 0, reconciled.output
    assert json.loads(reconciled.stdout)["outcomes"] == {}  # nobody has paid yet
    unknown = runner.invoke(app, ["push", "--target", "netsuite"])
    assert unknown.exit_code == 1 and "unknown push target" in unknown.output


def test_a_push_finding_its_messages_leased_by_a_killed_run_says_so(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push SIGKILLed mid-delivery holds its messages for the lease's 5 minutes. The next push used
    to do nothing and print an empty table (exit 0), so scheduled runs looked healthy while every
    document waited. Now it says how many are held, by which run, until when; so do `outbox list`
    and `status`; `outbox retry` hands them back at once."""
    import json

    from typer.testing import CliRunner

    from billbridge.app.cli import app

    documents = billed(store)
    settings = settings_for(qbo, database_url, tmp_path)
    env = {**os.environ, "BILLBRIDGE_DATABASE_URL": database_url, "BILLBRIDGE_DATA_DIR": str(tmp_path)}
    env.update(_plain(settings))
    for key in ("BILLBRIDGE_DATABASE_URL", "BILLBRIDGE_DATA_DIR", *(k for k in env if "QUICKBOOKS__" in k)):
        monkeypatch.setenv(key, env[key])
    hold = qbo.faults.add(kind="hold_response", path="/batch", after=2, delay=30)
    script = "from billbridge.settings import Settings\nfrom billbridge.flows.push import push\nfrom billbridge.store.db import open_store\ns = Settings()\npush(open_store(s.database), s, 'quickbooks')\n"
    child = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.monotonic() + 60
    while not hold.done:
        assert child.poll() is None and time.monotonic() < deadline, "the push never reached QuickBooks"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    qbo.faults.clear()

    runner = CliRunner()
    pushed = runner.invoke(app, ["push", "--target", "quickbooks"])
    assert pushed.exit_code == 0, pushed.output
    said = " ".join(pushed.stderr.split())
    assert f"{len(documents)} message(s) of push.quickbooks leased by another run" in said
    assert f"pid {child.pid}) until" in said and "billbridge outbox retry --topic push.quickbooks" in said
    as_json = json.loads(runner.invoke(app, ["push", "--target", "quickbooks", "--json"]).stdout)
    assert as_json["outcomes"] == {} and as_json["leased"]["messages"] == len(documents)
    assert as_json["leased"]["by"] == [f"{socket.gethostname()} pid {child.pid}"]
    listed = runner.invoke(app, ["outbox", "list"])
    assert listed.exit_code == 0 and "leased by" in listed.stdout  # in the next-try column
    rows = json.loads(runner.invoke(app, ["outbox", "list", "--json"]).stdout)
    assert {r["leased_by"] for r in rows} == {f"{socket.gethostname()} pid {child.pid}"}
    assert all(r["leased_until"] and not r["parked"] for r in rows)
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["outbox"]["push.quickbooks"]["leased"] == len(documents)
    assert f"push.quickbooks: {len(documents)} leased by a run" in runner.invoke(app, ["status"]).stdout

    assert runner.invoke(app, ["outbox", "retry", "--topic", "push.quickbooks"]).exit_code == 0
    finished = json.loads(runner.invoke(app, ["push", "--target", "quickbooks", "--json"]).stdout)
    assert finished["outcomes"] == {"existing": 30, "created": len(documents) - 30} and finished["leased"] is None
    assert in_quickbooks(qbo) == sorted(str(d["number"]) for d in documents)


CUSTOMERS, CONTRACTS = 8, 330  # more documents than one claim takes (300): each push gets some


def many_documents(store: Store) -> list[dict[str, object]]:
    """330 invoices of 8 customers, approved for QuickBooks."""
    document = {
        "entities": [{"entity_ref": "us", "name": "Acme Inc.", "currency": "USD", "invoice_prefix": "US-INV-"}],
        "customers": [
            {"customer_ref": f"cust-{i}", "name": f"Customer {i}", "entity_ref": "us"} for i in range(CUSTOMERS)
        ],
        "products": [
            {
                "product_ref": "platform",
                "name": "Platform",
                "prices": [
                    {"price_ref": "platform-usd", "currency": "USD", "pricing": {"model": "flat", "amount": "100"}}
                ],
            }
        ],
        "contracts": [
            {
                "contract_ref": f"C-{n}",
                "customer_ref": f"cust-{n % CUSTOMERS}",
                "entity_ref": "us",
                "currency": "USD",
                "contract_start_date": "2026-11-01",
                "lines": [{"line_ref": "l1", "product_ref": "platform"}],
            }
            for n in range(CONTRACTS)
        ],
    }
    from billbridge.flows.importing import import_document

    import_document(store, document)
    run_billing(store, date(2026, 11, 1))
    approve_drafts(store, ["quickbooks"])
    with store.read() as session:
        return list_invoices(session)


def test_two_pushes_at_once_from_an_empty_company_create_everything_once_and_park_nothing(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """Two `billbridge push --target quickbooks` at once both looked the new customers (and the item)
    up, found none and created them: the loser got 6240 Duplicate Name Exists, and its documents were
    parked until a person ran `outbox retry`. QuickBooks holds the answers to both look-ups until
    both were made, so the race happens every time; the loser now looks the names up again."""
    import json

    documents = many_documents(store)
    assert len(documents) == CONTRACTS
    settings = settings_for(qbo, database_url, tmp_path)
    env = {**os.environ, "BILLBRIDGE_DATABASE_URL": database_url, "BILLBRIDGE_DATA_DIR": str(tmp_path)}
    env.update(_plain(settings))
    held = qbo.faults.add(kind="hold_response", path="/query", times=2, delay=8)
    command = [str(Path(sys.executable).with_name("billbridge")), "push", "--target", "quickbooks", "--json"]
    pushes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"
    ]
    results = [p.communicate(timeout=180) for p in pushes]
    assert held.hits == 2  # both looked up while neither had created anything
    outcomes = []
    for process, (out, errors) in zip(pushes, results, strict=True):
        assert process.returncode == 0, errors[-2000:]
        answer = json.loads(out)
        assert answer["failures"] == [], answer["failures"]
        outcomes.append(answer["outcomes"])
    assert all(outcome for outcome in outcomes)  # each push delivered some of them
    assert sum(n for outcome in outcomes for n in outcome.values()) == CONTRACTS
    assert in_quickbooks(qbo) == sorted(str(d["number"]) for d in documents)  # each exactly once
    assert len(qbo.company.all("Customer")) == CUSTOMERS
    with store.read() as session:
        assert outbox.pending(session, topic="push.quickbooks") == []  # nothing parked, nothing waiting
        assert {d["status"] for d in list_invoices(session)} == {"sent"}


def test_a_customer_made_under_its_clash_name_is_recorded_and_read_by_its_id_on_later_runs(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19 item 1: a vendor holds a customer's DisplayName, so the first push makes the customer as
    '<name> (<customer ref>)' after a 6240; that name and its QuickBooks Id are recorded as the customer's
    external reference, and the next month's push reads the customer by that Id: no 6240 and no query
    by name for it. `status` counts it and `invoices show` names it."""
    import json

    from typer.testing import CliRunner

    from billbridge.app.cli import app
    from billbridge.mapping.quickbooks import clash_name, customer_spec, display_name
    from billbridge.sandbox.quickbooks.errors import QboFault
    from billbridge.store.outbound_documents import outbound_documents
    from billbridge.store.status import overview

    documents = billed(store)
    first = next(d for d in documents if d["doc_type"] == "invoice")
    with store.read() as session:
        doc = outbound_documents(session, [int(first["id"])])[int(first["id"])]  # type: ignore[call-overload]
    plain, suffixed = display_name(doc.customer_name), clash_name(customer_spec(doc))
    qbo.company.create("Vendor", {"DisplayName": plain})  # a supplier of the same name
    queries: list[str] = []
    refused: list[str] = []
    query, create = qbo.company.query, qbo.company.create

    def counted_query(text: str) -> dict[str, object]:
        queries.append(text)
        return query(text)

    def counted_create(entity: str, body: dict[str, object]) -> dict[str, object]:
        try:
            return create(entity, body)
        except QboFault as fault:
            refused.append(f"{fault.code} {body.get('DisplayName')}")
            raise

    qbo.company.query, qbo.company.create = counted_query, counted_create  # type: ignore[method-assign,assignment]
    settings = settings_for(qbo, database_url, tmp_path)
    assert push(store, settings, "quickbooks").failures == []
    assert refused == [f"6240 {plain}"]  # the clash, once
    [customer] = [c for c in qbo.company.all("Customer") if c["DisplayName"] == suffixed]
    with store.read() as session:
        assert external_refs.customer_external_ref(session, "quickbooks", doc.customer_ref) == (
            customer["Id"],
            suffixed,
        )
        assert overview(session, date(2026, 11, 22))["renamed_in_vendors"] == {"quickbooks customer": 1}

    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    shown = CliRunner().invoke(app, ["invoices", "show", str(first["number"]), "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["quickbooks"]["customer_name"] == suffixed
    told = CliRunner().invoke(app, ["invoices", "show", str(first["number"])])
    assert suffixed in " ".join(told.output.split())

    # The next month: new documents for the same customer, pushed by a new run (a new connector).
    run_billing(store, date(2026, 12, 22))
    approve_drafts(store, ["quickbooks"])
    with store.read() as session:
        later = [d for d in list_invoices(session) if d["status"] == "approved"]
    assert any(d["contract_ref"] == doc.contract_ref for d in later), "the customer has a new document"
    queries.clear()
    refused.clear()
    summary = push(store, settings, "quickbooks")
    assert summary.failures == [] and summary.outcomes == {"created": len(later)}
    assert refused == []  # no 6240
    assert not [q for q in queries if plain in q or suffixed in q]  # no look-up by name for it
    assert [q for q in queries if f"Id IN ('{customer['Id']}'" in q]  # read by its recorded Id
    assert [c["DisplayName"] for c in qbo.company.all("Customer")].count(suffixed) == 1
    with store.read() as session:
        theirs = sorted(str(d["number"]) for d in list_invoices(session) if d["customer_ref"] == doc.customer_ref)
    made_out = [
        str(r["DocNumber"])
        for entity in ("Invoice", "CreditMemo")
        for r in qbo.company.all(entity)
        if r["CustomerRef"]["value"] == customer["Id"]
    ]
    assert sorted(made_out) == theirs and len(theirs) > 1  # both months' documents, to that customer
