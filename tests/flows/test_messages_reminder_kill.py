"""A reminder run (``billbridge messages send``, what the daily run does, in a process of its own)
killed with SIGKILL at several points while the SMTP server takes its messages, then run again: each
reminder is at most once in the server's mailbox and none is lost (every one is sent, or at most the
one the server held when the run died is ``unconfirmed``, which it had taken)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.store import messages, outbox
from billbridge.store.db import Store
from tests.flows.messaging_world import states, world

pytestmark = pytest.mark.slow  # an SMTP server and a process killed

DUE = "2026-01-31"  # the world's invoices: billed Jan 1, net 30; the due-day step (+0) goes out then
CLI = "import sys; from billbridge.app.cli import app; app(sys.argv[1:], prog_name='billbridge')"


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox() as running:
        yield running


def _run(smtp: SmtpSandbox, database_url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BILLBRIDGE_DATABASE_URL": database_url, "BILLBRIDGE_DATA_DIR": str(tmp_path)}
    env.update({f"BILLBRIDGE_SMTP__{k.upper()}": str(v) for k, v in smtp.settings().items()})
    env["BILLBRIDGE_CONFIG"] = "/nonexistent/billbridge.toml"
    command = [sys.executable, "-c", CLI, "messages", "send", "--as-of", DUE, "--json"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize("kill_after", [1, 8, 19])
def test_a_reminder_run_killed_after_n_accepted_messages_and_rerun_sends_each_once_none_lost(
    store: Store, smtp: SmtpSandbox, database_url: str, tmp_path: Path, kill_after: int
) -> None:
    world(store, 20)
    smtp.faults.hold_after_data = 0.1  # each message taken, then held a moment before the answer
    child = _run(smtp, database_url, tmp_path)
    deadline = time.monotonic() + 120
    while len(smtp.mailbox.items()) < kill_after:
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        assert time.monotonic() < deadline, "the run never reached the server"
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    smtp.faults.hold_after_data = 0
    assert len(_to_send(store)) == 20  # the due-day steps, planned (committed) before the sending began

    with store.write() as session:  # the dead run's leases handed back (`billbridge outbox retry`)
        outbox.retry_now(session, [p["id"] for p in outbox.pending(session)])
    rerun = _run(smtp, database_url, tmp_path)
    assert rerun.wait(timeout=120) == 0, rerun.stderr.read() if rerun.stderr else ""

    received = Counter(r.message_id for r in smtp.mailbox.items())
    assert max(received.values()) == 1  # never twice
    by_state = Counter(states(store)[i] for i in _to_send(store))
    assert by_state["sent"] + by_state["unconfirmed"] == 20 and by_state["unconfirmed"] <= 1  # none lost
    assert len(received) == 20  # the unconfirmed one had been taken: every reminder arrived, once
    assert {str(r.message["Subject"]).split(":")[0] for r in smtp.mailbox.items()} == {"Payment due today"}
    assert len(_to_send(store)) == 20  # the rerun made no second one


def _to_send(store: Store) -> list[int]:
    """The reminders to send (the -3 steps, superseded by the due-day ones, are recorded skipped)."""
    with store.read() as session:
        return [r["id"] for r in messages.listing(session, kind="reminder") if r["state"] != "skipped"]
