#!/usr/bin/env python
"""Reminders at scale: plan and send one reminder per open invoice to a local SMTP server, against a
bare smtplib loop sending the same messages to the same server in the same run; then (``--statements``)
statements of account requested and sent for some of the customers, against the same kind of loop.

    python bench/bench_messages.py --invoices 1000              # 3 runs, median and range
    python bench/bench_messages.py --invoices 100000 --runs 1 --json

The SMTP server (the aiosmtpd sandbox: STARTTLS, AUTH) runs in its own process, a fresh one per run,
so that serving SMTP does not share the measured interpreter: in a thread of the same process, its
CPU (about 4 ms a message) and the hand-overs of the GIL counted against whichever side did more
work between two SMTP commands. The billed store is built once and copied for each run.

Timed, per run:

- plan: ``plan_messages`` (the reminder step of every open invoice, made once, with its outbox row);
- send: ``send_messages`` (read each batch, render text and HTML, the envelope, the ``sending``
  commit before DATA, DATA, the outbox bookkeeping), one connection;
- bare: the same messages, built beforehand (not timed) from the same store rows, sent with
  smtplib ``send_message`` over one STARTTLS and AUTH connection opened as billbridge opens its own
  (smtplib writes each one out with the stdlib's generator inside the loop);
- with ``--bytes-floor``, a second floor: the same messages written out beforehand too, sent with
  ``sendmail`` (the loop is the SMTP exchange and TLS alone).

Each side's CPU (``time.process_time`` of this process; the server has its own) is reported per
message beside the wall time: on a shared machine CPU is what stretches the wall time.
``--profile PATH`` writes a cProfile (CPU time) of the first run's send.

Target (issue 18): send within 2x the bare loop; the ratio is taken per run, its median reported.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import shutil
import smtplib
import ssl
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any

from common import Runs, SandboxProcess, add_runs_argument, load_average, log, repeat, stamp
from sqlalchemy import select, update

from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.messages import Extras, plan_messages, rendered, send_messages
from billbridge.flows.statements import request_statements
from billbridge.mapping.messages import email
from billbridge.settings import Settings, SmtpSettings
from billbridge.store import messages as sql
from billbridge.store.db import Store, open_store
from billbridge.store.message_models import CustomerMessage
from billbridge.store.models import Invoice

DUE = date(2026, 1, 31)
TODAY = DUE - timedelta(days=3)  # the -3 step of every invoice is due
TARGET = 2.0


def world(count: int, start: int = 0) -> dict[str, Any]:
    """One entity, one product, and customers ``start`` .. ``start + count - 1``, each with one monthly contract."""
    return {
        "entities": [{"entity_ref": "us", "name": "Acme Inc.", "currency": "USD", "invoice_prefix": "US-INV-"}],
        "products": [
            {
                "product_ref": "platform",
                "name": "Platform",
                "prices": [{"price_ref": "p-usd", "currency": "USD", "pricing": {"model": "flat", "amount": "99.00"}}],
            }
        ],
        "customers": [
            {
                "customer_ref": f"c{i}",
                "name": f"Customer {i}",
                "entity_ref": "us",
                "contacts": [{"email": f"ap@c{i}.example"}],
            }
            for i in range(start, start + count)
        ],
        "contracts": [
            {
                "contract_ref": f"K{i}",
                "customer_ref": f"c{i}",
                "entity_ref": "us",
                "currency": "USD",
                "contract_start_date": "2026-01-01",
                "payment_terms_days": 30,
                "lines": [{"line_ref": "platform", "product_ref": "platform"}],
            }
            for i in range(start, start + count)
        ],
    }


class SmtpHost:
    """The SMTP sandbox, hosted by ``common.SandboxProcess`` in its own process."""

    def __init__(self) -> None:
        from billbridge.sandbox.faults import FaultInjector
        from billbridge.sandbox.smtp import SmtpSandbox

        self.faults = FaultInjector()  # unused: SMTP faults are the sandbox's own
        self.sandbox = SmtpSandbox().start()

    def info(self) -> dict[str, Any]:
        return self.sandbox.settings()

    def received(self) -> dict[str, int]:
        items = self.sandbox.mailbox.items()
        return {"messages": len(items), "distinct_ids": len({r.message_id for r in items})}

    def stop(self) -> None:
        self.sandbox.stop()


def build(folder: Path, invoices: int) -> Path:
    """The store every run starts from: ``invoices`` customers, each with one open invoice due on DUE."""
    path = folder / "base.db"
    store = open_store(f"sqlite:///{path}")
    started = time.perf_counter()
    for start in range(0, invoices, 5000):
        import_document(store, world(min(5000, invoices - start), start))
    run_billing(store, date(2026, 1, 1))
    with store.write() as session:
        session.execute(update(Invoice).values(status="sent"))
    store.engine.dispose()
    log(f"setup: {invoices} invoices imported and billed in {time.perf_counter() - started:.1f} s (not timed)")
    return path


def prepared(store: Store, ids: Sequence[int]) -> list[EmailMessage]:
    """The messages as billbridge sent them, built from the same store rows (outside the clock)."""
    out = []
    with store.read() as session:
        for start in range(0, len(ids), 500):
            contexts = sql.sending_contexts(session, ids[start : start + 500])
            for message_id in ids[start : start + 500]:
                context = contexts[message_id]
                out.append(
                    email(
                        rendered(context),
                        sender=context["entity"]["sender"],
                        sender_name=context["entity"]["name"],
                        to=context["recipients"]["to"],
                        cc=context["recipients"]["cc"],
                        message_id=context["message_id"],
                    )
                )
    return out


def bare_loop(config: dict[str, Any], messages: Sequence[EmailMessage | Envelope]) -> tuple[float, float]:
    """smtplib over one connection, opened as ``connectors.smtp`` opens its own; seconds of wall and
    of this process's CPU. An EmailMessage goes by ``send_message`` (smtplib writes it out with the
    stdlib's generator), an Envelope by ``sendmail`` of its bytes."""
    settings = SmtpSettings(**config)
    started, cpu = time.perf_counter(), time.process_time()
    with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_seconds) as client:
        client.ehlo()
        client.starttls(context=ssl.create_default_context(cafile=config["ca_bundle"]))
        client.ehlo()
        client.login(config["username"], config["password"])
        for message in messages:
            if isinstance(message, Envelope):
                client.sendmail(message.sender, message.recipients, message.content)
            else:
                client.send_message(message)
    return time.perf_counter() - started, time.process_time() - cpu


