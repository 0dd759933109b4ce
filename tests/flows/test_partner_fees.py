"""Partner fees end to end against the QuickBooks sandbox: payments of referred customers accrue fees,
the month's statement becomes one Bill to the partner as a Vendor, and neither a rerun nor a process
killed between QuickBooks accepting the Bill and our commit makes a second one; a refund after the
statement reverses the fee on the next one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from billbridge.flows.partner_fees import (
    TOPIC,
    accrue_fees,
    close_period,
    fees_markdown,
    push_bills,
    read_paid,
    run_partner_fees,
)
from billbridge.flows.push import quickbooks_connector
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.store import outbox
from billbridge.store.db import Store
from billbridge.store.invoices import list_invoices
from billbridge.store.outbound_documents import mark_sent
from billbridge.store.partners import load_accruals, statements
from billbridge.store.payments import record_payment
from tests.flows.test_push_quickbooks import _plain, billed, settings_for

D = Decimal


def pay_in_full(
    session: Session, ref: str, number: str, amount: Decimal, on: date, customer: str, *, currency: str = "USD"
) -> None:
    """A payment (a refund when negative) of ``amount`` applied in full to invoice ``number``."""
    record_payment(
        session,
        payment_ref=ref,
        currency=currency,
        amount=amount,
        received_on=on,
        allocations=[(number, amount)],
        customer_ref=customer,
    )


def hooli_paid(store: Store) -> str:
    """Bill the examples and pay hooli's first invoice in full in November 2026; its number."""
    documents = billed(store)
    invoice = next(d for d in documents if d["customer_ref"] == "hooli" and d["doc_type"] == "invoice")
    with store.write() as session:
        mark_sent(session, [int(str(invoice["id"]))])  # as a push does
        pay_in_full(
            session,
            "stripe:ch_hooli_1",
            str(invoice["number"]),
            D(str(invoice["invoice_total"])),
            date(2026, 11, 25),
            "hooli",
            currency=str(invoice["currency"]),
        )
    return str(invoice["number"])


