"""``billbridge revenue``, as a user runs it, over the example contracts billed to 2026-11-22."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.store.db import Store
from billbridge.store.models import Contract, ContractVersion, Invoice, InvoiceLine
from tests.docs import contract, document

runner = CliRunner()
AS_OF = "2026-11-22"


@pytest.fixture
def examples(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "250")
    assert run("examples", "--as-of", AS_OF, "--json")[0] == 0
    return database_url


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_recognise_the_examples_then_schedule_waterfall_rollforward_and_close(examples: str) -> None:
    code, out = run("revenue", "recognize", "--through", AS_OF, "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["failed"] == [] and summary["rebuilt"] == summary["contracts"] > 0
    assert set(summary["recognised"]) == {"EUR", "JPY", "KWD", "USD"}
    code, out = run("revenue", "recognize", "--through", AS_OF, "--json")
    assert json.loads(out)["rebuilt"] == 0  # nothing changed since

    code, out = run("revenue", "schedule", "--contract", "C-101-initech", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["obligations"] and report["months"]
    net = Decimal(0)
    for m in report["months"]:  # billed - recognised = deferred - contract asset, month by month
        net += Decimal(m["billed"]) - Decimal(m["recognised"])
        assert net == Decimal(m["deferred"]) - Decimal(m["contract_asset"])
    code, out = run("revenue", "schedule", "--contract", "C-101-initech", "--csv")
    assert code == 0, out
    table = list(csv.DictReader(io.StringIO(out)))
    # the obligations first (SSP, allocated price, method), then the months: both what the JSON says
    sections = [row["section"] for row in table]
    assert sections == ["obligation"] * len(report["obligations"]) + ["month"] * len(report["months"])
    for row, ob in zip(table, report["obligations"], strict=False):
        assert (row["line_ref"], row["recognition"], row["ssp"], row["price"], row["allocated"]) == (
            ob["line_ref"],
            ob["recognition"],
            ob["ssp"],
            ob["price"],
            ob["allocated"],
        )
        assert row["month"] == row["billed"] == ""
    for row, m in zip(table[len(report["obligations"]) :], report["months"], strict=True):
        assert {k: row[k] for k in m} == m and row["ssp"] == ""
    code, out = run("revenue", "schedule", "--contract", "C-101-initech")
    assert code == 0 and "performance obligations" in out and "contract_asset" in out
    assert run("revenue", "schedule", "--contract", "nope")[0] == 1

    code, out = run("revenue", "waterfall", "--entity", "us-inc", "--from", "2026-01", "--to", "2026-12", "--csv")
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and {"booked_month", "2026-06", "recognised_to_date", "remaining"} <= set(rows[0])
    for row in rows:
        recognised = sum(Decimal(row[m]) for m in row if m.startswith("2026-") and row[m])
        assert recognised == Decimal(row["recognised_to_date"])  # every recognised month is a column

    code, out = run("revenue", "rollforward", "--entity", "us-inc", "--period", "2026-10", "--json")
    assert code == 0, out
    [usd] = json.loads(out)
    deferred = {k: Decimal(v) for k, v in usd["deferred_revenue"].items()}
    assert deferred["opening"] + deferred["billed"] - deferred["recognised"] == deferred["closing"]
    assert usd["balanced"] is True

    code, out = run("revenue", "journal", "--entity", "us-inc", "--period", "2026-10", "--json")
    assert code == 0, out
    [entry] = json.loads(out)  # what closing would post: without revenue_accounts, each line's role
    assert (entry["doc_number"], entry["posting"], entry["closed"]) == ("REV202610-USD-US-INC", "not queued", False)
    sides = {"Debit": Decimal(0), "Credit": Decimal(0)}
    for line in entry["lines"]:
        sides[line["posting"]] += Decimal(line["amount"])
    # recognised (from deferred revenue and into contract assets), and what billing took off contract assets
    # moved back to deferred revenue, where its invoice posted
    assets = {k: Decimal(v) for k, v in usd["contract_assets"].items()}
    assert sides["Debit"] == sides["Credit"] == deferred["recognised"] + assets["recognised"] + assets["billed"]
    assert {ln["account"] for ln in entry["lines"]} <= {"deferred_revenue", "contract_asset", "revenue"}
    code, out = run("revenue", "journal", "--entity", "us-inc", "--period", "2026-10")
    assert code == 0 and "REV202610-USD-US-INC (USD): not queued" in out
    assert run("revenue", "post")[0] == 1  # revenue_accounts unset: nothing to post to
    code, out = run("revenue", "accounts")
    assert code == 1 and "revenue_accounts and quickbooks must both be configured" in out

    code, out = run("revenue", "close", "--entity", "us-inc", "--period", "2026-10")
    assert code == 0 and out.startswith("us-inc 2026-10 closed\n"), out
    # the examples' invoices are drafts (never approved nor pushed): the close says so, naming them
    assert (
        "warning: 3 invoice(s) or credit note(s) dated in 2026-10 are still drafts, not pushed to the ledger: "
        "US-INV-10, US-INV-20, US-INV-25" in said(out)
    )
    code, out = run("revenue", "close", "--entity", "us-inc", "--period", "2026-10")
    assert code == 1 and "closed already" in out
    code, out = run("revenue", "close", "--entity", "us-inc", "--period", "2026-10", "--reopen", "--reason", "audit")
    assert code == 0 and "reopened" in out
    code, out = run("revenue", "close", "--entity", "nowhere", "--period", "2026-10")
    assert code == 1 and "unknown legal entity" in out
    assert run("revenue", "close", "--entity", "us-inc", "--period", "2026-13")[0] == 2


@pytest.fixture
def cli_store(store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Store:
    """A store of its own, the command pointed at it."""
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "250")
    return store


def answer(*args: str) -> tuple[int, str]:
    """The exit code and what the command printed on stdout alone (its errors go to stderr)."""
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def said(out: str) -> str:
    return " ".join(out.split())  # rich wraps long lines


YEAR = contract("C-Y", cycle_unit="year", contract_end_date="2026-12-31")  # 1,200 billed upfront for 2026
MONTHLY = contract("C-M", customer="initech", contract_end_date="2026-12-31")  # 1,200 billed each month


def test_the_rollforward_checks_the_schedule_against_the_invoices_themselves(cli_store: Store) -> None:
    fee = {"line_ref": "fee", "product_ref": "seats", "recognition": "none"}  # 45.00 billed, recognised elsewhere
    import_document(cli_store, document(dict(YEAR, lines=[*YEAR["lines"], fee]), MONTHLY))
    run_billing(cli_store, date(2026, 1, 1))
    assert run("revenue", "recognize", "--through", "2026-01-31")[0] == 0
    code, out = run("revenue", "rollforward", "--entity", "us", "--period", "2026-01", "--json")
    assert code == 0, out
    [usd] = json.loads(out)
    assert (usd["billed"], usd["billed_in_documents"], usd["balanced"], usd["mismatches"]) == (
        "2400.00",
        "2400.00",  # the fee's 45.00 is no one's revenue here: left out on both sides
        True,
        [],
    )

    # February's invoice of C-M is made, the schedule is not rebuilt: the rollforward says so, naming it
    run_billing(cli_store, date(2026, 2, 1))
    code, out = run("revenue", "rollforward", "--entity", "us", "--period", "2026-02")
    assert code == 1
    assert (
        "C-M USD: the invoices and credit notes bill 1200.00 in 2026-02, the schedule 0.00; its closing balance is "
        "-1127.67, opening + billed - recognised 72.33 (difference 1200.00)" in said(out)
    )
    assert "C-Y" not in out and "does not balance" in out
    code, out = answer("revenue", "rollforward", "--entity", "us", "--period", "2026-02", "--json")
    [usd] = json.loads(out)
    assert code == 1 and (usd["billed"], usd["billed_in_documents"], usd["balanced"]) == ("0.00", "1200.00", False)
    assert [(m["contract_ref"], m["difference"]) for m in usd["mismatches"]] == [("C-M", "1200.00")]
    assert run("revenue", "rollforward", "--entity", "us", "--period", "2026-01")[0] == 0  # January still agrees
    assert run("revenue", "recognize", "--through", "2026-02-28")[0] == 0
    assert run("revenue", "rollforward", "--entity", "us", "--period", "2026-02")[0] == 0

    # An invoice line altered behind the schedule's back (its document's stamp unchanged): January no longer agrees
    with cli_store.write() as session:
        cy = session.scalar(select(Contract.id).where(Contract.contract_ref == "C-Y"))
        platform = (InvoiceLine.contract_id == cy) & (InvoiceLine.line_ref == "platform")
        session.execute(update(InvoiceLine).where(platform).values(billed_amount=Decimal("1150")))
    assert run("revenue", "recognize", "--through", "2026-02-28", "--json")[0] == 0  # nothing looks changed
    code, out = run("revenue", "rollforward", "--entity", "us", "--period", "2026-01")
    assert code == 1 and "C-Y USD: the invoices and credit notes bill 1150.00 in 2026-01, the schedule 1200.00" in said(
        out
    )
    assert "(difference -50.00)" in said(out) and "C-M" not in out


def test_a_credit_note_dated_in_a_closed_month_is_a_catch_up_in_the_first_open_month(cli_store: Store) -> None:
    """C-Y bills 1,200 for 2026 on January 1; January is closed (101.92 recognised, 31 of 365 days). Then the
    contract is ended early, on January 20 (an amendment from January 10), and billed on January 25: a credit
    note dated January 21, in the closed month, of 1,200 x 345 / 365 = 1,134.25. Recognised through January
    20 is now 1,200 x 20 / 365 = 65.75, so February, the first open month, takes back 101.92 - 65.75 = 36.17
    as a catch-up, and carries the credit note; January is as it was closed, and both months balance."""
    import_document(cli_store, document(YEAR))
    run_billing(cli_store, date(2026, 1, 1))
    assert run("revenue", "close", "--entity", "us", "--period", "2026-01")[0] == 0
    import_document(cli_store, document(dict(YEAR, contract_end_date="2026-01-20", effective_date="2026-01-10")))
    run_billing(cli_store, date(2026, 1, 25))
    with cli_store.read() as session:
        [credit] = session.scalars(select(Invoice).where(Invoice.doc_type == "credit_note")).all()
        assert (credit.billing_date, credit.invoice_total) == (date(2026, 1, 21), Decimal("-1134.25"))
    assert run("revenue", "recognize", "--through", "2026-02-28")[0] == 0
    code, out = run("revenue", "schedule", "--contract", "C-Y", "--json")
    months = {m["month"]: m for m in json.loads(out)["months"]}
    assert months["2026-01"] == {
        "month": "2026-01",
        "billed": "1200.00",
        "recognised": "101.92",
        "catch_up": "0.00",
        "deferred": "1098.08",
        "contract_asset": "0.00",
    }
    assert months["2026-02"] == {
        "month": "2026-02",
        "billed": "-1134.25",
        "recognised": "-36.17",
        "catch_up": "-36.17",
        "deferred": "0.00",
        "contract_asset": "0.00",
    }
    for period, billed in (("2026-01", "1200.00"), ("2026-02", "-1134.25")):
        code, out = run("revenue", "rollforward", "--entity", "us", "--period", period, "--json")
        assert code == 0, out
        [usd] = json.loads(out)
        assert (usd["billed"], usd["billed_in_documents"], usd["balanced"]) == (billed, billed, True)

    # Reopened and closed again, January takes the credit note back from February's catch-up (the schedules
    # built since its first close are rebuilt): 1,200 - 1,134.25 = 65.75 billed and recognised, both balance.
    assert run("revenue", "close", "--entity", "us", "--period", "2026-01", "--reopen", "--reason", "credit")[0] == 0
    assert run("revenue", "close", "--entity", "us", "--period", "2026-01")[0] == 0
    code, out = run("revenue", "schedule", "--contract", "C-Y", "--json")
    months = {m["month"]: m for m in json.loads(out)["months"]}
    assert (months["2026-01"]["billed"], months["2026-01"]["recognised"], months["2026-01"]["deferred"]) == (
        "65.75",
        "65.75",
        "0.00",
    )
    assert "2026-02" not in months or (months["2026-02"]["billed"], months["2026-02"]["catch_up"]) == ("0.00", "0.00")
    for period in ("2026-01", "2026-02"):
        code, out = run("revenue", "rollforward", "--entity", "us", "--period", period)
        assert code == 0, out


def test_a_month_with_a_contract_that_could_not_be_recognised_is_not_closed_unless_forced(cli_store: Store) -> None:
    """C-M's stored terms are broken (a billing timing no one knows): its schedule cannot be built, so
    January's journal entry would leave out its 1,200.00 billed (and what it recognises) and lock the month
    without it. The close refuses, naming C-M, why, and the rollforward's disagreement; the month stays
    open. ``--force`` closes it, the accepted problems and who forced it recorded, and listed by
    ``revenue periods``."""
    import_document(cli_store, document(YEAR, MONTHLY))
    run_billing(cli_store, date(2026, 1, 1))
    with cli_store.write() as session:
        cm = session.scalar(select(Contract.id).where(Contract.contract_ref == "C-M"))
        [version] = session.scalars(select(ContractVersion).where(ContractVersion.contract_id == cm)).all()
        version.terms = version.terms.replace('"in_advance"', '"sometimes"')
    code, out = run("revenue", "close", "--entity", "us", "--period", "2026-01")
    assert code == 1, out
    assert "C-M: not recognised: C-M: stored version 1 is invalid: billing_timing" in said(out)
    assert "C-M USD: the rollforward does not agree: the invoices and credit notes bill 1200.00 in 2026-01" in said(out)
    assert "C-Y" not in out and "--force" in out
    assert answer("revenue", "periods", "--entity", "us", "--json") == (0, "[]\n")  # still open

    code, out = run("revenue", "close", "--entity", "us", "--period", "2026-01", "--force", "--by", "controller")
    assert code == 0 and "us 2026-01 closed (forced)" in out and "accepted (--force): C-M: not recognised" in said(out)
    code, out = answer("revenue", "periods", "--entity", "us", "--json")
    [event] = json.loads(out)
    assert (event["month"], event["action"], event["forced"], event["by"]) == ("2026-01", "close", True, "controller")
    assert event["reason"].startswith("accepted: C-M: not recognised") and "C-Y" not in event["reason"]
    assert event["at"] and "C-M" in answer("revenue", "periods", "--entity", "us")[1]


def test_a_month_that_has_not_ended_is_not_closed(cli_store: Store) -> None:
    """Closing the current month (its last day is today or later, UTC) or a future one would lock revenue
    not yet earned and queue a journal entry dated in the future: refused, nothing recorded."""
    import_document(cli_store, document(YEAR))
    this_month = datetime.now(UTC).strftime("%Y-%m")
    for period in (this_month, "2099-06"):
        code, out = run("revenue", "close", "--entity", "us", "--period", period)
        assert code == 1 and f"{period} has not ended" in said(out) and "is not before today" in said(out), out
    assert answer("revenue", "periods", "--entity", "us", "--json") == (0, "[]\n")
    assert run("revenue", "close", "--entity", "us", "--period", "2026-01")[0] == 0  # an ended month closes
