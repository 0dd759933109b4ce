"""The invoice workflow as a finance person runs it: `bill` with auto-approval, `invoices mark` along
the lifecycle (every pair of statuses), `invoices list --status`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import delete, update
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.billing.lifecycle import STATUSES
from billbridge.flows.importing import import_document
from billbridge.store import outbox
from billbridge.store.db import Store, open_store
from billbridge.store.invoices import list_invoices
from billbridge.store.models import Invoice, OutboxMessage
from tests.docs import DISCOUNTED, contract, document

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
# What a person may do, as the README's lifecycle says: payment states come from payments only,
# and an issued document is corrected by a credit note, never voided.
ALLOWED: dict[str, list[str]] = {
    "draft": ["under_review", "approved", "void"],
    "under_review": ["draft", "approved", "void"],
    "approved": ["under_review", "sent", "void"],
    "sent": [],
    "partially_paid": [],
    "paid": [],
    "void": [],
}


def run(*args: str) -> tuple[int, str]:
    """Exit code and output as words: rich wraps lines and draws tables with box characters."""
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(re.sub("[\u2500-\u257f]", " ", result.output).split())


@pytest.fixture
def env(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BILLBRIDGE_PUSH_TARGETS", '["quickbooks", "stripe"]')
    return database_url


def test_bill_with_auto_approve_approves_the_new_drafts_and_queues_their_pushes(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = sorted(str(p) for p in (ROOT / "examples" / "contracts").glob("*.yaml"))
    assert run("contracts", "import", *examples)[0] == 0
    monkeypatch.setenv("BILLBRIDGE_AUTO_APPROVE_INVOICES", "true")
    code, out = run("bill", "--as-of", "2026-11-22", "--json")
    assert code == 0, out
    billed = json.loads(out)
    listed = json.loads(run("invoices", "list", "--json")[1])
    auto_charge = {"C-100-globex"}  # the examples' only auto-charge contract
    assert {d["status"] for d in listed} == {"approved"} and len(listed) == billed["invoices"] + billed["credit_notes"]
    charged = [d for d in listed if d["contract_ref"] in auto_charge and d["doc_type"] == "invoice"]
    assert billed["queued"] == {"push.quickbooks": len(listed), "push.stripe": len(charged)} and charged

    code, out = run("bill", "--as-of", "2026-11-22")  # the table a person reads: nothing new, nothing queued
    assert code == 0 and "queued" not in out and "Billing run" in out
    store = open_store(env)
    with store.read() as session:
        assert len(outbox.pending(session)) == len(listed) + len(charged)  # once each
    store.dispose()


@pytest.fixture(scope="module")
def one_invoice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, str]]:
    """A SQLite store with one invoice, for the pairs below to move about (the lifecycle is not a
    backend matter; queueing on both backends is tested in tests/flows/test_approval.py)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('pairs') / 'billbridge.db'}"
    store = open_store(url)
    import_document(store, document(contract("C-1")))
    from datetime import date

    from billbridge.flows.invoice_generation import run_billing

    run_billing(store, date(2026, 1, 1))
    with store.read() as session:
        [invoice] = list_invoices(session)
    yield store, str(invoice["number"])
    store.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("target", STATUSES)
