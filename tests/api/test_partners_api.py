"""``/api/partners`` through FastAPI's TestClient over a real store: a referral partner's agreements,
referred customers with their revenue and fees, and its statements, scoped to the key's entity."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.flows.partner_fees import accrue_fees, close_period
from billbridge.store.invoices import list_invoices
from billbridge.store.outbound_documents import mark_sent, set_status
from billbridge.store.payments import record_payment
from tests.api.conftest import Api
from tests.docs import contract, document

PARTNERS = {
    "partners": [
        {"partner_ref": "northwind", "name": "Northwind", "kind": "referral", "entity_ref": "us", "currency": "USD"},
        {"partner_ref": "souk", "name": "Souk Partners", "kind": "referral", "entity_ref": "kw", "currency": "KWD"},
    ],
    "referral_agreements": [
        {
            "agreement_ref": "nw-1",
            "partner_ref": "northwind",
            "currency": "USD",
            "percent": "10",
            "flat_fee": "50.00",
            "referrals": [
                {"customer_ref": "globex", "referred_on": "2026-01-01"},
                {"customer_ref": "initech", "referred_on": "2026-01-01"},
            ],
        }
    ],
}


def test_partners_and_their_referral_data_of_the_keys_entity(api: Api) -> None:
    assert not import_document(api.store, document(contract("C-1"), with_reference=False)).errors
    assert not import_document(api.store, PARTNERS).errors
    run_billing(api.store, date(2026, 1, 1))
    with api.store.write() as session:
        invoice = next(d for d in list_invoices(session) if d["contract_ref"] == "C-1")
        set_status(session, str(invoice["number"]), "approved", lambda _doc: [])
        mark_sent(session, [int(str(invoice["id"]))])
        record_payment(
            session,
            payment_ref="p-1",
            currency="USD",
            amount=Decimal("1200.00"),
            received_on=date(2026, 1, 20),
            allocations=[(str(invoice["number"]), Decimal("1200.00"))],
            customer_ref="globex",
        )
    accrue_fees(api.store, as_of=date(2026, 2, 1))
    close_period(api.store, "2026-01")

    listed = api.get("/api/partners")
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"] == [
        {
            "partner_ref": "northwind",
            "name": "Northwind",
            "kind": "referral",
            "entity_ref": "us",
            "currency": "USD",
            "referred_customers": 2,
            "fees_accrued": "170.00",  # 10% of 1,200 and the 50 flat fee
            "fees_billed": "0.00",  # queued for QuickBooks, not delivered
            "fees_credited": "0.00",
            "fees_paid": "0.00",
        }
    ]
    shown = api.get("/api/partners/northwind").json()
    assert [(r["customer_ref"], r["revenue"], r["fees"]) for r in shown["referred_customers"]] == [
        ("globex", "1200.00", "170.00"),
        ("initech", "0.00", "0.00"),
    ]
    assert [(s["period"], s["total"], s["status"], s["paid"]) for s in shown["statements"]] == [
        ("2026-01", "170.00", "closed", None)
    ]
    assert shown["agreements"][0]["percent"] == "10"

    # The other entity's key sees its own partner only, and not northwind.
    assert [p["partner_ref"] for p in api.get("/api/partners", token=api.kw_token).json()["data"]] == ["souk"]
    assert api.get("/api/partners/northwind", token=api.kw_token).status_code == 404
    assert api.get("/api/partners/nobody").status_code == 404
    assert api.get("/api/partners", limit=0).status_code == 422


def test_the_partner_list_pages_through_the_entitys_partners(api: Api) -> None:
    """Four partners of the entity, two a page: the pages hold them in partner_ref order, each once
    (the reports are built for the page's partners only), and the other entity's partner never shows."""
    extra = [
        {"partner_ref": f"p{n}", "name": f"P{n}", "kind": "referral", "entity_ref": "us", "currency": "USD"}
        for n in (1, 2, 3)
    ]
    assert not import_document(api.store, {**document(with_reference=False), **PARTNERS}).errors
    assert not import_document(api.store, {"partners": extra}).errors
    first = api.get("/api/partners", limit=2).json()
    assert [p["partner_ref"] for p in first["data"]] == ["northwind", "p1"] and first["has_more"]
    second = api.get("/api/partners", limit=2, cursor=first["next_cursor"]).json()
    assert [p["partner_ref"] for p in second["data"]] == ["p2", "p3"] and not second["has_more"]
    assert second["data"][0]["fees_accrued"] == "0.00"
