"""``billbridge statements``, as a user runs it: preview a customer's statement without sending, send
it to an SMTP server once per customer and day, ``--all`` for every customer with something open,
and an unknown customer named while the others go on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.store.db import open_store
from tests.flows.messaging_world import world

runner = CliRunner()
pytestmark = pytest.mark.slow  # an SMTP server


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_preview_send_once_and_all(env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    store = open_store(env)
    world(store, 3)  # c0..c2: one $1,200.00 invoice each, billed Jan 1 2026, due Jan 31
    store.dispose()
    monkeypatch.setenv("COLUMNS", "250")
    code, out = run("statements", "preview", "--customer", "c1", "--as-of", "2026-03-15", "--json")
    assert code == 0, out
    preview = json.loads(out)
    assert preview["recipients"] == {"to": ["ap1@c1.example"], "cc": []} and preview["state"] == "preview"
    [usd] = preview["statement"]["sections"]
    assert usd["balance"] == "1200.00" and usd["invoices"][0]["days_overdue"] == 43
    assert {a["bucket"]: a["amount"] for a in usd["aging"]}["31-60"] == "1200.00"
    assert "31-60    $1,200.00" in preview["text"]
    with SmtpSandbox() as smtp:
        for key, value in smtp.settings().items():
            monkeypatch.setenv(f"BILLBRIDGE_SMTP__{key.upper()}", str(value))
        code, out = run("statements", "send", "--customer", "c1", "--customer", "ghost", "--as-of", "2026-03-15")
        assert code == 1  # the unknown customer is an error; c1's statement went out all the same
        assert "made: statement.queued 1" in out and "sent: statement 1" in out
        assert "error: customer ghost: no such customer" in out
        code, out = run("statements", "send", "--all", "--as-of", "2026-03-15", "--json")
        assert code == 0, out
        result = json.loads(out)
        assert result["requested"]["created"] == {"statement.queued": 2}
        assert result["requested"]["already"] == ["c1"]
        assert result["sent"]["outcomes"] == {"statement": 2}
        code, out = run("statements", "send", "--customer", "c1", "--as-of", "2026-03-15")
        assert code == 0 and "already made for 2026-03-15 (not sent again): c1" in out
        assert sorted(r.recipients[0] for r in smtp.mailbox.items()) == [
            "ap0@c0.example",
            "ap1@c1.example",
            "ap2@c2.example",
        ]
        assert preview["message_id"] in {r.message_id for r in smtp.mailbox.items()}
    code, out = run("messages", "list", "--kind", "statement", "--json")
    listed = json.loads(out)
    assert sorted(r["state"] for r in listed) == ["sent", "sent", "sent"]
    code, out = run("messages", "show", str(next(r["id"] for r in listed if r["customer_ref"] == "c1")))
    assert code == 0 and "Statement of account as of Mar 15, 2026" in out and "Balance: $1,200.00" in out
    code, out = run("statements", "send", "--as-of", "2026-03-15")
    assert code == 1 and "give --customer C (one or more) or --all" in out
    # without an SMTP server the statement is made and waits, and the message names the setting as it is
    # spelt (rich once took "[smtp]" for a style and printed "( host, ...")
    for key in smtp.settings():
        monkeypatch.delenv(f"BILLBRIDGE_SMTP__{key.upper()}")
    code, out = run("statements", "send", "--customer", "c2", "--as-of", "2026-03-16")
    assert "made: statement.queued 1" in out, out
    assert "not sent: no SMTP server configured ([smtp] host, BILLBRIDGE_SMTP__HOST); queued" in out, out
