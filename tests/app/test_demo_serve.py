"""``billbridge demo --serve``: after the demo, a Prefect server with the deployments served, the API
and the sandboxes stay up; a flow rerun from the server completes; Ctrl-C stops everything."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from billbridge.app.demo_serve import deployments
from billbridge.billing.currency import money_display
from billbridge.sandbox import demo_world
from tests.app.test_cli import fresh_machine
from tests.browser import browser_page
from tests.ports import free_port

EXPECTED = {
    "sync-salesforce",
    "sync-hubspot",
    "bill-daily",
    "push-quickbooks",
    "push-stripe",
    "collect-stripe",
    "reconcile-stripe",
    "reconcile-quickbooks",
    "quote-to-cash",
}


UI_PAGE = 10  # deployments per page of the Prefect UI's list


def test_the_served_deployments_are_those_of_prefect_yaml_with_their_schedules() -> None:
    served = {d.name: d for d in deployments()}
    assert set(served) >= EXPECTED
    assert served["sync-salesforce"].parameters == {"source": "salesforce"}
    assert [s.schedule.interval.total_seconds() for s in served["sync-hubspot"].schedules] == [900.0]
    assert [(s.schedule.cron, s.schedule.timezone) for s in served["bill-daily"].schedules] == [("0 2 * * *", "UTC")]
    assert not served["quote-to-cash"].schedules


def answered(client: httpx.Client, method: str, url: str, deadline: float) -> Any:
    """The JSON of a Prefect API call, asked again while the server answers an error (its SQLite
    database is busy under load: "database is locked") until the deadline."""
    while True:
        response = client.request(method, url, json={} if method == "POST" else None)
        if response.status_code < 400 or time.monotonic() > deadline:
            response.raise_for_status()
            return response.json()
        time.sleep(1)


@dataclass
class Served:
    ui: int
    api: int
    deployments: dict[str, str]  # name -> id, as the Prefect server lists them
    deadline: float
    returncode: int | None = None
    stderr: str = ""


@contextmanager
def demo_serving(environ: dict[str, str], tmp_path: Path, stop: signal.Signals, *args: str) -> Iterator[Served]:
    """The installed `billbridge demo ARGS --serve` on ports other than the defaults, once its
    deployments are served; stopped with ``stop`` afterwards (its exit code and stderr are then in the
    result). Its stdout (the summary) is in ``tmp_path / "stdout"``."""
    ui, api = free_port(), free_port()
    command = [str(Path(sys.executable).with_name("billbridge")), "demo", *args, "--serve"]
    command += ["--ui-port", str(ui), "--api-port", str(api)]
    log = tmp_path / "stderr"
    with log.open("w") as sink, (tmp_path / "stdout").open("w") as out:
        process = subprocess.Popen(command, env=environ, stdout=out, stderr=sink, text=True)
    served = Served(ui, api, {}, time.monotonic() + 600)
    try:
        while "serving" not in log.read_text():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < served.deadline, "the demo did not start serving"
            time.sleep(1)
        with httpx.Client(timeout=10) as client:
            while not set(served.deployments) >= EXPECTED:  # registered once serving has begun
                assert time.monotonic() < served.deadline, f"deployments served: {sorted(served.deployments)}"
                time.sleep(1)
                listed = client.post(f"http://127.0.0.1:{ui}/api/deployments/filter", json={}).json()
                served.deployments = {d["name"]: d["id"] for d in listed}
        yield served
    finally:
        process.send_signal(stop)
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        served.returncode, served.stderr = process.returncode, log.read_text()


def assert_the_first_summary(summary: dict[str, Any], tmp_path: Path) -> None:
    """A first demo's JSON summary: every CRM deal pulled, every document once in its vendor, the
    second run inside it created nothing, the books know what Stripe collected."""
    assert summary["deals_pulled"] == {"salesforce": 50, "hubspot": 50}
    assert summary["contracts"] > 0 and summary["quarantined"] >= 2  # each world has broken deals
    assert summary["pushed"]["quickbooks"] == summary["invoices"] + summary["credit_notes"] > 0
    assert summary["pushed"]["stripe"] == summary["charged"] + summary["declined"] > 0
    assert summary["duplicates"] == {
        "quickbooks": 0,
        "stripe": 0,
        "quickbooks_payments": 0,
        "quickbooks_journal_entries": 0,
        "quickbooks_bills": 0,
        "quickbooks_vendors": 0,
    }
    # October closed between the runs: the second run posted one JournalEntry per entity and currency,
    # the EUR, GBP and JPY ones too (the demo's QuickBooks company has multicurrency on), none refused
    assert summary["closed_month"] == "2026-10" and summary["journal_entries"] == len(demo_world.ENTITIES)
    assert summary["journal_entries_not_posted"] == []
    second = {"contracts": 0, "invoices": 0, "pushed": 0, "charged": 0, "payments_in_quickbooks": 0, "bills": 0}
    assert summary["second_run_created"] == second
    # the books know what Stripe collected (a zero invoice is "charged" without a payment)
    assert summary["stripe_payments_in_quickbooks"] == summary["payments_recorded"]["stripe"] > 0
    settled = summary["paid"] + summary["partially_paid"] - summary["paid_with_nothing_due"]
    assert summary["reconciled"]["matched"] == settled
    assert (tmp_path / "data" / "demo.db").exists()
    assert not (tmp_path / "data" / "billbridge.db").exists()  # the configured store is not the demo's
    # the demo's monitors (invoice total, renewals, usage per entity) were evaluated by the second run
    assert summary["monitors"]["monitors"] >= 8 and summary["monitors"]["values"] > 0
    assert summary["monitors"]["alerts"] == sum(summary["monitors"]["alerts_by_monitor"].values()) > 0
    # each CRM world names two referral partners and a reseller: all known, so only broken deals wait
    partners = summary["partners"]
    assert partners["partners"] == {"referral": 4, "reseller": 2}
    assert partners["statements"] == 4 and partners["bills"] + partners["vendor_credits"] >= 1
    # each statement with fees on it reached its partner in the SMTP sandbox (none twice: the second run)
    assert 1 <= partners["statements_mailed"] == partners["statements_in_mailbox"] <= 4
    assert partners["fees_accrued"] and all(Decimal(v) > 0 for v in partners["fees_accrued"].values())
    assert partners["reseller_invoices"] > 0
    # billing contacts come from the CRMs; companies left without one have their messages wait
    assert summary["messages"]["waiting_for_contact"] > 0 and summary["messages"]["received"] > 0


def assert_the_same_totals_in_words(shown: str, summary: dict[str, Any], tmp_path: Path) -> None:
    """A later demo's table (``shown``) says what the first one's JSON summary says, in words a
    finance person reads."""
    rows = {cells[1].strip(): cells[2].strip() for line in shown.splitlines() if len(cells := line.split("│")) == 4}
    words = (" ".join(rows) + " ".join(rows.values())).replace(str(tmp_path), "")  # paths may hold "_"
    assert "mirrored" not in words and "seen_before" not in words and "_" not in words
    assert rows["deals pulled"] == "Salesforce 50, HubSpot 50"
    assert rows["invoices / credit notes"] == f"{summary['invoices']} / {summary['credit_notes']}"
    assert rows["sent to QuickBooks / Stripe"] == f"{summary['pushed']['quickbooks']} / {summary['pushed']['stripe']}"
    assert rows["payments matched to invoices"].startswith(f"{summary['reconciled']['matched']} in full")
    mrr = Decimal(summary["mrr"]["USD"])
    assert mrr >= 1000 and f"{mrr:,.2f} USD" in rows["MRR"]  # thousands separated, the currency named
    assert rows["check: anything held twice"] == (
        "no: every document, payment, Bill and vendor is in QuickBooks and Stripe once"
    )
    assert rows["partners"].startswith("4 referral, 2 reseller; referral fees accrued ")
    assert rows["check: second run"].startswith("created nothing")
    for label, key in (
        ("revenue recognised this month", "recognised_revenue"),
        ("deferred revenue", "deferred_revenue"),
    ):
        assert summary[key], key
        for currency, amount in summary[key].items():
            assert money_display(Decimal(amount), currency) in rows[label], (label, rows[label])
    monitors = summary["monitors"]
    assert rows["monitor alerts"].startswith(f"{monitors['alerts']} from {monitors['monitors']} monitors")
    # what the demo left, through the commands it suggests
    assert all(f"billbridge --demo {c}" in shown for c in ("status", "quarantine list", "payments review"))


def look_around(billbridge: Callable[..., str], summary: dict[str, Any], tmp_path: Path) -> None:
    """What the demo left, through the commands it suggests."""
    status = json.loads(billbridge("--demo", "status", "--json"))
    assert status["store"].endswith("demo.db") and status["contracts"] == summary["contracts"]
    assert len(json.loads(billbridge("--demo", "quarantine", "list", "--json"))) == summary["quarantined"]
    documents = summary["invoices"] + summary["credit_notes"]
    assert len(json.loads(billbridge("--demo", "invoices", "list", "--json"))) == documents
    assert len(json.loads(billbridge("--demo", "payments", "review", "--json"))) == len(summary["unmatched"])
    listed = billbridge("--store", f"sqlite:///{tmp_path / 'data' / 'demo.db'}", "quarantine", "list")
    assert "Quarantined records" in listed and "sf-" in listed
    assert not (tmp_path / "data" / "billbridge.db").exists()
    the_revenue_rows_are_the_rollforwards(billbridge, summary, tmp_path)


def the_revenue_rows_are_the_rollforwards(
    billbridge: Callable[..., str], summary: dict[str, Any], tmp_path: Path
) -> None:
    """The summary's recognised revenue (November, the month of --as-of) and deferred revenue (at its end),
    per currency, are what `billbridge revenue rollforward` gives entity by entity, added up; every
    entity's rollforward of October (closed between the runs) and November balances, against the
    invoices and credit notes too (the command exits 0)."""
    from billbridge.store.db import open_store
    from billbridge.store.revenue import entity_refs

    demo = open_store(f"sqlite:///{tmp_path / 'data' / 'demo.db'}")
    try:
        with demo.read() as session:
            refs = entity_refs(session)
    finally:
        demo.dispose()
    recognised: dict[str, Decimal] = {}
    deferred: dict[str, Decimal] = {}
    for ref in refs:
        for period in ("2026-10", "2026-11"):
            rows = json.loads(
                billbridge("--demo", "revenue", "rollforward", "--entity", ref, "--period", period, "--json")
            )
            assert all(r["balanced"] and not r["mismatches"] for r in rows), (ref, period, rows)
            for r in rows if period == "2026-11" else []:
                c = r["currency"]
                recognised[c] = recognised.get(c, Decimal(0)) + Decimal(r["recognised"])
                deferred[c] = deferred.get(c, Decimal(0)) + Decimal(r["deferred_revenue"]["closing"])

    def nonzero(amounts: dict[str, Any]) -> dict[str, Decimal]:
        return {c: Decimal(v) for c, v in amounts.items() if Decimal(v)}

    assert nonzero(summary["recognised_revenue"]) == nonzero(recognised) != {}
    assert nonzero(summary["deferred_revenue"]) == nonzero(deferred) != {}


def _the_ui_on_another_port_reaches_its_api_and_lists_the_deployments(page: Any, served: Served) -> None:
    """In a real browser: the UI's own settings point at the port it was started on (they used to say
    4200, and every page said "Can't connect to Server API")."""
    assert served.ui != 4200
    page.goto(f"http://127.0.0.1:{served.ui}/", wait_until="networkidle")
    page.get_by_role("link", name="Deployments").first.click()  # as a person finds them
    page.get_by_text(f"{len(served.deployments)} Deployments").first.wait_for(timeout=60_000)
    any_of_them = re.compile("^(" + "|".join(map(re.escape, served.deployments)) + ")$")
    page.get_by_text(any_of_them).first.wait_for(timeout=60_000)  # the rows come after the count
    shown = page.inner_text("body")
    assert "Can't connect to Server API" not in shown
    # the UI lists them ten to a page: the first page holds ten of those the API lists, no others
    listed = {name for name in served.deployments if name in shown}
    assert len(listed) == min(len(served.deployments), UI_PAGE), sorted(listed)


DEMO = ("--deals", "50", "--as-of", "2026-11-22")  # `billbridge demo` as the test runs it, twice


def test_the_demo_twice_in_one_folder_gives_the_same_totals_then_serves_the_ui_deployments_and_api(
    tmp_path: Path,
) -> None:
    """The README's first command, twice in one data folder (each demo costs a minute and more of the
    suite, so the second is the `--serve` one): the installed ``billbridge demo``, its own temporary
    Prefect server, the four sandboxes; nothing done twice, every document in its vendor, and the
    second demo (fresh sandboxes, its store emptied) gives the same summary as the first, in words and
    money a finance person reads; the demo's store is there to look around. Then, served: the Prefect
    UI in a real browser, the API and dashboard over HTTP, a rerun from the server, then SIGTERM.
    Ctrl-C (SIGINT) ends the runner with Python's own KeyboardInterrupt; SIGTERM is the path with
    code of ours (the runner's stop scheduled on its loop), so it is the one checked here."""
    command = Path(sys.executable).with_name("billbridge")
    environ = fresh_machine(tmp_path, COLUMNS="200", PREFECT_RUNNER_POLL_FREQUENCY="1")

    def billbridge(*args: str) -> str:
        done = subprocess.run([str(command), *args], env=environ, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    summary = dict(json.loads(billbridge("demo", *DEMO, "--json")))
    assert_the_first_summary(summary, tmp_path)
    with browser_page() as page, demo_serving(environ, tmp_path, signal.SIGTERM, *DEMO) as served:
        # the second demo in the folder: the same totals, in the table a person reads
        assert_the_same_totals_in_words((tmp_path / "stdout").read_text(), summary, tmp_path)
        look_around(billbridge, summary, tmp_path)
        _the_ui_on_another_port_reaches_its_api_and_lists_the_deployments(page, served)
        base = f"http://127.0.0.1:{served.ui}/api"
        with httpx.Client(timeout=10) as client:
            assert client.get(f"http://127.0.0.1:{served.api}/docs").status_code == 200
            # the dashboard, with the dashboard user the demo printed for it
            printed = re.search(r"sign in as (\S+) with password (\S+)", (tmp_path / "stderr").read_text())
            assert printed, (tmp_path / "stderr").read_text()[-3000:]
            dashboard = f"http://127.0.0.1:{served.api}"
            form = client.get(f"{dashboard}/sign-in")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
            signed = client.post(
                f"{dashboard}/sign-in",
                data={"csrf": csrf, "username": printed.group(1), "password": printed.group(2)},
                headers={"Origin": dashboard},
                cookies=form.cookies,
            )
            assert signed.status_code == 303, signed.text
            page = client.get(f"{dashboard}/", cookies=signed.cookies)
            assert page.status_code == 200 and "MRR movements" in page.text
            assert client.get(f"http://127.0.0.1:{served.ui}/").status_code == 200  # the UI
            # the demo's own runs are in the server's history
            runs = client.post(f"{base}/flow_runs/filter", json={"flow_runs": {"name": {}}}).json()
            assert any(r["state_type"] == "COMPLETED" for r in runs)

            # a person reruns reconciliation from the UI: the served deployment runs it, and it completes
            create = f"{base}/deployments/{served.deployments['reconcile-quickbooks']}/create_flow_run"
            rerun = answered(client, "POST", create, served.deadline)
            state = None
            while time.monotonic() < served.deadline:
                state = answered(client, "GET", f"{base}/flow_runs/{rerun['id']}", served.deadline)["state_type"]
                if state in ("COMPLETED", "FAILED", "CRASHED"):
                    break
                time.sleep(1)
            assert state == "COMPLETED"
    # SIGTERM (a service manager, `kill`) stops it as Ctrl-C does: cleanly and quietly
    assert served.returncode == 0, served.stderr[-3000:]
    assert "never awaited" not in served.stderr and "Traceback" not in served.stderr
    with socket.socket() as sock:  # the Prefect server went with it
        assert sock.connect_ex(("127.0.0.1", served.ui)) != 0


def test_a_prefect_server_that_cannot_start_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The port taken under the server's feet (after the demo's own check): the error carries the
    server's own words, not only its exit code."""
    from billbridge.app.demo_serve import PrefectServer

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    with socket.socket() as taken:
        port = free_port()
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(RuntimeError, match=r"(?s)exited with \d+ .*it said:.*already in use"):
            PrefectServer(port).start()
