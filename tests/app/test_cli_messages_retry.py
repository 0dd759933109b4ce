"""``billbridge messages retry``: several ids at once, or every failed message (of a kind, of a
customer) with ``--failed``; each one that cannot be retried is named, the others are queued, and
the count is printed."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.billing.messaging import step_name
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.store import messages
from billbridge.store.db import open_store
from billbridge.store.models import Invoice
from tests.flows.messaging_world import queue_deliveries, world

runner = CliRunner()
pytestmark = pytest.mark.slow  # an SMTP server


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _listed(**filters: str) -> list[dict[str, object]]:
    args = [item for key, value in filters.items() for item in (f"--{key}", value)]
    code, out = run("messages", "list", "--json", *args)
    assert code == 0, out
    return list(json.loads(out))


def test_retry_takes_several_ids_or_every_failed_one_of_a_kind_or_customer(
    env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = open_store(env)
    invoices = world(store, 3)
    queue_deliveries(store, invoices)
    with store.write() as session:  # and a reminder to c0, whose address will be refused too
        customer = session.scalar(select(Invoice.customer_id).where(Invoice.id == invoices[0]))
        assert customer is not None
        draft = messages.MessageDraft(
            f"reminder:{invoices[0]}:{step_name(0)}",
            "reminder",
            customer,
            date(2026, 1, 31),
            invoice_id=invoices[0],
            details={"offset": 0},
        )
        messages.create(session, [draft])
    store.dispose()
    monkeypatch.setenv("COLUMNS", "250")
    with SmtpSandbox() as smtp:
        for key, value in smtp.settings().items():
            monkeypatch.setenv(f"BILLBRIDGE_SMTP__{key.upper()}", str(value))
        smtp.faults.refuse |= {"ap0@c0.example", "ap1@c1.example"}
        code, out = run("messages", "send", "--as-of", "2026-01-02", "--json")
        assert code == 0, out
        assert json.loads(out)["sent"]["outcomes"] == {"failed": 3, "invoice": 1}, out
        failed = {(m["kind"], m["customer_ref"]): m["id"] for m in _listed(status="failed")}
        [sent] = [m["id"] for m in _listed(status="sent")]
        assert set(failed) == {("invoice", "c0"), ("reminder", "c0"), ("invoice", "c1")}

        assert run("messages", "retry")[0] == 1  # neither ids nor --failed
        code, out = run("messages", "retry", "--kind", "reminder")
        assert code == 1 and "use them with --failed" in out

        code, out = run("messages", "retry", "--failed", "--kind", "reminder")
        assert code == 0 and "queued 1 message(s) again" in out
        assert [m["id"] for m in _listed(status="queued")] == [failed[("reminder", "c0")]]
        code, out = run("messages", "retry", "--failed", "--customer", "c1")
        assert code == 0 and "queued 1 message(s) again" in out

        code, out = run("messages", "retry", str(failed[("invoice", "c0")]), str(sent), "999999")
        assert code == 1 and "queued 1 message(s) again, 2 not" in out
        assert f"message {sent} is sent: only unconfirmed or failed messages are retried" in out
        assert "no message 999999" in out
        assert _listed(status="failed") == []

        smtp.faults.refuse.clear()
        code, out = run("messages", "send", "--as-of", "2026-01-02", "--json")
        assert json.loads(out)["sent"]["outcomes"] == {"invoice": 2, "reminder": 1}, out
        assert len(smtp.mailbox.items()) == 4
        code, out = run("messages", "retry", "--failed")
        assert code == 0 and "queued 0 message(s) again" in out
