"""Auto-charge through Stripe and reconciliation from Stripe and QuickBooks, end to end against the
sandboxes: declines wait with their reason, a new card pays, every payment is recorded once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import update

from billbridge.flows.approval import approve_drafts
from billbridge.flows.collect import collect
from billbridge.flows.importing import import_file
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.mirror import mirror_payments
from billbridge.flows.push import push, stripe_connector
from billbridge.flows.reconcile import reconcile
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.sandbox.stripe import RunningStripe, start_seeded
from billbridge.sandbox.stripe import payments as refunds
from billbridge.settings import Settings, StripeSettings
from billbridge.store import external_refs, messages, outbox
from billbridge.store.db import Store
from billbridge.store.invoices import list_invoices
from tests.flows.test_push_quickbooks import settings_for
from tests.settings_env import as_environment

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "contracts"


@pytest.fixture
def stripe_sandbox() -> Iterator[RunningStripe]:
    with start_seeded() as running:
        yield running


def bill_and_approve(store: Store, targets: list[str]) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        import_file(store, path)
    run_billing(store, date(2026, 11, 22))
    approve_drafts(store, targets)


def stripe_only(stripe_sandbox: RunningStripe, database_url: str, data_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        stripe=StripeSettings(api_key=SecretStr(stripe_sandbox.api_key), base_url=stripe_sandbox.url),
    )


def card_on_file(settings: Settings, card: str = "pm_card_visa") -> Any:
    """globex paying its Stripe invoices with ``card``; the Stripe connector."""
    connector = stripe_connector(settings)
    connector.attach_default_payment_method(connector.find_customer("globex"), card)
    return connector


def pushed_to_stripe(store: Store, settings: Settings, card: str) -> Any:
    """The examples billed, the auto-charge invoices in Stripe, globex paying with ``card``; the connector."""
    bill_and_approve(store, ["stripe"])
    push(store, settings, "stripe")
    return card_on_file(settings, card)


def pushed_to_both(
    store: Store, stripe_sandbox: RunningStripe, qbo: RunningQuickBooks, database_url: str, data_dir: Path
) -> tuple[Settings, Any]:
    """The examples billed and in QuickBooks, the auto-charge ones in Stripe too, globex paying by
    card; the settings (Stripe payments entered in QuickBooks) and the Stripe connector."""
    settings = settings_for(qbo, database_url, data_dir).model_copy(
        update={
            "stripe": StripeSettings(api_key=SecretStr(stripe_sandbox.api_key), base_url=stripe_sandbox.url),
            "push_targets": ["quickbooks", "stripe"],
        }
    )
    bill_and_approve(store, ["quickbooks", "stripe"])
    push(store, settings, "quickbooks")
    push(store, settings, "stripe")
    return settings, card_on_file(settings)


def statuses(store: Store, contract_ref: str) -> set[str]:
    with store.read() as session:
        return {str(d["status"]) for d in list_invoices(session, contract_ref=contract_ref)}


def test_auto_charge_declines_then_pays_and_reconciles_once(
    store: Store, stripe_sandbox: RunningStripe, database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        stripe=StripeSettings(api_key=SecretStr(stripe_sandbox.api_key), base_url=stripe_sandbox.url),
    )
    bill_and_approve(store, ["stripe"])  # only the auto-charge contract's invoices go to Stripe
    with store.read() as session:
        auto = list_invoices(session, contract_ref="C-100-globex")
    assert auto and push(store, settings, "stripe").outcomes == {"created": len(auto)}
    # The fewest calls: the customer searched for and created once, each invoice created, its lines
    # added in one call, finalized.
    calls = stripe_sandbox.sandbox.faults
    assert calls.total_calls("customers/search") == calls.total_calls("^POST /v1/customers$") == 1
    assert calls.total_calls() == 2 + 3 * len(auto)
    assert statuses(store, "C-100-globex") == {"sent"}
    with store.read() as session:
        assert all(external_refs.get_external_id(session, "stripe", "invoice", int(d["id"])) for d in auto)

    connector = stripe_connector(settings)
    customer = connector.find_customer("globex")
    connector.attach_default_payment_method(customer, "pm_card_chargeDeclinedInsufficientFunds")
    declined = collect(store, settings)
    assert declined.outcomes == {"declined": len(auto)}
    with store.read() as session:
        waiting = [w for w in outbox.pending(session) if w["topic"] == "collect.stripe"]
        notices = messages.listing(session, kind="dunning")
    assert len(waiting) == len(auto) and all("insufficient_funds" in str(w["last_error"]) for w in waiting)
    assert len(notices) == len(auto)  # each decline's dunning notice, made with it
    assert statuses(store, "C-100-globex") == {"sent"}  # open, not paid
    assert collect(store, settings).outcomes == {}  # the next try waits for the dunning date

    connector.attach_default_payment_method(customer, "pm_card_visa")  # the customer updates the card
    with store.write() as session:
        outbox.retry_now(session, [w["id"] for w in waiting])
    assert collect(store, settings).outcomes == {"charged": len(auto)}

    first = reconcile(store, settings, "stripe")
    assert first.outcomes == {"matched": len(auto)}, first.unmatched
    assert statuses(store, "C-100-globex") == {"paid"}
    again = reconcile(store, settings, "stripe")
    assert again.outcomes.get("matched", 0) == 0  # nothing recorded twice
    with store.read() as session:
        paid = list_invoices(session, contract_ref="C-100-globex")
        receipts = messages.listing(session, kind="receipt")
    assert all(d["amount_paid"] == d["invoice_total"] for d in paid)
    assert len(receipts) == len(auto)  # one receipt a charge, made when it was reconciled, none twice


def test_quickbooks_payments_reconcile_in_full_and_in_part_once(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(qbo, database_url, tmp_path)
    bill_and_approve(store, ["quickbooks"])
    push(store, settings, "quickbooks")
    with store.read() as session:
        documents = [d for d in list_invoices(session) if d["doc_type"] == "invoice"]
        qbo_id = {
            str(d["number"]): external_refs.get_external_id(session, "quickbooks", "invoice", int(d["id"]))
            for d in documents
        }
    full, part, written = documents[0], documents[1], documents[2]
    paid_in_full = qbo.company.receive_payment(
        {qbo_id[str(full["number"])]: Decimal(str(full["invoice_total"]))}, ref="CHK-1001"
    )
    half = (Decimal(str(part["invoice_total"])) / 2).quantize(Decimal("0.01"))
    paid_in_part = qbo.company.receive_payment({qbo_id[str(part["number"])]: half}, ref="CHK-1002")
    # Entered by hand without applying it to an invoice, the number only written in the memo.
    customer = qbo.company.get("Invoice", str(qbo_id[str(written["number"])]))["CustomerRef"]
    for note in (f"Remittance advice: invoice {written['number']}, thank you", "no idea what this pays"):
        qbo.company.create(
            "Payment",
            {"CustomerRef": customer, "TotalAmt": Decimal(str(written["invoice_total"])), "PrivateNote": note},
        )

    summary = reconcile(store, settings, "quickbooks")
    assert summary.outcomes == {"matched": 3, "unmatched": 1}, summary.unmatched
    assert [reason for _, reason in summary.unmatched] == [
        "names no invoice (linked or written) and no customer we know"
    ]
    with store.read() as session:
        by_number = {str(d["number"]): d for d in list_invoices(session)}
    assert by_number[str(full["number"])]["status"] == "paid"
    assert by_number[str(part["number"])]["status"] == "partially_paid"
    assert by_number[str(part["number"])]["amount_paid"] == half
    assert by_number[str(written["number"])]["status"] == "paid"
    assert reconcile(store, settings, "quickbooks").outcomes.get("matched", 0) == 0

    # The bookkeeper corrects them in QuickBooks: the part payment was for the whole invoice, the
    # full one is voided (its amounts zeroed). Each is recorded again as it now is, once.
    whole = Decimal(str(part["invoice_total"]))
    line = {"Amount": whole, "LinkedTxn": [{"TxnId": qbo_id[str(part["number"])], "TxnType": "Invoice"}]}
    for payment, total, lines in ((paid_in_part, whole, [line]), (paid_in_full, Decimal(0), [])):
        current = qbo.company.get("Payment", payment["Id"])
        qbo.company.update(
            "Payment",
            {"Id": current["Id"], "SyncToken": current["SyncToken"], "sparse": True, "TotalAmt": total, "Line": lines},
        )
    summary = reconcile(store, settings, "quickbooks")
    assert summary.outcomes.get("amended") == 2 and summary.unmatched == [], summary
    with store.read() as session:
        by_number = {str(d["number"]): d for d in list_invoices(session)}
    assert (by_number[str(part["number"])]["status"], by_number[str(part["number"])]["amount_paid"]) == ("paid", whole)
    assert (by_number[str(full["number"])]["status"], by_number[str(full["number"])]["amount_paid"]) == ("sent", 0)
    again = reconcile(store, settings, "quickbooks").outcomes
    assert "amended" not in again and "matched" not in again

    # Deleted in QuickBooks: only change data capture says so. What it paid opens again here, once.
    noted = next(p for p in qbo.company.all("Payment") if "Remittance" in str(p.get("PrivateNote")))
    qbo.company.delete("Payment", {"Id": noted["Id"], "SyncToken": noted["SyncToken"]})
    assert reconcile(store, settings, "quickbooks").outcomes.get("amended") == 1
    with store.read() as session:
        reopened = next(d for d in list_invoices(session) if d["number"] == written["number"])
    assert (reopened["status"], reopened["amount_paid"]) == ("sent", 0)
    assert "amended" not in reconcile(store, settings, "quickbooks").outcomes


def test_stripe_payments_are_entered_in_quickbooks_against_their_invoices_once(
    store: Store, stripe_sandbox: RunningStripe, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    settings, _ = pushed_to_both(store, stripe_sandbox, qbo, database_url, tmp_path)
    with store.read() as session:
        auto = list_invoices(session, contract_ref="C-100-globex")
        qbo_id = {
            str(d["number"]): external_refs.get_external_id(session, "quickbooks", "invoice", int(d["id"]))
            for d in auto
        }
    assert auto and all(qbo_id.values())
    assert collect(store, settings).outcomes == {"charged": len(auto)}
    assert all(qbo.company.get("Invoice", i)["Balance"] > 0 for i in qbo_id.values())  # open in the books

    # Every QuickBooks write loses its answer: the outcome is unknown, the message waits for a retry.
    lost = qbo.faults.add(kind="lost_response", path="/batch$", times=None)
    first = reconcile(store, settings, "stripe")  # records them, then enters them in QuickBooks
    assert first.outcomes == {"matched": len(auto)}
    assert first.mirrored == {"retrying": len(auto)}
    qbo.faults.clear()
    assert lost.hits > 0
    with store.write() as session:
        outbox.retry_now(session, [m["id"] for m in outbox.pending(session)])
    second = mirror_payments(store, settings)
    assert second.outcomes == {"existing": len(auto)}  # found by its note, not entered again

    entered = [p for p in qbo.company.all("Payment") if str(p.get("PrivateNote", "")).startswith("billbridge stripe ")]
    assert len(entered) == len(auto)  # one QuickBooks payment per Stripe payment, despite the lost answers
    linked = {link["TxnId"] for p in entered for line in p["Line"] for link in line["LinkedTxn"]}
    assert linked == set(qbo_id.values())
    assert all(qbo.company.get("Invoice", i)["Balance"] == 0 for i in qbo_id.values())  # paid in the books too

    # Pulling QuickBooks payments back recognises our entries: nothing is recorded twice here.
    with store.read() as session:
        before = sum(Decimal(str(d["amount_paid"])) for d in list_invoices(session))
    assert reconcile(store, settings, "quickbooks").outcomes == {"mirrored": len(auto)}
    with store.read() as session:
        assert sum(Decimal(str(d["amount_paid"])) for d in list_invoices(session)) == before
    assert mirror_payments(store, settings).outcomes == {}
    assert reconcile(store, settings, "stripe").outcomes.get("matched", 0) == 0


def test_stripe_refunds_take_back_from_their_invoices_once(
    store: Store, stripe_sandbox: RunningStripe, database_url: str, tmp_path: Path
) -> None:
    settings = stripe_only(stripe_sandbox, database_url, tmp_path)
    connector = pushed_to_stripe(store, settings, "pm_card_visa")
    collect(store, settings)
    assert set(reconcile(store, settings, "stripe").outcomes) == {"matched"}
    with store.read() as session:
        auto = sorted(list_invoices(session, contract_ref="C-100-globex"), key=lambda d: str(d["number"]))
    assert len(auto) >= 2 and {d["status"] for d in auto} == {"paid"}
    charge_of = {p.invoice_numbers[0]: p.payment_ref for page in connector.pull_payments(None) for p in page.payments}
    part, whole = auto[0], auto[1]
    part_charge, whole_charge = charge_of[str(part["number"])], charge_of[str(whole["number"])]
    refunds.create_refund(stripe_sandbox.sandbox.state, {"charge": part_charge, "amount": "1000"})
    refunds.create_refund(stripe_sandbox.sandbox.state, {"charge": whole_charge})

    summary = reconcile(store, settings, "stripe")
    assert summary.outcomes - Counter(seen_before=summary.outcomes["seen_before"]) == {"refunded": 2}, summary.unmatched
    with store.read() as session:
        after = {str(d["number"]): d for d in list_invoices(session, contract_ref="C-100-globex")}
    assert after[str(part["number"])]["status"] == "partially_paid"
    assert after[str(part["number"])]["amount_paid"] == part["invoice_total"] - Decimal("10.00")
    assert (after[str(whole["number"])]["status"], after[str(whole["number"])]["amount_paid"]) == ("sent", 0)
    assert reconcile(store, settings, "stripe").outcomes.get("refunded", 0) == 0  # each refund once


def test_stripe_refunds_open_their_invoices_again_in_quickbooks_once(
    store: Store, stripe_sandbox: RunningStripe, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """A refund taken off the QuickBooks Payment that entered its charge: the invoice opens again there
    by as much as here, once, whether the refund comes in the charge's own batch or later, and when
    QuickBooks' answer to the update is lost."""
    settings, connector = pushed_to_both(store, stripe_sandbox, qbo, database_url, tmp_path)
    assert collect(store, settings).outcomes.get("charged", 0) >= 2
    with store.read() as session:
        auto = sorted(list_invoices(session, contract_ref="C-100-globex"), key=lambda d: str(d["number"]))
        qbo_id = {
            str(d["number"]): str(external_refs.get_external_id(session, "quickbooks", "invoice", int(d["id"])))
            for d in auto
        }
    charge_of = {p.invoice_numbers[0]: p.payment_ref for page in connector.pull_payments(None) for p in page.payments}
    whole, part = str(auto[0]["number"]), str(auto[1]["number"])
    total = {str(d["number"]): d["invoice_total"] for d in auto}

    # Refunded in full before billbridge even saw the charge: both go to QuickBooks in one batch.
    refunds.create_refund(stripe_sandbox.sandbox.state, {"charge": charge_of[whole]})
    first = reconcile(store, settings, "stripe")
    assert first.outcomes["refunded"] == 1 and first.mirrored == {"created": len(auto), "refunded": 1}

    # Refunded in part later, and QuickBooks' answer to the update is lost: the retry finds it done.
    refunds.create_refund(stripe_sandbox.sandbox.state, {"charge": charge_of[part], "amount": "1000"})
    lost = qbo.faults.add(kind="lost_response", path="/batch$", times=None)
    second = reconcile(store, settings, "stripe")
    assert second.outcomes["refunded"] == 1 and second.mirrored == {"retrying": 1}
    qbo.faults.clear()
    assert lost.hits > 0
    with store.write() as session:
        outbox.retry_now(session, [m["id"] for m in outbox.pending(session)])
    assert mirror_payments(store, settings).outcomes == {"existing": 1}
    assert mirror_payments(store, settings).outcomes == {}

    balance = {n: qbo.company.get("Invoice", i)["Balance"] for n, i in qbo_id.items()}
    assert balance[whole] == total[whole] and balance[part] == Decimal("10.00")
    assert all(balance[n] == 0 for n in qbo_id if n not in (whole, part))
    entered = {p["PrivateNote"].split(" ")[2]: p for p in qbo.company.all("Payment")}
    assert len(entered) == len(auto)  # one QuickBooks payment per charge, refunds taken off it
    assert (entered[charge_of[whole]]["TotalAmt"], entered[charge_of[whole]]["Line"]) == (0, [])
    assert entered[charge_of[part]]["TotalAmt"] == total[part] - Decimal("10.00")
    assert entered[charge_of[part]]["PrivateNote"].startswith(f"billbridge stripe {charge_of[part]} amended re_")
    with store.read() as session:
        here = {str(d["number"]): d["invoice_total"] - d["amount_paid"] for d in list_invoices(session)}
    assert {n: here[n] for n in qbo_id} == balance  # the same receivables in both books

    # Pulling QuickBooks' payments back recognises the updated entries: nothing is recorded again.
    assert reconcile(store, settings, "quickbooks").outcomes == {"mirrored": len(auto)}
    assert reconcile(store, settings, "stripe").outcomes.get("refunded", 0) == 0
    with store.read() as session:
        assert {str(d["number"]): d["invoice_total"] - d["amount_paid"] for d in list_invoices(session)} == here


