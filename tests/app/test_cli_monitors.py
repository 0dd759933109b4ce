"""``billbridge monitors``: add from files, list, snapshot, show (net, increment, series; JSON and CSV),
backfill and remove, on the example contracts."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billbridge.app.cli import app

runner = CliRunner()
CHECKOUT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # each imports and bills the example contracts first (seconds)
MONITORS = CHECKOUT / "examples" / "monitors"


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def examples(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    assert run("examples", "--as-of", "2026-11-22", "--json")[0] == 0
    return database_url


def test_add_show_backfill_and_remove(examples: str) -> None:
    code, out = run("monitors", "add", str(MONITORS / "us-inc.yaml"))
    assert code == 0, out
    assert "added monitor invoice-total" in out and "added monitor api-calls-peak-7d" in out
    code, out = run("monitors", "add", str(MONITORS / "renewals.yaml"))
    assert code == 0, out
    code, out = run("monitors", "list", "--json")
    assert sorted(m["name"] for m in json.loads(out)) == sorted(
        ["invoice-total", "hooli-seats", "api-calls", "api-calls-peak-7d", "renewals", "renewals"]
    )
    # Hooli: 20 seats, 35 from 2026-08-16 (the amendment)
    code, out = run("monitors", "backfill", "hooli-seats", "--days", "90", "--as-of", "2026-09-30")
    assert code == 0, out
    assert "values written (new or changed)" in out and "alerts triggered" in out
    code, out = run("monitors", "show", "hooli-seats", "--customer", "hooli", "--date", "2026-08-16", "--json")
    assert json.loads(out)["rows"] == [{"customer_ref": "hooli", "day": "2026-08-16", "value": "35"}]
    code, out = run(
        "monitors", "show", "hooli-seats", "--customer", "hooli", "--date", "2026-08-16", "--increment", "--json"
    )
    assert json.loads(out)["rows"] == [{"customer_ref": "hooli", "day": "2026-08-16", "value": "15"}]
    code, out = run("monitors", "show", "hooli-seats", "--from", "2026-08-14", "--to", "2026-08-17", "--csv")
    assert list(csv.DictReader(io.StringIO(out))) == [
        {"customer_ref": "hooli", "day": "2026-08-14", "value": "20"},
        {"customer_ref": "hooli", "day": "2026-08-15", "value": "20"},
        {"customer_ref": "hooli", "day": "2026-08-16", "value": "35"},
        {"customer_ref": "hooli", "day": "2026-08-17", "value": "35"},
    ]
    # the daily snapshot: the renewal of Gulf Data (ends 2026-11-11) is within 30 days on 2026-10-12
    code, out = run("monitors", "snapshot", "--as-of", "2026-10-12", "--json")
    summary = json.loads(out)
    assert summary["alerts"] == 1 and summary["monitors"] == 6
    code, out = run("monitors", "snapshot", "--as-of", "2026-10-12", "--json")
    assert json.loads(out)["alerts"] == 0 and json.loads(out)["written"] == 0
    code, out = run("monitors", "show", "renewals", "--date", "2026-10-12")
    assert code == 1 and "monitors named 'renewals' exist in jp-kk, kw-wll: name the entity" in out
    code, out = run("monitors", "show", "renewals", "--entity", "kw-wll", "--date", "2026-10-12")
    assert code == 0 and "gulf-data" in out and "2026-11-11" in out
    code, out = run("monitors", "remove", "renewals", "--entity", "kw-wll")
    assert code == 0, out
    assert len(json.loads(run("monitors", "list", "--json")[1])) == 5


def test_a_refused_monitor_names_its_field(examples: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "- {name: a, source: contract, entity_ref: us-inc, contract: {contract_ref: C-100-globex, item: quantity, line_ref: platform}}\n"
        "- {name: b, source: contract, entity_ref: us-inc, contract: {item: colour}}\n"
        "- {name: c, source: contract, entity_ref: us-inc, contract: {item: end_date}}\n"
    )
    code, out = run("monitors", "add", str(bad))
    assert code == 1
    flat = " ".join(out.split())
    assert "monitors[1] (b): contract.item: Value error, unknown item 'colour'" in flat
    assert (
        "contract.item: item 'quantity' is not an item of recurring line platform priced flat (of contract "
        "C-100-globex); its items are amount, billed_amount, billed_days" in flat
    )
    assert "added monitor c" in flat
    code, out = run("monitors", "show", "nope")
    assert code == 1 and "no monitor 'nope'" in out
