"""Reseller invoices end to end (issue 17): one document per reseller and cycle with a section per end
customer (or one per end customer, when the reseller says so), a distributor over two resellers, the
reseller's own price book; reruns add nothing, a contract billed later in the cycle gets its own
document. Every figure below is worked out by hand in the comments."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.mapping.contract_file import json_schema
from billbridge.mapping.quickbooks import document_payload
from billbridge.store.db import Store
from billbridge.store.invoices import get_invoice, list_invoices
from billbridge.store.models import Customer, Product
from billbridge.store.outbound_documents import mark_sent, outbound_documents, set_status
from billbridge.store.resellers import reseller_revenue
from billbridge.store.usage import insert_events
from tests.docs import REFERENCE, contract

D = Decimal
CUSTOMERS = [*REFERENCE["customers"], {"customer_ref": "hooli", "name": "Hooli", "entity_ref": "us"}]
SEATS = {"line_ref": "seats", "product_ref": "seats", "quantity": "10", "discount": {"percent": "10"}}
USAGE = {"line_ref": "api", "product_ref": "api", "charge": "usage", "billing_timing": "in_arrears"}


def partner(ref: str, **terms: Any) -> dict[str, Any]:
    base = {"partner_ref": ref, "name": ref.replace("-", " ").title(), "kind": "reseller", "entity_ref": "us"}
    return {**base, "currency": "USD", **terms}


def world(partners: list[dict[str, Any]], contracts: list[dict[str, Any]]) -> dict[str, Any]:
    return {**REFERENCE, "customers": CUSTOMERS, "partners": partners, "contracts": contracts}


def documents(store: Store) -> list[dict[str, Any]]:
    """Every document with its lines, in number order: (customer, date, due, total, [(description, amount)])."""
    with store.read() as session:
        out = []
        for row in list_invoices(session):
            doc = get_invoice(session, row["number"])
            assert doc is not None
            lines = [(line["description"], line["billed_amount"]) for line in doc["lines"]]
            out.append(
                {
                    "id": doc["id"],
                    "customer": doc["customer_ref"],
                    "date": doc["billing_date"],
                    "due": doc["due_date"],
                    "total": doc["invoice_total"],
                    "lines": lines,
                }
            )
    return out


def add_calls(store: Store, customer_ref: str, calls: int, day: str) -> None:
    with store.write() as session:
        customer = session.execute(
            select(Customer.id, Customer.entity_id).where(Customer.customer_ref == customer_ref)
        ).one()
        product = session.scalar(select(Product.id).where(Product.product_ref == "api"))
        insert_events(
            session,
            [
                {
                    "event_ref": f"{customer_ref}-{day}",
                    "entity_id": customer.entity_id,
                    "customer_id": customer.id,  # the event names the end customer
                    "product_id": product,
                    "timestamp": datetime.fromisoformat(f"{day}T12:00:00+00:00"),
                    "quantity": Decimal(calls),
                }
            ],
        )


def test_a_reseller_with_three_end_customers_gets_one_invoice_a_cycle(store: Store) -> None:
    """25% off, net 45. Globex: Platform 1,200.00 a month -> 900.00. Initech: 10 seats at 45.00 = 450.00
    with its own 10% off, then the reseller's 25% (32.5% in all) -> 303.75. Hooli: API calls in arrears,
    100,000 in January at 0.002 = 200.00 -> 150.00, billed on 1 February. A contract sold directly
    (Globex, 1,200.00) keeps its own invoice."""
    doc = world(
        [partner("channel-one", discount_percent="25", payment_terms_days=45)],
        [
            contract("R-globex", reseller_ref="channel-one"),
            contract("R-initech", customer="initech", reseller_ref="channel-one", lines=[SEATS]),
            contract("R-hooli", customer="hooli", reseller_ref="channel-one", lines=[USAGE]),
            contract("direct"),
        ],
    )
    assert not import_document(store, doc).errors
    add_calls(store, "hooli", 100_000, "2026-01-20")
    first = run_billing(store, date(2026, 2, 1))
    assert first.failed == []
    docs = documents(store)
    resold = [d for d in docs if d["customer"] == "channel-one"]
    assert [(d["date"], d["due"], d["total"]) for d in resold] == [
        (date(2026, 1, 1), date(2026, 2, 15), D("1203.75")),  # 900.00 + 303.75
        (date(2026, 2, 1), date(2026, 3, 18), D("1353.75")),  # 900.00 + 150.00 + 303.75
    ]
    assert resold[0]["lines"] == [("Globex: Platform", D("900.00")), ("Initech: Seats", D("303.75"))]
    assert resold[1]["lines"] == [  # sections by end customer name
        ("Globex: Platform", D("900.00")),
        ("Hooli: API calls: sum of quantities 100000", D("150.00")),
        ("Initech: Seats", D("303.75")),
    ]
    assert [(d["customer"], d["total"]) for d in docs if d["customer"] != "channel-one"] == [
        ("globex", D("1200.00")),
        ("globex", D("1200.00")),
    ]

    # A rerun adds nothing; a contract sold later in the same cycle gets a document of its own (the
    # ones already numbered are never rewritten, draft or not).
    assert sum(run_billing(store, date(2026, 2, 1)).documents.values()) == 0
    late = contract("R-late", customer="initech", reseller_ref="channel-one", contract_start_date="2026-02-01")
    assert not import_document(store, {**doc, "contracts": [*doc["contracts"], late]}).errors
    again = run_billing(store, date(2026, 2, 1))
    assert again.documents["invoice"] == 1
    after = documents(store)
    assert [d for d in after if d["id"] in {r["id"] for r in docs}] == docs
    [new] = [d for d in after if d["id"] not in {r["id"] for r in docs}]
    assert (new["customer"], new["date"], new["total"], new["lines"]) == (
        "channel-one",
        date(2026, 2, 1),
        D("900.00"),
        [("Initech: Platform", D("900.00"))],
    )

    # Pushed like any invoice: QuickBooks sees the reseller as the customer, each end customer on its lines.
    with store.write() as session:
        for invoice in list_invoices(session):  # issued, as a push does (revenue counts issued documents)
            set_status(session, str(invoice["number"]), "approved", lambda _doc: [])
            mark_sent(session, [int(str(invoice["id"]))])
    with store.read() as session:
        outbound = outbound_documents(session, [resold[1]["id"]])[resold[1]["id"]]
        revenue = reseller_revenue(session, "us")
    payload = document_payload(outbound, customer_id="42", item_ids={"platform": "1", "seats": "2", "api": "3"})
    assert [line["Description"].split(" (")[0] for line in payload["Line"]] == [
        "Globex: Platform",
        "Hooli: API calls: sum of quantities 100000",
        "Initech: Seats",
    ]
    assert payload["CustomerRef"] == {"value": "42"} and payload["DueDate"] == "2026-03-18"
    # Revenue per reseller: 1,203.75 + 1,353.75 + 900.00.
    assert revenue == [
        {
            "partner_ref": "channel-one",
            "entity_ref": "us",
            "end_customers": ["globex", "hooli", "initech"],
            "contracts": 4,
            "revenue": {"USD": D("3457.50")},
        }
    ]


def test_a_reseller_may_want_one_invoice_per_end_customer(store: Store) -> None:
    doc = world(
        [partner("split-co", discount_percent="10", invoice_per="end_customer")],
        [
            contract("S-globex", reseller_ref="split-co"),
            contract("S-globex-seats", reseller_ref="split-co", lines=[{**SEATS, "discount": None}]),
            contract("S-initech", customer="initech", reseller_ref="split-co"),
        ],
    )
    assert not import_document(store, doc).errors
    run_billing(store, date(2026, 1, 1))
    # Globex: 1,200.00 and 450.00 less 10% = 1,080.00 + 405.00; Initech: 1,080.00.
    assert [(d["customer"], d["total"], d["lines"]) for d in documents(store)] == [
        ("split-co", D("1485.00"), [("Globex: Platform", D("1080.00")), ("Globex: Seats", D("405.00"))]),
        ("split-co", D("1080.00"), [("Initech: Platform", D("1080.00"))]),
    ]


def test_a_distributor_over_two_resellers_is_invoiced_at_its_own_price(store: Store) -> None:
    """The distributor: 40% off list, net 60. Reseller A (25% off) and reseller B (its own price book)
    sell through it; what they charge their customers is theirs: the distributor pays list less 40%.
    Globex via A: Platform 1,200.00 -> 720.00; Initech via B: Platform 720.00; Hooli via B: 10 seats at
    45.00 with the line's own 10% off, then 40% (46% in all) -> 243.00. One invoice: 1,683.00, due
    1 January + 60 days = 2 March."""
    doc = world(
        [
            partner("distri", discount_percent="40", payment_terms_days=60),
            partner("reseller-a", discount_percent="25", distributor_ref="distri"),
            partner(
                "reseller-b",
                price_book=[{"product_ref": "platform", "pricing": {"model": "flat", "amount": "1000"}}],
                distributor_ref="distri",
            ),
        ],
        [
            contract("D-globex", reseller_ref="reseller-a"),
            contract("D-initech", customer="initech", reseller_ref="reseller-b"),
            contract("D-hooli", customer="hooli", reseller_ref="reseller-b", lines=[SEATS]),
        ],
    )
    assert not import_document(store, doc).errors
    run_billing(store, date(2026, 1, 1))
    [invoice] = documents(store)
    assert (invoice["customer"], invoice["due"], invoice["total"]) == ("distri", date(2026, 3, 2), D("1683.00"))
    assert invoice["lines"] == [
        ("Globex via reseller-a: Platform", D("720.00")),
        ("Hooli via reseller-b: Seats", D("243.00")),
        ("Initech via reseller-b: Platform", D("720.00")),
    ]
    assert sum(run_billing(store, date(2026, 1, 1)).documents.values()) == 0


def test_a_resellers_price_book_comes_before_its_discount(store: Store) -> None:
    """Price book: Platform at 1,000.00 (no discount on top); Seats not in it: 450.00 less 25% = 337.50."""
    book = [{"product_ref": "platform", "pricing": {"model": "flat", "amount": "1000"}}]
    doc = world(
        [partner("booked", discount_percent="25", price_book=book)],
        [
            contract(
                "B-1",
                reseller_ref="booked",
                lines=[{"line_ref": "p", "product_ref": "platform"}, {**SEATS, "discount": None}],
            )
        ],
    )
    assert not import_document(store, doc).errors
    run_billing(store, date(2026, 1, 1))
    [invoice] = documents(store)
    assert invoice["lines"] == [("Globex: Platform", D("1000.00")), ("Globex: Seats", D("337.50"))]
    assert invoice["total"] == D("1337.50")


def test_the_schema_describes_price_books_distributors_and_the_invoice_choice() -> None:
    schema = json_schema()
    partner = schema["$defs"]["Partner"]["properties"]
    assert {"price_book", "invoice_per", "distributor_ref"} <= set(partner)
    assert "ResellerPrice" in schema["$defs"]


def test_a_contract_whose_resellers_distributor_is_unknown_is_quarantined_and_the_rest_go_on(store: Store) -> None:
    doc = world(
        [partner("orphan", distributor_ref="nobody"), partner("fine", discount_percent="10")],
        [contract("O-1", reseller_ref="orphan"), contract("F-1", reseller_ref="fine")],
    )
    summary = import_document(store, doc)
    # The reseller waits for its distributor (checked on import), and so its contract for it.
    assert [(e.key, e.field) for e in summary.errors] == [("orphan", "distributor_ref"), ("O-1", "reseller_ref")]
    assert "nobody" in str(summary.errors[0])
    run_billing(store, date(2026, 1, 1))
    assert [(d["customer"], d["total"]) for d in documents(store)] == [("fine", D("1080.00"))]


def test_a_consolidated_invoice_is_listed_under_each_of_its_contracts(store: Store) -> None:
    doc = world(
        [partner("channel-one", discount_percent="25")],
        [contract("R-1", reseller_ref="channel-one"), contract("R-2", customer="initech", reseller_ref="channel-one")],
    )
    assert not import_document(store, doc).errors
    run_billing(store, date(2026, 1, 1))
    with store.read() as session:
        numbers = {ref: [r["number"] for r in list_invoices(session, contract_ref=ref)] for ref in ("R-1", "R-2")}
    assert numbers == {"R-1": ["US-INV-1"], "R-2": ["US-INV-1"]}
