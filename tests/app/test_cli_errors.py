"""Everyday mistakes as a person makes them: each ends in one line naming the problem and the file,
record, setting or option, with a non-zero exit, never a traceback; nothing is lost or made up."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from billbridge.app.demo import PREFECT_DEFAULTS
from billbridge.sandbox.stripe import sign
from tests.app.test_cli import fresh_machine, run
from tests.ports import free_port

COMMAND = str(Path(sys.executable).with_name("billbridge"))


def said_once(out: str) -> str:
    """The output, checked to be one line of error (and no traceback)."""
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    return lines[0]


REFERENCE = """\
entities: [{entity_ref: us, name: US Inc, currency: USD, invoice_prefix: US-INV-}]
customers: [{customer_ref: acme, name: Acme, entity_ref: us}]
products: [{product_ref: seats, name: Seats, prices: [{price_ref: seats-usd, currency: USD, pricing: {model: flat, amount: "100"}}]}]
"""


def contract(ref: str, start: str, end: str) -> str:
    return (
        f"  - {{contract_ref: {ref}, customer_ref: acme, entity_ref: us, currency: USD, "
        f"contract_start_date: {start}, contract_end_date: {end}, lines: [{{line_ref: a, product_ref: seats}}]}}\n"
    )


def test_impossible_dates_in_a_yaml_file_are_quarantined_per_record_as_in_json(env: str, tmp_path: Path) -> None:
    yaml_file = tmp_path / "contracts.yaml"
    yaml_file.write_text(
        REFERENCE
        + "contracts:\n"
        + contract("C-1", "2026-01-01", "2026-12-31")
        + contract("C-2", "2026-02-30", "2026-12-31")
        + contract("C-3", "2026-01-01", "2026-13-01")
    )
    code, out = run("contracts", "import", str(yaml_file), "--json")
    assert code == 2, out  # some records quarantined: the others are in
    summary = json.loads(out)
    assert summary["counts"]["contracts.created"] == 1
    errors = {(e["key"], e["field"]) for e in summary["errors"]}
    assert errors == {("C-2", "contract_start_date"), ("C-3", "contract_end_date")}

    code, out = run("contracts", "import", str(yaml_file))  # the table a person reads names them
    assert code == 2 and "Traceback" not in out
    assert "contracts[1] (C-2): field contract_start_date" in " ".join(out.split())
    quarantined = json.loads(run("quarantine", "list", "--json")[1])
    assert {(q["record_key"], q["payload"]["contract_start_date"]) for q in quarantined} == {
        ("C-2", "2026-02-30"),
        ("C-3", "2026-01-01"),
    }  # kept as written

    # the same records as JSON say the same
    import yaml

    json_file = tmp_path / "contracts.json"
    json_file.write_text(json.dumps(yaml.load(yaml_file.read_text(), Loader=yaml.BaseLoader)))
    code, out = run("contracts", "import", str(json_file), "--json")
    assert code == 2 and {(e["key"], e["field"], e["message"]) for e in json.loads(out)["errors"]} == {
        (e["key"], e["field"], e["message"]) for e in summary["errors"]
    }


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (
            "postgresql://billbridge@127.0.0.1:1/books",
            "cannot open the store postgresql://billbridge@127.0.0.1:1/books",
        ),
        ("postgresql://u:hunter2@no-such-host.invalid/books", "failed to resolve host"),
        ("postgresq://billbridge@127.0.0.1/books", "billbridge does not store in 'postgresq'"),
        ("mysql://billbridge@127.0.0.1/books", "billbridge does not store in 'mysql'"),
        ("books.db", "the database URL is not one (expected sqlite:///PATH or postgresql://"),
        ("sqlite:////nonexistent-b21/dir/x.db", "the folder /nonexistent-b21/dir does not exist"),
    ],
)
def test_a_store_that_cannot_be_opened_is_one_line_naming_it(
    url: str, said: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    code, out = run("status")
    assert code == 1 and said in said_once(out)
    assert "hunter2" not in out  # a password is never shown
    assert not Path("/nonexistent-b21").exists()  # and no folder made anywhere


def test_the_installed_command_says_it_in_one_line_on_stderr(tmp_path: Path) -> None:
    environ = {**os.environ, "BILLBRIDGE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"}
    environ["BILLBRIDGE_CONFIG"] = str(tmp_path / "none.toml")
    done = subprocess.run([COMMAND, "invoices", "list"], env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert said_once(done.stderr).startswith("error: cannot open the store postgresql://nobody@127.0.0.1:1/x")


def test_the_default_data_folder_is_made_but_no_other(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BILLBRIDGE_DATABASE_URL", raising=False)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path / "new" / "data"))
    code, out = run("status", "--json")
    assert code == 0, out
    assert (tmp_path / "new" / "data" / "billbridge.db").exists()

    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere' / 'books.db'}")
    code, out = run("status", "--json")
    assert code == 1 and f"the folder {tmp_path / 'elsewhere'} does not exist" in said_once(out)
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("salesforce", "Salesforce settings: salesforce.instance_url (BILLBRIDGE_SALESFORCE__INSTANCE_URL) is not set"),
        ("hubspot", "HubSpot is not configured: set access_token (BILLBRIDGE_HUBSPOT__ACCESS_TOKEN"),
        ("stripe", "Stripe is not configured (BILLBRIDGE_STRIPE__API_KEY"),
    ],
)
def test_sync_from_a_crm_that_is_not_configured_says_which_settings(
    source: str, said: str, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [
        k for k in os.environ if k.startswith(("BILLBRIDGE_SALESFORCE", "BILLBRIDGE_HUBSPOT", "BILLBRIDGE_STRIPE"))
    ]:
        monkeypatch.delenv(key)
    code, out = run("sync", "crm", "--source", source)
    assert code == 1 and said in said_once(out)


def test_a_wrong_setting_is_named_as_the_file_and_the_environment_spell_it(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLBRIDGE_API_PORT", "eighty")
    monkeypatch.setenv("BILLBRIDGE_QUICKBOOKS__CLIENT_ID", "abc")
    code, out = run("status")
    line = said_once(out)
    assert code == 1 and "api_port (BILLBRIDGE_API_PORT) is wrong: Input should be a valid integer" in line
    assert "quickbooks.realm_id (BILLBRIDGE_QUICKBOOKS__REALM_ID) is not set" in line


def test_serve_with_only_the_stripe_webhook_secret_takes_webhooks_and_what_calls_stripe_asks_for_the_key(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BILLBRIDGE_STRIPE")}
    environ |= {"BILLBRIDGE_STRIPE__WEBHOOK_SECRET": "whsec_only", "BILLBRIDGE_WEBHOOKS_INLINE": "false"}
    server = subprocess.Popen(
        [COMMAND, "serve", "--port", str(port)], env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        body = json.dumps({"id": "evt_1", "object": "event", "type": "charge.succeeded", "created": 1764576000})
        signature = sign(body.encode(), "whsec_only", int(time.time()))
        answer = httpx.post(
            f"http://127.0.0.1:{port}/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
    finally:
        server.terminate()
        server.wait(timeout=30)
    for key in [k for k in os.environ if k.startswith("BILLBRIDGE_STRIPE")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("BILLBRIDGE_STRIPE__WEBHOOK_SECRET", "whsec_only")
    code, out = run("reconcile", "--source", "stripe")
    assert code == 1 and "Stripe's api_key is not set (BILLBRIDGE_STRIPE__API_KEY)" in said_once(out)


def test_demo_serve_on_a_port_in_use_says_so_before_the_demo(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prefect's demo settings set beforehand (and undone afterwards): the command would otherwise set
    # them in this process's environment for good and configure Prefect's logging again while typer's
    # CliRunner has sys.stderr, leaving a handler on a stream closed after the run.
    for key, value in PREFECT_DEFAULTS.items():
        monkeypatch.setenv(key, value)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        code, out = run("demo", "--serve", "--ui-port", str(port), "--api-port", str(free_port()))
        assert code == 1 and f"port {port} is in use by another program: choose another with --ui-port" in said_once(
            out
        )
        code, out = run("demo", "--serve", "--ui-port", str(free_port()), "--api-port", str(port))
        assert code == 1 and "choose another with --api-port" in said_once(out)
        assert time.monotonic() - started < 30  # said at once, no demo run first


@pytest.mark.parametrize(
    "args",
    [
        ("demo", "--deals", "-1"),
        ("demo", "--deals", "0"),
        ("sandbox", "--deals", "0"),
        ("demo", "--serve", "--ui-port", "70000"),
        ("demo", "--serve", "--api-port", "0"),
        ("serve", "--workers", "0"),
        ("serve", "--port", "-5"),
        ("webhooks", "list", "--limit", "0"),
        ("outbox", "retry", "0"),
        ("examples", "--examples", "/no/such/folder"),
    ],
)
def test_numbers_out_of_range_and_missing_folders_are_refused_naming_the_option(
    args: tuple[str, ...], env: str
) -> None:
    code, out = run(*args)
    assert code == 2 and "Invalid value for" in out, out
    option = args[-2] if args[-2].startswith("--") else "ids"
    assert f"Invalid value for {option}" in " ".join(out.split()).replace("'", "")


def test_a_float_quantity_or_percent_is_refused_with_a_message_about_quantities_not_money(
    env: str, tmp_path: Path
) -> None:
    base = {"customer_ref": "acme", "entity_ref": "us", "currency": "USD", "contract_start_date": "2026-01-01"}
    contracts = [
        base | {"contract_ref": "C-q", "lines": [{"line_ref": "a", "product_ref": "seats", "quantity": 1.5}]},
        base
        | {
            "contract_ref": "C-r",
            "lines": [
                {
                    "line_ref": "a",
                    "product_ref": "seats",
                    "ramps": [{"start_date": "2026-06-01", "quantity": 2.5}],
                }
            ],
        },
        base
        | {"contract_ref": "C-d", "discount": {"percent": 12.5}, "lines": [{"line_ref": "a", "product_ref": "seats"}]},
    ]
    path = tmp_path / "floats.json"
    path.write_text(json.dumps({"contracts": contracts}))
    code, out = run("contracts", "import", str(path), "--json")
    said = {(e["key"], e["field"]): e["message"] for e in json.loads(out)["errors"]}
    assert code == 2
    assert said == {
        ("C-q", "lines[0].quantity"): "Value error, use a string or integer for quantities, not a float",
        ("C-r", "lines[0].ramps[0].quantity"): "Value error, use a string or integer for quantities, not a float",
        ("C-d", "discount.percent"): "Value error, use a string or integer for percentages, not a float",
    }


def test_the_demo_says_in_one_line_when_prefects_temporary_server_does_not_start(tmp_path: Path) -> None:
    environ = fresh_machine(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0")  # as if it never came up
    done = subprocess.run([COMMAND, "demo", "--deals", "1"], env=environ, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stdout == ""
    line = said_once(done.stderr)
    assert "Prefect's temporary server did not start within 0 s" in line
    assert "run the demo again, or allow it longer with PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=600" in line


def test_the_demo_makes_prefects_home_with_its_parents_or_says_at_once_that_it_cannot(tmp_path: Path) -> None:
    """Prefect's temporary server keeps its database in Prefect's home, which Prefect makes without its
    parents (a HOME that does not exist): the demo makes them. Where no folder can be made there (a
    file in the way), the demo says so in one line naming the folder, at once, instead of waiting out
    the server's start-up time and blaming a busy machine."""
    nested = tmp_path / "no" / "such" / "home" / ".prefect"
    read = "from billbridge.app.demo import prefect_environment; prefect_environment()"
    done = subprocess.run(
        [sys.executable, "-c", read],
        env=fresh_machine(tmp_path, PREFECT_HOME=str(nested)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert nested.is_dir()

    (tmp_path / "a-file").write_text("not a folder")
    blocked = tmp_path / "a-file" / ".prefect"
    started = time.monotonic()
    done = subprocess.run(
        [COMMAND, "demo", "--deals", "1"],
        env=fresh_machine(tmp_path, PREFECT_HOME=str(blocked)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and done.stdout == ""
    # Prefect's own warning about the folder (on import, before the demo runs) may come first
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and done.stderr.count("error: ") == 1
    assert f"Prefect's home folder {blocked} cannot be written" in line and "set PREFECT_HOME" in line
    assert time.monotonic() - started < 60  # not the 180 s of the server's start-up time


def test_the_demo_gives_prefects_temporary_server_time_to_start_on_a_busy_machine(tmp_path: Path) -> None:
    """What Prefect itself reads once the demo set its defaults: minutes, not Prefect's 20 s; a person's
    own setting wins."""
    read = (
        "from billbridge.app.demo import prefect_environment; prefect_environment(); "
        "from prefect.settings import get_current_settings; "
        "print(get_current_settings().server.ephemeral.startup_timeout_seconds)"
    )

    def startup_timeout(**extra: str) -> int:
        environ = {k: v for k, v in fresh_machine(tmp_path).items() if not k.startswith("PREFECT_SERVER_EPHEMERAL")}
        done = subprocess.run(
            [sys.executable, "-c", read], env=environ | extra, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    assert startup_timeout() >= 120
    assert startup_timeout(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="45") == 45


def test_the_demo_store_before_any_demo_is_one_line_saying_to_run_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("BILLBRIDGE_DATABASE_URL", raising=False)
    code, out = run("--demo", "status")
    assert (
        code == 1
        and said_once(out) == f"error: no demo store at {tmp_path / 'data' / 'demo.db'}: run `billbridge demo` first"
    )
    assert not (tmp_path / "data" / "demo.db").exists()
    code, out = run("--demo", "--store", "sqlite:///x.db", "status")
    assert code == 2 and "give --store or --demo, not both" in out


def test_a_file_that_cannot_be_read_is_named_and_the_other_files_go_on(env: str, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(REFERENCE + "contracts:\n" + contract("C-1", "2026-01-01", "2026-12-31"))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes('customers: [{customer_ref: mu, name: "M\xfcller", entity_ref: us}]\n'.encode("latin-1"))
    later = tmp_path / "later.yaml"
    later.write_text(REFERENCE.replace("acme", "initech"))
    missing = tmp_path / "missing.yaml"

    code, out = run("contracts", "import", str(good), str(latin1), str(missing), str(later))
    assert code == 2 and "Traceback" not in out, out
    said = " ".join(out.split())
    assert f"error: {latin1}: not UTF-8 (byte 0xfc at 39)" in said
    assert f"error: {missing}: cannot read: No such file or directory" in said
    assert f"error: not imported (2 file(s)): {latin1}, {missing}" in said
    assert "Contract file import" in said  # the summary of the files that were read
    code, out = run("contracts", "import", str(good), str(latin1), str(missing), str(later), "--json")
    assert code == 2
    summary = json.loads(out[: out.rindex("}") + 1][out.index("{") :])
    assert summary["counts"]["contracts.unchanged"] == 1 and summary["counts"]["customers.unchanged"] == 2
    assert set(summary["files_not_imported"]) == {str(latin1), str(missing)}


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["bill", "--as-of", "2026-02-30"],
            "'2026-02-30' is not a date: day 30 is out of range for February 2026 (1-28)",
        ),
        (["bill", "--as-of", "2028-02-30"], "day 30 is out of range for February 2028 (1-29)"),
        (["statements", "preview", "--customer", "globex", "--as-of", "2026-13-01"], "month 13 is out of range"),
        (["messages", "send", "--as-of", "2026-04-31"], "day 31 is out of range for April 2026 (1-30)"),
        (["metrics", "aging", "--as-of", "2026-02-29"], "day 29 is out of range for February 2026"),
        (["bill", "--as-of", "31/12/2026"], "'31/12/2026' is not a date (YYYY-MM-DD)"),
    ],
)
def test_a_bad_day_is_a_usage_error_saying_what_is_out_of_range(env: str, args: list[str], said: str) -> None:
    code, out = run(*args)
    assert code == 2 and "Traceback" not in out, out
    assert said in " ".join(out.replace("│", " ").split()), out