@dataclass(frozen=True)
class Envelope:
    """A message written out beforehand, with its envelope: the floor of ``--bytes-floor``."""

    sender: str
    recipients: list[str]
    content: bytes


def written_out(messages: Sequence[EmailMessage]) -> list[Envelope]:
    """The messages as bytes (``policy.SMTP``) with their envelopes, as ``send_message`` makes them."""
    out = []
    for message in messages:
        recipients = [address for _, address in getaddresses([*message.get_all("To", []), *message.get_all("Cc", [])])]
        out.append(Envelope(parseaddr(str(message["From"]))[1], recipients, message.as_bytes(policy=policy.SMTP)))
    return out


def ids_of(store: Store, kind: str) -> list[int]:
    with store.read() as session:
        return list(
            session.scalars(select(CustomerMessage.id).where(CustomerMessage.kind == kind).order_by(CustomerMessage.id))
        )


@dataclass
class Run:
    plan: float
    send: float
    bare: float
    send_cpu: float  # seconds of this process's CPU (the server runs in its own)
    bare_cpu: float
    bytes_floor: tuple[float, float] | None  # --bytes-floor: wall and CPU seconds
    sent: dict[str, int]
    statements_request: float | None
    statements_send: float | None
    statements_bare: float | None
    received: dict[str, int]

    @property
    def ratio(self) -> float:
        return self.send / self.bare

    @property
    def cpu_ratio(self) -> float:
        return self.send_cpu / self.bare_cpu

    @property
    def statements_ratio(self) -> float:
        assert self.statements_send is not None and self.statements_bare is not None
        return self.statements_send / self.statements_bare


def measure(
    base: Path,
    folder: Path,
    invoices: int,
    statements: int,
    number: list[int],
    profile: Path | None = None,
    bytes_floor: bool = False,
) -> Run:
    number[0] += 1
    path = folder / f"run{number[0]}.db"
    shutil.copyfile(base, path)
    url = f"sqlite:///{path}"
    store = open_store(url)
    with SandboxProcess(SmtpHost) as host:
        config = dict(host.info)
        settings = Settings(database_url=url, data_dir=folder, smtp=SmtpSettings(**config))
        started = time.perf_counter()
        plan = plan_messages(store, settings, TODAY)
        plan_seconds = time.perf_counter() - started
        assert plan.created == {"reminder.queued": invoices}, plan.created
        profiler = cProfile.Profile(time.process_time) if profile is not None and number[0] == 1 else None
        started, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        summary = send_messages(store, settings, extras=Extras())
        if profiler is not None:
            profiler.disable()
        send_seconds, send_cpu = time.perf_counter() - started, time.process_time() - cpu
        if profiler is not None and profile is not None:
            profiler.dump_stats(profile)
            log(f"  profile of the send (first run) in {profile}")
        assert summary.outcomes == {"reminder": invoices} and not summary.failures, summary.as_dict()
        reminders = prepared(store, ids_of(store, "reminder"))
        bare_seconds, bare_cpu = bare_loop(config, reminders)
        floor_of_bytes = bare_loop(config, written_out(reminders)) if bytes_floor else None
        request_seconds = statements_send = statements_bare = None
        if statements:
            refs = [f"c{i}" for i in range(min(statements, invoices))]
            started = time.perf_counter()
            made = request_statements(store, refs, TODAY, payment_days=settings.statement_payment_days)
            request_seconds = time.perf_counter() - started
            assert made.created == {"statement.queued": len(refs)}, made.as_dict()
            started = time.perf_counter()
            sent = send_messages(store, settings, extras=Extras())
            statements_send = time.perf_counter() - started
            assert sent.outcomes == {"statement": len(refs)}, sent.as_dict()
            statements_bare, _ = bare_loop(config, prepared(store, ids_of(store, "statement")))
        received = host.ask("received")
    store.engine.dispose()
    path.unlink()
    expected = 2 * (invoices + min(statements, invoices)) + (invoices if bytes_floor else 0)
    assert received["messages"] == expected, received  # each message once from billbridge, once bare
    log(
        f"  send {send_seconds:.2f} s ({send_cpu:.2f} s CPU), bare {bare_seconds:.2f} s ({bare_cpu:.2f} s CPU): "
        f"{send_seconds / bare_seconds:.2f}x wall, {send_cpu / bare_cpu:.2f}x CPU; load {load_average()}"
    )
    if floor_of_bytes is not None:
        wall, cpu = floor_of_bytes
        log(f"  bytes floor {wall:.2f} s ({cpu:.2f} s CPU): {send_seconds / wall:.2f}x wall, {send_cpu / cpu:.2f}x CPU")
    return Run(
        plan_seconds,
        send_seconds,
        bare_seconds,
        send_cpu,
        bare_cpu,
        floor_of_bytes,
        dict(summary.outcomes),
        request_seconds,
        statements_send,
        statements_bare,
        received,
    )


