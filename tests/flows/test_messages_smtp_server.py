"""A problem of the SMTP server or of its settings is not the messages' fault: the run stops at the
first such answer (a refused login, no STARTTLS, a refused greeting, nobody listening), leaves
every message queued for the next run and reports one error naming the host and the user, never
the password. Refusals of one message (5xx to RCPT) stay that message's. All against aiosmtpd."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from billbridge.flows.messages import PlanSummary, messages_markdown, send_messages
from billbridge.sandbox.smtp import USER, SmtpSandbox
from billbridge.settings import Settings, SmtpSettings
from billbridge.store import messages, outbox
from billbridge.store.db import Store
from tests.flows.messaging_world import queue_deliveries, settings_for, states, world

pytestmark = pytest.mark.slow  # an SMTP server

SECRET = "Zebra-Quartz-5517-passphrase"  # distinctive: found anywhere, it leaked
WRONG = "Wrong-Okapi-9043-passphrase"


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox(password=SECRET) as running:
        yield running


def _settings(smtp: SmtpSandbox, database_url: str, tmp_path: Path, **change: object) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path, smtp=SmtpSettings(**{**smtp.settings(), **change}))


def _outbox_rows(store: Store) -> list[dict[str, object]]:
    with store.read() as session:
        return outbox.pending(session, topic=messages.TOPIC)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_login_stops_the_run_leaves_every_message_queued_and_names_host_and_user_not_the_password(
    store: Store, smtp: SmtpSandbox, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    invoices = world(store, 3)
    queue_deliveries(store, invoices)
    summary = send_messages(store, _settings(smtp, database_url, tmp_path, password=WRONG))
    assert summary.outcomes == {} and summary.failures == []  # no message is blamed
    assert summary.stopped == (
        f"the SMTP server 127.0.0.1:{smtp.port} (tls starttls as user '{USER}') refused the login: "
        "535 5.7.8 Authentication credentials invalid (check [smtp] username and password)"
    )
    assert smtp.mailbox.items() == []
    assert set(states(store).values()) == {"queued"}
    with store.read() as session:
        listed = messages.listing(session)
    tried = [m for m in listed if m["last_error"]]  # the one it met says so; the others were not tried
    assert len(tried) == 1 and "not sent: the SMTP server 127.0.0.1" in str(tried[0]["last_error"])
    rows = _outbox_rows(store)
    assert len(rows) == 3 and not any(r["parked"] for r in rows)  # due at once, for the next run
    assert sorted(r["attempts"] for r in rows) == [0, 0, 1]  # only the one tried counts an attempt
    artifact = messages_markdown(PlanSummary(), summary)
    assert "Stopped, messages left queued for the next run:** the SMTP server" in artifact

    everything = "\n".join(
        [
            caplog.text,
            json.dumps(summary.as_dict()),
            artifact,
            json.dumps(listed, default=str),
            json.dumps(rows, default=str),
        ]
    )
    assert WRONG not in everything and SECRET not in everything

    summary = send_messages(store, settings_for(smtp, database_url, tmp_path))  # the password fixed
    assert summary.outcomes == {"invoice": 3} and summary.stopped is None
    assert len(smtp.mailbox.items()) == 3 and set(states(store).values()) == {"sent"}
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("greeting 421", "refused the connection: 421 4.3.2 down for maintenance"),
        ("greeting 554", "refused the connection: 554 5.7.1 no service for you"),
        ("no starttls", "does not offer STARTTLS, which [smtp] tls = starttls requires"),
        ("no login", "requires a login: 530 5.7.0 Authentication required (set [smtp] username)"),
        ("nobody listening", "cannot use the SMTP server 127.0.0.1:"),
    ],
)
def test_each_server_or_settings_problem_stops_the_run_once_and_nothing_is_failed(
    store: Store, database_url: str, tmp_path: Path, problem: str, expected: str
) -> None:
    invoices = world(store, 3)
    queue_deliveries(store, invoices)
    with SmtpSandbox(password=SECRET, starttls=problem != "no starttls") as smtp:
        change: dict[str, object] = {}
        if problem.startswith("greeting"):
            smtp.faults.greeting = (
                "421 4.3.2 down for maintenance" if problem.endswith("421") else "554 5.7.1 no service for you"
            )
        if problem == "no login":
            change = {"username": None, "password": None}
        if problem == "nobody listening":
            change = {"port": _closed_port()}
        summary = send_messages(store, _settings(smtp, database_url, tmp_path, **change))
        assert summary.stopped is not None and expected in summary.stopped
        assert summary.outcomes == {} and summary.failures == []
        assert set(states(store).values()) == {"queued"}
        assert not any(r["parked"] for r in _outbox_rows(store))
        smtp.faults.greeting = None
        if problem != "no starttls":  # the same server, put right: everything goes, once
            assert send_messages(store, _settings(smtp, database_url, tmp_path)).outcomes == {"invoice": 3}
            assert len(smtp.mailbox.items()) == 3


def test_a_refused_recipient_stays_that_messages_failure_and_the_run_goes_on(
    store: Store, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    invoices = world(store, 3)
    queue_deliveries(store, invoices)
    smtp.faults.refuse.add("ap0@c0.example")
    summary = send_messages(store, settings_for(smtp, database_url, tmp_path))
    assert summary.stopped is None and summary.outcomes == {"failed": 1, "invoice": 2}
    with store.read() as session:
        [failed] = messages.listing(session, state="failed")
    assert "550 5.1.1 <ap0@c0.example>: mailbox unavailable" in str(failed["last_error"])


async def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        [latest] = await client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        return str(latest.data)


def test_the_daily_flow_fails_after_its_artifact_naming_the_server_and_never_the_password(
    store: Store,
    smtp: SmtpSandbox,
    flow_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio
    from datetime import date

    from billbridge.flows.messages import MessagesStopped, send_reminders

    caplog.set_level(logging.DEBUG)
    world(store, 2, issued=date(2026, 1, 1))  # their deliveries made with the push's event, queued
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path))
    for key, value in smtp.settings().items():
        monkeypatch.setenv(f"BILLBRIDGE_SMTP__{key.upper()}", str(value))
    monkeypatch.setenv("BILLBRIDGE_SMTP__PASSWORD", WRONG)
    with pytest.raises(MessagesStopped, match=f"127.0.0.1:{smtp.port} .*refused the login: 535") as stopped:
        send_reminders(as_of=date(2026, 1, 2))
    artifact = asyncio.run(_artifact("send-reminders"))
    assert "refused the login" in artifact
    assert set(states(store).values()) == {"queued"} and smtp.mailbox.items() == []
    for seen in (str(stopped.value), artifact, caplog.text):
        assert WRONG not in seen and SECRET not in seen
    monkeypatch.setenv("BILLBRIDGE_SMTP__PASSWORD", SECRET)
    result = send_reminders(as_of=date(2026, 1, 2))
    assert result["sent"]["outcomes"] == {"invoice": 2} and len(smtp.mailbox.items()) == 2
    assert SECRET not in caplog.text and SECRET not in asyncio.run(_artifact("send-reminders"))