def test_fees_accrue_close_and_become_one_bill_per_partner_and_month(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    number = hooli_paid(store)
    settings = settings_for(qbo, database_url, tmp_path)
    summary = run_partner_fees(store, settings, period="2026-11", as_of=date(2026, 12, 1))
    with store.read() as session:
        accruals = load_accruals(session, partner_ref="northwind")
        total = sum((d["invoice_total"] for d in list_invoices(session) if d["number"] == number), D(0))
    assert {a.kind for a in accruals} == {"fee", "flat_fee"}
    fee = next(a.fee for a in accruals if a.kind == "fee")
    assert fee == (D(str(total)) * D("0.20")).quantize(D("0.01"))
    assert summary.pushed == {"created": 1}
    [bill] = qbo.company.all("Bill")
    [vendor] = qbo.company.all("Vendor")
    assert vendor["DisplayName"] == "Northwind Advisors" and bill["VendorRef"]["value"] == vendor["Id"]
    assert bill["TotalAmt"] == fee + D("250.00") and bill["DocNumber"].startswith("PF-2026-11-")
    assert bill["DueDate"] == "2026-12-31"  # net 30 from the first of December
    with store.read() as session:
        assert [s["status"] for s in statements(session, "northwind")] == ["billed"]

    # What was paid on it, read back from QuickBooks' BillPayments (a bookkeeper pays part of it).
    qbo.company.pay_bill(bill["Id"], D("100.00"))
    connector = quickbooks_connector(store, settings)
    try:
        assert connector.bill_payments([bill["Id"]]) == {bill["Id"]: D("100.00")}
    finally:
        connector.close()
    assert read_paid(store, settings) == 1  # kept on the statement, for `partners show` and the API
    with store.read() as session:
        assert [s["paid"] for s in statements(session, "northwind")] == [D("100.00")]

    again = run_partner_fees(store, settings, period="2026-11", as_of=date(2026, 12, 1))
    assert (again.accrued, again.closed, again.pushed) == (0, [], {})
    assert len(qbo.company.all("Bill")) == 1

    # Refunded after the statement closed: the fee comes off December's statement.
    with store.write() as session:
        pay_in_full(session, "stripe:re_hooli_1", number, D(str(-total)), date(2026, 11, 30), "hooli")
    accrue_fees(store, as_of=date(2026, 12, 2))
    with store.read() as session:
        december = load_accruals(session, partner_ref="northwind", period="2026-12")
    # Its only payment refunded: the percentage and the flat fee are both reversed.
    assert sorted((a.kind, a.fee) for a in december) == [("fee", -fee), ("flat_fee", D("-250.00"))]
    closed = close_period(store, "2026-12")
    [(total_december, credit_number)] = [(c["total"], c["number"]) for c in closed.closed]
    assert total_december == -fee - D("250.00") and credit_number.startswith("PF-2026-12-")
    # Reversals above fees: QuickBooks gets a VendorCredit for the difference, not a Bill, and only once.
    assert push_bills(store, settings).outcomes == {"created": 1}
    [credit] = qbo.company.all("VendorCredit")
    assert credit["VendorRef"]["value"] == vendor["Id"] and credit["DocNumber"] == credit_number
    assert credit["TotalAmt"] == fee + D("250.00") and credit["TxnDate"] == "2027-01-01" and "DueDate" not in credit
    assert push_bills(store, settings).outcomes == {}
    assert len(qbo.company.all("Bill")) == 1 and len(qbo.company.all("VendorCredit")) == 1
    with store.read() as session:
        assert [s["status"] for s in statements(session, "northwind")] == ["credited", "billed"]


@pytest.mark.slow
def test_a_bill_push_killed_after_quickbooks_accepted_makes_no_second_bill(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """SIGKILL while QuickBooks holds its answer to the batch that created the Bill; the rerun finds the
    Bill by its number and records it: one Bill for the partner and month."""
    hooli_paid(store)
    settings = settings_for(qbo, database_url, tmp_path)
    accrue_fees(store, as_of=date(2026, 12, 1))
    close_period(store, "2026-11")
    # The push's batch calls: the vendor, the expense account, then the Bill. Hold the Bill's answer.
    hold = qbo.faults.add(kind="hold_response", path="/batch", after=2, delay=5)
    env = {**os.environ, "BILLBRIDGE_DATABASE_URL": database_url, "BILLBRIDGE_DATA_DIR": str(tmp_path)}
    env.update(_plain(settings))
    script = (
        "from billbridge.settings import Settings\nfrom billbridge.flows.partner_fees import push_bills\n"
        "from billbridge.store.db import open_store\ns = Settings()\npush_bills(open_store(s.database), s)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.monotonic() + 60
    while not hold.done:
        assert child.poll() is None and time.monotonic() < deadline, "the push never reached QuickBooks"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert len(qbo.company.all("Bill")) == 1  # QuickBooks made the Bill...
    with store.read() as session:
        assert [s["status"] for s in statements(session, "northwind")] == ["closed"]  # ...we never recorded it

    qbo.faults.clear()
    with store.write() as session:  # the lease of the dead relay runs out
        outbox.retry_now(session, [p["id"] for p in outbox.pending(session) if p["topic"] == TOPIC])
    summary = push_bills(store, settings)
    assert summary.outcomes == {"existing": 1}
    assert len(qbo.company.all("Bill")) == 1
    with store.read() as session:
        assert [s["status"] for s in statements(session, "northwind")] == ["billed"]


def test_a_tiered_agreement_earns_its_share_of_the_partners_total(store: Store) -> None:
    """Graduated 10% to 1,000 then 20%: globex's 1,200 under the tiered agreement and initech's 1,200 under
    the partner's other (5%) agreement make 2,400, tiered 100 + 280 = 380, of which the tiered agreement
    earns half (190; 140 on its own); rerunning adds nothing."""
    from billbridge.flows.importing import import_document
    from billbridge.flows.invoice_generation import run_billing
    from billbridge.store.outbound_documents import set_status
    from tests.docs import contract, document

    tiers = {
        "model": "graduated",
        "tiers": [{"up_to": "1000", "unit_price": "0.10"}, {"up_to": None, "unit_price": "0.20"}],
    }
    partner = {"partner_ref": "nw", "name": "NW", "kind": "referral", "entity_ref": "us", "currency": "USD"}
    agreements = [
        {
            "agreement_ref": "tiered",
            "partner_ref": "nw",
            "currency": "USD",
            "tiers": tiers,
            "referrals": [{"customer_ref": "globex", "referred_on": "2026-01-01"}],
        },
        {
            "agreement_ref": "flat5",
            "partner_ref": "nw",
            "currency": "USD",
            "percent": "5",
            "referrals": [{"customer_ref": "initech", "referred_on": "2026-01-01"}],
        },
    ]
    assert not import_document(store, document(contract("C-1"), contract("C-2", customer="initech"))).errors
    assert not import_document(store, {"partners": [partner], "referral_agreements": agreements}).errors
    run_billing(store, date(2026, 1, 1))
    with store.write() as session:
        for n, invoice in enumerate(d for d in list_invoices(session) if d["doc_type"] == "invoice"):
            set_status(session, str(invoice["number"]), "approved", lambda _doc: [])
            mark_sent(session, [int(str(invoice["id"]))])
            total = D(str(invoice["invoice_total"]))
            pay_in_full(
                session, f"p-{n}", str(invoice["number"]), total, date(2026, 1, 20), str(invoice["customer_ref"])
            )
    accrue_fees(store, as_of=date(2026, 2, 1))
    with store.read() as session:
        fees = {a.agreement_ref: a.fee for a in load_accruals(session, partner_ref="nw")}
    assert fees == {"tiered": D("190.00"), "flat5": D("60.00")}
    assert accrue_fees(store, as_of=date(2026, 2, 1)).accrued == 0


def test_a_billed_flat_fee_is_earned_when_the_first_invoice_is_issued(store: Store) -> None:
    """Basis billed, 20% and a 25.00 flat fee: nothing while globex's first invoice is only approved; once
    it is sent (issued), the run accrues 20% of it and the flat fee, dated the invoice's billing date,
    before anything is paid; rerunning adds nothing."""
    from billbridge.flows.importing import import_document
    from billbridge.flows.invoice_generation import run_billing
    from billbridge.store.outbound_documents import set_status
    from tests.docs import contract, document

    partner = {"partner_ref": "nw", "name": "NW", "kind": "referral", "entity_ref": "us", "currency": "USD"}
    agreement = {
        "agreement_ref": "billed",
        "partner_ref": "nw",
        "currency": "USD",
        "basis": "billed",
        "percent": "20",
        "flat_fee": "25.00",
        "referrals": [{"customer_ref": "globex", "referred_on": "2026-01-01"}],
    }
    assert not import_document(store, document(contract("C-1"))).errors
    assert not import_document(store, {"partners": [partner], "referral_agreements": [agreement]}).errors
    run_billing(store, date(2026, 1, 1))
    with store.write() as session:
        [invoice] = [d for d in list_invoices(session) if d["doc_type"] == "invoice"]
        set_status(session, str(invoice["number"]), "approved", lambda _doc: [])
    assert accrue_fees(store, as_of=date(2026, 1, 2)).accrued == 0  # approved, not issued: not billed yet
    with store.write() as session:
        mark_sent(session, [int(str(invoice["id"]))])
    assert accrue_fees(store, as_of=date(2026, 1, 2)).accrued == 2
    with store.read() as session:
        accruals = load_accruals(session, partner_ref="nw")
    total = D(str(invoice["invoice_total"]))
    assert sorted((a.kind, a.occurred_on, a.fee) for a in accruals) == [
        ("fee", date(2026, 1, 1), (total * D("0.20")).quantize(D("0.01"))),
        ("flat_fee", date(2026, 1, 1), D("25.00")),
    ]
    assert accrue_fees(store, as_of=date(2026, 1, 2)).accrued == 0


def test_an_event_in_another_currency_waits_in_quarantine_until_a_rate_is_configured(store: Store) -> None:
    """A USD agreement over globex (USD) and gulf (KWD), basis billed: without a KWD->USD rate gulf's invoice
    is quarantined naming ``currency`` and globex's accrues; with the rate, gulf's accrues at it and its
    entry is resolved; a run after that quarantines nothing and clears nothing more."""
    from billbridge.flows.importing import import_document
    from billbridge.flows.invoice_generation import run_billing
    from billbridge.store import quarantine
    from billbridge.store.outbound_documents import set_status
    from tests.docs import contract, document

    partner = {"partner_ref": "nw", "name": "NW", "kind": "referral", "entity_ref": "us", "currency": "USD"}
    agreement = {
        "agreement_ref": "usd",
        "partner_ref": "nw",
        "currency": "USD",
        "basis": "billed",
        "percent": "10",
        "referrals": [
            {"customer_ref": "globex", "referred_on": "2026-01-01"},
            {"customer_ref": "gulf", "referred_on": "2026-01-01"},
        ],
    }
    kwd = contract("C-2", customer="gulf", entity="kw", currency="KWD")
    assert not import_document(store, document(contract("C-1"), kwd)).errors
    assert not import_document(store, {"partners": [partner], "referral_agreements": [agreement]}).errors
    run_billing(store, date(2026, 1, 1))
    with store.write() as session:
        invoices = {str(d["customer_ref"]): d for d in list_invoices(session) if d["doc_type"] == "invoice"}
        for invoice in invoices.values():
            set_status(session, str(invoice["number"]), "approved", lambda _doc: [])
            mark_sent(session, [int(str(invoice["id"]))])
    gulf = f"doc:{invoices['gulf']['number']}"

    first = accrue_fees(store, as_of=date(2026, 1, 2))
    assert [(p.event_ref, p.field) for p in first.problems] == [(gulf, "currency")]
    with store.read() as session:
        assert [a.customer_ref for a in load_accruals(session, partner_ref="nw")] == ["globex"]
        [entry] = quarantine.list_open(session, source="partner_fees")
    assert (entry["record_key"], entry["field"]) == (f"usd:{gulf}", "currency")

    rated = accrue_fees(store, as_of=date(2026, 1, 2), rates={("KWD", "USD"): D("3.25")})
    assert not rated.problems and rated.accrued == 1
    with store.read() as session:
        [fee] = [a for a in load_accruals(session, partner_ref="nw") if a.customer_ref == "gulf"]
        assert quarantine.list_open(session, source="partner_fees") == []
    kwd_total = D(str(invoices["gulf"]["invoice_total"]))
    assert fee.fee == (kwd_total * D("3.25") * D("0.10")).quantize(D("0.01"))
    again = accrue_fees(store, as_of=date(2026, 1, 2), rates={("KWD", "USD"): D("3.25")})
    assert (again.accrued, again.problems) == (0, [])


def test_a_per_product_agreement_earns_on_its_products_share_of_each_payment(store: Store) -> None:
    """Globex's invoice: platform 1,200.00 and 10 seats at 45.00 (450.00). A 10% agreement on seats only,
    basis collected: a payment of the whole 1,650.00 is split over the invoice's products by their billed
    amounts, seats' 450.00 earns 45.00; a part payment of 330.00 (a fifth) earns 9.00."""
    from billbridge.flows.importing import import_document
    from billbridge.flows.invoice_generation import run_billing
    from billbridge.store.outbound_documents import set_status
    from tests.docs import contract, document

    lines = [
        {"line_ref": "platform", "product_ref": "platform"},
        {"line_ref": "seats", "product_ref": "seats", "quantity": 10},
    ]
    partner = {"partner_ref": "nw", "name": "NW", "kind": "referral", "entity_ref": "us", "currency": "USD"}
    agreement = {
        "agreement_ref": "seats",
        "partner_ref": "nw",
        "currency": "USD",
        "percent": "10",
        "products": ["seats"],
        "referrals": [{"customer_ref": "globex", "referred_on": "2026-01-01"}],
    }
    assert not import_document(store, document(contract("C-1", lines=lines))).errors
    assert not import_document(store, {"partners": [partner], "referral_agreements": [agreement]}).errors
    run_billing(store, date(2026, 1, 1))
    with store.write() as session:
        [invoice] = [d for d in list_invoices(session) if d["doc_type"] == "invoice"]
        assert D(str(invoice["invoice_total"])) == D("1650.00")
        set_status(session, str(invoice["number"]), "approved", lambda _doc: [])
        mark_sent(session, [int(str(invoice["id"]))])
        for ref, amount, day in (("p-1", "330.00", date(2026, 1, 10)), ("p-2", "1320.00", date(2026, 2, 10))):
            pay_in_full(session, ref, str(invoice["number"]), D(amount), day, "globex")
    accrue_fees(store, as_of=date(2026, 3, 1))
    with store.read() as session:
        fees = sorted((a.period, a.base, a.fee) for a in load_accruals(session, partner_ref="nw"))
    assert fees == [("2026-01", D("90.00"), D("9.00")), ("2026-02", D("360.00"), D("36.00"))]
    # What `partners show` and the API report as the referred customer's revenue is the fee's base:
    # seats' 450.00 of the 1,650.00 paid, not all of it.
    from billbridge.store.partner_reports import partner_reports

    with store.read() as session:
        [report] = partner_reports(session, ["nw"])
    [referred] = report.as_dict()["referred_customers"]
    assert (referred["customer_ref"], referred["revenue"], referred["fees"]) == ("globex", "450.00", "45.00")


def test_a_first_run_after_months_of_fees_bills_them_all_once(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """Hooli pays its June invoice (900.00) on 2026-09-10 and its July one (900.00) on 2026-10-05, before
    any monthly run. The first run (2026-12-01, closing November) bills both months' fees and the flat fee:
    (900 + 900) * 20% + 250 = 610.00, on one Bill saying the months it covers; a rerun and December's run
    bill nothing more."""
    documents = billed(store)
    hooli = sorted(
        (d for d in documents if d["customer_ref"] == "hooli" and d["doc_type"] == "invoice"),
        key=lambda d: str(d["billing_date"]),
    )
    june, july = hooli[0], hooli[1]
    assert (D(str(june["invoice_total"])), D(str(july["invoice_total"]))) == (D("900.00"), D("900.00"))
    with store.write() as session:
        mark_sent(session, [int(str(june["id"])), int(str(july["id"]))])
        for ref, invoice, day in (("p-sep", june, date(2026, 9, 10)), ("p-oct", july, date(2026, 10, 5))):
            pay_in_full(session, ref, str(invoice["number"]), D("900.00"), day, "hooli")
    settings = settings_for(qbo, database_url, tmp_path)
    first = run_partner_fees(store, settings, period="2026-11", as_of=date(2026, 12, 1))
    [closed] = first.closed
    assert (closed["months"], closed["total"]) == ("2026-09 to 2026-11", D("610.00"))
    [bill] = qbo.company.all("Bill")
    assert bill["TotalAmt"] == D("610.00")
    assert all("2026-09 to 2026-11" in line["Description"] for line in bill["Line"])

    again = run_partner_fees(store, settings, period="2026-11", as_of=date(2026, 12, 1))
    assert (again.accrued, again.closed, again.pushed) == (0, [], {})
    december = run_partner_fees(store, settings, period="2026-12", as_of=date(2027, 1, 1))
    assert [(c["months"], c["total"], c["number"]) for c in december.closed] == [("2026-12", D(0), None)]
    assert len(qbo.company.all("Bill")) == 1
    with store.read() as session:
        assert [(s["period"], s["total"]) for s in statements(session, "northwind")] == [
            ("2026-12", D(0)),
            ("2026-11", D("610.00")),
        ]


def test_a_partner_of_kind_both_gets_its_bill_under_a_vendor_name_of_its_own(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """ "Dual Partners" resells (invoiced as a QuickBooks Customer under its name) and refers globex (10%).
    QuickBooks keeps DisplayName unique across customers, vendors and employees, so its Vendor is made as
    "Dual Partners (dual)" and the Bill goes to it; December's refund becomes a VendorCredit to the same
    Vendor, found under that name: one Vendor, one Customer, no failure."""
    from billbridge.flows.approval import approve_drafts
    from billbridge.flows.importing import import_document
    from billbridge.flows.invoice_generation import run_billing
    from billbridge.flows.push import push
    from tests.docs import contract, document

    partner = {
        "partner_ref": "dual",
        "name": "Dual Partners",
        "kind": "both",
        "entity_ref": "us",
        "currency": "USD",
        "discount_percent": "20",
    }
    agreement = {
        "agreement_ref": "dual-ref",
        "partner_ref": "dual",
        "currency": "USD",
        "percent": "10",
        "referrals": [{"customer_ref": "globex", "referred_on": "2026-01-01"}],
    }
    assert not import_document(store, document(contract("DIRECT", contract_start_date="2026-11-01"))).errors
    assert not import_document(store, {"partners": [partner], "referral_agreements": [agreement]}).errors
    resold = contract("RS", customer="initech", contract_start_date="2026-11-01", reseller_ref="dual")
    assert not import_document(store, document(resold, with_reference=False)).errors
    settings = settings_for(qbo, database_url, tmp_path)
    run_billing(store, date(2026, 11, 2))
    approve_drafts(store, ["quickbooks"])
    assert push(store, settings, "quickbooks").outcomes == {"created": 2}
    assert sorted(c["DisplayName"] for c in qbo.company.all("Customer")) == ["Dual Partners", "Globex"]
    with store.write() as session:
        invoice = next(d for d in list_invoices(session) if d["customer_ref"] == "globex")
        total = D(str(invoice["invoice_total"]))
        pay_in_full(session, "p-1", str(invoice["number"]), total, date(2026, 11, 10), "globex")
    summary = run_partner_fees(store, settings, period="2026-11", as_of=date(2026, 12, 1))
    assert summary.pushed == {"created": 1}
    [vendor] = qbo.company.all("Vendor")
    [bill] = qbo.company.all("Bill")
    assert vendor["DisplayName"] == "Dual Partners (dual)" and vendor["Notes"] == "Name in billbridge: Dual Partners"
    assert bill["VendorRef"]["value"] == vendor["Id"] and bill["TotalAmt"] == (total / 10).quantize(D("0.01"))

    with store.write() as session:
        pay_in_full(session, "r-1", str(invoice["number"]), -total, date(2026, 12, 3), "globex")
    assert run_partner_fees(store, settings, period="2026-12", as_of=date(2027, 1, 1)).pushed == {"created": 1}
    [credit] = qbo.company.all("VendorCredit")
    assert credit["VendorRef"]["value"] == vendor["Id"] and len(qbo.company.all("Vendor")) == 1
    with store.read() as session:
        assert [s["status"] for s in statements(session, "dual")] == ["credited", "billed"]
        assert [p for p in outbox.pending(session) if p["topic"] == TOPIC] == []


def test_a_vendor_whose_names_are_both_taken_fails_naming_who_can_hold_them(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """An employee holds "Dual Partners" and a customer "Dual Partners (dual)": the Bill fails, the error
    names both vendor names and blames a customer, an employee or an inactive vendor (not "a vendor")."""
    from billbridge.billing.partner_fees import StatementLine, partner_bill
    from billbridge.billing.partner_fees import statement as fee_statement

    qbo.company.create("Employee", {"DisplayName": "Dual Partners"})
    qbo.company.create("Customer", {"DisplayName": "Dual Partners (dual)"})
    of = fee_statement("dual", "2026-11", "USD", [])
    of = type(of)(of.partner_ref, of.period, of.currency, (StatementLine("globex", D(100), D(10)),), D(10))
    bill = partner_bill(7, "Dual Partners", None, 30, of)
    connector = quickbooks_connector(store, settings_for(qbo, database_url, tmp_path))
    try:
        [result] = connector.push_bills([bill])
    finally:
        connector.close()
    assert result.status == "failed" and qbo.company.all("Vendor") == [] and qbo.company.all("Bill") == []
    assert "'Dual Partners' and 'Dual Partners (dual)'" in str(result.error)
    assert "a customer or an employee" in str(result.error) and "an inactive vendor" in str(result.error)


def test_a_payment_deleted_in_quickbooks_reverses_its_fee_through_reconciliation(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """Hooli (referred by northwind: 20% and a 250.00 flat fee) pays its June invoice (900.00) in QuickBooks on
    2026-11-20: reconciliation records it and the run accrues 180.00 and 250.00. The bookkeeper deletes the
    Payment in QuickBooks: reconciliation undoes it here, and the next run reverses both fees, once."""
    from billbridge.flows.push import push
    from billbridge.flows.reconcile import reconcile
    from billbridge.store import external_refs

    settings = settings_for(qbo, database_url, tmp_path)
    documents = billed(store)
    push(store, settings, "quickbooks")
    june = min(
        (d for d in documents if d["customer_ref"] == "hooli" and d["doc_type"] == "invoice"),
        key=lambda d: str(d["billing_date"]),
    )
    assert D(str(june["invoice_total"])) == D("900.00")
    with store.read() as session:
        qbo_id = external_refs.get_external_id(session, "quickbooks", "invoice", int(str(june["id"])))
    assert qbo_id is not None
    payment = qbo.company.receive_payment({qbo_id: D("900.00")}, ref="CHK-77", txn_date="2026-11-20")
    assert reconcile(store, settings, "quickbooks").outcomes.get("matched") == 1
    accrue_fees(store, as_of=date(2026, 11, 21))
    with store.read() as session:
        earned = sorted((a.kind, a.period, a.fee) for a in load_accruals(session, partner_ref="northwind"))
    assert earned == [("fee", "2026-11", D("180.00")), ("flat_fee", "2026-11", D("250.00"))]

    current = qbo.company.get("Payment", payment["Id"])
    qbo.company.delete("Payment", {"Id": current["Id"], "SyncToken": current["SyncToken"]})
    amended = reconcile(store, settings, "quickbooks")
    assert amended.outcomes.get("amended") == 1
    assert amended.fees is not None and amended.fees.summary is not None and amended.fees.summary.accrued == 2
    assert accrue_fees(store, as_of=date(2026, 11, 28)).accrued == 0  # reconciliation accrued them
    with store.read() as session:
        accruals = load_accruals(session, partner_ref="northwind")
    reversed_ = sorted((a.kind, a.fee) for a in accruals if a.fee < 0)
    assert reversed_ == [("fee", D("-180.00")), ("flat_fee", D("-250.00"))]
    assert sum((a.fee for a in accruals), D(0)) == 0
    assert accrue_fees(store, as_of=date(2026, 11, 29)).accrued == 0


def test_twenty_percent_for_twelve_months_through_the_store_upgrade_refund_and_credit_note(store: Store) -> None:
    """The first worked example, run through the store and the monthly close. Globex (referred 2026-06-01,
    20% for 12 months, on what it pays) pays 900.00 in June, July and August; upgraded from 20 to 35 seats
    on 2026-08-16, September's invoice is 1,923.38, paid, and 300.00 of it refunded; cancelled on
    2026-09-15, it gets a credit note of 787.50, issued: on the collected basis that moves no fee until
    the money moves, refunded in October (-157.50). Statements: 180.00, 180.00, 180.00,
    (1,923.38 - 300.00) x 20% = 324.68, -157.50."""
    from billbridge.flows.importing import import_document
    from billbridge.flows.invoice_generation import run_billing
    from billbridge.store.outbound_documents import set_status
    from tests.docs import contract, document

    seats = lambda n: [{"line_ref": "seats", "product_ref": "seats", "quantity": n}]  # noqa: E731
    start = {"contract_start_date": "2026-06-01"}
    partner = {"partner_ref": "nw", "name": "NW", "kind": "referral", "entity_ref": "us", "currency": "USD"}
    agreement = {
        "agreement_ref": "nw-20",
        "partner_ref": "nw",
        "currency": "USD",
        "percent": "20",
        "months": 12,
        "referrals": [{"customer_ref": "globex", "referred_on": "2026-06-01"}],
    }
    assert not import_document(store, document(contract("C-1", lines=seats("20"), **start))).errors
    assert not import_document(store, {"partners": [partner], "referral_agreements": [agreement]}).errors

    def issue(as_of: date) -> dict[str, Any]:
        """Bill to ``as_of`` and issue what it made; the documents by number."""
        run_billing(store, as_of)
        with store.write() as session:
            documents = {str(d["number"]): d for d in list_invoices(session)}
            for number, doc in documents.items():
                if doc["status"] == "draft":
                    set_status(session, number, "approved", lambda _doc: [])
                    mark_sent(session, [int(str(doc["id"]))])
        with store.read() as session:
            return {str(d["number"]): d for d in list_invoices(session)}

    def pay(ref: str, number: str, amount: str, day: date) -> None:
        with store.write() as session:
            pay_in_full(session, ref, number, D(amount), day, "globex")

    def close(period: str, as_of: date) -> Decimal:
        accrue_fees(store, as_of=as_of)
        [closed] = close_period(store, period).closed
        return D(closed["total"])

    issue(date(2026, 8, 1))
    totals = []
    for n, period in enumerate(("2026-06", "2026-07", "2026-08"), start=1):
        pay(f"p-{n}", f"US-INV-{n}", "900.00", date(2026, 5 + n, 20))
        totals.append(close(period, date(2026, 6 + n, 1)))
    import_document(store, document(contract("C-1", lines=seats("35"), effective_date="2026-08-16", **start)))
    september = issue(date(2026, 9, 1))["US-INV-4"]
    assert D(str(september["invoice_total"])) == D("1923.38")
    pay("p-4", "US-INV-4", "1923.38", date(2026, 9, 20))
    pay("r-4", "US-INV-4", "-300.00", date(2026, 9, 25))
    cancelled = contract("C-1", lines=seats("35"), effective_date="2026-09-16", contract_end_date="2026-09-15", **start)
    import_document(store, document(cancelled))
    credit = issue(date(2026, 10, 1))["US-CN-1"]
    assert (credit["doc_type"], D(str(credit["invoice_total"])), credit["status"]) == (
        "credit_note",
        D("-787.50"),
        "sent",
    )
    before = accrue_fees(store, as_of=date(2026, 10, 1))
    assert before.fees == {"USD": D("324.68")}  # September's payment and refund: the credit note adds nothing
    totals.append(close("2026-09", date(2026, 10, 1)))
    assert accrue_fees(store, as_of=date(2026, 10, 2)).accrued == 0  # issued, not refunded: no fee moves
    pay("r-cn-1", "US-INV-4", "-787.50", date(2026, 10, 5))  # the credit paid back: now the fee moves
    totals.append(close("2026-10", date(2026, 11, 1)))
    assert totals == [D("180.00"), D("180.00"), D("180.00"), D("324.68"), D("-157.50")]
    assert accrue_fees(store, as_of=date(2026, 11, 2)).accrued == 0


def test_the_configured_rate_reaches_the_run_and_a_later_rate_moves_only_new_events(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    """``partner_fee_rates`` in the settings (``Settings.fee_rates()``) is the rate ``run_partner_fees``
    converts at: gulf's KWD invoice accrues 10% at 3.25. With the rate changed to 3.30 (kept in the store
    with each accrual, not re-read), a rerun adds nothing and only gulf's next invoice accrues at 3.30."""
    from billbridge.flows.importing import import_document
    from billbridge.flows.invoice_generation import run_billing
    from billbridge.settings import Settings
    from billbridge.store.outbound_documents import set_status
    from tests.docs import contract, document

    partner = {"partner_ref": "nw", "name": "NW", "kind": "referral", "entity_ref": "us", "currency": "USD"}
    agreement = {
        "agreement_ref": "usd",
        "partner_ref": "nw",
        "currency": "USD",
        "basis": "billed",
        "percent": "10",
        "referrals": [{"customer_ref": "gulf", "referred_on": "2026-01-01"}],
    }
    assert not import_document(store, document(contract("C-2", customer="gulf", entity="kw", currency="KWD"))).errors
    assert not import_document(store, {"partners": [partner], "referral_agreements": [agreement]}).errors

    def issue(as_of: date) -> list[Decimal]:
        run_billing(store, as_of)
        with store.write() as session:
            drafts = [d for d in list_invoices(session) if d["status"] == "draft"]
            for invoice in drafts:
                set_status(session, str(invoice["number"]), "approved", lambda _doc: [])
                mark_sent(session, [int(str(invoice["id"]))])
        return [D(str(d["invoice_total"])) for d in drafts]

    def settings(rate: str) -> Settings:
        return Settings(database_url=database_url, data_dir=tmp_path, partner_fee_rates={"KWD/USD": rate})

    [january] = issue(date(2026, 1, 1))
    first = run_partner_fees(store, settings("3.25"), period="2026-01", as_of=date(2026, 2, 1))
    assert first.problems == [] and first.fees == {"USD": (january * D("3.25") / 10).quantize(D("0.01"))}
    assert run_partner_fees(store, settings("3.30"), period="2026-01", as_of=date(2026, 2, 1)).accrued == 0
    [february] = issue(date(2026, 2, 1))
    second = run_partner_fees(store, settings("3.30"), period="2026-02", as_of=date(2026, 3, 1))
    assert (second.accrued, second.fees) == (1, {"USD": (february * D("3.30") / 10).quantize(D("0.01"))})
    with store.read() as session:
        kept = sorted((a.period, a.source_currency, a.rate) for a in load_accruals(session, partner_ref="nw"))
    assert kept == [("2026-01", "KWD", D("3.25")), ("2026-02", "KWD", D("3.30"))]


def test_the_partner_fees_artifact_says_what_the_run_did() -> None:
    """The ``partner-fees`` artifact's text: fees accrued per currency (in its minor units), each closed
    statement with the months it covers and its Bill, the statements not closed, the Bills pushed and the
    events that could not accrue (a ``|`` in a message cannot break the list); the statement e-mails
    made and sent, and why one waits."""
    from collections import Counter

    from billbridge.billing.partner_fees import FeeProblem
    from billbridge.flows.messages import MessagesSent
    from billbridge.flows.outbox_relay import RelaySummary
    from billbridge.flows.partner_fees import FeeSummary, fees_markdown

    summary = FeeSummary(
        accrued=3,
        fees={"USD": D("430"), "KWD": D("1.5")},
        problems=[FeeProblem("usd", "doc:KW-INV-1", "currency", "no rate KWD->USD | configure one")],
        closed=[
            {"partner_ref": "nw", "period": "2026-11", "months": "2026-09 to 2026-11", "currency": "USD",
             "total": D("430"), "number": "PF-2026-11-1"},
            {"partner_ref": "zero", "period": "2026-11", "months": "2026-11", "currency": "KWD", "total": D(0),
             "number": None},
        ],
        skipped=[{"partner_ref": "old", "period": "2026-11", "reason": "a later month, 2026-12, is closed already"}],
        pushed=Counter({"created": 1}),
        statements=Counter({"queued": 1, "waiting_contact": 1}),
        waiting=["partner zero: field email: no e-mail address | none"],
        sent=MessagesSent(RelaySummary("message.email", outcomes=Counter({"partner_statement": 1, "invoice": 2}))),
    )  # fmt: skip
    assert fees_markdown(summary) == (
        "# Partner fees\n"
        "\n"
        "Accrued: 3 new fee(s) or reversal(s).\n"
        "- 1.500 KWD\n"
        "- 430.00 USD\n"
        "\n"
        "| partner | months | total | bill |\n"
        "|---|---|---:|---|\n"
        "| nw | 2026-09 to 2026-11 | 430.00 USD | PF-2026-11-1 |\n"
        "| zero | 2026-11 | 0.000 KWD | - |\n"
        "\n"
        "## Statements not closed\n"
        "\n"
        "- old 2026-11: a later month, 2026-12, is closed already\n"
        "\n"
        "Bills: created 1\n"
        "\n"
        "Statements sent to partners: 1 (e-mails made: queued 1, waiting_contact 1).\n"
        "- waiting: partner zero: field email: no e-mail address / none\n"
        "\n"
        "## Events that could not accrue\n"
        "\n"
        "- usd: event doc:KW-INV-1: currency: no rate KWD->USD / configure one\n"
    )


def test_a_refund_after_the_fee_window_reverses_the_fee_its_payment_earned(store: Store) -> None:
    """Hooli (referred 2026-01-15, 20% for 12 months) pays in November 2026, in the window; refunded on
    2027-02-01, after the window closed, the store links the refund to the invoice it pays back, so
    the fee that payment earned is reversed (it used to be judged by the refund's date: nothing)."""
    number = hooli_paid(store)
    accrue_fees(store, as_of=date(2026, 12, 1))
    with store.read() as session:
        [fee] = [a.fee for a in load_accruals(session, partner_ref="northwind") if a.kind == "fee"]
        total = next(D(str(d["invoice_total"])) for d in list_invoices(session) if d["number"] == number)
    with store.write() as session:
        pay_in_full(session, "stripe:re_hooli_late", number, -total, date(2027, 2, 1), "hooli")
    accrue_fees(store, as_of=date(2027, 2, 2))
    with store.read() as session:
        february = load_accruals(session, partner_ref="northwind", period="2027-02")
    assert sorted((a.kind, a.fee) for a in february) == [("fee", -fee), ("flat_fee", D("-250.00"))]
    assert accrue_fees(store, as_of=date(2027, 2, 3)).accrued == 0


def test_a_referred_customer_buying_through_a_reseller_earns_on_its_contracts_share(store: Store) -> None:
    """Globex (referred by NW, 20%) and Initech buy the platform (1,200 list) through a reseller at 25%
    off: one invoice of 1,800.00 to the reseller, 900.00 per end customer. Paid in full, NW earns 20% of
    Globex's 900.00 = 180.00 (it used to earn nothing: the invoice's customer is the reseller); a refund
    of 600.00 on the invoice is split 300.00 per end customer and reverses 60.00."""
    from billbridge.flows.importing import import_document
    from billbridge.flows.invoice_generation import run_billing
    from billbridge.store.outbound_documents import set_status
    from tests.docs import REFERENCE, contract

    partners = [
        {"partner_ref": "resel", "name": "Resel", "kind": "reseller", "entity_ref": "us", "currency": "USD"}
        | {"discount_percent": "25"},
        {"partner_ref": "nw", "name": "NW", "kind": "referral", "entity_ref": "us", "currency": "USD"},
    ]
    agreement = {"agreement_ref": "nw-20", "partner_ref": "nw", "currency": "USD", "percent": "20"}
    agreement["referrals"] = [{"customer_ref": "globex", "referred_on": "2026-01-01"}]
    resold = [contract("R-1", reseller_ref="resel"), contract("R-2", customer="initech", reseller_ref="resel")]
    document = {**REFERENCE, "partners": partners, "referral_agreements": [agreement], "contracts": resold}
    assert not import_document(store, document).errors
    run_billing(store, date(2026, 1, 1))
    with store.write() as session:
        [invoice] = list_invoices(session)
        set_status(session, str(invoice["number"]), "approved", lambda _doc: [])
        mark_sent(session, [int(str(invoice["id"]))])
    assert (invoice["customer_ref"], D(str(invoice["invoice_total"]))) == ("resel", D("1800.00"))

    def pay(ref: str, amount: str, day: date) -> None:
        with store.write() as session:
            pay_in_full(session, ref, str(invoice["number"]), D(amount), day, "resel")

    pay("p-1", "1800.00", date(2026, 1, 20))
    assert accrue_fees(store, as_of=date(2026, 2, 1)).fees == {"USD": D("180.00")}
    pay("r-1", "-600.00", date(2026, 2, 10))
    assert accrue_fees(store, as_of=date(2026, 2, 11)).fees == {"USD": D("-60.00")}
    with store.read() as session:
        accruals = load_accruals(session, partner_ref="nw")
    assert [(a.customer_ref, a.base, a.fee) for a in accruals] == [
        ("globex", D("900.00"), D("180.00")),
        ("globex", D("-300.00"), D("-60.00")),
    ]
    assert accrue_fees(store, as_of=date(2026, 2, 12)).accrued == 0


def test_reconciliation_accrues_the_fees_its_payments_earn_once_and_never_fails_for_them(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hooli (northwind: 20% and a 250.00 flat fee) pays its June invoice (900.00) in QuickBooks:
    reconciliation records it and accrues 180.00 and 250.00 there and then, so `partners fees` shows
    them before any monthly run; reconciling again accrues nothing more. When the accrual fails (an
    agreement stored unreadable), the payment is still recorded and the failure is reported."""
    from sqlalchemy import update
    from typer.testing import CliRunner

    from billbridge.app.cli import app
    from billbridge.flows.push import push
    from billbridge.flows.reconcile import reconcile
    from billbridge.store import external_refs
    from billbridge.store.partner_models import ReferralAgreement

    settings = settings_for(qbo, database_url, tmp_path)
    documents = billed(store)
    push(store, settings, "quickbooks")
    june = min(
        (d for d in documents if d["customer_ref"] == "hooli" and d["doc_type"] == "invoice"),
        key=lambda d: str(d["billing_date"]),
    )
    with store.read() as session:
        qbo_id = external_refs.get_external_id(session, "quickbooks", "invoice", int(str(june["id"])))
    assert qbo_id is not None
    qbo.company.receive_payment({qbo_id: D("900.00")}, ref="CHK-77", txn_date="2026-11-20")
    summary = reconcile(store, settings, "quickbooks")
    assert summary.outcomes.get("matched") == 1
    assert summary.as_dict()["partner_fees"] == {"accrued": 2, "fees": {"USD": "430.00"}, "problems": 0}
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["partners", "fees", "--period", "2026-11", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["partner_ref"]: row for row in json.loads(result.stdout)}
    assert rows["northwind"]["accrued"] == "430.00"
    assert reconcile(store, settings, "quickbooks").fees is None  # nothing new recorded: nothing to accrue
    assert accrue_fees(store, as_of=date(2026, 11, 21)).accrued == 0

    with store.write() as session:  # an agreement the store can no longer read
        session.execute(update(ReferralAgreement).values(terms={"agreement_ref": "broken"}))
    july = sorted(
        (d for d in documents if d["customer_ref"] == "hooli" and d["doc_type"] == "invoice"),
        key=lambda d: str(d["billing_date"]),
    )[1]
    with store.read() as session:
        july_id = external_refs.get_external_id(session, "quickbooks", "invoice", int(str(july["id"])))
    assert july_id is not None
    qbo.company.receive_payment({july_id: D(str(july["invoice_total"]))}, ref="CHK-78", txn_date="2026-11-21")
    failed = reconcile(store, settings, "quickbooks")
    assert failed.outcomes.get("matched") == 1  # recorded: the reconciliation stands
    assert failed.fees is not None and failed.fees.error is not None and "ValidationError" in failed.fees.error
    assert "Partner fees not accrued" in failed.markdown()


def test_a_push_that_issues_invoices_accrues_the_billed_fees_once(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """Basis billed, 20%: pushing globex's first invoice to QuickBooks issues it, and the push accrues
    the fee there and then (no monthly run yet); pushing again accrues nothing more."""
    from billbridge.flows.approval import approve_drafts
    from billbridge.flows.importing import import_document
    from billbridge.flows.invoice_generation import run_billing
    from billbridge.flows.push import push
    from tests.docs import contract, document

    partner = {"partner_ref": "nw", "name": "NW", "kind": "referral", "entity_ref": "us", "currency": "USD"}
    agreement = {"agreement_ref": "billed", "partner_ref": "nw", "currency": "USD", "basis": "billed"}
    agreement |= {"percent": "20", "referrals": [{"customer_ref": "globex", "referred_on": "2026-01-01"}]}
    assert not import_document(store, document(contract("C-1"))).errors
    assert not import_document(store, {"partners": [partner], "referral_agreements": [agreement]}).errors
    run_billing(store, date(2026, 1, 1))
    approve_drafts(store, ["quickbooks"])
    settings = settings_for(qbo, database_url, tmp_path)
    summary = push(store, settings, "quickbooks")
    assert summary.outcomes and not summary.notes
    with store.read() as session:
        [invoice] = [d for d in list_invoices(session) if d["doc_type"] == "invoice"]
        accruals = load_accruals(session, partner_ref="nw")
    assert [(a.event_ref, a.fee) for a in accruals] == [
        (f"doc:{invoice['number']}", (D(str(invoice["invoice_total"])) * D("0.20")).quantize(D("0.01")))
    ]
    push(store, settings, "quickbooks")
    assert accrue_fees(store, as_of=date(2026, 1, 2)).accrued == 0


def test_removing_a_referral_keeps_the_fees_it_earned_and_reports_it(store: Store) -> None:
    """Hooli (northwind: 20% for 12 months and a 250.00 flat fee) pays in November; the statement closes.
    The agreement is then re-imported without hooli's referral: the next run reverses nothing (it used
    to reverse both fees, closed statement or not), reports the removal, and hooli's later payments earn
    nothing; a refund of the November payment still reverses what that payment earned."""
    from billbridge.flows.importing import import_document

    number = hooli_paid(store)
    accrue_fees(store, as_of=date(2026, 12, 1))
    [november] = close_period(store, "2026-11").closed
    with store.read() as session:
        earned = sorted((a.kind, a.fee) for a in load_accruals(session, partner_ref="northwind"))
        total = next(D(str(d["invoice_total"])) for d in list_invoices(session) if d["number"] == number)
    fee = (total * D("0.20")).quantize(D("0.01"))
    assert earned == [("fee", fee), ("flat_fee", D("250.00"))] and november["total"] == fee + D("250.00")

    agreement = {
        "agreement_ref": "northwind-2026",
        "partner_ref": "northwind",
        "currency": "USD",
        "percent": "20",
        "months": 12,
        "flat_fee": "250.00",
        "referrals": [{"customer_ref": "initech", "referred_on": "2026-02-01", "contract_ref": "C-101-initech"}],
    }
    assert not import_document(store, {"referral_agreements": [agreement]}).errors
    run = accrue_fees(store, as_of=date(2026, 12, 2))
    assert run.accrued == 0
    assert {"agreement_ref": "northwind-2026", "customer_ref": "hooli"} in run.removed
    assert "## Referrals removed" in fees_markdown(run)

    with store.write() as session:
        pay_in_full(session, "stripe:re_hooli_removed", number, -total, date(2026, 12, 10), "hooli")
    accrue_fees(store, as_of=date(2026, 12, 11))
    with store.read() as session:
        december = sorted((a.kind, a.fee) for a in load_accruals(session, partner_ref="northwind", period="2026-12"))
    assert december == [("fee", -fee), ("flat_fee", D("-250.00"))]
