"""The billbridge command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.billing.currency import money_display
from billbridge.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def fresh_machine(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of the installed command on a machine with nothing set up: a fresh data
    folder, no config file, its own Prefect home, no store or Prefect server named."""
    environ = {
        **os.environ,
        "BILLBRIDGE_DATA_DIR": str(tmp_path / "data"),
        "BILLBRIDGE_CONFIG": str(tmp_path / "none.toml"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **extra,
    }
    for key in [k for k in environ if k.startswith(("BILLBRIDGE_DATABASE", "PREFECT_API_URL"))]:
        environ.pop(key)
    return environ


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_examples_twice_give_the_same_totals_and_no_duplicates(env: str) -> None:
    code, out = run("examples", "--as-of", "2026-11-22", "--json")
    assert code == 0, out
    first = json.loads(out)
    assert first["billing"]["invoices"] == 37 and first["documents_in_store"] == 37
    assert first["billing"]["totals"] == {"EUR": "7800.00", "JPY": "1650000", "KWD": "3356.163", "USD": "46047.58"}
    assert first["import"]["errors"] == []
    code, out = run("examples", "--as-of", "2026-11-22", "--json")
    second = json.loads(out)
    assert second["billing"]["invoices"] == 0 and second["documents_in_store"] == 37
    assert set(second["import"]["counts"]) == {
        "contracts.unchanged",
        "customers.unchanged",
        "entities.unchanged",
        "partners.unchanged",
        "products.unchanged",
        "referral_agreements.unchanged",
    }


def test_preview_saves_nothing_and_bill_then_list(env: str) -> None:
    examples = sorted(str(p) for p in (ROOT / "examples" / "contracts").glob("*.yaml"))
    assert run("contracts", "import", *examples)[0] == 0
    code, out = run("invoices", "preview", "--contract", "C-101-initech", "--as-of", "2026-03-31", "--json")
    assert code == 0, out
    docs = json.loads(out)["documents"]
    assert [(d["billing_date"], d["invoice_total"]) for d in docs] == [
        ("2026-02-28", "2250.00"),
        ("2026-03-31", "2250.00"),
    ]
    assert json.loads(run("invoices", "list", "--json")[1]) == []

    code, out = run("bill", "--as-of", "2026-03-31", "--json")
    assert code == 0 and json.loads(out)["invoices"] > 0
    listed = json.loads(run("invoices", "list", "--contract", "C-101-initech", "--json")[1])
    assert [(i["number"], i["billing_date"], i["status"]) for i in listed] == [
        ("US-INV-4", "2026-02-28", "draft"),
        ("US-INV-5", "2026-03-31", "draft"),
    ]
    code, out = run("invoices", "show", "US-INV-4")
    assert code == 0 and "User seats" in out and "2250.00" in out
    assert run("invoices", "mark", "US-INV-4", "approved")[0] == 0
    code, out = run("invoices", "mark", "US-INV-4", "paid")
    assert code == 1 and "cannot go from approved to paid" in out


def test_bad_file_names_record_and_field_and_quarantine_lists_it(env: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "contracts:\n"
        "  - contract_ref: C-9\n    customer_ref: nobody\n    entity_ref: us\n    currency: USD\n"
        "    contract_start_date: 2026-01-01\n    lines: [{line_ref: a, product_ref: p, quantity: '-1'}]\n"
    )
    code, out = run("contracts", "import", str(bad))
    assert code == 2
    assert "contracts[0] (C-9): field lines[0].quantity" in " ".join(out.split())
    code, out = run("quarantine", "list", "--json")
    [entry] = json.loads(out)
    assert (entry["record_key"], entry["field"]) == ("C-9", "lines[0].quantity")
    code, out = run("invoices", "preview", "--contract", "nope")
    assert code == 1 and "no contract 'nope'" in out
    code, out = run("bill", "--as-of", "31/12/2026")
    assert code == 2 and "not a date" in out


def test_schema_is_generated_from_the_models(env: str) -> None:
    code, out = run("contracts", "schema")
    schema = json.loads(out)
    assert code == 0 and schema["title"] == "billbridge contract file"
    prices = {name for name in schema["$defs"] if name.endswith("Price")}
    # The five pricing models, and the two price-book entries that carry one.
    assert prices == {
        "FlatPrice",
        "PerUnitPrice",
        "GraduatedPrice",
        "VolumePrice",
        "PackagePrice",
        "ProductPrice",
        "ResellerPrice",
    }


def test_settings_come_from_the_config_file_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "billbridge.toml"
    config.write_text('database_url = "sqlite:///from-file.db"\nbilling_chunk_size = 7\n')
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(config))
    monkeypatch.delenv("BILLBRIDGE_DATABASE_URL", raising=False)
    assert (Settings().database, Settings().billing_chunk_size) == ("sqlite:///from-file.db", 7)
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", "sqlite:///from-env.db")
    assert Settings().database == "sqlite:///from-env.db"
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "missing.toml"))
    monkeypatch.delenv("BILLBRIDGE_DATABASE_URL")
    assert Settings(data_dir=tmp_path).database == f"sqlite:///{tmp_path / 'billbridge.db'}"


