"""``billbridge messages``, as a user runs it: send the due messages to an SMTP server, list and read
them, preview one without sending, and retry an unconfirmed one only after saying it was checked."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.store.db import open_store
from tests.flows.messaging_world import world
from tests.flows.test_messages_credit_notes import DUE, pay

runner = CliRunner()
pytestmark = pytest.mark.slow  # an SMTP server


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_send_list_show_preview_and_retry(env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    store = open_store(env)
    world(store, 2, issued=date(2026, 1, 2))  # their deliveries made as they are issued
    store.dispose()
    monkeypatch.setenv("COLUMNS", "250")
    with SmtpSandbox() as smtp:
        for key, value in smtp.settings().items():
            monkeypatch.setenv(f"BILLBRIDGE_SMTP__{key.upper()}", str(value))
        smtp.faults.drop_after_data = 1
        code, out = run("messages", "send", "--as-of", "2026-01-02", "--json")
        assert code == 0, out
        result = json.loads(out)
        assert result["planned"]["created"] == {}  # no reminder due yet; the deliveries were made when issued
        assert result["sent"]["outcomes"] == {"unconfirmed": 1, "invoice": 1}
        code, out = run("messages", "list", "--status", "unconfirmed", "--json")
        [unconfirmed] = json.loads(out)
        code, out = run("messages", "show", str(unconfirmed["id"]))
        assert code == 0 and "state: unconfirmed" in out and "Invoice US-INV-" in out and "may have arrived" in out
        code, out = run("messages", "retry", str(unconfirmed["id"]))
        assert code == 1 and "--checked" in out
        code, out = run("messages", "retry", str(unconfirmed["id"]), "--checked")
        assert code == 0 and "queued" in out
        code, out = run("messages", "send", "--as-of", "2026-01-02", "--json")
        assert json.loads(out)["sent"]["outcomes"] == {"invoice": 1}
        assert len(smtp.mailbox.items()) == 3  # the one a person asked for again after checking
    code, out = run(
        "messages", "preview", "--invoice", "US-INV-1", "--kind", "reminder", "--as-of", str(date(2026, 2, 7))
    )
    assert code == 0, out
    assert "Overdue: invoice US-INV-1" in out and "7 days overdue" in out and "to: ap0@c0.example" in out
    code, out = run("status")
    assert code == 0 and "messages" in out and "invoice" in out


def test_show_prints_a_sent_message_as_it_was_sent_not_as_the_invoice_is_now(
    env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = open_store(env)
    world(store, 1)
    with SmtpSandbox() as smtp:
        for key, value in smtp.settings().items():
            monkeypatch.setenv(f"BILLBRIDGE_SMTP__{key.upper()}", str(value))
        code, out = run("messages", "send", "--as-of", str(DUE), "--json")
        assert code == 0 and json.loads(out)["sent"]["outcomes"] == {"reminder": 1}, out
        [received] = smtp.mailbox.items()
    body = received.message.get_body(("plain",))
    assert body is not None and "Amount open: $1,200.00" in body.get_content()
    pay(store, "p-all", "1200.00", DUE + timedelta(days=2))  # paid in full after the reminder went out
    store.dispose()
    code, out = run("messages", "list", "--kind", "reminder", "--status", "sent", "--json")
    [reminder] = json.loads(out)
    code, out = run("messages", "show", str(reminder["id"]), "--json")
    shown = json.loads(out)
    assert code == 0 and shown["state"] == "sent"
    assert shown["subject"] == received.message["Subject"]
    assert shown["text"].replace("\r\n", "\n") == body.get_content().replace("\r\n", "\n")
    assert "Amount open: $1,200.00" in shown["text"] and "$0.00" not in shown["text"]


def test_list_refuses_a_mistyped_status_naming_the_states(env: str) -> None:
    code, out = run("messages", "list", "--status", "bounced")
    assert code == 1
    assert "--status 'bounced': not a message state" in out and "opted_out" in out and "waiting_contact" in out
    code, out = run("messages", "list", "--status", "opted_out", "--json")
    assert code == 0 and json.loads(out) == []
    code, out = run("messages", "list", "--help")
    assert "opted_out" in out