def test_two_reconciliations_of_the_same_payments_at_once_record_each_once(store: Store) -> None:
    """Two runs of one source (a schedule and a webhook, say) racing over the same pages: neither fails,
    every payment is recorded once and every invoice paid once."""
    import threading

    from sqlalchemy import update

    from billbridge.billing.documents import IncomingPayment
    from billbridge.flows.reconcile import record_pages
    from billbridge.store.models import Invoice
    from billbridge.vendors.contract import PaymentPage

    bill_and_approve(store, ["quickbooks"])
    with store.write() as session:
        session.execute(update(Invoice).values(status="sent"))
    with store.read() as session:
        documents = [d for d in list_invoices(session) if d["doc_type"] == "invoice" and d["invoice_total"] > 0]
    payments = [
        IncomingPayment(
            "bank",
            f"pay-{d['number']}",
            str(d["currency"]),
            Decimal(str(d["invoice_total"])),
            date(2026, 11, 23),
            None,
            (str(d["number"]),),
        )
        for d in documents
    ]
    pages = [PaymentPage(payments[i : i + 5], f"c{i}") for i in range(0, len(payments), 5)]
    barrier, results, errors = threading.Barrier(2), [], []

    def run() -> None:
        try:
            barrier.wait()
            results.append(record_pages(store, "bank", pages))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    matched = sum(r.outcomes["matched"] for r in results)
    assert matched == len(payments) and sum(r.outcomes["seen_before"] for r in results) == len(payments)
    with store.read() as session:
        after = [d for d in list_invoices(session) if d["number"] in {p.invoice_numbers[0] for p in payments}]
    assert all(d["status"] == "paid" and d["amount_paid"] == d["invoice_total"] for d in after)


