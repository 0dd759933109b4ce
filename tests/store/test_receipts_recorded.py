"""Receipts of a reconciliation page are made from what recording the payments computed (their
allocations, the invoices' balances after the page), not read back: a worked example with known
answers, the same receipts the read-back made (two payments of one invoice in a page, a payment
naming no customer, a contact's opt-out), once however often the page comes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select, update

from billbridge.billing.documents import IncomingPayment
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.reconcile import record_pages
from billbridge.store import messages
from billbridge.store.db import Store
from billbridge.store.invoices import list_invoices
from billbridge.store.message_models import CustomerMessage
from billbridge.store.models import Invoice, Payment, PaymentAllocation
from billbridge.vendors.contract import PaymentPage

DAY = date(2026, 7, 1)


def _billed(store: Store) -> dict[str, dict[str, object]]:
    """Two customers (one with a cc contact who wants no receipts), one 100.00 invoice each, sent."""
    contacts = {
        "a": [{"email": "ap@a.example"}, {"email": "cfo@a.example", "role": "cc", "opt_out": ["receipt"]}],
        "b": [{"email": "ap@b.example", "language": "de"}],
    }
    import_document(
        store,
        {
            "entities": [{"entity_ref": "us", "name": "US", "currency": "USD", "invoice_prefix": "US-INV-"}],
            "customers": [
                {"customer_ref": ref, "name": ref, "entity_ref": "us", "contacts": found}
                for ref, found in contacts.items()
            ],
            "products": [{"product_ref": "plan", "name": "Plan", "prices": []}],
            "contracts": [
                {
                    "contract_ref": f"K-{ref}",
                    "customer_ref": ref,
                    "entity_ref": "us",
                    "currency": "USD",
                    "contract_start_date": DAY.isoformat(),
                    "lines": [
                        {"line_ref": "plan", "product_ref": "plan", "pricing": {"model": "flat", "amount": "100.00"}}
                    ],
                }
                for ref in contacts
            ],
        },
    )
    run_billing(store, DAY)
    with store.write() as session:
        session.execute(update(Invoice).values(status="sent"))
    with store.read() as session:
        return {str(d["customer_ref"]): d for d in list_invoices(session)}


def test_a_pages_receipts_say_what_each_payment_applied_and_what_is_open_after_the_page(store: Store) -> None:
    invoices = _billed(store)
    a, b = str(invoices["a"]["number"]), str(invoices["b"]["number"])
    page = PaymentPage(
        [
            IncomingPayment("qb", "p1", "USD", Decimal("30.00"), DAY, "a", (a,)),
            IncomingPayment("qb", "p2", "USD", Decimal("70.00"), DAY, "a", (a,)),
            IncomingPayment("qb", "p3", "USD", Decimal("40.5"), DAY, None, (b,)),  # names no customer of ours
        ],
        "cursor-1",
    )
    assert record_pages(store, "qb", [page]).outcomes == {"matched": 3}
    assert record_pages(store, "qb", [page]).outcomes == {"seen_before": 3}  # the page again: no receipt twice
    with store.read() as session:
        made = session.scalars(select(CustomerMessage).order_by(CustomerMessage.id)).all()
        customers = {m.customer_id for m in made}
        assert len(customers) == 2
        receipts = [(m.event_key, m.state, m.recipients, m.language, m.details) for m in made if m.kind == "receipt"]
        payment_ids = [int(str(m.event_key).split(":")[1]) for m in made if m.kind == "receipt"]
        assert [m.customer_id for m in made if m.kind == "receipt"][2] == messages.customer_id_of(session, "b")

    def receipt(ref: str, amount: str, number: str, applied: str, still_open: str) -> dict[str, object]:
        return {
            "payment": {
                "ref": f"qb:{ref}",
                "amount": amount,
                "received_on": "2026-07-01",
                "applied": [{"number": number, "amount": applied, "open": still_open}],
                "unapplied": None,
            }
        }

    a_to = {"to": ["ap@a.example"], "cc": []}  # the cc contact opted out of receipts
    assert receipts == [
        # Both of a's payments: what is open on its invoice after the page (the read-back said the same).
        (f"receipt:{payment_ids[0]}", "queued", a_to, "en", receipt("p1", "30.00", a, "30.00", "0.00")),
        (f"receipt:{payment_ids[1]}", "queued", a_to, "en", receipt("p2", "70.00", a, "70.00", "0.00")),
        (
            f"receipt:{payment_ids[2]}",
            "queued",
            {"to": ["ap@b.example"], "cc": []},
            "de",
            receipt("p3", "40.5", b, "40.5", "59.50"),
        ),
    ]
    assert payment_ids == sorted(payment_ids)
    with store.read() as session:
        assert messages.contacts_of(session, customers) == messages.contacts_of(session, customers)  # cached alike


def test_a_receipt_goes_to_the_customer_who_paid_and_names_the_payment_recorded(store: Store) -> None:
    """Whose receipt it is, whether recording knew it from the invoices read or it was read back: a
    payment by customer a of b's invoice goes to a; one naming a customer we do not know, or none,
    goes to the invoice's customer; each receipt's event key names the id the payment was stored with
    (the ids known without reading them back on SQLite), in a page after other payments were deleted."""
    invoices = _billed(store)
    a, b = str(invoices["a"]["number"]), str(invoices["b"]["number"])
    first = PaymentPage([IncomingPayment("qb", "p0", "USD", Decimal("1.00"), DAY, "b", (b,))], "cursor-0")
    assert record_pages(store, "qb", [first]).outcomes == {"matched": 1}
    with store.write() as session:  # taken back: the largest payment id is gone, the next page reuses it
        session.execute(CustomerMessage.__table__.delete())
        session.execute(PaymentAllocation.__table__.delete())
        session.execute(Payment.__table__.delete())
        session.execute(update(Invoice).values(amount_paid=Decimal(0), status="sent"))
    page = PaymentPage(
        [
            IncomingPayment("qb", "p1", "USD", Decimal("10.00"), DAY, "a", (b,)),  # a pays b's invoice
            IncomingPayment("qb", "p2", "USD", Decimal("20.00"), DAY, "nobody", (a,)),  # unknown customer
            IncomingPayment("qb", "p3", "USD", Decimal("30.00"), DAY, None, (a,)),  # no customer
            IncomingPayment("qb", "p4", "USD", Decimal("40.00"), DAY, "b", (b,)),  # the invoice's own
        ],
        "cursor-1",
    )
    assert record_pages(store, "qb", [page]).outcomes == {"matched": 4}
    with store.read() as session:
        ids = dict(session.execute(select(Payment.payment_ref, Payment.id)).tuples().all())
        made = {
            m.payment_id: (m.event_key, m.customer_id)
            for m in session.scalars(select(CustomerMessage).where(CustomerMessage.kind == "receipt"))
        }
        customer = {ref: messages.customer_id_of(session, ref) for ref in ("a", "b")}
    assert made == {
        ids["qb:p1"]: (f"receipt:{ids['qb:p1']}", customer["a"]),
        ids["qb:p2"]: (f"receipt:{ids['qb:p2']}", customer["a"]),
        ids["qb:p3"]: (f"receipt:{ids['qb:p3']}", customer["a"]),
        ids["qb:p4"]: (f"receipt:{ids['qb:p4']}", customer["b"]),
    }
