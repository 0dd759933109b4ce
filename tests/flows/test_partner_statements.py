"""Partner statements reach the partner by e-mail (issue 17): closing a month makes the partner's
statement message in the closing transaction, the partner_fees run sends it after its commits through
the customer messages' relay to the SMTP sandbox (aiosmtpd), with the statement's lines as CSV; once
per partner and month, whether the run is repeated or stopped between the close and the send; a
partner without an e-mail (or with a malformed one) waits, named, until the partners import sets one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.billing.partner_fees import (
    Statement,
    StatementLine,
    partner_bill,
    statement_csv,
    statement_details,
    statement_of_details,
)
from billbridge.flows.importing import import_document
from billbridge.flows.messages import rendered, send_messages
from billbridge.flows.partner_fees import accrue_fees, close_period, fees_markdown, run_partner_fees
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.sandbox.smtp import Received, SmtpSandbox
from billbridge.settings import Settings, SmtpSettings
from billbridge.store import messages, outbox
from billbridge.store.db import Store
from billbridge.store.payments import record_payment
from tests.flows.test_partner_fees import hooli_paid
from tests.flows.test_push_quickbooks import _plain, settings_for

pytestmark = pytest.mark.slow  # QuickBooks and SMTP sandboxes

D = Decimal
DAY = date(2026, 12, 1)  # the monthly run closing November 2026
CLI = "import sys; from billbridge.app.cli import app; app(sys.argv[1:], prog_name='billbridge')"
NORTHWIND = {
    "partner_ref": "northwind",
    "name": "Northwind Advisors",
    "kind": "referral",
    "entity_ref": "us-inc",
    "currency": "USD",
    "payment_terms_days": 30,
}  # examples/contracts/04-partners.yaml, without its e-mail
# hooli's first invoice (the examples billed to 2026-11-22) is 900.00 USD, paid in full on 2026-11-25:
# 20% of it (180.00) and the flat 250.00 of a new customer's first payment, 430.00.
TOTAL = D("430.00")
CSV = "months,currency,customer_ref,base,fees\n2026-11,USD,hooli,900.00,430.00\n2026-11,USD,(total),900.00,430.00\n"


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox() as running:
        yield running


def with_smtp(qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path) -> Settings:
    return settings_for(qbo, database_url, tmp_path).model_copy(update={"smtp": SmtpSettings(**smtp.settings())})


def statements(store: Store) -> list[dict[str, Any]]:
    with store.read() as session:
        return messages.listing(session, kind=messages.PARTNER_STATEMENT)


def attachment(received: Received) -> tuple[str, str]:
    [part] = list(received.message.iter_attachments())
    return str(part.get_filename()), part.get_content()


def set_email(store: Store, email: str | None) -> None:
    """The partners import setting northwind's e-mail (None: none)."""
    partner = {**NORTHWIND, **({"email": email} if email is not None else {})}
    assert not import_document(store, {"partners": [partner]}).errors