def test_a_dispute_takes_the_money_back_and_a_won_dispute_pays_the_invoice_again(
    store: Store, stripe_sandbox: RunningStripe, database_url: str, tmp_path: Path
) -> None:
    settings = stripe_only(stripe_sandbox, database_url, tmp_path)
    # Stripe's test card 4000 0000 0000 0259: the payment succeeds, then the cardholder disputes it
    pushed_to_stripe(store, settings, "pm_card_createDispute")
    with store.read() as session:
        auto = {str(d["number"]): d for d in list_invoices(session, contract_ref="C-100-globex")}
    assert collect(store, settings).outcomes == {"charged": len(auto)}
    disputes = stripe_sandbox.sandbox.state.all("dispute")
    assert len(disputes) == len(auto)

    first = reconcile(store, settings, "stripe")
    assert first.outcomes == {"matched": len(auto), "disputed": len(auto)}, first.unmatched
    with store.read() as session:
        after = {str(d["number"]): d for d in list_invoices(session, contract_ref="C-100-globex")}
    assert {d["status"] for d in after.values()} == {"sent"}  # paid, then the money went back: open again
    assert all(d["amount_paid"] == 0 for d in after.values())

    won, lost = disputes[0], disputes[1:]
    refunds.close_dispute(stripe_sandbox.sandbox.state, won["id"], won=True)
    for dispute in lost:
        refunds.close_dispute(stripe_sandbox.sandbox.state, dispute["id"], won=False)
    second = reconcile(store, settings, "stripe")
    assert second.outcomes - Counter(seen_before=second.outcomes["seen_before"]) == {"matched": 1}
    with store.read() as session:
        final = sorted(d["status"] for d in list_invoices(session, contract_ref="C-100-globex"))
    assert final == sorted(["paid"] + ["sent"] * len(lost))  # the lost ones stay open for a person
    third = reconcile(store, settings, "stripe")
    assert set(third.outcomes) <= {"seen_before"}  # every movement recorded once


