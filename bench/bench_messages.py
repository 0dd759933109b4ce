#!/usr/bin/env python
"""Reminders at scale: plan and send one reminder per open invoice to the local SMTP sandbox, against
a bare SMTP loop sending the same messages (same server, same connection reuse) in the same run.

    python bench/bench_messages.py                 # 2,000 open invoices
    python bench/bench_messages.py --invoices 100000 --json

Measured: planning (the reminder step of every open invoice, made once), sending (render the text
and HTML, the ``sending`` commit before DATA, DATA, the ``sent`` commit, the outbox bookkeeping),
and the bare loop (smtplib ``send_message`` of the already-rendered messages over one STARTTLS and
AUTH connection). The issue's target: billbridge's send within 2x of the bare loop.
"""

from __future__ import annotations

import argparse
import json
import smtplib
import ssl
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.messages import Extras, plan_messages, rendered, send_messages
from billbridge.mapping.messages import email
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.settings import Settings, SmtpSettings
from billbridge.store import messages as sql
from billbridge.store.db import open_store
from billbridge.store.message_models import CustomerMessage
from billbridge.store.models import Invoice

DUE = date(2026, 1, 31)


def world(count: int) -> dict[str, Any]:
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
            for i in range(count)
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
            for i in range(count)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-messages-"))
    url = f"sqlite:///{folder / 'bench.db'}"
    store = open_store(url)
    import_document(store, world(args.invoices))
    run_billing(store, date(2026, 1, 1))
    with store.write() as session:
        session.execute(update(Invoice).values(status="sent"))
    out: dict[str, Any] = {"invoices": args.invoices}
    with SmtpSandbox() as smtp:
        settings = Settings(database_url=url, data_dir=folder, smtp=SmtpSettings(**smtp.settings()))
        started = time.perf_counter()
        plan = plan_messages(store, settings, DUE - timedelta(days=3))
        out["plan_seconds"] = round(time.perf_counter() - started, 2)
        out["planned"] = dict(plan.created)
        started = time.perf_counter()
        summary = send_messages(store, settings, extras=Extras())
        out["send_seconds"] = round(time.perf_counter() - started, 2)
        out["sent"] = dict(summary.outcomes)
        # The same messages, rendered beforehand, through a bare smtplib loop.
        with store.read() as session:
            ids = [m.id for m in session.query(CustomerMessage.id)]
            prepared = []
            for message_id in ids:
                context = sql.sending_context(session, message_id)
                assert context is not None
                text = rendered(context)
                prepared.append(
                    email(
                        text,
                        sender=context["entity"]["sender"],
                        sender_name=context["entity"]["name"],
                        to=context["recipients"]["to"],
                        cc=context["recipients"]["cc"],
                        message_id=context["message_id"],
                    )
                )
        config = smtp.settings()
        started = time.perf_counter()
        with smtplib.SMTP(config["host"], config["port"]) as client:
            client.starttls(context=ssl.create_default_context(cafile=config["ca_bundle"]))
            client.login(config["username"], config["password"])
            for message in prepared:
                client.send_message(message)
        out["bare_loop_seconds"] = round(time.perf_counter() - started, 2)
        out["received"] = len(smtp.mailbox.items())
    out["ratio"] = round(out["send_seconds"] / out["bare_loop_seconds"], 2)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