def report(invoices: int, statements: int, runs: Runs[Run]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "invoices": invoices,
        "runs": len(runs.results),
        "load_before_runs": runs.load.show(),
        "plan_seconds": runs.spread(lambda r: r.plan).show(),
        "send_seconds": runs.spread(lambda r: r.send).show(),
        "messages_per_second": runs.spread(lambda r: invoices / r.send).show(".0f"),
        "bare_loop_seconds": runs.spread(lambda r: r.bare).show(),
        "ratio": runs.spread(lambda r: r.ratio).show(unit="x"),
        "send_cpu_ms_per_message": runs.spread(lambda r: 1000 * r.send_cpu / invoices).show(),
        "bare_cpu_ms_per_message": runs.spread(lambda r: 1000 * r.bare_cpu / invoices).show(),
        "cpu_ratio": runs.spread(lambda r: r.cpu_ratio).show(unit="x"),
    }
    if runs.first.bytes_floor is not None:
        floors = runs.spread(lambda r: r.bytes_floor[0] if r.bytes_floor else 0)
        out["bytes_floor_seconds"] = floors.show()
        out["bytes_floor_cpu_ms_per_message"] = runs.spread(
            lambda r: 1000 * r.bytes_floor[1] / invoices if r.bytes_floor else 0
        ).show()
        out["bytes_floor_ratio"] = runs.spread(lambda r: r.send / r.bytes_floor[0] if r.bytes_floor else 0).show(
            unit="x"
        )
        out["bytes_floor_cpu_ratio"] = runs.spread(
            lambda r: r.send_cpu / r.bytes_floor[1] if r.bytes_floor else 0
        ).show(unit="x")
    out |= {
        "target": f"<= {TARGET}x: {'met' if runs.spread(lambda r: r.ratio).median <= TARGET else 'not met'}",
    }
    if statements:
        out["statements"] = min(statements, invoices)
        out["statements_request_seconds"] = runs.spread(lambda r: r.statements_request or 0).show()
        out["statements_send_seconds"] = runs.spread(lambda r: r.statements_send or 0).show()
        out["statements_bare_seconds"] = runs.spread(lambda r: r.statements_bare or 0).show()
        out["statements_ratio"] = runs.spread(lambda r: r.statements_ratio).show(unit="x")
    out["each_run"] = [
        {
            "plan": round(r.plan, 3),
            "send": round(r.send, 3),
            "bare": round(r.bare, 3),
            "ratio": round(r.ratio, 3),
            "send_cpu": round(r.send_cpu, 3),
            "bare_cpu": round(r.bare_cpu, 3),
            "bytes_floor": r.bytes_floor and [round(x, 3) for x in r.bytes_floor],
            "statements_send": r.statements_send and round(r.statements_send, 3),
            "statements_bare": r.statements_bare and round(r.statements_bare, 3),
            "received": r.received,
            "load": load,
        }
        for r, load in zip(runs.results, runs.loads, strict=True)
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=1000, help="open invoices, one reminder each (1000)")
    parser.add_argument("--statements", type=int, default=500, help="statements requested and sent (500; 0: none)")
    parser.add_argument("--workdir", default=None, help="where the SQLite files go (a temporary folder)")
    parser.add_argument("--json", action="store_true", help="results as JSON on stdout")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the first run's send into this file")
    parser.add_argument(
        "--bytes-floor",
        action="store_true",
        help="also a second floor: the messages written out beforehand, sent with sendmail (no generator in the loop)",
    )
    add_runs_argument(parser)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-messages-", dir=args.workdir))
    try:
        base = build(folder, args.invoices)
        number = [0]
        runs = repeat(
            lambda: measure(base, folder, args.invoices, args.statements, number, args.profile, args.bytes_floor),
            args.runs,
            "messages",
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out = report(args.invoices, args.statements, runs)
    print(stamp(), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            if key != "each_run":
                print(f"{key}: {value}")


if __name__ == "__main__":
    main()