def test_one_page_sees_what_its_earlier_payments_left_open(store: Store) -> None:
    """In one page: a customer's payment naming no invoice skips the invoice an earlier payment of
    the page paid; two payments split an invoice and the second's excess stays unapplied; a refund
    takes back from an invoice an earlier page paid; a replay of the page's first payment counts once."""
    from sqlalchemy import select, update

    from billbridge.billing.documents import IncomingPayment
    from billbridge.flows.reconcile import record_pages
    from billbridge.store.models import Invoice, Payment
    from billbridge.vendors.contract import PaymentPage

    bill_and_approve(store, ["quickbooks"])
    with store.write() as session:
        session.execute(update(Invoice).values(status="sent"))
    day, D = date(2026, 12, 2), Decimal

    def pay(ref: str, currency: str, amount: str, customer: str | None, *numbers: str) -> IncomingPayment:
        return IncomingPayment("bank", ref, currency, D(amount), day, customer, numbers)

    first = [pay("p0", "USD", "1222.58", "hooli", "US-INV-23")]
    page = [
        pay("a", "USD", "900.00", "hooli", "US-INV-21"),
        pay("b", "USD", "900.00", "hooli"),  # US-INV-21 is paid now: the next 900.00 of hooli's
        pay("c", "USD", "900.00", "hooli"),  # none left
        pay("d", "KWD", "500.000", "gulf-data", "KW-INV-1"),
        pay("e", "KWD", "600.000", "gulf-data", "KW-INV-1"),  # 502.358 left open: 97.642 unapplied
        pay("f", "USD", "-222.58", "hooli", "US-INV-23"),
        pay("a", "USD", "900.00", "hooli", "US-INV-21"),
        pay("h", "KWD", "1002.358", "gulf-data"),  # KW-INV-1 is paid now: KW-INV-2 is the one
    ]
    # A page where every payment names its invoices: the second of two naming one sees the first's.
    last = [pay("x", "USD", "1000.00", None, "US-INV-24"), pay("y", "USD", "1000.00", None, "US-INV-24")]
    pages = [PaymentPage(first, "c0"), PaymentPage(page, "c1"), PaymentPage(last, "c2")]
    # The examples' invoices go back a year: a window that takes them all (the window has its own test).
    summary = record_pages(store, "bank", pages, window_days=400)
    assert summary.outcomes == {
        "matched": 6,
        "unmatched": 1,
        "partly_matched": 2,
        "refunded": 1,
        "seen_before": 1,
    }, summary.unmatched
    assert [ref for ref, _ in summary.unmatched] == ["bank:c", "bank:e", "bank:y"]
    with store.read() as session:
        invoices = {str(d["number"]): (d["status"], d["amount_paid"]) for d in list_invoices(session)}
        unapplied = dict(session.execute(select(Payment.payment_ref, Payment.unapplied_amount)).all())
    assert {n: invoices[n] for n in ("US-INV-21", "US-INV-22", "US-INV-23", "KW-INV-1", "KW-INV-2")} == {
        "US-INV-21": ("paid", D("900.00")),
        "US-INV-22": ("paid", D("900.00")),
        "US-INV-23": ("partially_paid", D("1000.00")),
        "KW-INV-1": ("paid", D("1002.358")),
        "KW-INV-2": ("paid", D("1002.358")),
    }
    assert invoices["KW-INV-3"] == ("sent", D("0.000")) and invoices["US-INV-25"] == ("sent", D("0.00"))
    assert invoices["US-INV-24"] == ("paid", D("1525.00"))
    assert {r: unapplied[f"bank:{r}"] for r in ("a", "b", "c", "e", "h", "x", "y")} == {
        "a": D("0.00"),
        "b": D("0.00"),
        "c": D("900.00"),
        "e": D("97.642"),
        "h": D("0.000"),
        "x": D("0.00"),
        "y": D("475.00"),
    }


