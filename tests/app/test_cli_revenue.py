"""``billbridge revenue``, as a user runs it, over the example contracts billed to 2026-11-22."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billbridge.app.cli import app

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

    assert run("revenue", "close", "--entity", "us-inc", "--period", "2026-10") == (0, "us-inc 2026-10 closed\n")
    code, out = run("revenue", "close", "--entity", "us-inc", "--period", "2026-10")
    assert code == 1 and "closed already" in out
    code, out = run("revenue", "close", "--entity", "us-inc", "--period", "2026-10", "--reopen", "--reason", "audit")
    assert code == 0 and "reopened" in out
    code, out = run("revenue", "close", "--entity", "nowhere", "--period", "2026-10")
    assert code == 1 and "unknown legal entity" in out
    assert run("revenue", "close", "--entity", "us-inc", "--period", "2026-13")[0] == 2