def test_sandbox_command_serves_the_four_sandboxes_and_its_printed_settings_work_as_they_are(tmp_path: Path) -> None:
    """`billbridge sandbox`, then in another shell its printed settings: a CRM sync takes the deals in
    (the sandbox's store knows their legal entities), only the deliberately broken ones are quarantined."""
    import re
    import shlex
    import signal
    import smtplib
    import ssl
    import urllib.request

    command = Path(sys.executable).with_name("billbridge")
    child = subprocess.Popen(
        [str(command), "sandbox", "--deals", "10"],
        env={**fresh_machine(tmp_path), "COLUMNS": "250"},
        stdout=subprocess.PIPE,
        text=True,
        # As from a person's terminal: Ctrl-C's SIGINT at its default. A shell starting the suite in
        # the background (no job control) hands every child SIGINT ignored, and Python then keeps it
        # ignored: the sandboxes would never see the Ctrl-C this test sends.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert child.stdout is not None
        urls: list[str] = []
        exports: dict[str, str] = {}
        smtp: list[str] = []
        for line in child.stdout:
            urls += re.findall(r"https?://[\w.]+:\d+", line) if not exports else []
            smtp += re.findall(r"smtp://127\.0\.0\.1:(\d+) \(STARTTLS, then AUTH as billbridge\)", line)
            smtp += re.findall(r"SMTP mailbox \(one \.eml per e-mail\)\s+\S*\s+(\S+demo-mailbox)", line)
            if line.startswith("export "):
                key, _, value = line.removeprefix("export ").strip().partition("=")
                exports[key] = shlex.split(value)[0]
            if line.startswith("Stripe and QuickBooks send webhooks"):
                break
        assert len(urls) == 4
        hubspot = next(u for u in urls if u.startswith("http://"))
        with urllib.request.urlopen(f"{hubspot}/__sandbox__/calls", timeout=10) as answer:
            assert answer.status == 200
        assert exports["BILLBRIDGE_DATABASE_URL"] == f"sqlite:///{tmp_path / 'data' / 'sandbox.db'}"
        [port, mailbox] = smtp  # the SMTP server and its mailbox, shown with the others and in the settings
        assert exports["BILLBRIDGE_SMTP__PORT"] == port and Path(mailbox).is_dir()
        with smtplib.SMTP("127.0.0.1", int(port), timeout=10) as client:  # as printed, it takes a login
            client.starttls(context=ssl.create_default_context(cafile=exports["BILLBRIDGE_SMTP__CA_BUNDLE"]))
            client.login(exports["BILLBRIDGE_SMTP__USERNAME"], exports["BILLBRIDGE_SMTP__PASSWORD"])

        environ = {**fresh_machine(tmp_path / "other-shell"), **exports}
        for source in ("hubspot", "salesforce"):
            done = subprocess.run(
                [str(command), "sync", "crm", "--source", source, "--json"],
                env=environ,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr[-3000:]
            synced = json.loads(done.stdout)
            reasons = [e["message"] for e in synced["errors"]]
            assert synced["counts"].get("contracts.created", 0) >= 5, reasons
            assert not [r for r in reasons if "unknown legal entity" in r]
            assert len(reasons) <= 2  # the world's deliberately broken deals
    finally:
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 0


def test_status_shows_documents_open_money_and_what_waits_or_fails_in_the_outbox(env: str) -> None:
    from datetime import date, timedelta
    from decimal import Decimal

    from billbridge.flows.approval import approve_drafts
    from billbridge.store import outbox
    from billbridge.store.db import open_store
    from billbridge.store.invoices import list_invoices
    from billbridge.store.outbound_documents import mark_sent

    assert run("examples", "--as-of", "2026-11-22", "--json")[0] == 0
    store = open_store(env)
    approve_drafts(store, ["quickbooks"])
    with store.write() as session:
        documents = sorted(list_invoices(session), key=lambda d: str(d["number"]))
        jpy = next(d for d in documents if d["currency"] == "JPY" and d["invoice_total"] > 0)
        kwd = next(d for d in documents if d["currency"] == "KWD" and d["invoice_total"] > 0)
        for doc in (jpy, kwd):
            mark_sent(session, [int(doc["id"])])
        throttled, refused = outbox.claim(session, topic="push.quickbooks", limit=2)
        outbox.mark_failed(session, throttled.id, "HTTP 429 throttled", retry_in=timedelta(hours=1))
        outbox.mark_failed(session, refused.id, "6000 Invalid Reference Id", retry_in=None)

    code, out = run("status", "--json")
    assert code == 0, out
    status = json.loads(out)
    assert status["contracts"] == 6 and status["documents"]["by_status"] == {"approved": 35, "sent": 2}
    assert status["documents"]["receivable"] == {"JPY": str(jpy["invoice_total"]), "KWD": str(kwd["invoice_total"])}
    late = {d["currency"]: str(d["invoice_total"]) for d in (jpy, kwd) if d["due_date"] < date.today()}
    assert status["documents"]["overdue"] == late and status["documents"]["late"] == len(late)
    box = status["outbox"]["push.quickbooks"]
    assert (box["delivered"], box["due"], box["retrying"], box["parked"]) == (0, 35, 1, 1)
    assert [e["error"] for e in box["errors"]] == ["6000 Invalid Reference Id", "HTTP 429 throttled"]
    assert status["payments"] == {"recorded": 0, "with_unapplied_money": 0, "unapplied": {}, "to_review": 0}
    assert status["quarantined"] == {} and status["cursors"] == []
    assert Decimal(status["documents"]["receivable"]["KWD"]).as_tuple().exponent == -3  # exact, in its minor units

    code, out = run("status")
    assert code == 0 and "push.quickbooks" in out and "6000 Invalid" in out  # the table wraps long errors
    # money as the demo summary shows it: thousands separated, in the currency's minor units
    receivable = f"{money_display(jpy['invoice_total'], 'JPY')}, {money_display(kwd['invoice_total'], 'KWD')}"
    assert "," in f"{jpy['invoice_total']:,}" and receivable in out

    code, out = run("outbox", "list", "--topic", "push.quickbooks", "--json")
    waiting = {row["id"]: row for row in json.loads(out)}
    assert code == 0 and len(waiting) == 37
    assert waiting[refused.id]["parked"] and waiting[refused.id]["last_error"] == "6000 Invalid Reference Id"
    assert not waiting[throttled.id]["parked"] and waiting[throttled.id]["attempts"] == 1
    assert run("outbox", "retry", str(refused.id)) == (0, "1 message(s) due now\n")  # the cause was fixed
    code, out = run("status", "--json")
    assert json.loads(out)["outbox"]["push.quickbooks"]["parked"] == 0
    assert run("outbox", "retry")[0] == 1  # nothing named: an error, not a retry of everything


def test_payments_matching_could_not_apply_wait_on_the_review_list_until_a_person_deals_with_them(env: str) -> None:
    from datetime import date
    from decimal import Decimal

    from billbridge.billing.documents import IncomingPayment, push_targets
    from billbridge.flows.reconcile import record_pages
    from billbridge.store.db import open_store
    from billbridge.store.invoices import list_invoices
    from billbridge.store.outbound_documents import set_status
    from billbridge.vendors.contract import PaymentPage

    NO_PUSH = push_targets({})

    assert run("examples", "--as-of", "2026-11-22", "--json")[0] == 0
    store = open_store(env)
    with store.write() as session:
        invoice = next(d for d in list_invoices(session) if d["currency"] == "USD" and d["invoice_total"] > 0)
        set_status(session, str(invoice["number"]), "approved", NO_PUSH)
        set_status(session, str(invoice["number"]), "sent", NO_PUSH)
    customer, total = str(invoice["customer_ref"]), Decimal(str(invoice["invoice_total"]))
    page = PaymentPage(
        [
            IncomingPayment(
                "stripe", "ch_over", "USD", total + 5, date(2026, 11, 23), customer, (str(invoice["number"]),)
            ),
            IncomingPayment("stripe", "ch_stray", "USD", Decimal("12.34"), date(2026, 11, 23), None, memo="thanks!"),
        ],
        "cursor-1",
    )
    assert record_pages(store, "stripe", [page]).outcomes == {"partly_matched": 1, "unmatched": 1}
    assert record_pages(store, "stripe", [page]).outcomes == {"seen_before": 2}  # listed once, not twice

    code, out = run("payments", "review", "--json")
    assert code == 0, out
    listed = {r["payment_ref"]: r for r in json.loads(out)}
    assert set(listed) == {"stripe:ch_over", "stripe:ch_stray"}
    assert listed["stripe:ch_over"]["unapplied_amount"] == "5.00"
    assert listed["stripe:ch_over"]["review_reason"] == "5.00 USD more than the invoices named were open for"
    assert listed["stripe:ch_stray"]["review_reason"] == "names no invoice (linked or written) and no customer we know"
    assert json.loads(run("status", "--json")[1])["payments"]["to_review"] == 2

    assert run("payments", "reviewed", "stripe:ch_over", "--note", "kept as the customer's credit")[0] == 0
    assert [r["payment_ref"] for r in json.loads(run("payments", "review", "--json")[1])] == ["stripe:ch_stray"]
    code, out = run("payments", "reviewed", "stripe:ch_over", "--note", "again")
    assert code == 1 and "not on the review list" in out
    code, out = run("payments", "reviewed", "stripe:nope", "--note", "x")
    assert code == 1 and "no payment" in out
    code, out = run("payments", "review")  # the table a person reads
    assert code == 0 and "stripe:ch_stray" in out  # whole, to be typed into `payments apply`

    # A person recognises the stray payment: it pays part of another open invoice.
    with store.write() as session:
        other = next(
            d
            for d in list_invoices(session)
            if d["currency"] == "USD" and d["invoice_total"] > 20 and d["number"] != invoice["number"]
        )
        set_status(session, str(other["number"]), "approved", NO_PUSH)
        set_status(session, str(other["number"]), "sent", NO_PUSH)
    number = str(other["number"])
    refused = {
        "too much": ("--amount", "12.35"),
        "finer than a cent": ("--amount", "1.001"),
        "not a number": ("--amount", "ten"),
    }
    said = {
        why: " ".join(run("payments", "apply", "stripe:ch_stray", number, *extra)[1].split())
        for why, extra in refused.items()
    }
    assert "12.35 cannot be applied" in said["too much"] and "at most 12.34" in said["too much"]
    assert "1.001 is not a whole number of USD minor units" in said["finer than a cent"]
    assert "'ten' is not a number" in said["not a number"]
    paid_already = " ".join(run("payments", "apply", "stripe:ch_stray", str(invoice["number"]))[1].split())
    assert f"invoice {invoice['number']} is paid" in paid_already  # ch_over paid it
    code, out = run("payments", "apply", "stripe:ch_stray", number, "--amount", "10.00")
    assert code == 0 and "10.00 applied" in out, out
    assert [r["unapplied_amount"] for r in json.loads(run("payments", "review", "--json")[1])] == ["2.34"]
    code, out = run("payments", "apply", "stripe:ch_stray", number)  # the rest
    assert code == 0 and "2.34 applied" in out, out
    assert json.loads(run("payments", "review", "--json")[1]) == []  # off the list: nothing left unapplied
    with store.read() as session:
        now = next(d for d in list_invoices(session) if d["number"] == number)
    assert (now["status"], now["amount_paid"]) == ("partially_paid", Decimal("12.34"))
    code, out = run("payments", "apply", "stripe:ch_stray", number)
    assert code == 1 and "at most 0.00" in out
    store.dispose()


def test_status_shows_when_each_refresh_token_expires_and_warns_30_days_before(env: str) -> None:
    """Issue 19 item 7: ``status`` lists the stored connections' refresh-token expiries, and warns of one
    whose hard expiry is within 30 days (someone must connect the account again)."""
    from datetime import UTC, datetime, timedelta

    from billbridge.store import oauth_tokens
    from billbridge.store.db import open_store

    store = open_store(env)
    now = datetime.now(UTC)
    with store.write() as session:
        oauth_tokens.compare_and_swap(
            session,
            "quickbooks:111",
            0,
            "sealed",
            refresh_expires_at=now + timedelta(days=100),
            refresh_hard_expires_at=now + timedelta(days=400),
        )
        oauth_tokens.compare_and_swap(
            session,
            "quickbooks:222",
            0,
            "sealed",
            refresh_expires_at=now + timedelta(days=100),
            refresh_hard_expires_at=now + timedelta(days=12, hours=1),
        )
    store.dispose()
    code, out = run("status", "--json")
    assert code == 0, out
    creds = {c["connection"]: c for c in json.loads(out)["credentials"]}
    assert (creds["quickbooks:111"]["days_left"], creds["quickbooks:111"]["warning"]) == (99, False)
    assert (creds["quickbooks:222"]["days_left"], creds["quickbooks:222"]["warning"]) == (12, True)
    code, out = run("status")
    assert code == 0 and "quickbooks:222 expires in 12 days" in " ".join(out.split())
    assert "quickbooks:111 expires" not in out


def test_the_import_table_counts_partners_and_agreements(env: str, tmp_path: Path) -> None:
    """Every record list of a contract file has its row: partners and referral agreements too."""
    examples = Path(__file__).resolve().parents[2] / "examples" / "contracts"
    code, out = run("contracts", "import", *(str(p) for p in sorted(examples.glob("*.yaml"))))
    assert code == 0, out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 2}
    assert {"partners", "referral_agreements"} <= set(rows)
    assert [cell.strip() for cell in rows["partners"].split("│")[2:4]] == ["2", "0"]
    assert [cell.strip() for cell in rows["referral_agreements"].split("│")[2:4]] == ["1", "0"]


def test_money_and_refs_are_never_cut_to_fit_a_narrow_console(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped output is 80 columns, a terminal may be narrower: ``125,0…`` or ``channel-o…`` cannot
    be read or pasted into the next command, so the table is wider than the console instead."""
    assert run("examples", "--as-of", "2026-11-22", "--json")[0] == 0
    monkeypatch.setenv("COLUMNS", "40")
    code, out = run("status")
    assert code == 0 and "…" not in out, out
    words = out.split()
    assert {"125,000", "1,500,000", "2,600.04", env} <= set(words)
    code, out = run("partners", "list")
    assert code == 0 and "…" not in out, out
    assert {"channel-one", "northwind", "us-inc"} <= set(out.split())


def test_the_readme_says_money_is_rounded_text_and_when_the_demo_shows_progress() -> None:
    """A newcomer read "money in the currency's minor units" as integer cents while the API answers
    "1858.00", and waited minutes on a piped ``billbridge demo`` that drew no progress."""
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert "in the currency's minor units" not in readme
    assert readme.count("rounded to the currency's minor unit") >= 3
    assert "drawn on stderr only in a terminal: piped or redirected, the demo prints nothing" in readme