def test_a_payment_applied_by_hand_is_queued_for_quickbooks_once_or_said_to_be_there_already(
    store: Store, tmp_path: Path
) -> None:
    """A Stripe payment no invoice took is queued for QuickBooks when a person applies it; one that
    was entered with part of it applied is there already, and the person is told to apply the rest
    there too."""
    from billbridge.billing.documents import IncomingPayment
    from billbridge.flows.reconcile import apply_payment, record_pages
    from billbridge.store.models import Invoice
    from billbridge.vendors.contract import PaymentPage

    bill_and_approve(store, ["quickbooks"])
    with store.write() as session:
        session.execute(update(Invoice).values(status="sent"))
        usd = [d for d in list_invoices(session) if d["currency"] == "USD" and d["invoice_total"] > 0][:2]
    first, second = (str(d["number"]) for d in usd)
    customer, total = str(usd[0]["customer_ref"]), usd[0]["invoice_total"]
    day = date(2026, 11, 23)
    page = [
        IncomingPayment("stripe", "ch_over", "USD", total + 7, day, customer, (first,)),
        IncomingPayment("stripe", "ch_stray", "USD", Decimal("5.00"), day, None),
    ]
    record_pages(store, "stripe", [PaymentPage(page, "c1")], mirror_to=("quickbooks",))
    with store.read() as session:
        queued_before = len(outbox.pending(session, topic="mirror.quickbooks"))
    assert queued_before == 1  # the payment that paid an invoice; the stray one waits for a person

    settings = Settings(database_url="sqlite://", data_dir=tmp_path, push_targets=["quickbooks"])
    stray = apply_payment(store, settings, "stripe:ch_stray", second)
    assert (stray.amount, stray.queued_for) == (Decimal("5.00"), ("quickbooks",))
    over = apply_payment(store, settings, "stripe:ch_over", second)
    assert (over.amount, over.queued_for) == (Decimal("7.00"), ("quickbooks",))
    with store.read() as session:
        pending = outbox.pending(session, topic="mirror.quickbooks")
    assert len(pending) == 3  # the over one's entry, the stray one's entry, the application to its entry
    with store.read() as session:
        paid = next(d for d in list_invoices(session) if d["number"] == second)["amount_paid"]
    assert paid == Decimal("12.00")


