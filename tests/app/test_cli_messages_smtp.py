"""``billbridge messages send`` against an SMTP server that refuses the login: one error naming the
host and the user, exit 1, the messages still queued, and the password nowhere (output, JSON, logs)."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.store.db import open_store
from tests.flows.messaging_world import world

pytestmark = pytest.mark.slow  # an SMTP server

SECRET = "Zebra-Quartz-5517-passphrase"  # distinctive: found anywhere, it leaked
WRONG = "Wrong-Okapi-9043-passphrase"


def test_the_cli_reports_the_stopped_run_once_without_the_password(
    env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = open_store(env)
    world(store, 2, issued=date(2026, 1, 1))  # their deliveries made with the push's event, queued
    store.dispose()
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()
    with SmtpSandbox(password=SECRET) as smtp:
        for key, value in smtp.settings().items():
            monkeypatch.setenv(f"BILLBRIDGE_SMTP__{key.upper()}", str(value))
        monkeypatch.setenv("BILLBRIDGE_SMTP__PASSWORD", WRONG)
        result = runner.invoke(app, ["messages", "send", "--as-of", "2026-01-02"])
        assert result.exit_code == 1
        assert result.output.count("refused the login") == 1
        assert (
            f"error: sending stopped, the messages stay queued: the SMTP server 127.0.0.1:{smtp.port}" in result.output
        )
        as_json = runner.invoke(app, ["messages", "send", "--as-of", "2026-01-02", "--json"])
        assert as_json.exit_code == 1 and "refused the login" in json.loads(as_json.output)["sent"]["stopped"]
        listed = runner.invoke(app, ["messages", "list", "--json"])
        assert {m["state"] for m in json.loads(listed.output)} == {"queued"}
        for seen in (result.output, as_json.output, listed.output, caplog.text):
            assert WRONG not in seen and SECRET not in seen
        monkeypatch.setenv("BILLBRIDGE_SMTP__PASSWORD", SECRET)
        fixed = runner.invoke(app, ["messages", "send", "--as-of", "2026-01-02"])
        assert fixed.exit_code == 0 and "sent: invoice 2" in fixed.output
        assert SECRET not in fixed.output and SECRET not in caplog.text


def test_a_reminder_planned_on_one_day_and_sent_the_next_says_the_day_it_went_out(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invoice US-INV-1, due Jan 31. Feb 1: the daily run makes the +0 reminder, but the SMTP server
    refuses the login, so it stays queued. Feb 2: the login is fixed and the run sends it: the reminder
    says the invoice is 2 days overdue (as of Feb 2, the day the customer gets it), not 1 (Feb 1, the
    day it was planned)."""
    store = open_store(env)
    world(store, 1)
    store.dispose()
    runner = CliRunner()
    with SmtpSandbox(password=SECRET) as smtp:
        for key, value in smtp.settings().items():
            monkeypatch.setenv(f"BILLBRIDGE_SMTP__{key.upper()}", str(value))
        monkeypatch.setenv("BILLBRIDGE_SMTP__PASSWORD", WRONG)
        down = runner.invoke(app, ["messages", "send", "--as-of", "2026-02-01", "--json"])
        assert down.exit_code == 1 and json.loads(down.output)["planned"]["created"]["reminder.queued"] == 1
        monkeypatch.setenv("BILLBRIDGE_SMTP__PASSWORD", SECRET)
        fixed = runner.invoke(app, ["messages", "send", "--as-of", "2026-02-02", "--json"])
        assert fixed.exit_code == 0 and json.loads(fixed.output)["sent"]["outcomes"] == {"reminder": 1}
        [received] = smtp.mailbox.items()
    text = received.message.get_body(("plain",)).get_content()
    assert "invoice US-INV-1 was due on Jan 31, 2026 and is 2 days overdue." in text, text
