"""Pushing to QuickBooks end to end: approved documents go out once each, marked sent and linked;
reruns and a process killed between QuickBooks accepting and our commit never make a second copy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from pydantic import SecretStr

from billbridge.app.settings import QuickBooksSettings, Settings
from billbridge.flows.approval import approve_drafts
from billbridge.flows.billing_run import run_billing
from billbridge.flows.importing import import_file
from billbridge.flows.push import push
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.store import external_refs, outbox
from billbridge.store.db import Store
from billbridge.store.invoices import list_invoices

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
            requests_per_minute=100_000,
            batches_per_minute=100_000,
        ),
    )


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
        assert outbox.pending(session) == []
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
    env.update({f"BILLBRIDGE_QUICKBOOKS__{k.upper()}": str(v) for k, v in _plain(settings).items()})
    script = "from billbridge.app.settings import Settings\nfrom billbridge.flows.push import push\nfrom billbridge.store.db import open_store\ns = Settings()\npush(open_store(s.database), s, 'quickbooks')\n"
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


def _plain(settings: Settings) -> dict[str, object]:
    assert settings.quickbooks is not None
    values = settings.quickbooks.model_dump()
    return {k: (v.get_secret_value() if isinstance(v, SecretStr) else v) for k, v in values.items() if v is not None}


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
        monkeypatch.setenv(f"BILLBRIDGE_QUICKBOOKS__{key.upper()}", str(value))
    runner = CliRunner()
    pushed = runner.invoke(app, ["push", "--target", "quickbooks", "--json"])
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(pushed.stdout)["outcomes"] == {"created": len(documents)}
    reconciled = runner.invoke(app, ["reconcile", "--source", "quickbooks", "--json"])
    assert reconciled.exit_code == 0, reconciled.output
    assert json.loads(reconciled.stdout)["outcomes"] == {}  # nobody has paid yet
    unknown = runner.invoke(app, ["push", "--target", "netsuite"])
    assert unknown.exit_code == 1 and "unknown push target" in unknown.output