def test_money_applied_by_hand_reaches_the_quickbooks_entry_once(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """A Stripe payment entered in QuickBooks with money left unapplied; a person applies the rest to
    another invoice here: the entry there gets the same line, once, though QuickBooks' answer is lost."""
    from billbridge.billing.documents import IncomingPayment
    from billbridge.flows.reconcile import apply_payment, record_pages
    from billbridge.vendors.contract import PaymentPage

    settings = settings_for(qbo, database_url, tmp_path).model_copy(update={"push_targets": ["quickbooks"]})
    bill_and_approve(store, ["quickbooks"])
    push(store, settings, "quickbooks")
    with store.read() as session:
        usd = [d for d in list_invoices(session) if d["currency"] == "USD" and d["invoice_total"] > 0]
        customer = next(
            c for c in {str(d["customer_ref"]) for d in usd} if sum(d["customer_ref"] == c for d in usd) > 1
        )
        a, b = [d for d in usd if d["customer_ref"] == customer][:2]
        qbo_id = {
            str(d["number"]): str(external_refs.get_external_id(session, "quickbooks", "invoice", int(d["id"])))
            for d in (a, b)
        }
    over = IncomingPayment(
        "stripe", "ch_over", "USD", a["invoice_total"] + 7, date(2026, 11, 23), customer, (a["number"],)
    )
    record_pages(store, "stripe", [PaymentPage([over], "c1")], mirror_to=("quickbooks",))
    assert mirror_payments(store, settings).outcomes == {"created": 1}

    assert apply_payment(store, settings, "stripe:ch_over", str(b["number"])).amount == Decimal("7.00")
    lost = qbo.faults.add(kind="lost_response", path="/batch$", times=None)
    assert mirror_payments(store, settings).outcomes == {"retrying": 1}
    qbo.faults.clear()
    assert lost.hits > 0
    with store.write() as session:
        outbox.retry_now(session, [m["id"] for m in outbox.pending(session)])
    assert mirror_payments(store, settings).outcomes == {"existing": 1}  # the note says it is on

    (entry,) = [p for p in qbo.company.all("Payment") if str(p.get("PrivateNote", "")).startswith("billbridge ")]
    lines = {line["LinkedTxn"][0]["TxnId"]: line["Amount"] for line in entry["Line"]}
    assert lines == {qbo_id[str(a["number"])]: a["invoice_total"], qbo_id[str(b["number"])]: Decimal("7.00")}
    assert entry["TotalAmt"] == over.amount and entry["UnappliedAmt"] == 0
    assert qbo.company.get("Invoice", qbo_id[str(b["number"])])["Balance"] == b["invoice_total"] - 7
    with store.read() as session:
        here = next(d for d in list_invoices(session) if d["number"] == b["number"])
        receipts = messages.listing(session, kind="receipt")
    assert (here["status"], here["amount_paid"]) == ("partially_paid", Decimal("7.00"))
    # A receipt when the payment was recorded against A, and one for the 7.00 applied to B by hand
    # (each lists all the payment applied; both are filed under its first invoice, A).
    assert [r["number"] for r in receipts] == [a["number"], a["number"]]
    with store.read() as session:
        later = messages.sending_context(session, max(int(r["id"]) for r in receipts))
    assert later is not None
    open_b = str(b["invoice_total"] - 7)
    assert later["details"]["payment"]["applied"][-1] == {"number": b["number"], "amount": "7.00", "open": open_b}


def test_a_payment_quickbooks_holds_malformed_is_quarantined_and_read_again_once_fixed(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Payment whose TxnDate no calendar has raised out of the mapping and failed every
    reconciliation, the good payments of its page with it. Now it waits in the quarantine with its
    field, the others are recorded, and once it is corrected in QuickBooks it is read again."""
    import json

    from typer.testing import CliRunner

    from billbridge.app.cli import app
    from billbridge.store import quarantine

    settings = settings_for(qbo, database_url, tmp_path)
    bill_and_approve(store, ["quickbooks"])
    push(store, settings, "quickbooks")
    with store.read() as session:
        first, second = [d for d in list_invoices(session) if d["doc_type"] == "invoice"][:2]
        ids = {
            d["number"]: str(external_refs.get_external_id(session, "quickbooks", "invoice", int(d["id"])))
            for d in (first, second)
        }
    qbo.company.receive_payment({ids[first["number"]]: Decimal(str(first["invoice_total"]))})
    bad = qbo.company.receive_payment({ids[second["number"]]: Decimal(str(second["invoice_total"]))})
    qbo.company.records["Payment"][bad["Id"]]["TxnDate"] = "2026-02-30"  # as if QuickBooks sent it so

    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_DATA_DIR", str(tmp_path))
    assert settings.quickbooks is not None
    for key, value in as_environment("BILLBRIDGE_QUICKBOOKS", settings.quickbooks).items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["reconcile", "--source", "quickbooks"])
    assert result.exit_code == 0, result.output
    assert f"quarantined {bad['Id']}: field TxnDate: cannot read '2026-02-30'" in " ".join(result.stderr.split())
    assert statuses(store, str(first["contract_ref"])) >= {"paid"}
    with store.read() as session:
        held = quarantine.list_open(session, source="quickbooks")
    assert [(q["record_type"], q["record_key"], q["field"]) for q in held] == [("payments", bad["Id"], "TxnDate")]
    assert held[0]["payload"]["TxnDate"] == "2026-02-30"  # kept as received

    current = qbo.company.get("Payment", bad["Id"])
    qbo.company.update(
        "Payment", {"Id": bad["Id"], "SyncToken": current["SyncToken"], "sparse": True, "TxnDate": "2026-02-28"}
    )
    fixed = CliRunner().invoke(app, ["reconcile", "--source", "quickbooks", "--json"])
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.stdout)["outcomes"].get("matched") == 1
    with store.read() as session:
        assert quarantine.list_open(session, source="quickbooks") == []
        paid = {d["number"]: d["status"] for d in list_invoices(session)}
    assert paid[first["number"]] == paid[second["number"]] == "paid"