@pytest.mark.parametrize("current", STATUSES)
def test_mark_refuses_what_the_lifecycle_does_not_allow_and_lists_what_it_does(
    one_invoice: tuple[Store, str], current: str, target: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store, number = one_invoice
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", store.url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    paid = Decimal({"paid": "1200.00", "partially_paid": "100.00"}.get(current, "0"))
    with store.write() as session:
        session.execute(delete(OutboxMessage))
        session.execute(update(Invoice).values(status=current, amount_paid=paid))

    code, out = run("invoices", "mark", number, target)
    with store.read() as session:
        [now] = list_invoices(session)
    if target == current:
        assert (code, out) == (0, f"{number} is {current} already")
    elif target in ALLOWED[current]:
        assert code == 0 and out.startswith(f"{number}: {current} -> {target}"), out
        assert now["status"] == target
    else:
        allowed = ", ".join(ALLOWED[current]) or "none"
        assert code == 1 and f"error: cannot go from {current} to {target} (allowed: {allowed})" in out, out
        assert now["status"] == current
        if target == "void" and current in ("sent", "partially_paid", "paid"):
            assert "corrected by a credit note" in out


def test_mark_names_an_unknown_status_or_number(
    one_invoice: tuple[Store, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, number = one_invoice
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", store.url)
    code, out = run("invoices", "mark", number, "late")
    assert code == 1 and "unknown status 'late'; expected one of draft, under_review, approved, sent" in out
    code, out = run("invoices", "mark", "US-INV-999", "approved")
    assert code == 1 and "no invoice or credit note numbered 'US-INV-999'" in out


def test_list_refuses_an_unknown_status_in_one_line(env: str) -> None:
    import_document(open_store(env), document(contract("C-1")))
    result = runner.invoke(app, ["invoices", "list", "--status", "bogus"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: --status: unknown status 'bogus'; expected one of draft, under_review, approved, sent, "
        "partially_paid, paid, void"
    )
    code, out = run("invoices", "list", "--status", "draft", "--json")
    assert (code, json.loads(out)) == (0, [])


def test_a_voided_draft_is_replaced_by_the_next_run_with_a_new_number(env: str, tmp_path: Path) -> None:
    """Voided before it was issued, a draft gives its period back: the next run bills it again (on the
    terms now in force) under the next number; the void keeps its own, so no number is missing."""
    store = open_store(env)
    import_document(store, document(contract("C-1")))
    assert run("bill", "--as-of", "2026-02-01")[0] == 0
    assert run("invoices", "mark", "US-INV-2", "void") == (0, "US-INV-2: draft -> void")
    amended = document(
        contract(
            "C-1",
            effective_date="2026-02-01",
            lines=[{"line_ref": "platform", "product_ref": "seats", "quantity": "3"}],
        )
    )
    import_document(store, amended)  # what the void was for: the February terms were wrong

    code, out = run("bill", "--as-of", "2026-02-01", "--json")
    assert code == 0 and (json.loads(out)["invoices"], json.loads(out)["totals"]) == (1, {"USD": "135.00"})
    listed = json.loads(run("invoices", "list", "--json")[1])
    assert [(d["number"], d["billing_date"], d["status"], d["invoice_total"]) for d in listed] == [
        ("US-INV-1", "2026-01-01", "draft", "1200.00"),
        ("US-INV-2", "2026-02-01", "void", "1200.00"),
        ("US-INV-3", "2026-02-01", "draft", "135.00"),  # 3 seats at 45.00, no credit of the void
    ]
    code, out = run("bill", "--as-of", "2026-02-01", "--json")
    assert json.loads(out)["invoices"] == 0  # replaced once
    code, out = run("invoices", "mark", "US-INV-3", "void")
    assert code == 0
    code, out = run("bill", "--as-of", "2026-03-01", "--json")
    assert [
        (d["number"], d["billing_date"]) for d in json.loads(run("invoices", "list", "--status", "draft", "--json")[1])
    ] == [
        ("US-INV-1", "2026-01-01"),
        ("US-INV-4", "2026-02-01"),
        ("US-INV-5", "2026-03-01"),
    ]
    store.dispose()


@pytest.mark.slow
def test_show_gives_each_discount_and_money_in_minor_units(env: str) -> None:
    """By hand, for 17/31 of a month: seats 3 x 45.00 = 135.00 -> 74.03, less 10% (121.50 -> 66.63):
    discount 7.40; API 12.000 -> 6.58; the contract's 5% of 73.21 is 3.66. Subtotal 80.61, discounts
    11.06, total 69.55."""
    store = open_store(env)
    import_document(store, document(DISCOUNTED))
    assert run("bill", "--as-of", "2026-01-15")[0] == 0
    code, out = run("invoices", "show", "US-INV-1", "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert [(x["quantity"], x["amount"], x["discount_amount"], x["billed_amount"]) for x in shown["lines"]] == [
        ("3", "74.03", "7.40", "66.63"),
        ("6000", "6.58", "0.00", "6.58"),
        ("1", "0.00", "3.66", "-3.66"),
    ]
    assert (shown["subtotal"], shown["discount_total"], shown["invoice_total"], shown["amount_paid"]) == (
        "80.61",
        "11.06",
        "69.55",
        "0.00",
    )

    code, out = run("invoices", "show", "US-INV-1")  # the table a person reads
    assert code == 0 and "description quantity amount discount billed" in out
    assert "Seats 3 74.03 7.40 66.63 2026-01-15 to 2026-01-31, 17 days" in out
    assert "API calls 6000 6.58 0.00 6.58 2026-01-15 to 2026-01-31, 17 days" in out
    assert "Discount 5% 1 0.00 3.66 -3.66" in out
    assert "subtotal 80.61, discount 11.06, invoice_total 69.55 USD" in out
    listed = json.loads(run("invoices", "list", "--json")[1])
    assert [(d["subtotal"], d["discount_total"], d["invoice_total"]) for d in listed] == [("80.61", "11.06", "69.55")]

    code, out = run("invoices", "preview", "--contract", "C-D", "--as-of", "2026-02-01", "--json")
    [february] = json.loads(out)["documents"]
    assert [(x["quantity"], x["amount"], x["discount_amount"]) for x in february["lines"]] == [
        ("3", "135.00", "13.50"),
        ("6000", "12.00", "0.00"),  # the full month: 12.000 shown in cents
        ("1", "0.00", "6.68"),
    ]
    assert (february["subtotal"], february["discount_total"], february["invoice_total"]) == (
        "147.00",
        "20.18",
        "126.82",
    )
    store.dispose()
