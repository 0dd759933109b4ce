"""``billbridge messages list --kind/--customer`` narrows the list as asked, and ``billbridge status``
names the customers nobody can be written to (and their messages waiting), as a user reads them."""

from __future__ import annotations

import json
from datetime import date
from typing import get_args

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.billing.messaging import step_name
from billbridge.billing.model import MessageKind, PartnerMessageKind
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.store import messages
from billbridge.store.db import open_store
from billbridge.store.models import Customer, Invoice
from tests.docs import REFERENCE, contract
from tests.flows.messaging_world import ENTITY, queue_deliveries

runner = CliRunner()


def _listed(*args: str) -> list[tuple[str, str, str]]:
    result = runner.invoke(app, ["messages", "list", "--json", *args])
    assert result.exit_code == 0, result.output
    return sorted((m["kind"], m["customer_ref"], m["state"]) for m in json.loads(result.output))


def test_list_by_kind_and_customer_and_status_names_customers_without_a_contact(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(env)
    doc = {
        "entities": [ENTITY],
        "products": REFERENCE["products"],
        "customers": [
            {"customer_ref": "c0", "name": "Customer 0", "entity_ref": "us", "contacts": [{"email": "ap@c0.example"}]},
            {"customer_ref": "c1", "name": "Customer 1", "entity_ref": "us", "contacts": [{"email": "ap@c1.example"}]},
            {"customer_ref": "nobody", "name": "Nobody Ltd", "entity_ref": "us"},  # no contact, no e-mail
        ],
        "contracts": [contract(f"K-{c}", customer=c, payment_terms_days=30) for c in ("c0", "c1", "nobody")],
    }
    assert not import_document(store, doc).errors
    run_billing(store, date(2026, 1, 1))
    with store.write() as session:
        session.execute(update(Invoice).values(status="sent"))
        query = select(Customer.customer_ref, Invoice.id).join(Customer, Customer.id == Invoice.customer_id)
        invoices: dict[str, int] = {ref: invoice for ref, invoice in session.execute(query)}
    queue_deliveries(store, list(invoices.values()))
    with store.write() as session:
        c0 = session.scalar(select(Customer.id).where(Customer.customer_ref == "c0"))
        assert c0 is not None
        draft = messages.MessageDraft(
            f"reminder:{invoices['c0']}:{step_name(0)}",
            "reminder",
            c0,
            date(2026, 1, 31),
            invoice_id=invoices["c0"],
            details={"offset": 0},
        )
        messages.create(session, [draft])
    store.dispose()

    assert _listed() == [
        ("invoice", "c0", "queued"),
        ("invoice", "c1", "queued"),
        ("invoice", "nobody", "waiting_contact"),
        ("reminder", "c0", "queued"),
    ]
    assert _listed("--kind", "reminder") == [("reminder", "c0", "queued")]
    assert _listed("--customer", "c0") == [("invoice", "c0", "queued"), ("reminder", "c0", "queued")]
    assert _listed("--kind", "invoice", "--customer", "nobody") == [("invoice", "nobody", "waiting_contact")]
    assert _listed("--kind", "receipt") == []
    assert _listed("--customer", "c1", "--status", "sent") == []

    monkeypatch.setenv("COLUMNS", "250")
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    assert "customers without a billing contact: nobody" in status.output
    assert "nobody (Nobody Ltd): 1 message(s) wait for a billing contact" in status.output
    assert "c0 (" not in status.output and "c1 (" not in status.output


@pytest.mark.parametrize("command", [("messages", "list"), ("messages", "retry", "--failed")])
def test_an_unknown_kind_is_refused_in_one_line_naming_the_kinds_not_listed_as_nothing(
    env: str, command: tuple[str, ...]
) -> None:
    result = runner.invoke(app, [*command, "--kind", "remider"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    every = (*get_args(MessageKind), *get_args(PartnerMessageKind))  # the definitions: a kind added there is allowed
    assert lines[0] == f"error: --kind 'remider': not a message kind (one of {', '.join(every)})"
    assert "partner_statement" in every
    for kind in every:  # every kind there is passes the check
        assert runner.invoke(app, [*command, "--kind", kind]).exit_code == 0