def test_the_monthly_run_mails_the_partner_its_statement_once_with_the_lines_as_csv(
    store: Store, qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    hooli_paid(store)
    settings = with_smtp(qbo, smtp, database_url, tmp_path)
    summary = run_partner_fees(store, settings, period="2026-11", as_of=DAY)
    [closed] = summary.closed
    assert closed["total"] == TOTAL and summary.pushed == {"created": 1}
    assert summary.statements == {"queued": 1} and summary.statements_sent == 1
    assert "Statements sent to partners: 1 (e-mails made: queued 1)." in fees_markdown(summary)
    assert summary.as_dict()["statements_sent"] == 1

    [received] = smtp.mailbox.items()
    assert received.recipients == ("ap@northwind.example",)
    assert str(received.message["Subject"]) == "Referral fee statement 2026-11 from Acme Software Inc."
    body = received.message.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    assert text == (
        "Hello Northwind Advisors,\n"
        "\n"
        "here is your referral fee statement with Acme Software Inc. for 2026-11.\n"
        "\n"
        "Fees accrued: $430.00\n"
        "Reversals (refunds, credit notes): $0.00\n"
        "Total: $430.00\n"
        "\n"
        f"We entered it as bill {closed['number']} of Dec 1, 2026, to be paid on your\n"
        "terms of 30 days, by Dec 31, 2026.\n"
        "\n"
        "Per referred customer (fees on what they paid or were invoiced):\n"
        "- hooli: $430.00 on $900.00\n"
        "\n"
        "The attached CSV file holds these lines. If anything here looks wrong,\n"
        "please reply to this message.\n"
        "\n"
        "Acme Software Inc.\n"
    )
    assert attachment(received) == ("partner-statement-northwind-2026-11.csv", CSV)
    [made] = statements(store)
    assert made["state"] == "sent" and made["customer_ref"] is None and made["partner_ref"] == "northwind"

    # The monthly run again (a rerun, a retried deployment): no second message, nothing sent again.
    again = run_partner_fees(store, settings, period="2026-11", as_of=DAY)
    assert again.statements == {} and again.statements_sent == 0
    assert len(smtp.mailbox.items()) == 1 and len(statements(store)) == 1


def test_a_run_stopped_between_the_close_and_the_send_sends_it_once_on_the_rerun(
    store: Store, qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    """As the customer messages' test of a push stopped after its commit: the close commits the
    statement with its message and outbox row; the run stops there (killed before any relay)."""
    hooli_paid(store)
    settings = with_smtp(qbo, smtp, database_url, tmp_path)
    accrue_fees(store, as_of=DAY)
    assert close_period(store, "2026-11").statements == {"queued": 1}
    assert close_period(store, "2026-11").statements == {}  # closing twice makes nothing
    assert [m["state"] for m in statements(store)] == ["queued"] and smtp.mailbox.items() == []
    rerun = run_partner_fees(store, settings, period="2026-11", as_of=DAY)
    assert rerun.statements == {} and rerun.statements_sent == 1  # made before the stop, sent now
    assert run_partner_fees(store, settings, period="2026-11", as_of=DAY).statements_sent == 0
    assert [r.recipients for r in smtp.mailbox.items()] == [("ap@northwind.example",)]
    assert [m["state"] for m in statements(store)] == ["sent"]


def test_a_partner_without_an_email_waits_named_and_gets_it_once_the_import_sets_one(
    store: Store,
    qbo: RunningQuickBooks,
    smtp: SmtpSandbox,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hooli_paid(store)
    set_email(store, None)
    settings = with_smtp(qbo, smtp, database_url, tmp_path)
    summary = run_partner_fees(store, settings, period="2026-11", as_of=DAY)
    assert summary.pushed == {"created": 1}  # the Bill goes regardless: nothing else is held back
    assert summary.statements == {"waiting_contact": 1} and summary.statements_sent == 0
    reason = "partner northwind: field email: no e-mail address; the statement waits until one is set"
    assert summary.waiting == [reason] and smtp.mailbox.items() == []
    [made] = statements(store)
    assert (made["state"], made["last_error"]) == ("waiting_contact", reason)
    with store.read() as session:
        [waiting] = messages.overview(session)["partners_waiting_for_contact"]
    assert waiting == {"partner_ref": "northwind", "name": "Northwind Advisors", "messages": 1, "reason": reason}
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    shown = CliRunner().invoke(app, ["status"])
    assert shown.exit_code == 0, shown.output
    assert f"partner northwind (Northwind Advisors): 1 statement(s) wait: {reason}" in shown.output

    set_email(store, "ap@northwind")  # malformed: still waiting, the reason names the partner and field
    [made] = statements(store)
    assert made["state"] == "waiting_contact"
    assert made["last_error"] == (
        "partner northwind: field email: malformed e-mail address 'ap@northwind'; the statement waits"
    )

    set_email(store, "fees@northwind.example")  # the import releases it in its transaction
    [made] = statements(store)
    assert (made["state"], made["last_error"]) == ("queued", None)
    assert made["recipients"] == {"to": ["fees@northwind.example"], "cc": []}
    again = run_partner_fees(store, settings, period="2026-11", as_of=DAY)
    assert again.statements_sent == 1 and again.pushed == {}
    [received] = smtp.mailbox.items()
    assert received.recipients == ("fees@northwind.example",)
    assert attachment(received)[1] == CSV
    assert run_partner_fees(store, settings, period="2026-11", as_of=DAY).statements_sent == 0
    assert len(smtp.mailbox.items()) == 1


def test_a_refused_statement_fails_without_failing_the_run_and_is_retried_to_the_new_address(
    store: Store, qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    hooli_paid(store)
    settings = with_smtp(qbo, smtp, database_url, tmp_path)
    smtp.faults.refuse = {"ap@northwind.example"}
    summary = run_partner_fees(store, settings, period="2026-11", as_of=DAY)
    assert summary.pushed == {"created": 1} and summary.statements_sent == 0
    assert summary.sent is not None and summary.sent.error is None
    [made] = statements(store)
    assert made["state"] == "failed" and "partner northwind" in made["last_error"]
    assert "- message" in fees_markdown(summary)  # the artifact names the failure
    set_email(store, "fees@northwind.example")  # the bounce fixed at the source
    with store.write() as session:
        assert messages.retry(session, int(made["id"])) == "queued"  # `billbridge messages retry ID`
    assert send_messages(store, settings).outcomes == {messages.PARTNER_STATEMENT: 1}
    assert [r.recipients for r in smtp.mailbox.items()] == [("fees@northwind.example",)]


def test_a_statement_of_reversals_says_what_is_credited_and_a_month_without_fees_gets_no_message(
    store: Store, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hooli refunded in December after November's statement: December's statement is its reversals
    only (a VendorCredit), and its message says so; January, with nothing accrued, closes without one.
    ``messages list`` and ``show`` name the partner."""
    number = hooli_paid(store)
    accrue_fees(store, as_of=DAY)
    close_period(store, "2026-11")
    with store.write() as session:
        record_payment(
            session,
            payment_ref="stripe:re_hooli_1",
            currency="USD",
            amount=D("-900.00"),
            received_on=date(2026, 11, 30),
            allocations=[(number, D("-900.00"))],
            customer_ref="hooli",
        )
    accrue_fees(store, as_of=date(2026, 12, 2))
    december = close_period(store, "2026-12")
    [closed] = december.closed
    assert closed["total"] == -TOTAL and december.statements == {"queued": 1}
    january = close_period(store, "2027-01")
    assert [c["total"] for c in january.closed] == [D(0)] and january.statements == {}  # nothing to tell
    [latest, _november] = statements(store)
    with store.read() as session:
        context = messages.sending_context(session, int(latest["id"]))
    assert context is not None and context["customer"] is None and context["partner"]["partner_ref"] == "northwind"
    text = rendered(context).text
    assert "Fees accrued: $0.00\nReversals (refunds, credit notes): -$430.00\nTotal: -$430.00\n" in text
    assert (
        "The reversals exceed the fees: $430.00 is kept as a credit against your next\n"
        f"statements (vendor credit {closed['number']}).\n"
    ) in text
    assert "- hooli: -$430.00 on -$900.00\n" in text

    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    result = CliRunner().invoke(app, ["messages", "list", "--partner", "northwind", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [(m["kind"], m["partner_ref"], m["customer_ref"]) for m in listed] == [
        ("partner_statement", "northwind", None)
    ] * 2
    result = CliRunner().invoke(app, ["messages", "show", str(latest["id"])])
    assert result.exit_code == 0, result.output
    assert "Referral fee statement 2026-12 from Acme Software Inc." in result.output
    assert "to: ap@northwind.example" in result.output


def test_a_statement_over_several_months_netting_to_zero_says_so_and_that_nothing_is_owed() -> None:
    """Worked example of the default template: September to November, 120.00 of fees and 120.00
    reversed: no Bill, nothing owed, the months never on a statement named."""
    lines = (StatementLine("hooli", D("600.00"), D("120.00")), StatementLine("initech", D("-600.00"), D("-120.00")))
    of = Statement("northwind", "2026-11", "USD", lines, D("0.00"), "2026-09")
    bill = partner_bill(7, "Northwind Advisors", "ap@northwind.example", 30, of)
    context = {
        "id": 1,
        "kind": messages.PARTNER_STATEMENT,
        "language": "en",
        "as_of": bill.bill_date,
        "invoice": None,
        "customer": None,
        "partner": {"partner_ref": "northwind", "name": "Northwind Advisors", "email": "ap@northwind.example"},
        "entity": {"entity_ref": "us", "name": "Acme Inc.", "currency": "USD"},
        "details": statement_details(bill, [D("100.00"), D("20.00"), D("-120.00")], 30, billed=False),
    }
    text = rendered(context)
    assert text.subject == "Referral fee statement 2026-09 to 2026-11 from Acme Inc."
    assert text.text == (
        "Hello Northwind Advisors,\n"
        "\n"
        "here is your referral fee statement with Acme Inc. for 2026-09 to 2026-11.\n"
        "It covers every month no earlier statement covered.\n"
        "\n"
        "Fees accrued: $120.00\n"
        "Reversals (refunds, credit notes): -$120.00\n"
        "Total: $0.00\n"
        "\n"
        "Nothing is owed for these months: the reversals cancel the fees.\n"
        "\n"
        "Per referred customer (fees on what they paid or were invoiced):\n"
        "- hooli: $120.00 on $600.00\n"
        "- initech: -$120.00 on -$600.00\n"
        "\n"
        "The attached CSV file holds these lines. If anything here looks wrong,\n"
        "please reply to this message.\n"
        "\n"
        "Acme Inc.\n"
    )
    assert statement_csv(statement_of_details(context["details"])) == (
        "months,currency,customer_ref,base,fees\n"
        "2026-09 to 2026-11,USD,hooli,600.00,120.00\n"
        "2026-09 to 2026-11,USD,initech,-600.00,-120.00\n"
        "2026-09 to 2026-11,USD,(total),0.00,0.00\n"
    )


def test_a_run_killed_between_the_close_and_the_send_sends_the_statement_once_on_the_rerun(
    store: Store, qbo: RunningQuickBooks, smtp: SmtpSandbox, database_url: str, tmp_path: Path
) -> None:
    """``partners run`` in a process of its own, SIGKILLed while QuickBooks holds its answer to the
    Bill (the close, with its statement e-mail, committed; nothing sent yet); the rerun sends the
    statement once, finds the Bill by its number, and a third run does nothing."""
    hooli_paid(store)
    settings = with_smtp(qbo, smtp, database_url, tmp_path)
    hold = qbo.faults.add(kind="hold_response", path="/batch", after=2, delay=5)  # the Bill's answer
    env = {**os.environ, "BILLBRIDGE_DATABASE_URL": database_url, "BILLBRIDGE_DATA_DIR": str(tmp_path)}
    env.update(_plain(settings))
    env.update({f"BILLBRIDGE_SMTP__{k.upper()}": str(v) for k, v in smtp.settings().items()})
    env["BILLBRIDGE_CONFIG"] = str(tmp_path / "none.toml")
    command = [sys.executable, "-c", CLI, "partners", "run", "--period", "2026-11", "--json"]
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not hold.done:
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        assert time.monotonic() < deadline, "the run never reached QuickBooks"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert [m["state"] for m in statements(store)] == ["queued"] and smtp.mailbox.items() == []

    qbo.faults.clear()
    with store.write() as session:  # the dead run's leases handed back (`billbridge outbox retry`)
        outbox.retry_now(session, [p["id"] for p in outbox.pending(session)])
    rerun = run_partner_fees(store, settings, period="2026-11", as_of=DAY)
    assert rerun.pushed == {"existing": 1} and rerun.statements == {} and rerun.statements_sent == 1
    assert run_partner_fees(store, settings, period="2026-11", as_of=DAY).statements_sent == 0
    assert [r.recipients for r in smtp.mailbox.items()] == [("ap@northwind.example",)]
    assert [m["state"] for m in statements(store)] == ["sent"] and len(qbo.company.all("Bill")) == 1
