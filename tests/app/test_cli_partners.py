"""``billbridge partners``, as a user runs it, over the example contracts (and partners) billed to
2026-11-22, with a payment of a referred customer."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.store.db import open_store
from billbridge.store.invoices import list_invoices
from billbridge.store.outbound_documents import mark_sent
from billbridge.store.payments import record_payment

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def run_apart(*args: str) -> tuple[int, str, str]:
    """Exit code, standard output and standard error apart."""
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def paid(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Decimal:
    """The examples billed, hooli's first invoice paid on 2026-11-25; what it paid."""
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "250")
    assert run("examples", "--as-of", "2026-11-22", "--json")[0] == 0
    store = open_store(database_url)
    with store.read() as session:
        invoice = next(d for d in list_invoices(session) if d["customer_ref"] == "hooli")
    assert run("invoices", "mark", str(invoice["number"]), "approved")[0] == 0
    with store.write() as session:
        total = Decimal(str(invoice["invoice_total"]))
        mark_sent(session, [int(str(invoice["id"]))])
        allocations = [(str(invoice["number"]), total)]
        record_payment(
            session,
            payment_ref="p-1",
            currency="USD",
            amount=total,
            received_on=date(2026, 11, 25),
            allocations=allocations,
        )
    store.dispose()
    return total


