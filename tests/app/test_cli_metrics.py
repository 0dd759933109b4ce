"""``billbridge metrics``, ``status``'s finance figures and ``billbridge user``, as a user runs them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.store import dashboard_users
from billbridge.store.db import open_store

runner = CliRunner()
AS_OF = "2026-11-22"


@pytest.fixture
def examples(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    assert run("examples", "--as-of", AS_OF, "--json")[0] == 0
    return database_url


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.output


def test_mrr_as_a_table_json_and_csv(examples: str) -> None:
    code, out = run("metrics", "mrr", "--as-of", AS_OF)
    assert code == 0, out
    assert "MRR and ARR on 2026-11-22" in out
    us_line = next(line for line in out.splitlines() if "us-inc" in line)
    assert "5,025.00" in us_line and "60,300.00" in us_line and "1,675.00" in us_line  # 3 customers

    code, out = run("metrics", "mrr", "--as-of", AS_OF, "--json")
    data = json.loads(out)["data"]
    assert {(r["entity_ref"], r["mrr"], r["active_customers"]) for r in data} == {
        ("eu-bv", "216.67", 1),
        ("jp-kk", "125000", 1),
        ("us-inc", "5025.00", 3),
    }
    code, out = run("metrics", "mrr", "--as-of", AS_OF, "--csv", "--entity", "jp-kk")
    assert list(csv.DictReader(io.StringIO(out))) == [
        {
            "entity_ref": "jp-kk",
            "currency": "JPY",
            "mrr": "125000",
            "arr": "1500000",
            "active_customers": "1",
            "arpa": "125000",
        }
    ]


def test_every_metric_answers_for_the_examples(examples: str) -> None:
    for metric, extra in [
        ("movements", ["--from", "2026-01", "--to", "2026-11"]),
        ("movements", ["--customers", "--from", "2026-01", "--to", "2026-11"]),
        ("collections", ["--from", "2026-01", "--to", "2026-11"]),
        ("aging", ["--as-of", AS_OF]),
        ("invoices", ["--from", "2026-01", "--to", "2026-11", "--as-of", AS_OF]),
        ("forecast", ["--as-of", AS_OF, "--monthly"]),
        ("products", ["--groups", "--from", "2026-01", "--to", "2026-11"]),
        ("usage", ["--from", "2026-01", "--to", "2026-11"]),
        ("customers", ["--as-of", AS_OF]),
    ]:
        code, out = run("metrics", metric, *extra, "--json")
        assert code == 0, (metric, out)
        assert json.loads(out)["data"], metric
    billed = json.loads(run("metrics", "collections", "--from", "2026-01", "--to", "2026-11", "--json")[1])["data"]
    jpy = sum(int(r["billed"]) for r in billed if r["currency"] == "JPY")
    assert jpy == 1650000  # every JPY invoice the examples bill by 22 November (the examples test's total)


def test_bad_input_is_one_line_naming_the_option(examples: str) -> None:
    code, out = run("metrics", "movements", "--entity", "nope")
    assert code == 1 and "--entity: unknown legal entity 'nope'" in out and "Traceback" not in out
    code, out = run("metrics", "aging", "--as-of", "2026-13-01")
    assert code == 2 and "'2026-13-01' is not a date" in out
    code, out = run("metrics", "collections", "--from", "2026-11", "--to", "2026-01")
    assert code == 2 and "before" in out


def test_status_shows_mrr_arr_aging_and_the_next_four_weeks(examples: str) -> None:
    code, out = run("status")
    assert code == 0, out
    assert "finance" in out and "next 4 weeks" in out and "over 90" in out
    us_line = next(line for line in out.splitlines() if line.strip("│ ").startswith("us-inc USD"))
    assert "5,025.00" in us_line and "60,300.00" in us_line
    data = json.loads(run("status", "--json")[1])["finance"]
    assert {r["entity_ref"] for r in data["mrr"]} == {"eu-bv", "jp-kk", "us-inc"}
    assert {r["entity_ref"] for r in data["forecast_4_weeks"]} <= {"eu-bv", "jp-kk", "kw-wll", "us-inc"}


def test_user_create_stores_a_hash_and_refuses_bad_input(examples: str) -> None:
    code, out = run(
        "user",
        "create",
        "finance",
        "--entity",
        "us-inc",
        "--entity",
        "eu-bv",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    assert code == 0, out
    assert "finance created, sees eu-bv, us-inc" in out
    with open_store(examples).read() as session:
        assert dashboard_users.sign_in(session, "finance", "correct horse battery") is not None
        assert dashboard_users.sign_in(session, "finance", "wrong horse battery") is None
        rows = dashboard_users.list_users(session)
    assert "correct horse" not in json.dumps(rows)
    code, out = run("user", "create", "other", "--entity", "us-inc", "--password-stdin", stdin="short\n")
    assert code == 1 and "password: at least 12 characters" in out
    code, out = run("user", "create", "other", "--entity", "mars", "--password-stdin", stdin="long enough password\n")
    assert code == 1 and "--entity: unknown legal entity 'mars'" in out
    code, out = run(
        "user", "create", "finance", "--entity", "us-inc", "--password-stdin", stdin="long enough password\n"
    )
    assert code == 1 and "'finance' is taken" in out
    code, out = run("user", "list")
    assert "finance" in out and "eu-bv, us-inc" in out


def test_the_readme_gives_each_metrics_subcommand_its_own_options() -> None:
    """The commands table once gave ``[--from M]`` to every subcommand, ``metrics mrr`` has none:
    each subcommand's options in the README's row are the ones its --help lists."""
    import re

    import typer.main

    [row] = [
        line
        for line in (Path(__file__).parents[2] / "README.md").read_text().splitlines()
        if line.startswith("| `billbridge metrics ")
    ]
    spans = [span.replace("\\|", "|") for span in re.findall(r"`([^`]*)`", row.split(" | ")[0])]
    shared = {o for span in spans if span.startswith("[") for o in re.findall(r"--[a-z-]+", span)}
    said: dict[str, set[str]] = {}
    for span in spans:
        words = span.removeprefix("billbridge ").split()
        if words[0] == "metrics":
            for sub in words[1].split("|"):
                said[sub] = set(re.findall(r"--[a-z-]+", span)) | (shared if sub != "refresh" else set())
    group = typer.main.get_command(app).commands["metrics"]  # type: ignore[attr-defined]
    actual = {
        name: {o for p in command.params for o in p.opts if o.startswith("--") and o != "--help"}
        for name, command in group.commands.items()
    }
    assert said == actual