@pytest.mark.slow  # the examples billed first: tens of seconds
def test_list_run_statement_and_accruals(paid: Decimal) -> None:
    code, out = run("partners", "list", "--json")
    assert code == 0, out
    assert {(p["partner_ref"], p["kind"]) for p in json.loads(out)} == {
        ("northwind", "referral"),
        ("channel-one", "reseller"),
    }

    code, out = run("partners", "run", "--period", "2026-11", "--json")
    assert code == 0, out
    summary = json.loads(out)
    fee = (paid * Decimal("0.2")).quantize(Decimal("0.01"))
    assert summary["accrued"] == 2 and summary["fees"] == {"USD": str(fee + 250)}
    assert [(c["partner_ref"], c["total"]) for c in summary["closed"]] == [("northwind", str(fee + 250))]
    assert summary["bills"] == {}  # QuickBooks is not configured: the Bill waits in the outbox

    code, out = run("partners", "statement", "northwind", "--period", "2026-11", "--json")
    assert code == 0, out
    statement = json.loads(out)
    assert (statement["status"], statement["total"]) == ("closed", str(fee + 250))
    assert statement["lines"] == [{"customer_ref": "hooli", "base": str(paid), "fees": str(fee + 250)}]

    code, out = run("partners", "accruals", "--period", "2026-11", "--csv")
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted((r["kind"], r["fee"]) for r in rows) == [("fee", str(fee)), ("flat_fee", "250.00")]

    code, out = run("partners", "statement", "northwind", "--period", "2026-11")
    assert code == 0 and "hooli" in out and "Total" in out
    code, out = run("partners", "statement", "northwind", "--period", "2026-11", "--csv")
    assert code == 0, out
    assert list(csv.DictReader(io.StringIO(out))) == [  # the months covered and the total, in the file itself
        {"months": "2026-11", "currency": "USD", "customer_ref": "hooli", "base": str(paid), "fees": str(fee + 250)},
        {"months": "2026-11", "currency": "USD", "customer_ref": "(total)", "base": str(paid), "fees": str(fee + 250)},
    ]
    code, out = run("status", "--json")
    assert code == 0, out
    assert json.loads(out)["partners"] == {"by_kind": {"referral": 1, "reseller": 1}, "statements": {"closed": 1}}
    code, out = run("status")
    assert code == 0 and "referral 1, reseller 1 / closed 1" in out
    assert run("partners", "statement", "nobody", "--period", "2026-11")[0] == 1

    code, out = run("partners", "show", "northwind", "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert [a["agreement_ref"] for a in shown["agreements"]] == ["northwind-2026"]
    referred = {r["customer_ref"]: r for r in shown["referred_customers"]}
    assert (referred["hooli"]["revenue"], referred["hooli"]["fees"]) == (str(paid), str(fee + 250))
    assert (referred["initech"]["revenue"], referred["initech"]["fees"]) == ("0.00", "0.00")  # nothing paid yet
    assert (shown["fees_accrued"], shown["fees_billed"], shown["fees_paid"]) == (str(fee + 250), "0.00", "0.00")
    assert [(s["period"], s["status"], s["total"]) for s in shown["statements"]] == [
        ("2026-11", "closed", str(fee + 250))
    ]
    code, out = run("partners", "show", "northwind")
    assert code == 0 and "Referred customers" in out and "hooli" in out
    assert run("partners", "show", "nobody")[0] == 1

    code, out = run("partners", "fees", "--period", "2026-11", "--json")
    assert code == 0, out
    assert json.loads(out) == [
        {
            "partner_ref": "northwind",
            "currency": "USD",
            "accrued": str(fee + 250),
            "status": "closed",
            "total": str(fee + 250),
            "paid": None,
        }
    ]
    code, out = run("partners", "fees", "--period", "2026-12", "--csv")
    assert code == 0 and out.splitlines()[1] == "northwind,USD,0.00,open,,"
    assert run("partners", "accruals", "--period", "November")[0] == 2


@pytest.fixture
def partnered(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A referral partner (and a reseller) with nothing billed yet; the database URL."""
    from billbridge.flows.importing import import_document
    from tests.docs import contract, document

    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "250")
    store = open_store(database_url)
    assert not import_document(store, document(contract("C-1"))).errors
    partners = [
        {"partner_ref": "nw", "name": "NW", "kind": "referral", "entity_ref": "us", "currency": "USD"},
        {"partner_ref": "res", "name": "Res", "kind": "reseller", "entity_ref": "us", "currency": "USD"},
    ]
    agreement = {"agreement_ref": "nw-a", "partner_ref": "nw", "currency": "USD", "percent": "10"}
    assert not import_document(store, {"partners": partners, "referral_agreements": [agreement]}).errors
    store.dispose()
    return database_url


def test_run_refuses_a_month_that_has_not_ended_and_reports_skipped_statements(partnered: str) -> None:
    """``--period`` of the current or a future month is refused (exit 2, naming --period) and closes
    nothing; a month before the last closed one is reported as not closed."""
    this_month = date.today().strftime("%Y-%m")
    for month in ("2031-01", this_month):
        code, out = run("partners", "run", "--period", month, "--no-push", "--json")
        assert code == 2 and "--period" in out and f"period {month} has not ended" in out, out
    with open_store(partnered).read() as session:
        from billbridge.store.partners import statements

        assert statements(session) == []  # nothing was closed

    code, out = run("partners", "run", "--period", "2026-10", "--no-push", "--json")
    assert code == 0, out
    assert [(c["partner_ref"], c["period"]) for c in json.loads(out)["closed"]] == [("nw", "2026-10")]
    code, out, errors = run_apart("partners", "run", "--period", "2026-09", "--no-push", "--json")
    assert code == 0 and "not closed: nw 2026-09" in errors, out
    summary = json.loads(out)
    assert summary["closed"] == []
    [skipped] = summary["skipped"]
    assert (skipped["partner_ref"], skipped["period"]) == ("nw", "2026-09") and "2026-10" in skipped["reason"]
    code, out = run("partners", "run", "--period", "2026-09", "--no-push")
    assert code == 0 and "Statements not closed" in out and "nw 2026-09" in out
    code, out = run("partners", "fees", "--period", "2026-09", "--json")
    assert code == 0 and json.loads(out)[0]["status"] == "on the statement of 2026-10", out
    code, out = run("partners", "statement", "nw", "--period", "2026-09", "--json")
    assert code == 0 and json.loads(out)["status"] == "on the statement of 2026-10", out
    code, out = run("partners", "run", "--period", "2026-10", "--no-push", "--json")
    assert code == 0 and json.loads(out)["skipped"] == []  # a rerun of a closed month is not a skip


def test_statement_of_a_reseller_says_it_has_none(partnered: str) -> None:
    code, out = run("partners", "statement", "res", "--period", "2026-10")
    assert code == 1 and "reseller" in out and "no fee statement" in out
